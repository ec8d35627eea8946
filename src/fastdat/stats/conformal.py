"""Split conformal prediction intervals: calibrated on one split, coverage measured on another.

A restored image's SBR ``y_hat`` comes with a heuristic uncertainty ``sigma`` (an ensemble's SD,
the spread over re-thinned inputs, or 1). On a calibration split with reference values ``y``
(the noise-free or the long scan's SBR), the normalized nonconformity scores are

    s_i = |y_i - y_hat_i| / sigma_i ,   i = 1 .. n

and with ``k = ceil((n + 1) level)`` the conformal quantile is ``q = s_(k)``, the k-th smallest
score (Lei et al., JASA 2018, "locally weighted" split conformal; Angelopoulos & Bates 2023,
Sec. 2.3). For a new case exchangeable with the calibration cases the interval

    [y_hat - q sigma, y_hat + q sigma]

covers ``y`` with probability at least ``level``, and at most ``level + 1 / (n + 1)`` for
continuous scores; averaged over calibration draws the coverage is exactly ``k / (n + 1)``.
``k > n`` (too few cases for the level) gives an infinite interval. Coverage on a test split is
reported with its Clopper-Pearson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """``q``: the ``ceil((n + 1) level)``-th smallest score, ``inf`` if that exceeds ``n``.

    Args:
        scores: Calibration nonconformity scores ``(n,)`` (finite, >= 0).
        level: Nominal coverage in (0, 1).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if s.size == 0 or not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("conformal calibration needs finite, non-negative scores")
    k = math.ceil((s.size + 1) * level)
    return float(s[k - 1]) if k <= s.size else math.inf


def scores(y: np.ndarray, y_hat: np.ndarray, sigma: np.ndarray | float = 1.0) -> np.ndarray:
    """Normalized nonconformity scores ``|y - y_hat| / sigma`` (``sigma > 0``)."""
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    sigma = np.broadcast_to(np.asarray(sigma, np.float64), y.shape)
    if (sigma <= 0).any() or not np.isfinite(sigma).all():
        raise ValueError("uncertainties must be finite and > 0")
    return np.abs(y - y_hat) / sigma


@dataclass(frozen=True)
class Conformal:
    """A calibrated interval rule: ``y_hat +/- q sigma``.

    Attributes:
        q: The conformal quantile of the normalized scores.
        level: Nominal coverage.
        n: Calibration cases.
    """

    q: float
    level: float
    n: int

    def interval(self, y_hat, sigma=1.0) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends for predictions ``y_hat`` with uncertainties ``sigma``."""
        y_hat = np.asarray(y_hat, np.float64)
        half = self.q * np.broadcast_to(np.asarray(sigma, np.float64), y_hat.shape)
        return y_hat - half, y_hat + half


def calibrate(y, y_hat, sigma=1.0, level: float = 0.9) -> Conformal:
    """The interval rule calibrated on cases ``(y, y_hat, sigma)`` (module docstring)."""
    s = scores(y, y_hat, sigma)
    return Conformal(conformal_quantile(s, level), level, int(s.size))


@dataclass(frozen=True)
class Coverage:
    """Share of cases whose interval holds the reference, with a Clopper-Pearson interval."""

    covered: int
    n: int
    share: float
    low: float
    high: float


def coverage(y, lo, hi, ci: float = 0.95) -> Coverage:
    """How many references ``y`` lie in ``[lo, hi]`` (ends included)."""
    y = np.asarray(y, np.float64)
    inside = (y >= np.asarray(lo)) & (y <= np.asarray(hi))
    k, n = int(inside.sum()), int(inside.size)
    if n == 0:
        raise ValueError("coverage of no cases")
    a = (1 - ci) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return Coverage(k, n, k / n, low, high)
