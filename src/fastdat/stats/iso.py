"""Iso-performance scan time: the shortest scan with which a method matches a reference.

A scan-time sweep gives, for one method and durations ``t_1 < ... < t_m`` (minutes), a figure of
merit (FOM) curve ``v(t_i)``; the reference is one number, e.g. the same FOM of OSEM at 25 min.
With ``s = +1`` for a FOM where higher is better (PSNR, AUC) and ``s = -1`` where lower is
better (an error, an SD), the curve *reaches* the reference where ``g(t) = s (v(t) - ref) >= 0``
(ties count as reached). Between grid points ``g`` is linear in ``log t`` (or, with
``log_values=True``, ``s (log v(t) - log ref)`` is: exact for a power law such as
``SD = c t^-1/2``). Definitions:

* **iso time**: the smallest ``t`` in ``[t_1, t_m]`` such that the interpolated curve reaches the
  reference at every duration from ``t`` to ``t_m``. For a noisy, non-monotone curve this is the
  crossing after the *last* grid point below the reference, not the first crossing: a method
  that reaches the reference at 3 min, drops below it at 4 min and reaches it again for good at
  4.5 min has iso time 4.5 min. If ``j`` is the last grid index with ``g_j < 0``::

      t_iso = exp(log t_j + g_j / (g_j - g_{j+1}) (log t_{j+1} - log t_j))

  bound ``"exact"``. If no grid point is below the reference, ``t_iso = t_1`` with bound
  ``"at_most"`` (the true iso time is ``<= t_1``, the grid cannot tell more); if the longest
  duration is below, ``t_iso = inf`` with bound ``"beyond"`` (``> t_m``). An exact time lies in
  ``(t_1, t_m]``, so the bound can be read off the time.
* **bootstrap CI**: subjects are resampled with replacement (within strata if given), the same
  resample feeding the method's curve and the reference, so that their pairing is kept; each
  replicate gives an iso time (``inf`` for a replicate that never reaches the reference). The
  CI is the percentile interval, the quantiles being order statistics (numpy's
  ``"inverted_cdf"``: the smallest replicate ``T`` with ``share(T_b <= T) >= q``). Hence the
  upper end is ``inf`` exactly when more than ``(1 - level) / 2`` of the replicates never reach
  the reference; the lower end is ``t_1`` ("at_most") when at least ``(1 - level) / 2`` of them
  reach it already at ``t_1``.
* **scaling exponent**: the least-squares line ``log v = intercept + slope log t`` with the
  usual OLS standard error of the slope, e.g. to check that an SD across noise realizations of
  raw OSEM scales as ``t^-1/2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Bound = Literal["exact", "at_most", "beyond"]


@dataclass(frozen=True)
class IsoTime:
    """An iso-performance scan time.

    Attributes:
        time: Minutes (the unit of ``durations``). ``bound="exact"``: the interpolated crossing,
            in ``(t_1, t_m]``. ``"at_most"``: ``t_1``, the true time is ``<= t_1``.
            ``"beyond"``: ``inf``, the reference is not reached within the grid (``> t_m``).
        bound: ``"exact"``, ``"at_most"`` or ``"beyond"``.
    """

    time: float
    bound: Bound


@dataclass(frozen=True)
class IsoResult:
    """Iso time with its percentile bootstrap CI over subjects.

    Attributes:
        estimate: Iso time of the full sample.
        low, high: The CI ends, ``(1 -+ level) / 2`` quantiles of the replicates; either may be
            ``"at_most"`` (time ``t_1``) or ``"beyond"`` (time ``inf``).
        level: CI level.
        n_boot: Bootstrap replicates.
        n_subjects: Subjects resampled.
        share_beyond: Share of replicates that never reach the reference within the grid.
        share_at_most: Share of replicates that reach it already at the shortest duration.
    """

    estimate: IsoTime
    low: IsoTime
    high: IsoTime
    level: float
    n_boot: int
    n_subjects: int
    share_beyond: float
    share_at_most: float


@dataclass(frozen=True)
class ScalingFit:
    """Least-squares fit of ``log values = intercept + slope log durations``.

    Attributes:
        slope: The exponent ``p`` in ``values ~ exp(intercept) t^p`` (about -0.5 for an SD
            across Poisson noise realizations). intercept: Natural log of the value at ``t = 1``
            (in the unit of ``durations``). se: OLS standard error of the slope,
            ``sqrt(RSS / (n - 2) / sum (log t - mean log t)^2)``. n: Durations used.
    """

    slope: float
    intercept: float
    se: float
    n: int


def _durations(durations: Any) -> np.ndarray:
    t = np.asarray(durations, dtype=np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"durations must be a non-empty 1-D array, got shape {t.shape}")
    if not (np.isfinite(t).all() and (t > 0).all()):
        raise ValueError("durations must be finite and > 0")
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise ValueError("durations must be strictly increasing")
    return t


def _gap(curves: np.ndarray, refs: np.ndarray, higher_is_better: bool, log_values: bool):
    """``s (v - ref)`` (or of the logs), ``(n_curves, m)``; >= 0 where the reference is reached."""
    if log_values:
        if not ((curves > 0).all() and (refs > 0).all()):
            raise ValueError("log_values=True needs values and reference > 0")
        curves, refs = np.log(curves), np.log(refs)
    g = curves - refs[:, None]
    return g if higher_is_better else -g


def _iso_times(t: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iso times ``(n_curves,)`` and bound codes (0 exact, 1 at_most, 2 beyond) of gap curves."""
    n_curves, m = g.shape
    below = g < 0
    beyond = below[:, -1]
    at_most = ~below.any(axis=1)
    times = np.full(n_curves, t[0])
    times[beyond] = np.inf
    exact = ~(beyond | at_most)
    if exact.any():
        rows = np.flatnonzero(exact)
        j = m - 1 - np.argmax(below[rows, ::-1], axis=1)  # last grid point below
        g0, g1 = g[rows, j], g[rows, j + 1]
        u = np.log(t)
        frac = g0 / (g0 - g1)  # g0 < 0 <= g1: in (0, 1]
        times[rows] = np.where(g1 == 0, t[j + 1], np.exp(u[j] + frac * (u[j + 1] - u[j])))
    codes = np.where(beyond, 2, np.where(at_most, 1, 0))
    return times, codes


