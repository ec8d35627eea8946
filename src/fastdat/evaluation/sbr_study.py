"""The evaluation's SBR half: do restored 5-min images keep the SBRs and grades clinicians use?

For every study the quantification volume is the dataset's in-plane crop (``crop x crop`` around
the striata, as the models were trained) over *all* axial slices, so that the Southampton VOI
holds the whole striatum and the occipital reference is in view. The evaluation
(:func:`fastdat.evaluation.evaluate.evaluate`) restores that volume once per method and test
study and hands it both to image quality (its crop slices) and to
:func:`fastdat.quantification.sbr.quantify_volume`, which places its VOIs on each image
independently, as it would on a clinic's scan. The truth is the simulated activity with the
subject's own labels (:func:`fastdat.anatomy.labels.true_sbr`).

The normal database (grade-0 striata) and the grading thresholds come from the 25-min images of
the training and validation subjects, a clinic's standard protocol; they are then applied
unchanged to every method on the test subjects.

:func:`analyse` writes into ``EVAL/quant``: ``sbr.csv`` (one row per test study, side and
method, plus the non-test 25-min rows), ``normals.json``, ``grading.json`` (thresholds and
weighted kappas per method), ``agreement.csv`` (Bland-Altman and ICC per method, reference,
measure and grade), ``headline.json``, figures and ``section.html`` (the report section).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.anatomy.labels import SIDES, true_sbr
from fastdat.io.atomic import write_csv, write_json
from fastdat.methods import LONG, RAW, TRUTH
from fastdat.quantification.grading import GradingRule, NormalDatabase, build_normals, calibrate
from fastdat.quantification.sbr import QuantConfig

log = logging.getLogger(__name__)

MEASURES = {  # name -> (sbr.csv column, what it is)
    "putamen": ("putamen", "putamen SBR, template VOI"),
    "caudate": ("caudate", "caudate SBR, template VOI"),
    "striatum": ("striatum", "striatum SBR, template VOI"),
    "southampton": ("southampton", "striatum SBR, Southampton"),
}
SBR_MARGIN = 0.2
"""Equivalence margin of putamen SBR against the 25-min image (SBR units). About 10 % of a
normal template-VOI putamen SBR (~2 clinically, 3.4 on FastDaT's images) and two thirds of the SD
of healthy putamen SBR in PPMI (0.3): a difference a reader of SBR tables would not act on."""
VALUE_KEYS = (
    "caudate",
    "putamen",
    "putamen_anterior",
    "putamen_posterior",
    "striatum",
    "southampton",
    "putamen_caudate",
)


def study_rows(study, split, grades, method, values) -> list[dict[str, Any]]:
    out = []
    for side in SIDES:
        rec = {
            "study_id": study,
            "split": split,
            "side": side,
            "grade": grades[side],
            "method": method,
        }
        for key in VALUE_KEYS:
            rec[key] = values.get(f"{key}_{side}", float("nan"))
        out.append(rec)
    return out


def analyse(
    rows: list[dict[str, Any]],
    methods: list[str],
    best: dict[str, str | None],
    out: Path,
    cfg: QuantConfig,
    failures: list[dict[str, Any]],
) -> Path:
    """Normals, grading, agreement and the headline from the SBR rows; returns ``section.html``.

    Args:
        rows: :func:`study_rows` of every quantified study and method.
        methods: Method names in report order (raw, filters, networks, 25-min).
        best: ``{"network": ..., "filter": ...}`` chosen on validation.
        out: Output folder (``EVAL/quant``), created if missing.
        cfg: The VOI settings used.
        failures: ``{study_id, method, reason}`` of images without a recognisable striatum.
    """
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sbr.csv", rows)
    if failures:
        write_csv(out / "failures.csv", failures)
    table = pd.DataFrame(rows)
    try:
        normals, rule, calib_kappa = _normals_and_rule(table)
    except ValueError as err:  # too few normal striata outside the test split (tiny cohorts)
        log.warning("no automated grading: %s", err)
        normals, grading = None, {"skipped": str(err), "methods": {}}
    else:
        write_json(out / "normals.json", {**normals.to_dict(), "rule": rule.__dict__})
        table = _add_grades(table, normals, rule)
        write_csv(out / "sbr.csv", table.to_dict("records"))
        grading = _grading(table, methods, rule, calib_kappa)
    write_json(out / "grading.json", grading)
    agreement = _agreement(table, methods)
    write_csv(out / "agreement.csv", agreement)
    from fastdat.evaluation.quant_report import write_section

    keys = {"raw 5-min": RAW}
    keys.update({f"best {k}": v for k, v in best.items() if v})
    head = sbr_headline(table, [*keys.values(), LONG], grading)
    write_json(out / "headline.json", head)
    return write_section(out, table, agreement, grading, normals, cfg, keys, failures, head)


def sbr_headline(table, methods: list[str], grading: dict[str, Any]) -> dict[str, Any]:
    """Patient-level SBR bias with 95 % CIs of ``methods`` against 25-min and truth, the TOST
    equivalence of putamen SBR with 25-min (margin :data:`SBR_MARGIN`) and grading kappas.

    Each test patient contributes the mean of its two striata's differences, so the CIs count
    patients, not striata.
    """
    from fastdat.stats import equivalence, paired_difference

    test = table[table["split"] == "test"]
    out: dict[str, Any] = {"margin": SBR_MARGIN, "methods": {}, "equivalence": {}}
    for m in methods:
        rec: dict[str, Any] = {}
        for measure in ("putamen", "southampton"):
            for ref in (LONG, TRUTH):
                if m == ref:
                    continue
                a, b = _patient_pairs(test, m, ref, measure)
                if len(a) >= 2:
                    rec[f"{measure}_vs_{ref}"] = paired_difference(a, b).__dict__
                if measure == "putamen" and ref == LONG and len(a) >= 2:
                    out["equivalence"][m] = equivalence(a, b, SBR_MARGIN)
        kap = grading.get("methods", {}).get(m, {})
        if "kappa_quadratic_vs_truth" in kap:
            rec["kappa_quadratic_vs_truth"] = kap["kappa_quadratic_vs_truth"]
            rec["kappa_quadratic_vs_truth_ci"] = kap["kappa_quadratic_vs_truth_ci"]
            rec["n_striata"] = kap["n"]
        out["methods"][m] = rec
    return out


def _patient_pairs(test, method: str, ref: str, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Per test patient, the mean over its striata of ``measure`` for ``method`` and ``ref``."""
    cur = test[test["method"] == method].set_index(["study_id", "side"])[measure]
    other = test[test["method"] == ref].set_index(["study_id", "side"])[measure]
    joined = cur.rename("a").to_frame().join(other.rename("b")).dropna()
    per = joined.groupby(level="study_id").mean()
    return per["a"].to_numpy(float), per["b"].to_numpy(float)


def truth_values(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    values = true_sbr(truth, labels)
    for side in SIDES:
        values[f"southampton_{side}"] = values[f"striatum_{side}"]
        values[f"putamen_caudate_{side}"] = values[f"putamen_{side}"] / values[f"caudate_{side}"]
    return values


def _normals_and_rule(table) -> tuple[NormalDatabase, GradingRule, float]:
    """Normal database and grading thresholds from the non-test 25-min images."""
    train = table[(table["split"] != "test") & (table["method"] == LONG)].dropna(
        subset=["putamen", "caudate"]
    )
    normal = train[train["grade"] == 0]
    normals = build_normals(
        normal[["caudate", "putamen"]].to_dict("records"),
        source=f"25-min template-VOI SBR of {len(normal)} grade-0 striata (train + val)",
    )
    zp = (train["putamen"].to_numpy() - normals.mean["putamen"]) / normals.sd["putamen"]
    zc = (train["caudate"].to_numpy() - normals.mean["caudate"]) / normals.sd["caudate"]
    rule, kappa = calibrate(zp, zc, train["grade"].to_numpy(int))
    return normals, rule, kappa


def _add_grades(table, normals: NormalDatabase, rule: GradingRule):
    table = table.copy()
    for r in ("putamen", "caudate"):
        table[f"z_{r}"] = (table[r] - normals.mean[r]) / normals.sd[r]
    ok = table[["z_putamen", "z_caudate"]].notna().all(axis=1)
    table["auto_grade"] = np.nan
    table.loc[ok, "auto_grade"] = rule.grade(table.loc[ok, "z_putamen"], table.loc[ok, "z_caudate"])
    table.loc[table["method"] == TRUTH, "auto_grade"] = np.nan
    return table


def _grading(table, methods, rule: GradingRule, calib_kappa: float) -> dict[str, Any]:
    from fastdat.stats import weighted_kappa

    test = table[table["split"] == "test"]
    ref25 = test[test["method"] == LONG].set_index(["study_id", "side"])["auto_grade"]
    out: dict[str, Any] = {
        "rule": rule.__dict__,
        "calibration_quadratic_kappa": calib_kappa,
        "methods": {},
    }
    for m in methods:
        sel = test[(test["method"] == m)].dropna(subset=["auto_grade"])
        sel = sel.join(ref25.rename("grade_25min"), on=["study_id", "side"])
        rec: dict[str, Any] = {"n": int(len(sel))}
        pred = sel["auto_grade"].to_numpy(int)
        refs = {"truth": sel["grade"].to_numpy(int)}
        if m != LONG:
            ok = sel["grade_25min"].notna().to_numpy()
            refs["25min"] = sel["grade_25min"].to_numpy()
        for ref_name, ref in refs.items():
            p_, r_ = (pred, ref) if ref_name == "truth" else (pred[ok], ref[ok].astype(int))
            for w in ("linear", "quadratic"):
                try:
                    k = weighted_kappa(r_, p_, w, categories=[0, 1, 2, 3])
                except ValueError as err:  # no pairs, or one category everywhere
                    rec[f"kappa_{w}_vs_{ref_name}_error"] = str(err)
                    continue
                rec[f"kappa_{w}_vs_{ref_name}"] = k.kappa
                rec[f"kappa_{w}_vs_{ref_name}_ci"] = [k.ci_low, k.ci_high]
            if len(r_):
                rec[f"exact_agreement_vs_{ref_name}"] = float(np.mean(r_ == p_))
        out["methods"][m] = rec
    return out


def _agreement(table, methods) -> list[dict[str, Any]]:
    """Bland-Altman and ICC(A,1) of each method against 25-min and truth, per measure and grade."""
    from fastdat.stats import bland_altman, icc

    test = table[table["split"] == "test"].set_index(["study_id", "side"])
    rows = []
    for ref_name in (LONG, TRUTH):
        ref = test[test["method"] == ref_name]
        for m in methods:
            if m == ref_name:
                continue
            cur = test[test["method"] == m]
            for measure, (col, _) in MEASURES.items():
                joined = cur[[col, "grade"]].join(ref[[col]].add_suffix("_ref")).dropna()
                for grade in ("all", 0, 1, 2, 3):
                    sel = joined if grade == "all" else joined[joined["grade"] == grade]
                    if len(sel) < 3:
                        continue
                    a, b = sel[col].to_numpy(float), sel[f"{col}_ref"].to_numpy(float)
                    ba = bland_altman(a, b)
                    rec = {
                        "method": m,
                        "reference": ref_name,
                        "measure": measure,
                        "grade": grade,
                        "n": len(sel),
                        "mean_method": float(a.mean()),
                        "mean_reference": float(b.mean()),
                        "bias": ba.bias,
                        "sd": ba.sd,
                        "loa_low": ba.loa_low,
                        "loa_high": ba.loa_high,
                        "relative_bias_pct": float(100 * ba.bias / b.mean()) if b.mean() else None,
                    }
                    try:
                        ic = icc(np.column_stack([a, b]))["ICC2"]
                        rec.update(icc=ic.value, icc_ci_low=ic.ci_low, icc_ci_high=ic.ci_high)
                    except ValueError:
                        pass
                    rows.append(rec)
    return rows
