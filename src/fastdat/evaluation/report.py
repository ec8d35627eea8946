"""The evaluation report: one self-contained HTML page, written once from the stages' files.

It leads with the answer a physicist wants (restored 5-min vs raw 5-min vs the best tuned filter
vs 25-min, in image quality and, when the quantification stage ran, in SBR), each headline with
its 95 % CI and the number of patients, then the detail. ``evaluate`` writes it for its own
folder; the study writes it once at the end, with the quantification section and the timings.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from fastdat.io.atomic import write_bytes
from fastdat.methods import LONG, RAW
from fastdat.methods.filters import FILTERS

PAPER = {  # Aoki et al., Jpn J Radiol 2025 (abstract); raw 5-min values implied by the gains
    "raw 5-min": ("~30.9", "~0.71"),
    "best: 4-level U-Net": ("32.7 +/- 1.7", "0.842 +/- 0.069"),
    "gain of the best model": ("+1.8", "+0.13"),
}
TITLE = "Can a 5-min DaT SPECT stand in for a 25-min one?"
DEFINITIONS = """<ul>
<li><b>Truth</b>: the simulated activity (noise-free, infinite resolution) on the crop's grid,
scaled per crop so that its total equals the 25-min crop's (counts / s).</li>
<li><b>PSNR / SSIM</b>: each image and its reference are divided by the reference's maximum
(25-min crop, or the scaled truth), data range 1; SSIM with scikit-image's Gaussian window
(sigma 1.5 px). 64 x 64 striatal crops, 5 slices per patient.</li>
<li><b>Filters</b> (tuned on the validation split by mean PSNR against 25-min): Gaussian
<code>sigma</code> in pixels; Butterworth <code>cutoff</code> in units of the Nyquist frequency,
<code>order</code> dimensionless; non-local means <code>h</code> as a fraction of each image's
maximum.</li>
<li><b>Unit of analysis</b>: the test patient (a patient's scores averaged over its crops).
CIs are t-intervals of the mean paired difference over patients; p-values from the paired
Wilcoxon signed-rank test. With fewer than 6 patients no paired test can reach p &lt; 0.05.</li>
<li><b>Best</b> network and filter: chosen on the validation split (never on the test split);
networks that did not converge are marked and not ranked.</li>
</ul>"""


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _img(path: Path) -> str:
    if not path.exists():
        return ""
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{b64}" style="max-width:100%">'


def _num(v: Any, digits: int) -> str:
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "&ndash;"


def _diff(c: dict[str, Any] | None, digits: int, unit: str = "") -> str:
    """``+1.23 dB (95 % CI 0.80 to 1.66, n = 16, p = 0.001)``."""
    if not c:
        return "&ndash;"
    text = (
        f"{c['mean']:+.{digits}f}{unit} (95 % CI {c['low']:+.{digits}f} to "
        f"{c['high']:+.{digits}f}, n = {c['n']} patients, Wilcoxon p = {c['p_wilcoxon']:.2g})"
    )
    return text if c.get("enough", True) else text + " <b>[too few patients to conclude]</b>"


def _find(comps: list[dict[str, Any]], a: str | None, b: str | None, metric: str):
    return next((c for c in comps if (c["a"], c["b"], c["metric"]) == (a, b, metric)), None)


def _excludes_zero(c: dict[str, Any] | None) -> bool:
    return bool(c) and c["enough"] and (c["low"] > 0 or c["high"] < 0)


def answer(head: dict[str, Any], quant: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The plain-sentence answer to the report's title and its headline lines (HTML)."""
    comps = head["comparisons"]
    net, filt = head["best"]["network"], head["best"]["filter"]
    lines: list[str] = []
    n = int(head.get("n_patients", next((c["n"] for c in comps), 0)))
    if not net:
        few = f" (and only {n} test patients)" if n < 6 else ""
        return (
            "No network converged on the validation split, so this study cannot say whether "
            f"restoration helps{few}.",
            lines,
        )
    beats = {
        ref: all(_excludes_zero(_find(comps, net, ref, m)) for m in ("psnr", "ssim"))
        and all(_find(comps, net, ref, m)["mean"] > 0 for m in ("psnr", "ssim"))
        for ref in (RAW, filt)
        if ref
    }
    for ref, label in ((RAW, "raw 5-min"), (filt, f"the best tuned filter ({filt})")):
        if not ref:
            continue
        lines.append(
            f"<b>{html.escape(net)}</b> vs {html.escape(label)}, against 25-min: PSNR "
            f"{_diff(_find(comps, net, ref, 'psnr'), 2, ' dB')}; SSIM "
            f"{_diff(_find(comps, net, ref, 'ssim'), 3)}."
        )
    for m, label in ((net, html.escape(net)), (RAW, "raw 5-min")):
        c = _find(comps, m, LONG, "psnr_truth")
        if c:
            lines.append(
                f"{label} vs the 25-min image, against the truth: PSNR {_diff(c, 2, ' dB')}."
            )
    if n < 6:
        return (
            f"Too few test patients (n = {n}) to conclude anything: with fewer than 6 no paired "
            "test can reach p &lt; 0.05.",
            lines,
        )
    iq = (
        f"restoring the 5-min image with {net} brings it closer to the 25-min image than "
        + ("both raw 5-min and the best tuned filter" if all(beats.values()) else "")
        + (
            "raw 5-min but not clearly closer than the best tuned filter"
            if beats.get(RAW) and not beats.get(filt, True)
            else ""
        )
        + ("neither raw 5-min nor the filter, clearly" if not beats.get(RAW) else "")
    )
    sentence = f"On this simulated cohort ({n} test patients), {iq} (PSNR and SSIM, 95 % CIs)"
    if quant and quant.get("equivalence"):
        eq = quant["equivalence"]
        margin = quant["margin"]
        parts = []
        for m, label in ((net, net), (RAW, "raw 5-min")):
            e = eq.get(m)
            if e:
                verdict = "is" if e["equivalent"] else "is not shown to be"
                parts.append(
                    f"{html.escape(label)} putamen SBR {verdict} equivalent to 25-min within "
                    f"&plusmn;{margin:g} (bias {e['mean']:+.3f}, 90 % CI {e['ci90_low']:+.3f} "
                    f"to {e['ci90_high']:+.3f})"
                )
        sentence += "; " + " and ".join(parts)
    return sentence + ".", lines


def _headline_table(summary: dict[str, dict[str, str]], head, quant) -> str:
    net, filt = head["best"]["network"], head["best"]["filter"]
    rows = [(RAW, "raw 5-min"), (filt, "best filter"), (net, "restored (best network)")]
    rows = [r for r in rows if r[0]] + [(LONG, "25-min")]
    sbr = (quant or {}).get("methods", {})
    body = ""
    for m, label in rows:
        r = summary.get(m, {})
        s = sbr.get(m, {})
        body += (
            f"<tr><td>{html.escape(label)}: {html.escape(m)}</td>"
            f"<td>{_pm(r, 'psnr', 2)}</td><td>{_pm(r, 'ssim', 3)}</td>"
            f"<td>{_pm(r, 'psnr_truth', 2)}</td><td>{_pm(r, 'ssim_truth', 3)}</td>"
            f"<td>{_ci(s.get('putamen_vs_25min'))}</td><td>{_ci(s.get('putamen_vs_truth'))}</td>"
            f"<td>{_ci(s.get('southampton_vs_25min'))}</td>"
            f"<td>{_ci(s.get('southampton_vs_truth'))}</td></tr>"
        )
    return (
        "<table><tr><th>method</th><th>PSNR vs 25-min (dB)</th><th>SSIM vs 25-min</th>"
        "<th>PSNR vs truth (dB)</th><th>SSIM vs truth</th><th>putamen SBR bias vs 25-min</th>"
        "<th>putamen SBR bias vs truth</th><th>Southampton SBR bias vs 25-min</th>"
        f"<th>Southampton SBR bias vs truth</th></tr>{body}</table><p><small>Image quality: "
        "mean &plusmn; SD over test patients. SBR: mean bias [95 % CI] over test patients (each "
        "patient's two striata averaged).</small></p>"
    )


def _pm(r: dict[str, str], key: str, digits: int) -> str:
    if not r.get(f"{key}_pmean"):
        return "&ndash;"
    return f"{_num(r[key + '_pmean'], digits)} &plusmn; {_num(r[key + '_psd'], digits)}"


def _ci(c: dict[str, Any] | None) -> str:
    if not c:
        return "&ndash;"
    return f"{c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def _networks_table(networks: dict[str, Any], validation: dict[str, dict[str, str]]) -> str:
    rows = ""
    for label, info in networks.items():
        arch = info["architecture"]
        extra = ", ".join(f"{k}={v}" for k, v in arch.items() if k not in ("name", "spatial_dims"))
        if info.get("trained_here") and info.get("init"):
            origin = f"fine-tuned here, on this cohort's training split, from {info['init']}"
        elif info.get("trained_here"):
            origin = "trained here from scratch, on this cohort's training split"
        else:
            origin = f"pretrained elsewhere, evaluated as is: {info['trained_on']}"
        epochs = (
            f"{info.get('best_epoch')} of {info['epochs_run']} (max {info['max_epochs']})"
            if info.get("epochs_run")
            else str(info.get("best_epoch") or "&ndash;")
        )
        if info.get("trained_here") and info.get("init") and info.get("best_epoch") == 0:
            epochs += " (no epoch beat the starting weights on validation: kept them)"
        v = validation.get(label, {})
        conv = "yes" if v.get("converged") == "True" else f"<b>no</b>: {v.get('why_not', '')}"
        size = f"{int(info['file_bytes']) / 1e6:.1f} MB" if info.get("file_bytes") else "&ndash;"
        rows += (
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(arch['name'])} "
            f"({html.escape(extra)})</td><td>{html.escape(origin)}</td><td>{epochs}</td>"
            f"<td>{size}</td><td>{_num(v.get('val_psnr'), 2)}</td><td>{conv}</td></tr>"
        )
    return (
        "<table><tr><th>network</th><th>architecture</th><th>where it was trained</th>"
        "<th>best epoch</th><th>weights</th><th>validation PSNR (dB)</th><th>converged</th>"
        f"</tr>{rows}</table>"
    )


