"""The evaluation report: box plots, an image grid per grade, and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

PAPER = {  # Aoki et al., Jpn J Radiol 2025 (abstract); raw 5-min values implied by the gains
    "raw 5-min": ("~30.9", "~0.71"),
    "best: 4-level U-Net": ("32.7 +/- 1.7", "0.842 +/- 0.069"),
    "gain of the best model": ("+1.8", "+0.13"),
}
FILTERS = ("gaussian", "butterworth", "nlm")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _save(out_dir: Path, name: str, data: bytes) -> None:
    tmp = out_dir / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, out_dir / name)


def _boxplots(summary, preds_scores) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(preds_scores)
    fig, ax = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(names)), 4))
    for a, key, label in ((ax[0], 0, "PSNR vs 25-min (dB)"), (ax[1], 1, "SSIM vs 25-min")):
        a.boxplot([preds_scores[n][key] for n in names], showfliers=False)
        a.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
        a.set_ylabel(label)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _grid(preds: dict[str, np.ndarray], truth, test_index) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastdat.plotting import show_transaxial

    worse = test_index[["grade_left", "grade_right"]].max(axis=1).to_numpy()
    middle = test_index["slice_rank"].to_numpy() == test_index["slice_rank"].max() // 2
    picks = []
    for g in sorted({int(v) for v in worse[~np.isnan(worse.astype(float))]} or {0}):
        cand = np.flatnonzero((worse == g) & middle)
        if cand.size:
            picks.append((g, int(cand[0])))
    picks = picks or [(-1, 0)]
    cols = list(preds) + (["truth"] if truth is not None else [])
    fig, axes = plt.subplots(
        len(picks), len(cols), figsize=(1.9 * len(cols), 2.0 * len(picks)), squeeze=False
    )
    for row, (g, i) in zip(axes, picks, strict=True):
        vmax = float(preds["25min"][i].max()) if "25min" in preds else None
        for ax, name in zip(row, cols, strict=True):
            img = truth[i] if name == "truth" else preds[name][i]
            title = name + (f" (grade {g})" if name == cols[0] and g >= 0 else "")
            show_transaxial(ax, img, vmax, title)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _fmt(rec: dict[str, Any], key: str, digits: int) -> str:
    if f"{key}_mean" not in rec:
        return ""
    return f"{rec[key + '_mean']:.{digits}f} &plusmn; {rec[key + '_sd']:.{digits}f}"


def write_report(
    out_dir, summary, stats_doc, tuned, preds, scores, truth, test_index, note=None
) -> Path:
    """Write ``boxplots.png``, ``grid.png`` and ``report.html`` into ``out_dir``."""

    out_dir = Path(out_dir)
    box = _boxplots(summary, scores)
    grid = _grid(preds, truth, test_index)
    _save(out_dir, "boxplots.png", box)
    _save(out_dir, "grid.png", grid)
    by = {r["method"]: r for r in summary}
    models = [m for m in by if m not in ("5min", "25min", *FILTERS)]
    best_model = max(models, key=lambda m: by[m]["psnr_mean"]) if models else None
    best_filter = max(
        (f for f in FILTERS if f in by), key=lambda f: by[f]["psnr_mean"], default=None
    )
    lines = []
    if best_model:
        gain_p = by[best_model]["psnr_mean"] - by["5min"]["psnr_mean"]
        gain_s = by[best_model]["ssim_mean"] - by["5min"]["ssim_mean"]
        lines.append(
            f"Best model <b>{html.escape(best_model)}</b>: {gain_p:+.2f} dB PSNR and "
            f"{gain_s:+.3f} SSIM over raw 5-min (paper: +1.8 dB, +0.13)."
        )
        if best_filter:
            pair = next(
                p
                for p in stats_doc["psnr"]["pairs"]
                if {p["a"], p["b"]} == {best_model, best_filter}
            )
            diff = by[best_model]["psnr_mean"] - by[best_filter]["psnr_mean"]
            verdict = "beats" if diff > 0 and pair["dunn_holm_p"] < 0.05 else "does not beat"
            lines.append(
                f"It {verdict} the best tuned filter ({html.escape(best_filter)}): "
                f"{diff:+.2f} dB, Dunn-Holm p = {pair['dunn_holm_p']:.3g}, paired "
                f"Wilcoxon-Holm p = {pair['wilcoxon_holm_p']:.3g}."
            )
    fr = stats_doc["psnr"]["friedman"]
    lines.append(
        f"Friedman over {fr['k']} methods, {fr['n']} test images: chi2 = "
        f"{fr['chi2']:.1f}, p = {fr['p']:.3g}."
    )
    rows = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{_fmt(r, 'psnr', 2)}</td>"
        f"<td>{_fmt(r, 'ssim', 3)}</td><td>{_fmt(r, 'psnr_truth', 2)}</td>"
        f"<td>{_fmt(r, 'ssim_truth', 3)}</td></tr>"
        for r in summary
    )
    paper_rows = "".join(
        f"<tr><td>{k}</td><td>{a}</td><td>{b}</td></tr>" for k, (a, b) in PAPER.items()
    )
    filt = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v['params']))} (validation PSNR "
        f"{v['val_psnr']:.2f} dB)</li>"
        for k, v in tuned.items()
    )
    b64 = {k: base64.b64encode(v).decode() for k, v in (("box", box), ("grid", grid))}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>FastDaT evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:
collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:
left}}</style></head><body>
<h1>Can a 5-min DaT SPECT stand in for a 25-min one?</h1>
{f'<p style="background:#fff3cd;padding:6px">{html.escape(note)}</p>' if note else ""}
<p>{"<br>".join(lines)}</p>
<h2>Test split (mean &plusmn; SD)</h2>
<table><tr><th>method</th><th>PSNR vs 25-min (dB)</th><th>SSIM vs 25-min</th>
<th>PSNR vs truth (dB)</th><th>SSIM vs truth</th></tr>{rows}</table>
<h2>The paper (Aoki et al. 2025)</h2>
<table><tr><th></th><th>PSNR (dB)</th><th>SSIM</th></tr>{paper_rows}</table>
<h2>Filters tuned on the validation split</h2><ul>{filt}</ul>
<h2>Distributions</h2><img src="data:image/png;base64,{b64["box"]}" style="max-width:100%">
<h2>One test slice per grade</h2><img src="data:image/png;base64,{b64["grid"]}"
style="max-width:100%">
<p>Statistics: <code>stats.json</code>; per image: <code>metrics.csv</code>.</p>
</body></html>"""
    _save(out_dir, "report.html", page.encode())
    return out_dir / "report.html"


