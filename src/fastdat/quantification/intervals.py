"""SBR intervals of a restored image: an ensemble's spread, calibrated by conformal prediction.

A deep ensemble (:mod:`fastdat.models.ensemble`) restores an image ``K`` times; its output is the
members' mean. The SBR of the output is measured in VOIs placed once (on the output, or on a
reference image of the subject), and the SBR of every member's image in the same VOIs. The SD of
the members' SBRs, ``sigma``, says how much the restoration itself is unsure of that SBR, but it
is not a calibrated interval: members trained alike agree more than they are right. Split
conformal prediction (:mod:`fastdat.stats.conformal`, normalized scores) turns it into one: on
calibration cases (the validation split's studies at every scan time, reference: the noise-free
reconstruction's SBR in the same VOIs) the quantile ``q`` of ``|SBR_ref - SBR| / sigma`` is
found per measure, and

    [SBR - q sigma, SBR + q sigma]

then holds the reference SBR of a new exchangeable case with probability at least ``level``.
``sigma`` is floored at :data:`SIGMA_FLOOR` (a member set that agrees exactly would otherwise
give a zero-width interval). The calibration is stored in the model's sidecar
(``sbr_intervals``: ``level``, ``n`` and ``q`` per measure) and used by ``fastdat denoise --sbr``.

Measures are pooled over sides (left and right striata are two cases of one patient; the
coverage is per striatum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fastdat.stats.conformal import Conformal, calibrate

SIGMA_FLOOR = 1e-3
"""Least SBR uncertainty used (SBR units): members that agree to 1e-3 are not exact."""


def member_sigma(member_values: np.ndarray) -> np.ndarray:
    """SD over members (axis 0, ``ddof=1``) of their SBRs, floored at :data:`SIGMA_FLOOR`.

    Args:
        member_values: ``(K, ...)`` the members' SBRs (``K >= 2``).
    """
    v = np.asarray(member_values, dtype=np.float64)
    if v.shape[0] < 2:
        raise ValueError(f"an SBR spread needs at least 2 ensemble members, got {v.shape[0]}")
    return np.maximum(v.std(axis=0, ddof=1), SIGMA_FLOOR)


@dataclass(frozen=True)
class SBRIntervals:
    """Calibrated interval rules, one per measure (``putamen``, ``caudate``...).

    Attributes:
        level: Nominal coverage.
        rules: Measure -> its :class:`~fastdat.stats.conformal.Conformal` rule.
        reference: What the intervals cover (e.g. ``"noise-free reconstruction"``).
    """

    level: float
    rules: dict[str, Conformal]
    reference: str = "noise-free reconstruction"

    def interval(self, measure: str, value, sigma) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends for a measure's ``value`` with members' SD ``sigma``."""
        if measure not in self.rules:
            raise KeyError(f"no calibrated interval for {measure!r} (have {sorted(self.rules)})")
        return self.rules[measure].interval(value, np.maximum(sigma, SIGMA_FLOOR))

    def to_dict(self) -> dict[str, Any]:
        """The sidecar form (JSON)."""
        return {
            "level": self.level,
            "reference": self.reference,
            "rules": {k: asdict(r) for k, r in self.rules.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SBRIntervals:
        """Read :meth:`to_dict`'s form."""
        rules = {
            k: Conformal(float(r["q"]), float(r["level"]), int(r["n"]))
            for k, r in doc["rules"].items()
        }
        return cls(float(doc["level"]), rules, str(doc.get("reference", "")))


def calibrate_intervals(
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    level: float = 0.9,
    reference: str = "noise-free reconstruction",
) -> SBRIntervals:
    """Calibrate one interval rule per measure.

    Args:
        cases: Measure -> ``(reference, value, sigma)`` arrays of the calibration cases (finite).
        level: Nominal coverage.
        reference: What ``reference`` is, recorded with the rules.
    """
    rules = {}
    for measure, (ref, value, sigma) in cases.items():
        rules[measure] = calibrate(ref, value, np.maximum(sigma, SIGMA_FLOOR), level)
    return SBRIntervals(level, rules, reference)


def _number(x) -> float | None:
    """A finite float, or ``None`` (JSON has no NaN or infinity)."""
    x = float(x)
    return x if np.isfinite(x) else None


def sbr_with_intervals(
    image: np.ndarray,
    voxel_mm: float,
    members: np.ndarray | None = None,
    intervals=None,
    cfg=None,
) -> dict:
    """SBRs of a restored image, with the members' spread and calibrated intervals where known.

    VOIs are placed once, on ``image`` (:func:`fastdat.quantification.sbr.quantify_volume`);
    every member's image is measured in the same VOIs
    (:func:`fastdat.quantification.sbr.measure_sbr`) and ``sigma`` is the SD of their SBRs
    (:func:`fastdat.quantification.intervals.member_sigma`: ``ddof=1``, floored at 1e-3). With
    a calibration, ``[value - q sigma, value + q sigma]`` per measure
    (:meth:`SBRIntervals.interval`). No interval is ever given without both: ``lower`` and
    ``upper`` are then ``None`` and a warning says why (single network, uncalibrated model, a
    measure the calibration lacks, a member not measurable, too few calibration cases).

    The sweep's calibration (:mod:`fastdat.sweep.intervals`) placed its VOIs on the noise-free
    reconstruction and measured members without the spectral limit; here the VOIs are placed on
    the restored image and the members are limited as the image is. The nominal coverage holds
    as far as these differences leave the normalized scores ``|ref - value| / sigma`` unchanged.

    Args:
        image: ``(X, Y, Z)`` restored image, RAS+ axes, any positive scale.
        voxel_mm: Isotropic voxel size (mm).
        members: ``(K, X, Y, Z)`` the ensemble members' images (:func:`denoise_volume` with
            ``members``), or ``None`` for a single network.
        intervals: :class:`~fastdat.quantification.intervals.SBRIntervals` from the model's
            sidecar (``sbr_intervals``), or ``None``.
        cfg: :class:`~fastdat.quantification.sbr.QuantConfig` (default settings if ``None``).

    Returns:
        JSON-ready dict: ``sbr`` (``<measure>_<side>`` -> ``measure, side, value, sigma,
        lower, upper``; SBR units), ``derived`` (asymmetry %, putamen / caudate), ``level``,
        ``covers`` (what an interval holds), ``calibration``, ``members``, ``vois``,
        ``quantify`` (the settings) and ``warnings``.

    Raises:
        NoStriatumError: No striatum found on ``image`` (nothing measured).
    """
    from dataclasses import asdict

    from fastdat.anatomy.labels import REGIONS, SIDES
    from fastdat.quantification.intervals import member_sigma
    from fastdat.quantification.sbr import QuantConfig, measure_sbr, quantify_volume

    cfg = cfg or QuantConfig()
    values, vois = quantify_volume(image, voxel_mm, cfg)
    keys = [f"{m}_{s}" for m in (*REGIONS, "southampton") for s in SIDES]
    k = 1 if members is None else len(members)
    warnings: list[str] = []
    sigma: dict[str, float] = {}
    if k < 2:
        warnings.append("single network: no members' spread, so no SBR interval")
    else:
        try:
            each = [measure_sbr(m, vois, voxel_mm, cfg) for m in members]
        except ValueError as err:  # NoStriatumError: a member's striata not above reference
            warnings.append(f"an ensemble member's SBRs could not be measured ({err}): no sigma")
        else:
            sigma = {key: float(member_sigma(np.array([e[key] for e in each]))) for key in keys}
        if intervals is None:
            warnings.append(
                "the model has no calibrated SBR intervals (sidecar 'sbr_intervals'): "
                "uncalibrated, so no interval (sigma alone is not one)"
            )
    rows, lacking = {}, []
    for key in keys:
        measure, side = key.rsplit("_", 1)
        row = {"measure": measure, "side": side, "value": _number(values[key])}
        row |= {"sigma": sigma.get(key), "lower": None, "upper": None}
        if intervals is not None and key in sigma and row["value"] is not None:
            if measure not in intervals.rules:
                lacking.append(measure)
            elif np.isfinite(intervals.rules[measure].q):
                lo, hi = intervals.interval(measure, row["value"], sigma[key])
                row["lower"], row["upper"] = float(lo), float(hi)
            else:
                lacking.append(f"{measure} (too few calibration cases for the level)")
        rows[key] = row
    if lacking:
        warnings.append(f"no calibrated interval for {', '.join(sorted(set(lacking)))}")
    calibrated = intervals is not None and bool(sigma)
    return {
        "sbr": rows,
        "derived": {n: _number(v) for n, v in values.items() if n not in keys},
        "level": intervals.level if calibrated else None,
        "covers": (
            f"the SBR of the {intervals.reference} in the same VOIs, per striatum, with "
            f"probability at least {intervals.level} (split-conformal, marginal over cases "
            "exchangeable with the calibration cases)"
            if calibrated
            else None
        ),
        "calibration": intervals.to_dict() if calibrated else None,
        "members": k,
        "sigma": (
            f"SD (ddof=1) of the {k} members' SBRs in the same VOIs, floored at 1e-3"
            if sigma
            else None
        ),
        "vois": {
            "placed_on": "the restored image (the ensemble's mean)" if k > 1 else "the image",
            "fit_score": float(vois.score),
            "shift_voxels": [int(v) for v in vois.shift],
            "yaw_deg": float(vois.yaw_deg),
        },
        "quantify": asdict(cfg),
        "warnings": warnings,
    }