def _all_methods(summary_rows, validation) -> str:
    rows = ""
    for r in summary_rows:
        v = validation.get(r["method"], {})
        mark = " <b>(not converged)</b>" if v.get("converged") == "False" else ""
        rows += (
            f"<tr><td>{html.escape(r['method'])}{mark}</td><td>{r.get('n_patients', '')}</td>"
            f"<td>{r['n']}</td><td>{_num(v.get('val_psnr'), 2)}</td>"
            f"<td>{_pm(r, 'psnr', 2)}</td><td>{_pm(r, 'ssim', 3)}</td>"
            f"<td>{_pm(r, 'psnr_truth', 2)}</td><td>{_pm(r, 'ssim_truth', 3)}</td></tr>"
        )
    return (
        "<table><tr><th>method</th><th>patients</th><th>crops</th><th>validation PSNR</th>"
        "<th>PSNR vs 25-min (dB)</th><th>SSIM vs 25-min</th><th>PSNR vs truth (dB)</th>"
        f"<th>SSIM vs truth</th></tr>{rows}</table><p><small>Mean &plusmn; SD over test "
        "patients.</small></p>"
    )


def _stats_html(stats: dict[str, Any]) -> str:
    pl = stats.get("patient_level", {})
    out = []
    for key, label in (("psnr", "PSNR"), ("ssim", "SSIM")):
        p = pl.get(key, {})
        if "friedman" in p:
            fr = p["friedman"]
            out.append(
                f"{label}, patients as blocks: Friedman &chi;&sup2; = {fr['chi2']:.1f}, "
                f"k = {fr['k']} methods, n = {fr['n']} patients, p = {fr['p']:.3g}."
            )
        fr = stats[key]["friedman"]
        out.append(
            f"{label}, crops as blocks (the paper's analysis; a patient's crops are not "
            f"independent, so this over-states the evidence): &chi;&sup2; = {fr['chi2']:.1f}, "
            f"n = {fr['n']} crops, p = {fr['p']:.3g}."
        )
    return (
        "<p>" + "<br>".join(out) + "</p><p>All pairs (Dunn-Holm over crops as in the paper; "
        "paired Wilcoxon-Holm over crops and over patients): <code>stats.json</code>.</p>"
    )