def add_section(report: str | Path, name: str, body: str) -> Path:
    """Put ``body`` into ``report`` as the section ``name``, before the closing tag.

    The section sits between ``<!-- section:NAME -->`` and ``<!-- /section:NAME -->`` markers, so
    adding it again replaces it (a rerun of a stage never duplicates its section).
    """
    report = Path(report)
    page = report.read_text()
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    if start in page and end in page:
        page = page[: page.index(start)] + page[page.index(end) + len(end) :]
    if "</body>" not in page:
        raise ValueError(f"{report}: no </body> to insert the {name!r} section before")
    i = page.rindex("</body>")
    page = f"{page[:i]}{start}\n{body}\n{end}\n{page[i:]}"
    _save(report.parent, report.name, page.encode())
    return report


def timings_section(timings: dict[str, float]) -> str:
    """HTML table of a study's wall time per stage (``timings.json``: stage -> seconds)."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>" for k, v in timings.items()
    )
    return (
        "<h2>Wall time per stage (s)</h2><p>A training run resumed after a kill adds the epochs "
        "saved before it. A stage found complete keeps the time of the run that did its work.</p>"
        f"<table><tr><th>stage</th><th>seconds</th></tr>{rows}"
        f"<tr><td><b>total</b></td><td><b>{sum(timings.values()):.1f}</b></td></tr></table>"
    )
