"""The quantification section of the study report: SBR agreement, recovery and grading."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.evaluation.report import FILTERS

RAW, LONG, TRUTH = "5min", "25min", "truth"
GRADE_COLOURS = ("tab:green", "tab:olive", "tab:orange", "tab:red")


def key_methods(summary, methods: list[str]) -> dict[str, str]:
    """Raw 5-min, the best filter and the best model by mean PSNR (``summary.csv``)."""
    s = summary.set_index("method")["psnr_mean"]
    filters = [m for m in methods if m in FILTERS and m in s.index]
    models = [m for m in methods if m not in (*FILTERS, RAW, LONG, TRUTH) and m in s.index]
    out = {"raw 5-min": RAW}
    if filters:
        out["best filter"] = max(filters, key=lambda m: s[m])
    if models:
        out["best model"] = max(models, key=lambda m: s[m])
    return out


def _fig_bytes(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _bland_altman_fig(table, keys: dict[str, str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastdat.evaluation.stats import bland_altman

    test = table[table["split"] == "test"].set_index(["study_id", "side"])
    ref = test[test["method"] == LONG]["putamen"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), sharey=True)
    for ax, (label, m) in zip(np.atleast_1d(axes), keys.items(), strict=True):
        cur = test[test["method"] == m][["putamen", "grade"]].join(ref.rename("ref")).dropna()
        a, b = cur["putamen"].to_numpy(float), cur["ref"].to_numpy(float)
        if len(a) < 3:
            ax.set_title(f"{label} ({m}): too few striata", fontsize=9)
            continue
        for g in range(4):
            sel = cur["grade"].to_numpy() == g
            ax.scatter((a + b)[sel] / 2, (a - b)[sel], s=12, c=GRADE_COLOURS[g], label=f"grade {g}")
        ba = bland_altman(a, b)
        for y, style in ((ba.bias, "-"), (ba.loa_low, "--"), (ba.loa_high, "--")):
            ax.axhline(y, color="k", ls=style, lw=1)
        ax.set_title(
            f"{label} ({m}) vs 25-min\nbias {ba.bias:+.3f}, LoA ±{1.96 * ba.sd:.3f}", fontsize=9
        )
        ax.set_xlabel("mean putamen SBR")
    np.atleast_1d(axes)[0].set_ylabel("difference (method - 25-min)")
    if np.atleast_1d(axes)[0].get_legend_handles_labels()[0]:
        np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return _fig_bytes(fig)


def _recovery_fig(table) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = table[table["split"] == "test"].set_index(["study_id", "side"])
    truth = test[test["method"] == TRUTH]["striatum"].rename("truth")
    cur = test[test["method"] == LONG][["striatum", "southampton", "grade"]].join(truth).dropna()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    t = cur["truth"].to_numpy(float)
    for col, label, marker in (
        ("striatum", "template VOI", "o"),
        ("southampton", "Southampton", "^"),
    ):
        v = cur[col].to_numpy(float)
        ax.scatter(t, v, s=14, marker=marker, label=f"{label}: recovery {np.mean(v / t):.2f}")
    lim = [0, float(max(t.max(), cur[["striatum", "southampton"]].to_numpy().max()) * 1.05)]
    ax.plot(lim, lim, "k:", lw=1, label="identity")
    ax.set_xlabel("true striatal SBR")
    ax.set_ylabel("measured on the 25-min image")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _fig_bytes(fig)


def _by_grade_fig(table, methods: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = table[table["split"] == "test"]
    fig, axes = plt.subplots(1, 4, figsize=(max(10, 0.5 * len(methods) * 4), 3.6), sharey=True)
    for g, ax in enumerate(axes):
        data = [
            test[(test["method"] == m) & (test["grade"] == g)]["putamen"].dropna().to_numpy()
            for m in methods
        ]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"striata of grade {g}", fontsize=9)
    axes[0].set_ylabel("putamen SBR (template VOI)")
    fig.tight_layout()
    return _fig_bytes(fig)


def _f(v: Any, digits: int = 2) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "&ndash;"
    return "&ndash;" if not np.isfinite(v) else f"{v:.{digits}f}"


def write_section(out, table, agreement, grading, normals, cfg, summary, failures) -> Path:
    """Write the figures and ``section.html`` into ``out``; returns the section's path."""
    import pandas as pd

    out = Path(out)
    methods = list(dict.fromkeys(m for m in table["method"] if m != TRUTH))
    keys = key_methods(summary, methods)
    figs = {
        "bland_altman": _bland_altman_fig(table, keys),
        "recovery": _recovery_fig(table),
        "by_grade": _by_grade_fig(table, [*methods, TRUTH]),
    }
    for name, data in figs.items():
        tmp = out / f".{name}.png.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / f"{name}.png")
    b64 = {k: base64.b64encode(v).decode() for k, v in figs.items()}
    ag = pd.DataFrame(agreement)

    def ba_rows(reference: str, measure: str, which: list[str], label: str = "{}") -> str:
        """Bias [LoA] / ICC of ``measure`` against ``reference``; rows named ``label`` (method)."""
        if ag.empty:
            return "<p>Too few test striata for agreement statistics.</p>"
        rows = []
        for m in which:
            cells = []
            for g in ("all", 0, 1, 2, 3):
                r = ag[
                    (ag["method"] == m)
                    & (ag["reference"] == reference)
                    & (ag["measure"] == measure)
                    & (ag["grade"].astype(str) == str(g))
                ]
                if r.empty:
                    cells.append("<td>&ndash;</td>")
                    continue
                r = r.iloc[0]
                cells.append(
                    f"<td>{_f(r['bias'], 3)} [{_f(r['loa_low'], 2)}, {_f(r['loa_high'], 2)}]"
                    f"<br><small>ICC {_f(r.get('icc'), 3)}</small></td>"
                )
            rows.append(f"<tr><td>{html.escape(label.format(m))}</td>{''.join(cells)}</tr>")
        head = "".join(
            f"<th>grade {g}</th>" if g != "all" else "<th>all</th>" for g in ("all", 0, 1, 2, 3)
        )
        return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"

    shown = list(dict.fromkeys(keys.values()))
    kap_rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{rec['n']}</td>"
        f"<td>{_f(rec.get('kappa_quadratic_vs_truth'), 3)}</td>"
        f"<td>{_f(rec.get('kappa_linear_vs_truth'), 3)}</td>"
        f"<td>{_f(rec.get('kappa_quadratic_vs_25min'), 3)}</td>"
        f"<td>{_f(rec.get('kappa_linear_vs_25min'), 3)}</td>"
        f"<td>{_f(rec.get('exact_agreement_vs_truth'), 2)}</td></tr>"
        for m, rec in grading["methods"].items()
    )
    grading_html = (
        _grading_html(grading, normals, kap_rows)
        if normals is not None
        else f"<p class=note>No automated grading: {html.escape(grading['skipped'])}</p>"
    )
    fail = (
        f"<p class=note>{len(failures)} image(s) could not be quantified "
        "(listed in <code>quant/failures.csv</code>).</p>"
        if failures
        else ""
    )
    vs_long = ba_rows(LONG, "putamen", [m for m in methods if m != LONG])
    recovery = ba_rows(TRUTH, "striatum", [LONG], "template VOI, {} image") + ba_rows(
        TRUTH, "southampton", [LONG], "Southampton, {} image"
    )
    text = f"""<h2>Quantification: SBR and automated grading</h2>
<p>SBR = striatal / occipital-lobe concentration &minus; 1, measured on each method's image with
template VOIs placed automatically (no truth labels) and with the Southampton method
(V<sub>s</sub> = {cfg.striatal_volume_ml:.2f} mL, margin {cfg.southampton_margin_mm:g} mm), on the
crop over all axial slices. Unit: one striatum (side) of a test subject. Bias and 95 % limits of
agreement (Bland-Altman), and ICC(A,1) below each.</p>{fail}
<h3>Putamen SBR against the 25-min image</h3>{vs_long}
<img src="data:image/png;base64,{b64["bland_altman"]}" style="max-width:100%">
<h3>Putamen SBR against the truth</h3>{ba_rows(TRUTH, "putamen", [*shown, LONG])}
<h3>Striatal SBR against the truth: template VOI vs Southampton (25-min image)</h3>
{recovery}
<img src="data:image/png;base64,{b64["recovery"]}">
<h3>Putamen SBR by grade</h3>
<img src="data:image/png;base64,{b64["by_grade"]}" style="max-width:100%">
<h3>Automated grading</h3>{grading_html}"""
    path = out / "section.html"
    tmp = out / ".section.html.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _grading_html(grading, normals, kap_rows: str) -> str:
    rule = grading["rule"]
    return f"""
<p>Normal database: {html.escape(normals.source)}; putamen {normals.mean["putamen"]:.2f} &plusmn;
{normals.sd["putamen"]:.2f}, caudate {normals.mean["caudate"]:.2f} &plusmn;
{normals.sd["caudate"]:.2f}.
Thresholds calibrated on the same images: putamen z &lt; {rule["normal_z"]:g} &rarr; grade &ge; 1,
&lt; {rule["absent_z"]:g} &rarr; 2; caudate z &lt; {rule["caudate_z"]:g} &rarr; 3 (training kappa
{_f(grading["calibration_quadratic_kappa"], 3)}).</p>
<table><tr><th>method</th><th>n</th><th>&kappa;<sub>quadratic</sub> vs truth</th>
<th>&kappa;<sub>linear</sub> vs truth</th><th>&kappa;<sub>quadratic</sub> vs 25-min grades</th>
<th>&kappa;<sub>linear</sub> vs 25-min grades</th><th>exact vs truth</th></tr>{kap_rows}</table>"""