_BOUNDS: tuple[Bound, Bound, Bound] = ("exact", "at_most", "beyond")


def iso_time(
    durations: Any,
    values: Any,
    reference: float,
    higher_is_better: bool = True,
    log_values: bool = False,
) -> IsoTime:
    """Shortest duration from which the curve stays at or better than the reference.

    See the module docstring for the definition: the crossing, linear in ``log t``, after the
    last grid point worse than the reference; ``t_1`` ("at_most") when none is worse, ``inf``
    ("beyond") when the longest is.

    Args:
        durations: ``(m,)`` scan durations, strictly increasing, > 0 (minutes).
        values: ``(m,)`` the method's FOM at each duration, finite.
        reference: The FOM to match (e.g. 25-min OSEM's), finite.
        higher_is_better: False for errors and SDs (the curve must get *down* to the reference).
        log_values: Interpolate ``log values`` instead of ``values`` (both against ``log t``):
            exact for power laws like ``SD = c t^-1/2``; values and reference must be > 0.

    Returns:
        The iso time and its bound.

    Raises:
        ValueError: bad durations, a shape mismatch, or non-finite values.
    """
    t = _durations(durations)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != t.shape:
        raise ValueError(f"values must have the shape of durations {t.shape}, got {v.shape}")
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 0:
        raise ValueError(f"reference must be a scalar, got shape {ref.shape}")
    if not (np.isfinite(v).all() and np.isfinite(ref)):
        raise ValueError("iso_time: values and reference must be finite (no NaN)")
    times, codes = _iso_times(t, _gap(v[None], ref[None], higher_is_better, log_values))
    return IsoTime(float(times[0]), _BOUNDS[codes[0]])


