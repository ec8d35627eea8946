"""Write a reader study's analysis: ``analysis.json``, ``table.csv``, plots and ``report.html``."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.io.atomic import write_csv, write_text
from fastdat.plotting import save_figure


def _finite(doc: Any) -> Any:
    """``doc`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    if isinstance(doc, float) and not np.isfinite(doc):
        return None
    return doc


def _plot_kappa(doc: dict[str, Any], path: Path) -> Path:
    """Weighted kappa (linear, quadratic) per method, one marker per reader, 95 % CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    readers, methods = doc["readers"], doc["methods"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    width = 0.6 / max(len(readers), 1)
    for ax, w in zip(axes, ("linear", "quadratic"), strict=True):
        for j, reader in enumerate(readers):
            x, y, lo, hi = [], [], [], []
            for i, m in enumerate(methods):
                k = doc["kappa_vs_consensus"].get(m, {}).get(reader, {}).get(w, {})
                if k.get("kappa") is None:
                    continue
                x.append(i - 0.3 + (j + 0.5) * width)
                y.append(k["kappa"])
                lo.append(k["kappa"] - k["ci"][0])
                hi.append(k["ci"][1] - k["kappa"])
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o", capsize=3, label=reader)
        ax.set_xticks(range(len(methods)), methods)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylim(-0.2, 1.05)
        ax.set_title(f"weighted kappa ({w}) vs 25-min consensus", fontsize=9)
    axes[0].set_ylabel("kappa (95 % CI)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_icc(doc: dict[str, Any], path: Path) -> Path:
    """Inter-reader ICC(A,1) per method and intra-reader ICC(A,1) per reader, 95 % CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    panels = [
        ("inter-reader ICC(A,1) per method", doc["inter_reader_icc"]),
        (
            "intra-reader ICC(A,1) per reader (all methods)",
            {r: v["all methods"] for r, v in doc["intra_reader_icc"].items()},
        ),
    ]
    for ax, (title, res) in zip(axes, panels, strict=True):
        names = list(res)
        for i, name in enumerate(names):
            r = res[name].get("ICC2")
            if r is None or not np.isfinite(r["value"]):
                continue
            ax.errorbar(
                [i],
                [r["value"]],
                yerr=[[r["value"] - r["ci"][0]], [r["ci"][1] - r["value"]]],
                fmt="o",
                capsize=3,
                color="C0",
            )
        ax.set_xticks(range(len(names)), names)
        ax.set_ylim(-0.2, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("ICC (95 % CI)")
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(
    out_dir: Path, doc: dict[str, Any], table: list[dict[str, str]], study_dir: Path
) -> Path:
    """Write ``analysis.json``, ``table.csv``, ``kappa.png``, ``icc.png``, ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "analysis.json", json.dumps(_finite(doc), indent=1, allow_nan=False))
    fields = list(dict.fromkeys(k for r in table for k in r))
    write_csv(out_dir / "table.csv", table)
    plots = []
    if doc["kappa_vs_consensus"]:
        plots.append(_plot_kappa(doc, out_dir / "kappa.png").name)
    plots.append(_plot_icc(doc, out_dir / "icc.png").name)
    head = "".join(f"<th>{escape(k)}</th>" for k in fields)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(r.get(k, ''))}</td>" for k in fields) + "</tr>"
        for r in table
    )
    done = doc["completeness"]
    note = (
        ""
        if done["graded"] == done["reads"]
        else f"<p><b>Incomplete:</b> {done['graded']} of {done['reads']} reads graded.</p>"
    )
    defs = "".join(
        f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in doc["definitions"].items()
    )
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Reader study analysis</title><style>
body{{font:14px system-ui,sans-serif;margin:20px;max-width:1100px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:3px 8px;font-size:13px}}
</style></head><body>
<h1>Reader study: {escape(study_dir.name)}</h1>
<p>{len(doc["readers"])} readers, methods {escape(", ".join(doc["methods"]))};
{done["graded"]} of {done["reads"]} reads graded. Targets are striata (two per case).</p>{note}
<ul>{defs}</ul>
<h2>Agreement and reliability</h2><table><tr>{head}</tr>{body}</table>
{"".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots)}
<p>Everything above, with SEs and p-values: <a href="analysis.json">analysis.json</a>,
<a href="table.csv">table.csv</a>.</p></body></html>"""
    write_text(out_dir / "report.html", html)
    return out_dir / "report.html"
