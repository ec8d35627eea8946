"""The quantification section of the study report: SBR agreement, recovery and grading."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.io.atomic import write_bytes, write_text
from fastdat.methods import LONG, TRUTH

GRADE_COLOURS = ("tab:green", "tab:olive", "tab:orange", "tab:red")


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

    from fastdat.stats import bland_altman

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


def _f(v: Any, digits: int = 2) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "&ndash;"
    return "&ndash;" if not np.isfinite(v) else f"{v:.{digits}f}"


def _kci(ci) -> str:
    return f"<small>[{_f(ci[0], 2)}, {_f(ci[1], 2)}]</small>" if ci else ""


def write_section(out, table, agreement, grading, normals, cfg, keys, failures, head) -> Path:
    """Write the figures and ``section.html`` into ``out``; returns the section's path.

    ``keys``: label -> method of the methods the section leads with (raw 5-min and the best
    filter and network, chosen on validation); ``head``: :func:`.sbr_study.sbr_headline`.
    """
    import pandas as pd

    from fastdat.evaluation.figures import by_grade_figure

    out = Path(out)
    methods = list(dict.fromkeys(m for m in table["method"] if m != TRUTH))
    figs = {
        "bland_altman": _bland_altman_fig(table, keys),
        "recovery": _recovery_fig(table),
        "by_grade": by_grade_figure(table, [*methods, TRUTH]),
    }
    for name, data in figs.items():
        write_bytes(out / f"{name}.png", data)
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
        f"<td>{_f(rec.get('kappa_quadratic_vs_truth'), 3)} "
        f"{_kci(rec.get('kappa_quadratic_vs_truth_ci'))}</td>"
        f"<td>{_f(rec.get('kappa_linear_vs_truth'), 3)}</td>"
        f"<td>{_f(rec.get('kappa_quadratic_vs_25min'), 3)} "
        f"{_kci(rec.get('kappa_quadratic_vs_25min_ci'))}</td>"
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
    south_long = ba_rows(LONG, "southampton", [m for m in methods if m != LONG])
    south_truth = ba_rows(TRUTH, "southampton", methods)
    n_test = int(table.loc[table["split"] == "test", "study_id"].nunique())
    small = (
        f"<p class=note><b>Only {n_test} test patients: too few to conclude anything about "
        "SBR or grading.</b></p>"
        if n_test < 6
        else ""
    )
    eq_rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{e['n']}</td><td>{e['mean']:+.3f}</td>"
        f"<td>[{e['ci90_low']:+.3f}, {e['ci90_high']:+.3f}]</td><td>{e['p']:.3g}</td>"
        f"<td>{'yes' if e['equivalent'] else 'not shown'}</td></tr>"
        for m, e in head["equivalence"].items()
    )
    recovery = ba_rows(TRUTH, "striatum", [LONG], "template VOI, {} image") + ba_rows(
        TRUTH, "southampton", [LONG], "Southampton, {} image"
    )
    text = f"""<h2>Quantification: SBR and automated grading</h2>
<p>SBR = striatal / occipital-lobe concentration &minus; 1, measured on each method's image with
template VOIs placed automatically (no truth labels) and with the Southampton method
(V<sub>s</sub> = {cfg.striatal_volume_ml:.2f} mL, margin {cfg.southampton_margin_mm:g} mm), on the
crop over all axial slices. Unit: one striatum (side) of a test subject. Bias and 95 % limits of
agreement (Bland-Altman), and ICC(A,1) below each. The headline CIs and the equivalence test
count patients (each patient's two striata averaged).</p>{small}{fail}
<h3>Is putamen SBR equivalent to the 25-min image's? (TOST, margin &plusmn;{head["margin"]:g})</h3>
<table><tr><th>method</th><th>patients</th><th>bias</th><th>90 % CI</th><th>TOST p</th>
<th>equivalent</th></tr>{eq_rows}</table>
<h3>Putamen SBR against the 25-min image</h3>{vs_long}
<img src="data:image/png;base64,{b64["bland_altman"]}" style="max-width:100%">
<h3>Putamen SBR against the truth</h3>{ba_rows(TRUTH, "putamen", [*shown, LONG])}
<h3>Southampton SBR against the 25-min image</h3>{south_long}
<h3>Southampton SBR against the truth</h3>{south_truth}
<h3>Striatal SBR against the truth: template VOI vs Southampton (25-min image)</h3>
{recovery}
<img src="data:image/png;base64,{b64["recovery"]}">
<h3>Putamen SBR by grade (every test striatum)</h3>
<img src="data:image/png;base64,{b64["by_grade"]}" style="max-width:100%">
<h3>Automated grading</h3>{grading_html}"""
    return write_text(out / "section.html", text)


def _grading_html(grading, normals, kap_rows: str) -> str:
    rule = grading["rule"]
    return f"""
<p>Normal database: {html.escape(normals.source)}; putamen {normals.mean["putamen"]:.2f} &plusmn;
{normals.sd["putamen"]:.2f}, caudate {normals.mean["caudate"]:.2f} &plusmn;
{normals.sd["caudate"]:.2f}.
Thresholds calibrated on the same images: putamen z &lt; {rule["normal_z"]:g} &rarr; grade &ge; 1,
&lt; {rule["absent_z"]:g} &rarr; 2; caudate z &lt; {rule["caudate_z"]:g} &rarr; 3 (training kappa
{_f(grading["calibration_quadratic_kappa"], 3)}).</p>
<p>Unit: one striatum (n below); the two striata of a patient are not independent, so the
Wald 95 % CIs in brackets are optimistic.</p>
<table><tr><th>method</th><th>n</th><th>&kappa;<sub>quadratic</sub> vs truth</th>
<th>&kappa;<sub>linear</sub> vs truth</th><th>&kappa;<sub>quadratic</sub> vs 25-min grades</th>
<th>&kappa;<sub>linear</sub> vs 25-min grades</th><th>exact vs truth</th></tr>{kap_rows}</table>"""