def _resample(n: int, n_boot: int, strata: Any, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` subject indices drawn with replacement, within strata if given."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    s = np.asarray(strata)
    if s.shape != (n,):
        raise ValueError(f"strata must have shape ({n},), got {s.shape}")
    groups = [np.flatnonzero(s == level) for level in np.unique(s)]
    return np.concatenate(
        [g[rng.integers(0, g.size, size=(n_boot, g.size))] for g in groups], axis=1
    )


def iso_time_bootstrap_statistic(
    durations: Any,
    statistic: Callable[[np.ndarray], tuple[Any, float]],
    n_subjects: int,
    higher_is_better: bool = True,
    log_values: bool = False,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    strata: Any = None,
) -> IsoResult:
    """Iso time with a percentile bootstrap CI over subjects, for any FOM.

    ``statistic(idx)`` gets a resample of subject indices and returns the method's FOM curve
    and the reference FOM computed from those subjects, so one resample feeds both and the
    pairing of method and reference is kept. Per-subject means, an SD across subjects, or an
    AUC of per-subject scores and labels (pass ``strata=labels`` so every resample keeps both
    classes) all fit.

    Args:
        durations: ``(m,)`` scan durations, strictly increasing, > 0 (minutes).
        statistic: ``idx (n_subjects,) int -> (curve (m,), reference scalar)``; called once
            with ``arange(n_subjects)`` for the estimate and once per replicate.
        n_subjects: Number of subjects (>= 2).
        higher_is_better: False for errors and SDs.
        log_values: Interpolate ``log`` FOM values (see :func:`iso_time`).
        n_boot: Bootstrap replicates.
        level: CI level, in (0, 1).
        seed: Seed of ``np.random.default_rng``; the same seed gives the same CI.
        strata: Optional ``(n_subjects,)`` labels; subjects are resampled within each label.

    Returns:
        The estimate, the CI ends and the shares of replicates that never reach the reference
        ("beyond") or reach it at the shortest duration ("at_most").

    Raises:
        ValueError: bad arguments, or a statistic that returns a wrong shape or non-finite
            values (e.g. an AUC of a resample with one class: resample within ``strata``).
    """
    t = _durations(durations)
    if n_subjects < 2:
        raise ValueError(f"bootstrap needs >= 2 subjects, got {n_subjects}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(n_subjects)[None], _resample(n_subjects, n_boot, strata, rng)])
    curves = np.empty((n_boot + 1, t.size))
    refs = np.empty(n_boot + 1)
    for b, sample in enumerate(idx):
        curve, ref = statistic(sample)
        curve, ref = np.asarray(curve, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if curve.shape != t.shape or ref.ndim != 0:
            raise ValueError(
                f"statistic must return (curve of shape {t.shape}, scalar reference), got "
                f"shapes {curve.shape} and {ref.shape}"
            )
        curves[b], refs[b] = curve, ref
    bad = ~(np.isfinite(curves).all(axis=1) & np.isfinite(refs))
    if bad.any():
        what = "the full sample" if bad[0] else f"{int(bad[1:].sum())} of {n_boot} replicates"
        raise ValueError(
            f"statistic returned non-finite values for {what} (e.g. an AUC of a resample "
            "with one class: pass strata=labels)"
        )
    times, codes = _iso_times(t, _gap(curves, refs, higher_is_better, log_values))
    boot = times[1:]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")

    def _at(x: float) -> IsoTime:
        bound: Bound = "beyond" if np.isinf(x) else "at_most" if x == t[0] else "exact"
        return IsoTime(float(x), bound)

    return IsoResult(
        estimate=IsoTime(float(times[0]), _BOUNDS[codes[0]]),
        low=_at(lo),
        high=_at(hi),
        level=float(level),
        n_boot=int(n_boot),
        n_subjects=int(n_subjects),
        share_beyond=float((codes[1:] == 2).mean()),
        share_at_most=float((codes[1:] == 1).mean()),
    )


def iso_time_bootstrap(
    durations: Any,
    per_subject: Any,
    reference_per_subject: Any,
    fom: Callable[..., Any] = np.mean,
    higher_is_better: bool = True,
    log_values: bool = False,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> IsoResult:
    """Iso time of a FOM that reduces per-subject values, with a bootstrap CI over subjects.

    The method's curve is ``fom(per_subject[idx], axis=0)`` and the reference
    ``fom(reference_per_subject[idx], axis=0)`` for the same resample ``idx``; see
    :func:`iso_time_bootstrap_statistic` for the general case (e.g. an AUC).

    Args:
        durations: ``(m,)`` scan durations, strictly increasing, > 0 (minutes).
        per_subject: ``(n_subjects, m)`` the method's value per subject and duration (e.g.
            PSNR in dB, |SBR error|). No NaN: drop incomplete subjects first (from both arrays,
            so that the pairing is kept).
        reference_per_subject: ``(n_subjects,)`` the same subjects' reference values (e.g.
            25-min OSEM).
        fom: Reducer ``fom(x, axis=0)`` (numpy style) applied to ``(k, m)`` and ``(k,)``;
            default the mean; e.g. ``functools.partial(np.std, ddof=1)`` for an SD across
            subjects.
        higher_is_better: False for errors and SDs.
        log_values: Interpolate ``log`` FOM values (see :func:`iso_time`).
        n_boot: Bootstrap replicates.
        level: CI level, in (0, 1).
        seed: Seed of ``np.random.default_rng``.

    Raises:
        ValueError: shape mismatch or missing values.
    """
    t = _durations(durations)
    x = np.asarray(per_subject, dtype=np.float64)
    r = np.asarray(reference_per_subject, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != t.size:
        raise ValueError(f"per_subject must be (n_subjects, {t.size}), got shape {x.shape}")
    if r.shape != (x.shape[0],):
        raise ValueError(f"reference_per_subject must be ({x.shape[0]},), got shape {r.shape}")
    if not (np.isfinite(x).all() and np.isfinite(r).all()):
        raise ValueError(
            "iso_time_bootstrap: missing or non-finite values; drop incomplete subjects "
            "(from per_subject and reference_per_subject alike) first"
        )

    def statistic(idx: np.ndarray) -> tuple[Any, float]:
        return fom(x[idx], axis=0), fom(r[idx], axis=0)

    return iso_time_bootstrap_statistic(
        t,
        statistic,
        x.shape[0],
        higher_is_better=higher_is_better,
        log_values=log_values,
        n_boot=n_boot,
        level=level,
        seed=seed,
    )


def scaling_exponent(durations: Any, values: Any) -> ScalingFit:
    """Power-law exponent of a FOM in scan time: OLS of ``log values`` on ``log durations``.

    Args:
        durations: ``(n,)`` scan durations, > 0, at least 3 distinct (any unit; it only shifts
            the intercept).
        values: ``(n,)`` positive FOM values (e.g. the SD of SBR across noise realizations).

    Returns:
        Slope, intercept (natural log) and the slope's standard error (``n - 2`` df).
    """
    t = np.asarray(durations, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"need two 1-D arrays of equal length, got {t.shape}, {v.shape}")
    if not (np.isfinite(t).all() and np.isfinite(v).all() and (t > 0).all() and (v > 0).all()):
        raise ValueError("scaling_exponent: durations and values must be finite and > 0")
    if np.unique(t).size < 3:
        raise ValueError("scaling_exponent needs at least 3 distinct durations")
    x, y = np.log(t), np.log(v)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    se = float(np.sqrt(float(resid @ resid) / (t.size - 2) / sxx))
    return ScalingFit(slope, intercept, se, int(t.size))
