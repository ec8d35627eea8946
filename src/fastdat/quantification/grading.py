"""Automated visual grade (0-3 per striatum) from SBR z-scores against a normal database.

The normal database holds the mean and SD of the template-VOI SBR of caudate and putamen over
grade-0 striata (both sides pooled) imaged with one protocol. A striatum's z-scores
``z = (SBR - mean) / SD`` then map to the Benamer / Catafau grades (``domain.md``)::

    caudate z < caudate_z            -> 3  (caudate greatly reduced too)
    else putamen z < absent_z        -> 2  (putamen absent, caudate only)
    else putamen z < normal_z        -> 1  (putamen reduced)
    else                             -> 0  (normal comma)

The three thresholds can be calibrated on graded training data (:func:`calibrate`), which is what
the study does on its training and validation subjects, never on the test subjects.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

GRADED_REGIONS = ("caudate", "putamen")


@dataclass(frozen=True)
class NormalDatabase:
    """Mean and SD of the SBR of grade-0 striata per region (both sides pooled).

    Attributes:
        mean: Region -> mean SBR. sd: Region -> SD (ddof=1). n: Number of striata.
        source: What the values were measured on (protocol, method).
    """

    mean: dict[str, float]
    sd: dict[str, float]
    n: int
    source: str = ""

    def zscores(self, sbr: dict[str, float], side: str) -> dict[str, float]:
        """``{region: z}`` of one side's ``<region>_<side>`` values."""
        return {r: (sbr[f"{r}_{side}"] - self.mean[r]) / self.sd[r] for r in GRADED_REGIONS}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> NormalDatabase:
        try:
            db = cls(
                {k: float(v) for k, v in doc["mean"].items()},
                {k: float(v) for k, v in doc["sd"].items()},
                int(doc["n"]),
                str(doc.get("source", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not a normal database ({err!r})") from err
        for r in GRADED_REGIONS:
            if r not in db.mean or not db.sd.get(r, 0) > 0:
                raise ValueError(f"normal database lacks a mean and a positive SD for {r!r}")
        return db


def build_normals(values: list[dict[str, float]], source: str = "") -> NormalDatabase:
    """Normal database from per-striatum records ``{"caudate": sbr, "putamen": sbr}``.

    Raises:
        ValueError: Fewer than 3 normal striata (no usable SD).
    """
    if len(values) < 3:
        raise ValueError(f"a normal database needs at least 3 grade-0 striata, got {len(values)}")
    mean, sd = {}, {}
    for r in GRADED_REGIONS:
        v = np.array([rec[r] for rec in values], dtype=np.float64)
        mean[r], sd[r] = float(v.mean()), float(v.std(ddof=1))
        if not sd[r] > 0:
            raise ValueError(f"normal {r} SBRs have no spread; cannot form z-scores")
    return NormalDatabase(mean, sd, len(values), source)


@dataclass(frozen=True)
class GradingRule:
    """Z-score thresholds of the grades (see the module docstring).

    Attributes:
        normal_z: Putamen z below which a striatum is abnormal (grade >= 1).
        absent_z: Putamen z below which the putamen counts as absent (grade 2).
        caudate_z: Caudate z below which the caudate counts as greatly reduced (grade 3).
    """

    normal_z: float = -2.0
    absent_z: float = -4.0
    caudate_z: float = -4.0

    def __post_init__(self) -> None:
        if not self.absent_z <= self.normal_z:
            raise ValueError(
                f"grading: absent_z ({self.absent_z}) must be <= normal_z ({self.normal_z})"
            )

    def grade(self, z_putamen: np.ndarray, z_caudate: np.ndarray) -> np.ndarray:
        """Grades 0-3 of striata with putamen and caudate z-scores (arrays of equal shape)."""
        zp, zc = np.asarray(z_putamen, float), np.asarray(z_caudate, float)
        g = np.where(zp < self.normal_z, 1, 0)
        g = np.where(zp < self.absent_z, 2, g)
        return np.where((zc < self.caudate_z) & (g >= 1), 3, g).astype(int)


def calibrate(
    z_putamen: np.ndarray,
    z_caudate: np.ndarray,
    grades: np.ndarray,
    normal_z: tuple[float, ...] = tuple(np.arange(-4.0, -0.99, 0.25)),
    absent_z: tuple[float, ...] = tuple(np.arange(-9.0, -1.99, 0.25)),
    caudate_z: tuple[float, ...] = tuple(np.arange(-9.0, -0.99, 0.25)),
) -> tuple[GradingRule, float]:
    """Thresholds that maximise the quadratic-weighted kappa against known grades.

    Returns:
        ``(rule, kappa)``; ties go to the rule found first (thresholds closest to normal).
    """
    from fastdat.stats import weighted_kappa

    grades = np.asarray(grades, int)
    best, best_k = GradingRule(), -np.inf
    for n, a, c in itertools.product(normal_z[::-1], absent_z[::-1], caudate_z[::-1]):
        if a > n:
            continue
        rule = GradingRule(float(n), float(a), float(c))
        pred = rule.grade(z_putamen, z_caudate)
        k = quadratic_kappa(grades, pred)
        if k > best_k + 1e-12:
            best, best_k = rule, k
    # report the winner with the statistics module's kappa (the one every table uses)
    return best, weighted_kappa(
        grades, best.grade(z_putamen, z_caudate), "quadratic", categories=[0, 1, 2, 3]
    ).kappa


def quadratic_kappa(a: np.ndarray, b: np.ndarray, k: int = 4) -> float:
    """Fast quadratic-weighted kappa for the threshold search (categories 0..k-1)."""
    obs = np.zeros((k, k))
    np.add.at(obs, (a, b), 1.0)
    obs /= obs.sum()
    exp = np.outer(obs.sum(1), obs.sum(0))
    i = np.arange(k)
    w = (i[:, None] - i[None, :]) ** 2 / (k - 1) ** 2
    den = (w * exp).sum()
    return 1.0 - (w * obs).sum() / den if den > 0 else 0.0
