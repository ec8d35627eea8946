"""SBR intervals of ensembles: calibrated on the validation split, coverage on the test split.

For every network of the sweep that is a deep ensemble (:mod:`fastdat.models.ensemble`), every
validation and test study and every duration, the study's crop column is restored once and
every member's image is kept (:func:`fastdat.methods.predict_volume` with ``members``). In the
sweep's fixed VOIs (placed once per patient on the noise-free reconstruction, as in
:mod:`fastdat.sweep.measure`) each SBR is measured on the ensemble's image (the value), on every
member's image (their SD is ``sigma``, :func:`fastdat.quantification.intervals.member_sigma`)
and on the noise-free reconstruction (the reference). Then per measure, pooled over sides and
durations (the normalized score ``|ref - value| / sigma`` makes durations comparable):

- the conformal quantile ``q`` on the validation cases
  (:func:`fastdat.quantification.intervals.calibrate_intervals`);
- the coverage of ``value +/- q sigma`` on the test cases, overall and per duration, with its
  Clopper-Pearson interval, and the mean half-width (SBR units).

Conformal coverage is marginal: over all test cases at least ``level`` (and at most
``level + 1 / (n + 1)``), not at each duration; the per-duration rows show how far each
duration departs from it. It holds on average over calibration draws: one validation split of
30 patients (every patient 8 correlated cases: 2 sides x 4 durations) gives a quantile that
moves the test coverage by several points (measured: 0.83-0.92 at level 0.9 for the four
measures). So :func:`cross_conformal` also reports the coverage of the same rule calibrated
fold by fold on the other patients of the validation and test splits together (``scheme``
``cross``; ``split`` is the validation-to-test one). Each study's rows are one ``.npz`` under
``OUT/intervals/`` (written atomically; a killed sweep resumes), the tables ``intervals.csv``
and the calibrated rules per network ``intervals.json`` (what a model's sidecar takes as
``sbr_intervals``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fastdat.anatomy.labels import SIDES
from fastdat.evaluation.evaluate import crop_column as slab
from fastdat.io.atomic import write_bytes
from fastdat.methods import Method, ensemble_size, predict_volume
from fastdat.quantification.intervals import SIGMA_FLOOR, calibrate_intervals, member_sigma
from fastdat.quantification.sbr import NoStriatumError, QuantConfig, measure_sbr, place_vois
from fastdat.stats.conformal import calibrate, coverage
from fastdat.sweep.config import MEASURES, kind

NOISE_FREE = "noisefree"
SPLITS = ("val", "test")


def ensembles(methods: list[Method]) -> list[Method]:
    """The network methods whose model is an ensemble of two or more members."""
    return [m for m in methods if m.kind == "network" and ensemble_size(m.model) > 1]


def _values(image: np.ndarray, vois, vox: float, qcfg: QuantConfig) -> dict[str, float]:
    try:
        v = measure_sbr(image, vois, vox, qcfg)
    except ValueError:  # nothing above the reference: no SBR
        return {f"{m}_{s}": float("nan") for m in MEASURES for s in SIDES}
    return {f"{m}_{s}": float(v[f"{m}_{s}"]) for m in MEASURES for s in SIDES}


def study_rows(
    src,
    split: str,
    corner: tuple[int, int],
    durations: tuple[float, ...],
    methods: list[Method],
    size: int,
    qcfg: QuantConfig,
) -> dict[str, Any]:
    """One row per (method, duration, measure, side) of one study.

    Args:
        src: The study (:class:`~fastdat.data.dataset.StudySource` with loaders of every
            duration's kind and ``noisefree``).
        split: ``"val"`` or ``"test"``.
        corner: In-plane crop corner (voxels). size: Crop side (voxels).
        durations: Scan times (minutes). methods: The ensemble networks.
        qcfg: VOI settings.

    Returns:
        ``{"rows": [...], "failure": str or None}``; a row holds ``study_id, patient_id,
        split, method, duration_min, measure, side, reference, value, sigma``.
    """
    i0, j0 = corner
    nf, vox = src.loaders[NOISE_FREE]()
    nf_slab = slab(nf, i0, j0, size)
    try:
        vois = place_vois(nf_slab, float(vox), qcfg)
        ref = _values(nf_slab, vois, float(vox), qcfg)
    except NoStriatumError as err:
        return {"rows": [], "failure": f"noise-free image: {err}"}
    base = {"study_id": src.study_id, "patient_id": src.patient_id, "split": split}
    rows = []
    for d in durations:
        x = slab(src.loaders[kind(d)]()[0], i0, j0, size)
        for m in methods:
            mean, each = predict_volume(m.model, x, float(d), m.device, members=True)
            value = _values(mean, vois, float(vox), qcfg)
            per_member = [_values(e, vois, float(vox), qcfg) for e in each]
            for key, v in value.items():
                measure, side = key.rsplit("_", 1)
                sigma = member_sigma(np.array([p[key] for p in per_member]))
                rows.append(
                    {
                        **base,
                        "method": m.name,
                        "duration_min": float(d),
                        "measure": measure,
                        "side": side,
                        "reference": ref[key],
                        "value": v,
                        "sigma": float(sigma),
                    }
                )
    return {"rows": rows, "failure": None}


def _save(path: Path, result: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(
        buf, rows=np.array(json.dumps(result["rows"])), failure=np.array(result["failure"] or "")
    )
    write_bytes(path, buf.getvalue())


def _load(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {"rows": json.loads(str(z["rows"])), "failure": str(z["failure"]) or None}


def measure_all(
    ds,
    sources,
    durations: tuple[float, ...],
    methods: list[Method],
    folder: Path,
    qcfg: QuantConfig,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """:func:`study_rows` of every validation and test study (resumed from ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    split = ds.split_of_study
    rows, failures = [], []
    todo = [s for s in sources if split.get(s.study_id) in SPLITS]
    for src in tqdm(todo, desc="intervals", unit="study", disable=not progress):
        path = folder / f"{src.study_id}.npz"
        if not path.exists():
            st = ds.studies.loc[src.study_id]
            corner = (int(st["corner_i"]), int(st["corner_j"]))
            _save(
                path,
                study_rows(src, split[src.study_id], corner, durations, methods, ds.crop, qcfg),
            )
        res = _load(path)
        if res["failure"]:
            failures.append({"study_id": src.study_id, "reason": res["failure"]})
        rows += res["rows"]
    return rows, failures


def analyse(rows: list[dict[str, Any]], level: float) -> tuple[list[dict], dict[str, dict]]:
    """Calibrate per (method, measure) on the validation rows, cover the test rows.

    Returns:
        The table (one row per method, measure and duration, ``"all"`` pooled) and the
        calibrated rules per method (:meth:`SBRIntervals.to_dict` form).
    """
    table, rules = [], {}
    methods = sorted({r["method"] for r in rows})
    for method in methods:
        mine = [r for r in rows if r["method"] == method and np.isfinite(r["value"])]
        mine = [r for r in mine if np.isfinite(r["reference"])]
        cases = {}
        for measure in MEASURES:
            cal = [r for r in mine if r["measure"] == measure and r["split"] == "val"]
            if cal:
                cases[measure] = tuple(
                    np.array([r[k] for r in cal]) for k in ("reference", "value", "sigma")
                )
        if not cases:
            continue
        calibrated = calibrate_intervals(cases, level)
        rules[method] = calibrated.to_dict()
        for measure, rule in calibrated.rules.items():
            test = [r for r in mine if r["measure"] == measure and r["split"] == "test"]
            groups = {"all": test} | {
                f"{d:g}": [r for r in test if r["duration_min"] == d]
                for d in sorted({r["duration_min"] for r in test})
            }
            for duration, group in groups.items():
                rec = {
                    "scheme": "split",
                    "method": method,
                    "measure": measure,
                    "duration_min": duration,
                    "level": level,
                    "n_calibration": rule.n,
                    "q": rule.q,
                    "n_test": len(group),
                }
                if group:
                    y = np.array([r["reference"] for r in group])
                    v = np.array([r["value"] for r in group])
                    s = np.array([r["sigma"] for r in group])
                    lo, hi = calibrated.interval(measure, v, s)
                    cov = coverage(y, lo, hi)
                    rec |= {
                        "coverage": cov.share,
                        "coverage_low": cov.low,
                        "coverage_high": cov.high,
                        "half_width_mean": float(np.mean((hi - lo) / 2)),
                        "sigma_mean": float(np.mean(s)),
                        "abs_error_mean": float(np.mean(np.abs(y - v))),
                    }
                table.append(rec)
    return table, rules


def cross_conformal(
    rows: list[dict[str, Any]], level: float, folds: int = 10, seed: int = 0
) -> list[dict[str, Any]]:
    """Coverage of the split rule's recipe over patient folds (cross-conformal; Vovk 2015).

    The validation and test patients together are split into ``folds`` groups (seeded); each
    group's cases get the interval calibrated on every other group's (normalized scores,
    sigma floored, pooled over sides and durations, as :func:`analyse`), so every case is a test
    case once and each calibration holds ~90 % of the patients. Rows as :func:`analyse`'s, with
    ``scheme`` ``"cross"`` and ``n_calibration`` the mean calibration size.
    """
    table = []
    for method in sorted({r["method"] for r in rows}):
        mine = [
            r
            for r in rows
            if r["method"] == method
            and r["split"] in ("val", "test")
            and np.isfinite(r["value"])
            and np.isfinite(r["reference"])
        ]
        patients = sorted({r["patient_id"] for r in mine})
        order = np.random.default_rng(seed).permutation(len(patients))
        fold_of = {patients[i]: j % folds for j, i in enumerate(order)}
        for measure in MEASURES:
            cases = [r for r in mine if r["measure"] == measure]
            if not cases:
                continue
            y, v, s = (np.array([r[k] for r in cases]) for k in ("reference", "value", "sigma"))
            s = np.maximum(s, SIGMA_FLOOR)
            fold = np.array([fold_of[r["patient_id"]] for r in cases])
            lo, hi, sizes = np.full(y.shape, np.nan), np.full(y.shape, np.nan), []
            for k in range(folds):
                test, cal = fold == k, fold != k
                if not test.any() or not cal.any():
                    continue
                rule = calibrate(y[cal], v[cal], s[cal], level)
                lo[test], hi[test] = rule.interval(v[test], s[test])
                sizes.append(int(cal.sum()))
            durations = np.array([r["duration_min"] for r in cases])
            groups = {"all": np.ones(y.shape, bool)} | {
                f"{d:g}": durations == d for d in sorted(set(durations.tolist()))
            }
            for duration, g in groups.items():
                g = g & np.isfinite(lo)
                cov = coverage(y[g], lo[g], hi[g])
                table.append(
                    {
                        "scheme": "cross",
                        "method": method,
                        "measure": measure,
                        "duration_min": duration,
                        "level": level,
                        "n_calibration": round(float(np.mean(sizes)), 1),
                        "n_test": int(g.sum()),
                        "coverage": cov.share,
                        "coverage_low": cov.low,
                        "coverage_high": cov.high,
                        "half_width_mean": float(np.mean((hi[g] - lo[g]) / 2)),
                    }
                )
    return table
