"""Figures of merit per method and duration, with CIs, and the iso-performance scan times.

Units of analysis: the test patient for image quality, SBR error and the inconclusive share;
the striatum (grade 0 against grade 1, patients' striata kept together in every resample) for
the detection of early loss; the patient's noise realizations for precision. Every CI is 95 %
unless the config says otherwise.

Figures of merit (``fom.csv``):

- ``psnr_nf``, ``ssim_nf`` / ``psnr_25``, ``ssim_25``: image quality of the crop slices against
  the noise-free reconstruction / the 25-min image; mean over patients, t-interval;
- ``sbr_bias_nf_<m>`` / ``sbr_bias_truth_<m>``: mean SBR error (both sides of a patient
  averaged) against the noise-free reconstruction's SBR / the truth's, t-interval;
  ``sbr_rmse_nf_<m>``: root-mean-square error against the noise-free SBR, bootstrap interval;
- ``sbr_sd_<m>``: precision, the SD of SBR across noise realizations of one patient (pooled:
  the root of the mean within-patient variance over patients and sides), bootstrap interval;
- ``cho_auc``: the channelized Hotelling observer's AUC for grade-1 against grade-0 striata,
  trained and tested on different patients (:func:`fastdat.stats.observer.cho_auc`), DeLong
  interval; ``sbr_auc_putamen_posterior``: the AUC of the posterior-putamen SBR as decision
  variable for the same striata, DeLong interval;
- ``inconclusive_share``: the share of patients whose lower putamen SBR must be called
  inconclusive (normal: both striata grade 0; abnormal: any grade >= 1) so that the others
  reach the target balanced accuracy (:func:`fastdat.stats.roc.inconclusive_share`),
  bootstrap interval;
- ``kappa``: quadratic-weighted kappa of the automated grade against the true grade per
  striatum; the normal database and thresholds come from the non-test patients' 25-min images
  (as in the evaluation); Fleiss-Cohen-Everitt interval.

Iso-performance (``iso.csv``): for each method and figure of merit, the shortest scan whose
value matches the reference protocol's (raw OSEM at the reference duration), interpolated
linearly in log time, with a subject-bootstrap interval (:mod:`fastdat.stats.iso`). The
bootstrap resamples patients and recomputes every duration's value and the reference's from
the same resample; the observer's decision variables are its out-of-fold ones (the template is
not retrained per resample, so that interval omits the template's own variability).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from fastdat.anatomy.labels import SIDES
from fastdat.quantification.grading import build_normals, calibrate, quadratic_kappa
from fastdat.stats import weighted_kappa
from fastdat.stats.iso import iso_time_bootstrap_statistic
from fastdat.stats.observer import cho_auc, laguerre_gauss_channels
from fastdat.stats.roc import auc, auc_delong, inconclusive_share
from fastdat.sweep.config import MEASURES, SweepConfig

REFERENCE_METHOD = "osem"
IQ = ("psnr_nf", "ssim_nf", "psnr_25", "ssim_25")


@dataclass
class Table:
    """The test patients' measurements as arrays (patients in a fixed order).

    Attributes:
        patients: ``(n,)`` patient ids.
        grades: ``(n, 2)`` true grades (left, right).
        methods: Method name -> kind, in report order.
        durations: ``(m,)`` minutes, increasing.
        iq: ``(method, duration)`` -> name -> ``(n,)``.
        sbr: ``(method, duration)`` -> measure -> ``(n, 2)``; ``("noisefree", nan)`` and
            ``("truth", nan)`` hold the references.
        patches: ``(method, duration)`` -> ``(n, 2, P, P)`` observer patches.
        normals_sbr: measure -> ``(k, 2)`` 25-min SBRs and ``(k, 2)`` grades of the non-test
            patients (``"grades"``), for the grading rule.
    """

    patients: np.ndarray
    grades: np.ndarray
    methods: dict[str, str]
    durations: np.ndarray
    iq: dict
    sbr: dict
    patches: dict
    normals_sbr: dict


def table(results: list[dict[str, Any]]) -> Table:
    """Arrange :func:`fastdat.sweep.measure.measure_study` results (each with ``rows`` and
    ``patches``) into a :class:`Table`."""
    test = [r for r in results if r["rows"] and r["rows"][0]["split"] == "test"]
    if len(test) < 4:
        raise ValueError(f"the sweep needs at least 4 measured test patients, got {len(test)}")
    test.sort(key=lambda r: r["rows"][0]["patient_id"])
    n = len(test)
    patients = np.array([r["rows"][0]["patient_id"] for r in test])
    grades = np.array([[r["rows"][0]["grade_left"], r["rows"][0]["grade_right"]] for r in test])
    methods: dict[str, str] = {}
    durations = sorted(
        {row["duration_min"] for r in test for row in r["rows"] if np.isfinite(row["duration_min"])}
    )
    iq: dict = {}
    sbr: dict = {}
    patches: dict = {}
    for i, r in enumerate(test):
        for k, row in enumerate(r["rows"]):
            key = (row["method"], row["duration_min"] if np.isfinite(row["duration_min"]) else None)
            if row["kind"] != "reference":
                methods.setdefault(row["method"], row["kind"])
                for name in IQ:
                    iq.setdefault(key, {}).setdefault(name, np.full(n, np.nan))[i] = row[name]
            for m in MEASURES:
                arr = sbr.setdefault(key, {}).setdefault(m, np.full((n, 2), np.nan))
                arr[i] = [row[f"{m}_{s}"] for s in SIDES]
            if r["patches"] is not None:
                p = r["patches"][k]
                patches.setdefault(key, np.full((n, *p.shape), np.nan, np.float32))[i] = p
    others = [r for r in results if r["rows"] and r["rows"][0]["split"] != "test"]
    normals: dict = {m: [] for m in MEASURES} | {"grades": []}
    for r in others:
        for row in r["rows"]:
            if row["method"] == REFERENCE_METHOD:
                for m in MEASURES:
                    normals[m].append([row[f"{m}_{s}"] for s in SIDES])
                normals["grades"].append([row["grade_left"], row["grade_right"]])
    normals = {k: np.array(v, float).reshape(-1, 2) for k, v in normals.items()}
    return Table(patients, grades, methods, np.array(durations), iq, sbr, patches, normals)


def _t_interval(values: np.ndarray, level: float) -> tuple[float, float, float, int]:
    v = values[np.isfinite(values)]
    if v.size < 2:
        return float(np.mean(v)) if v.size else np.nan, np.nan, np.nan, int(v.size)
    m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
    h = float(sps.t.ppf((1 + level) / 2, v.size - 1)) * se
    return m, m - h, m + h, int(v.size)


def _bootstrap(
    stat: Callable[[np.ndarray], float], strata: np.ndarray, cfg: SweepConfig
) -> tuple[float, float]:
    """Percentile interval of ``stat`` over patient resamples drawn within ``strata``."""
    rng = np.random.default_rng(cfg.seed)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]

    def draw() -> np.ndarray:
        return np.concatenate([rng.choice(g, g.size) for g in groups])

    values = [stat(draw()) for _ in range(cfg.n_boot)]
    lo, hi = np.nanquantile(values, [(1 - cfg.level) / 2, (1 + cfg.level) / 2])
    return float(lo), float(hi)


def _detection_labels(grades: np.ndarray) -> np.ndarray:
    """``(n, 2)``: 1 for a grade-1 striatum, 0 for grade 0, -1 otherwise (not in the task)."""
    return np.where(grades == 1, 1, np.where(grades == 0, 0, -1))


class Foms:
    """Every figure of merit as a function of (method, duration, patient indices)."""

    def __init__(self, t: Table, cfg: SweepConfig, voxel_mm: float) -> None:
        self.t, self.cfg = t, cfg
        self.labels = _detection_labels(t.grades)
        self.abnormal = (t.grades.max(1) >= 1).astype(int)
        self.rule, self.normals = self._grading_rule()
        self.cho: dict = {}
        self.problems: set[str] = set()
        size = cfg.observer.patch_px
        centre = ((size // 2), (size // 2))
        self.channels = laguerre_gauss_channels(
            (size, size), cfg.observer.n_channels, cfg.observer.width_mm / voxel_mm, centre
        )

    def _grading_rule(self):
        nt = self.t.normals_sbr
        g = nt["grades"].astype(int).ravel()
        put, cau = nt["putamen"].ravel(), nt["caudate"].ravel()
        ok = np.isfinite(put) & np.isfinite(cau)
        normal = ok & (g == 0)
        if normal.sum() < 3:
            return None, None
        normals = build_normals(
            [{"putamen": p, "caudate": c} for p, c in zip(put[normal], cau[normal], strict=True)],
            source=f"25-min SBR of {int(normal.sum())} grade-0 striata (train + val)",
        )
        zp = (put[ok] - normals.mean["putamen"]) / normals.sd["putamen"]
        zc = (cau[ok] - normals.mean["caudate"]) / normals.sd["caudate"]
        rule, _ = calibrate(zp, zc, g[ok])
        return rule, normals

    def auto_grades(self, key) -> np.ndarray:
        s = self.t.sbr[key]
        zp = (s["putamen"] - self.normals.mean["putamen"]) / self.normals.sd["putamen"]
        zc = (s["caudate"] - self.normals.mean["caudate"]) / self.normals.sd["caudate"]
        ok = np.isfinite(zp) & np.isfinite(zc)
        out = np.full(zp.shape, -1)
        out[ok] = self.rule.grade(zp[ok], zc[ok])
        return out

    def cho_scores(self, key) -> Any:
        """``(CHOResult or None, (n, 2) out-of-fold decision variables)``; without enough
        cases to train the observer, ``None`` and NaN (the reason in :attr:`problems`)."""
        if key not in self.cho:
            p = self.t.patches[key]
            sel = self.labels >= 0
            scores = np.full(sel.shape, np.nan)
            try:
                res = cho_auc(
                    p[sel],
                    self.labels[sel],
                    np.broadcast_to(np.arange(len(self.t.patients))[:, None], sel.shape)[sel],
                    self.channels,
                    n_folds=self.cfg.observer.n_folds,
                    seed=self.cfg.observer.seed,
                    level=self.cfg.level,
                )
                scores[sel] = res.scores
            except ValueError as err:
                res = None
                self.problems.add(f"channelized Hotelling observer not computed: {err}")
            self.cho[key] = (res, scores)
        return self.cho[key]

    def strata(self, fom: str) -> np.ndarray:
        """Patients' bootstrap strata: with a grade-1 striatum or not for the detection task,
        abnormal or not otherwise (every resample keeps both classes)."""
        if fom in ("cho_auc", "sbr_auc_putamen_posterior"):
            return (self.labels == 1).any(1).astype(int)
        return self.abnormal

    def _striata(self, scores: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab, sc = self.labels[idx].ravel(), scores[idx].ravel()
        keep = (lab >= 0) & np.isfinite(sc)
        return sc[keep], lab[keep]

    def value(self, fom: str, key, idx: np.ndarray) -> float:
        """The figure of merit ``fom`` of method-duration ``key`` over patients ``idx``."""
        t = self.t
        if fom in IQ:
            return float(np.nanmean(t.iq[key][fom][idx]))
        if fom.startswith(("sbr_bias_", "sbr_rmse_")):
            kind, ref, measure = _sbr_fom(fom)
            err = t.sbr[key][measure][idx] - t.sbr[(ref, None)][measure][idx]
            per_patient = np.nanmean(err if kind == "bias" else err**2, axis=1)
            m = float(np.nanmean(per_patient))
            return m if kind == "bias" else float(np.sqrt(m))
        if fom == "cho_auc":
            scores = self.cho_scores(key)[1]
            return auc(*self._striata(scores, idx)) if np.isfinite(scores).any() else np.nan
        if fom == "sbr_auc_putamen_posterior":
            return auc(*self._striata(-t.sbr[key]["putamen_posterior"], idx))
        if fom == "inconclusive_share":
            score = np.nanmin(t.sbr[key]["putamen"][idx], axis=1)
            lab = self.abnormal[idx]
            ok = np.isfinite(score)
            return inconclusive_share(score[ok], lab[ok], self.cfg.target_accuracy).share
        if fom == "kappa":
            pred, true = self.auto_grades(key)[idx].ravel(), t.grades[idx].ravel()
            ok = pred >= 0
            return quadratic_kappa(true[ok].astype(int), pred[ok])
        raise ValueError(f"unknown figure of merit {fom!r}")

    def interval(self, fom: str, key) -> tuple[float, float, float, int]:
        """``(value, low, high, n)`` over all test patients."""
        n = len(self.t.patients)
        idx = np.arange(n)
        if fom in IQ:
            return _t_interval(self.t.iq[key][fom], self.cfg.level)
        if fom.startswith("sbr_bias"):
            _, ref, measure = _sbr_fom(fom)
            err = self.t.sbr[key][measure] - self.t.sbr[(ref, None)][measure]
            return _t_interval(np.nanmean(err, axis=1), self.cfg.level)
        if fom == "cho_auc":
            res, _ = self.cho_scores(key)
            if res is None:
                return np.nan, np.nan, np.nan, 0
            return res.auc.auc, res.auc.low, res.auc.high, res.auc.n_pos + res.auc.n_neg
        if fom == "sbr_auc_putamen_posterior":
            sc, lab = self._striata(-self.t.sbr[key]["putamen_posterior"], idx)
            r = auc_delong(sc, lab, self.cfg.level)
            return r.auc, r.low, r.high, r.n_pos + r.n_neg
        if fom == "kappa":
            pred, true = self.auto_grades(key).ravel(), self.t.grades.ravel()
            ok = pred >= 0
            k = weighted_kappa(true[ok], pred[ok], "quadratic", categories=[0, 1, 2, 3])
            return k.kappa, k.ci_low, k.ci_high, int(ok.sum())
        lo, hi = _bootstrap(lambda i: self.value(fom, key, i), self.strata(fom), self.cfg)
        return self.value(fom, key, idx), lo, hi, n


def _sbr_fom(fom: str) -> tuple[str, str, str]:
    """``sbr_bias_nf_putamen`` -> ``("bias", "noisefree", "putamen")``."""
    _, kind, ref, *rest = fom.split("_")
    return kind, {"nf": "noisefree", "truth": "truth"}[ref], "_".join(rest)


HIGHER = {"psnr_nf": True, "ssim_nf": True, "psnr_25": True, "ssim_25": True}
HIGHER |= {"cho_auc": True, "sbr_auc_putamen_posterior": True, "kappa": True}
HIGHER |= {"inconclusive_share": False}
HIGHER |= {f"sbr_rmse_nf_{m}": False for m in MEASURES}
HIGHER |= {f"sbr_sd_{m}": False for m in MEASURES}
ISO_FOMS = (
    "psnr_nf",
    "ssim_nf",
    "sbr_rmse_nf_putamen",
    "sbr_rmse_nf_putamen_posterior",
    "cho_auc",
    "sbr_auc_putamen_posterior",
    "inconclusive_share",
    "kappa",
)


def fom_names() -> list[str]:
    names = list(IQ)
    for ref in ("nf", "truth"):
        names += [f"sbr_bias_{ref}_{m}" for m in MEASURES]
    names += [f"sbr_rmse_nf_{m}" for m in MEASURES]
    return [*names, "cho_auc", "sbr_auc_putamen_posterior", "inconclusive_share", "kappa"]


def analyse(
    t: Table, cfg: SweepConfig, voxel_mm: float
) -> tuple[list[dict], list[dict], list[str]]:
    """``fom.csv`` and ``iso.csv`` rows of the test patients (see the module), and what could
    not be computed (e.g. too few cases to train the observer), in words."""
    f = Foms(t, cfg, voxel_mm)
    names = [n for n in fom_names() if n != "kappa" or f.rule is not None]
    rows = []
    for method, kind_ in t.methods.items():
        for d in t.durations:
            key = (method, float(d))
            for fom in names:
                if fom.endswith("_25") and key == (REFERENCE_METHOD, cfg.reference_duration):
                    continue  # the 25-min image against itself
                value, low, high, n = f.interval(fom, key)
                rows.append(
                    {
                        "method": method,
                        "kind": kind_,
                        "duration_min": float(d),
                        "fom": fom,
                        "value": value,
                        "low": low,
                        "high": high,
                        "n": n,
                        "higher_is_better": HIGHER.get(fom, ""),
                    }
                )
    iso = []
    ref_key = (REFERENCE_METHOD, float(cfg.reference_duration))
    n = len(t.patients)
    for method in t.methods:
        for fom in (x for x in ISO_FOMS if x in names):

            def statistic(idx, method=method, fom=fom):
                curve = [f.value(fom, (method, float(d)), idx) for d in t.durations]
                return np.array(curve), f.value(fom, ref_key, idx)

            try:
                res = iso_time_bootstrap_statistic(
                    t.durations,
                    statistic,
                    n,
                    higher_is_better=HIGHER[fom],
                    n_boot=cfg.n_boot,
                    level=cfg.level,
                    seed=cfg.seed,
                    strata=f.strata(fom),
                )
            except ValueError as err:
                f.problems.add(f"no iso-performance time of {fom} for {method}: {err}")
                continue
            iso.append(_iso_row(method, fom, res, f.value(fom, ref_key, np.arange(n))))
    return rows, iso, sorted(f.problems)


def _iso_row(method: str, fom: str, res, reference: float) -> dict[str, Any]:
    return {
        "method": method,
        "fom": fom,
        "time_min": res.estimate.time,
        "bound": res.estimate.bound,
        "low": res.low.time,
        "low_bound": res.low.bound,
        "high": res.high.time,
        "high_bound": res.high.bound,
        "reference_value": reference,
        "share_beyond": res.share_beyond,
    }


def precision(rows: list[dict[str, Any]], cfg: SweepConfig) -> tuple[list[dict], list[dict]]:
    """``sbr_sd_<measure>`` rows of ``fom.csv`` and their iso rows, from the precision cohort's
    realizations (:func:`fastdat.sweep.measure.measure_precision_study`)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    patients = sorted(df["patient_id"].unique())
    n = len(patients)
    if n < 2:
        raise ValueError(f"precision needs 2+ patients with realizations, got {n}")
    durations = sorted(df["duration_min"].unique())
    var: dict = {}
    for (method, d), g in df.groupby(["method", "duration_min"]):
        for m in MEASURES:
            cols = [f"{m}_{s}" for s in SIDES]
            v = g.groupby("patient_id")[cols].var(ddof=1).reindex(patients)
            var[(method, float(d), m)] = v.to_numpy()  # (n, 2)

    def sd(method, d, m, idx):
        return float(np.sqrt(np.nanmean(var[(method, float(d), m)][idx])))

    out, iso = [], []
    ref = (REFERENCE_METHOD, float(cfg.reference_duration))
    kinds = df.drop_duplicates("method").set_index("method")["kind"].to_dict()
    for method in df["method"].unique():
        for m in MEASURES:
            for d in durations:
                value = sd(method, d, m, np.arange(n))
                lo, hi = _bootstrap(lambda i, a=(method, d, m): sd(*a, i), np.zeros(n), cfg)
                out.append(
                    {
                        "method": method,
                        "kind": kinds[method],
                        "duration_min": float(d),
                        "fom": f"sbr_sd_{m}",
                        "value": value,
                        "low": lo,
                        "high": hi,
                        "n": n,
                        "higher_is_better": False,
                    }
                )
            if m not in ("putamen", "putamen_posterior"):
                continue

            def statistic(idx, method=method, m=m):
                curve = np.array([sd(method, d, m, idx) for d in durations])
                return curve, sd(*ref, m, idx)

            res = iso_time_bootstrap_statistic(
                durations,
                statistic,
                n,
                higher_is_better=False,
                log_values=True,
                n_boot=cfg.n_boot,
                level=cfg.level,
                seed=cfg.seed,
            )
            iso.append(_iso_row(method, f"sbr_sd_{m}", res, sd(*ref, m, np.arange(n))))
    return out, iso