def write_report(
    eval_dir: str | Path,
    note: str | None = None,
    quant_dir: str | Path | None = None,
    timings: dict[str, float] | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write ``report.html`` (into ``out``, default ``eval_dir``) from the stages' files."""
    eval_dir = Path(eval_dir)
    head = _read(eval_dir / "headline.json")
    stats = _read(eval_dir / "stats.json")
    summary_rows = _csv(eval_dir / "summary.csv")
    summary = {r["method"]: r for r in summary_rows}
    validation = {r["method"]: r for r in _csv(eval_dir / "validation.csv")}
    networks = _read(eval_dir / "networks.json") or {}
    tuned = _read(eval_dir / "baselines.json") or {}
    quant_dir = Path(quant_dir) if quant_dir else None
    quant = _read(quant_dir / "headline.json") if quant_dir else None
    sentence, lines = answer(head, quant)
    paper_rows = "".join(
        f"<tr><td>{k}</td><td>{a}</td><td>{b}</td></tr>" for k, (a, b) in PAPER.items()
    )
    filt = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v['params']))} (validation PSNR "
        f"{v['val_psnr']:.2f} dB)</li>"
        for k, v in tuned.items()
    )
    quant_html = (
        (quant_dir / "section.html").read_text()
        if quant_dir and (quant_dir / "section.html").exists()
        else ""
    )
    note_html = f'<p style="background:#fff3cd;padding:6px">{html.escape(note)}</p>' if note else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>FastDaT evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:
collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:
left}}.answer{{font-size:1.15em;background:#eef6ee;padding:8px}}</style></head><body>
<h1>{TITLE}</h1>{note_html}
<p class="answer">{sentence}</p>
<ul>{"".join(f"<li>{x}</li>" for x in lines)}</ul>
<h2>The answer in numbers (test split)</h2>{_headline_table(summary, head, quant)}
<h2>The paper (Aoki et al. 2025), for comparison</h2>
<table><tr><th></th><th>PSNR (dB)</th><th>SSIM</th></tr>{paper_rows}</table>
<h2>The networks: what was trained where</h2>{_networks_table(networks, validation)}
<h2>Definitions</h2>{DEFINITIONS}
<h2>Every method (test split)</h2>{_all_methods(summary_rows, validation)}
{_stats_html(stats)}
<h2>Filters tuned on the validation split</h2><ul>{filt}</ul>
<h2>Distributions (one point per test patient)</h2>{_img(eval_dir / "boxplots.png")}
<h2>One test slice per grade</h2>{_img(eval_dir / "grid.png")}
{quant_html}
{timings_section(timings) if timings else ""}
<p>Per crop: <code>metrics.csv</code>; per patient: <code>patients.csv</code>; statistics:
<code>stats.json</code>, <code>headline.json</code>.</p>
</body></html>"""
    target = Path(out) if out else eval_dir
    return write_bytes(target / "report.html", page.encode())


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


__all__ = ["FILTERS", "PAPER", "answer", "timings_section", "write_report"]
