from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from fastdat.stats.iso import (
    IsoResult,
    IsoTime,
    iso_time,
    iso_time_bootstrap,
    iso_time_bootstrap_statistic,
    scaling_exponent,
)

GRID = np.array([2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 25.0])  # minutes
K = 3.3  # time-efficiency factor of a synthetic method: 25 / K = 7.58 min, between 7.5 and 10
TRUTH = 25.0 / K


def _psnr(t, a=30.0, b=4.0):
    """A FOM exactly linear in log t (dB)."""
    return a + b * np.log(t)


def _sd(t, c=0.2):
    """A FOM that is a power law, c t^-1/2 (e.g. SD of SBR across noise realizations)."""
    return c * np.asarray(t, dtype=np.float64) ** -0.5


# ---------------------------------------------------------------------------------------- iso_time


def test_linear_in_log_t_crossing_between_grid_points_is_exact():
    t_star = 6.1  # between 5 and 7.5
    for higher in (True, False):
        sign = 1.0 if higher else -1.0
        res = iso_time(GRID, sign * _psnr(GRID), sign * _psnr(t_star), higher_is_better=higher)
        assert res.bound == "exact"
        assert res.time == pytest.approx(t_star, rel=1e-12, abs=0)


def test_method_is_its_own_reference_at_25_min():
    assert iso_time(GRID, _psnr(GRID), _psnr(25.0)) == IsoTime(25.0, "exact")
    res = iso_time(GRID, _sd(GRID), _sd(25.0), higher_is_better=False)
    assert res == IsoTime(25.0, "exact")


def test_time_shifted_method_matches_at_25_over_k():
    # values_M(t) = values_OSEM(K t): the method reaches OSEM's 25-min value at 25 / K.
    res = iso_time(GRID, _psnr(K * GRID), _psnr(25.0))
    assert res.bound == "exact"
    assert res.time == pytest.approx(TRUTH, rel=1e-12, abs=0)
    # a power law is a straight line in log-log: exact with log_values
    res = iso_time(GRID, _sd(K * GRID), _sd(25.0), higher_is_better=False, log_values=True)
    assert res.bound == "exact"
    assert res.time == pytest.approx(TRUTH, rel=1e-12, abs=0)
    # linear-in-log-t interpolation of a convex curve: in the bracket, not exact
    res = iso_time(GRID, _sd(K * GRID), _sd(25.0), higher_is_better=False)
    assert 7.5 < res.time < 10.0 and res.time != pytest.approx(TRUTH, rel=1e-6)
    # a method twice as slow (K < 1) needs 50 min: beyond the grid
    assert iso_time(GRID, _psnr(0.5 * GRID), _psnr(25.0)) == IsoTime(math.inf, "beyond")


def test_non_monotone_curve_uses_the_last_crossing():
    # reaches 1 between 2 and 3 min (at sqrt(6)), dips to 0.5 at 4 min, back for good after 4:
    # the crossing between 4 (0.5) and 5 (1.5) min is half-way in log t, sqrt(20) min.
    v = np.array([0.0, 2.0, 0.5, 1.5, 3.0, 2.5, 4.0, 5.0])
    res = iso_time(GRID, v, 1.0)
    assert res.bound == "exact"
    assert res.time == pytest.approx(math.sqrt(20.0), rel=1e-12, abs=0)
    # the same curve as an error (lower is better)
    assert iso_time(GRID, -v, -1.0, higher_is_better=False).time == pytest.approx(
        math.sqrt(20.0), rel=1e-12, abs=0
    )
    # equal to the reference counts as reached: a dip exactly to 1 does not reset
    v_tie = np.array([0.0, 2.0, 1.0, 1.5, 3.0, 2.5, 4.0, 5.0])
    assert iso_time(GRID, v_tie, 1.0).time == pytest.approx(math.sqrt(6.0), rel=1e-12, abs=0)
    # a late dip below the reference moves the iso time past it
    v_late = np.array([0.0, 2.0, 3.0, 3.0, 3.0, 3.0, 0.0, 2.0])
    assert iso_time(GRID, v_late, 1.0).time == pytest.approx(
        math.exp(math.log(15.0) + 0.5 * math.log(25.0 / 15.0)), rel=1e-12, abs=0
    )


def test_at_most_and_beyond():
    assert iso_time(GRID, _psnr(GRID), _psnr(1.0)) == IsoTime(2.0, "at_most")
    assert iso_time(GRID, _psnr(GRID), _psnr(2.0)) == IsoTime(2.0, "at_most")  # tie at t_1
    assert iso_time(GRID, _psnr(GRID), _psnr(30.0)) == IsoTime(math.inf, "beyond")
    sd = _sd(GRID)
    assert iso_time(GRID, sd, _sd(40.0), higher_is_better=False) == IsoTime(math.inf, "beyond")
    assert iso_time(GRID, sd, _sd(1.0), higher_is_better=False) == IsoTime(2.0, "at_most")
    # a curve that ends below the reference is "beyond" even if it was above earlier
    assert iso_time(GRID, GRID[::-1], 20.0).bound == "beyond"
    # one duration
    assert iso_time([25.0], [1.0], 1.0) == IsoTime(25.0, "at_most")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"durations": [2, 2, 3]}, "increasing"),
        ({"durations": [0, 2, 3]}, "> 0"),
        ({"values": [1.0, np.nan, 2.0]}, "finite"),
        ({"values": [1.0, 2.0]}, "shape"),
        ({"reference": np.nan}, "finite"),
        ({"values": [-1.0, 1.0, 2.0], "log_values": True}, "> 0"),
    ],
)
def test_iso_time_rejects_bad_input(kwargs, match):
    args = {"durations": [2.0, 3.0, 4.0], "values": [1.0, 2.0, 3.0], "reference": 2.5}
    with pytest.raises(ValueError, match=match):
        iso_time(**(args | kwargs))


# ------------------------------------------------------------------------------------- bootstrap


def _subjects(rng, n, sd_u=2.0, sd_w=0.5, sd_e=0.5):
    """Per-subject PSNR of a method K times as time-efficient as OSEM, and 25-min OSEM.

    Subject ``i`` has a level ``u_i`` (SD ``sd_u``) shared by both methods, a method offset
    ``w_i`` (SD ``sd_w``) and independent measurement noise (SD ``sd_e``) per duration; the
    population means are ``_psnr(K t)`` and ``_psnr(25)``, so the true iso time is 25 / K.
    """
    u = rng.normal(0, sd_u, (n, 1))
    ref = _psnr(25.0) + u[:, 0] + rng.normal(0, sd_e, n)
    method = _psnr(K * GRID) + u + rng.normal(0, sd_w, (n, 1)) + rng.normal(0, sd_e, (n, GRID.size))
    return method, ref


def test_bootstrap_coverage():
    # 100 data sets of 20 subjects, 300 replicates each (~0.4 s). The percentile CI of a mean of
    # 20 subjects undercovers slightly: 1000 data sets gave 0.93 for nominal 0.95. 100 data sets
    # have a binomial SD of 0.025, so [0.85, 0.99] is > 3 SD wide on both sides; the upper limit
    # fails if the pairing of method and reference is lost (the shared u_i then widens the CI).
    rng = np.random.default_rng(2024)
    reps, hits = 100, 0
    for r in range(reps):
        method, ref = _subjects(rng, 20)
        res = iso_time_bootstrap(GRID, method, ref, n_boot=300, seed=r)
        hits += res.low.time <= TRUTH <= res.high.time
    assert 0.85 <= hits / reps <= 0.99


def test_bootstrap_without_subject_noise_is_analytic():
    method, ref = _subjects(np.random.default_rng(0), 12, sd_u=0.0, sd_w=0.0, sd_e=0.0)
    res = iso_time_bootstrap(GRID, method, ref, n_boot=200)
    for end in (res.estimate, res.low, res.high):
        assert end.bound == "exact"
        assert end.time == pytest.approx(TRUTH, rel=1e-12, abs=0)
    assert res.share_beyond == 0 and res.share_at_most == 0


def test_bootstrap_keeps_the_pairing():
    # a huge subject level shared by method and reference, nothing else: every resample has the
    # same method-minus-reference curve, so the CI collapses to the analytic value
    method, ref = _subjects(np.random.default_rng(1), 15, sd_u=20.0, sd_w=0.0, sd_e=0.0)
    res = iso_time_bootstrap(GRID, method, ref, n_boot=200)
    assert res.low.time == pytest.approx(TRUTH, rel=1e-9)
    assert res.high.time == pytest.approx(TRUTH, rel=1e-9)


def test_bootstrap_is_reproducible():
    method, ref = _subjects(np.random.default_rng(3), 15)
    a = iso_time_bootstrap(GRID, method, ref, n_boot=300, seed=7)
    b = iso_time_bootstrap(GRID, method, ref, n_boot=300, seed=7)
    c = iso_time_bootstrap(GRID, method, ref, n_boot=300, seed=8)
    assert isinstance(a, IsoResult) and a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == iso_time(GRID, method.mean(axis=0), ref.mean())
    assert a.low.time <= a.estimate.time <= a.high.time
    assert a.n_boot == 300 and a.n_subjects == 15 and a.level == 0.95


def test_bootstrap_ends_beyond_and_at_most():
    # the method reaches 25-min OSEM only at 25 min on average: a share of the replicates
    # (13 % here) never reach it, so the upper end is inf; the lower end is exact.
    rng = np.random.default_rng(4)
    n = 30
    ref = _psnr(25.0) + rng.normal(0, 1.0, n)
    method = _psnr(GRID) + rng.normal(0, 1.0, (n, GRID.size))
    res = iso_time_bootstrap(GRID, method, ref, n_boot=400)
    assert 0.025 < res.share_beyond < 0.5
    assert res.high == IsoTime(math.inf, "beyond")
    assert res.low.bound == "exact" and res.low.time < 25.0
    # the rule: the upper end is inf exactly when more than (1 - level) / 2 never reach
    ends = []
    for level in (0.5, 0.6, 0.8, 0.95, 0.99):
        r = iso_time_bootstrap(GRID, method, ref, n_boot=400, level=level)
        assert (r.high.bound == "beyond") == (r.share_beyond > (1 - level) / 2)
        ends.append(r.high.bound)
    assert ends[0] == "exact" and ends[-1] == "beyond"  # both sides of the rule were tested
    # the mirror case: a method that is already as good at 2 min as OSEM at 25 min
    method = _psnr(12.5 * GRID) + rng.normal(0, 1.0, (n, GRID.size))
    res = iso_time_bootstrap(GRID, method, ref, n_boot=400)
    assert res.low == IsoTime(2.0, "at_most")
    assert res.share_at_most > 0.025


def test_bootstrap_of_an_sd_across_subjects_lower_is_better():
    # FOM: SD across subjects of per-subject values whose spread shrinks as t^-1/2; the method
    # has K times the "counts" of OSEM. Without pairing noise the estimate is analytic.
    z = np.random.default_rng(5).standard_normal(40)
    z = (z - z.mean()) / z.std(ddof=1)
    method = z[:, None] * _sd(K * GRID)
    ref = z * _sd(25.0)
    sd = functools.partial(np.std, ddof=1)
    res = iso_time_bootstrap(
        GRID, method, ref, fom=sd, higher_is_better=False, log_values=True, n_boot=200
    )
    assert res.estimate.time == pytest.approx(TRUTH, rel=1e-12, abs=0)
    assert res.low.time == pytest.approx(TRUTH, rel=1e-9)  # the same z_i in both: paired
    assert res.high.time == pytest.approx(TRUTH, rel=1e-9)


def _auc(scores, labels):
    """Mann-Whitney AUC of ``scores`` (n,) for ``labels`` (n,) in {0, 1}."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg).mean())


def test_bootstrap_statistic_auc_with_strata():
    rng = np.random.default_rng(6)
    n = 40
    labels = np.repeat([0, 1], n // 2)
    # separation grows with sqrt(t); the method has K times the effective time
    noise = rng.standard_normal((n, GRID.size + 1))
    method_scores = labels[:, None] * 0.4 * np.sqrt(K * GRID) + noise[:, :-1]
    ref_scores = labels * 0.4 * np.sqrt(25.0) + noise[:, -1]

    def statistic(idx):
        curve = [_auc(method_scores[idx, j], labels[idx]) for j in range(GRID.size)]
        return np.array(curve), _auc(ref_scores[idx], labels[idx])

    res = iso_time_bootstrap_statistic(GRID, statistic, n, n_boot=200, strata=labels)
    full = statistic(np.arange(n))
    assert res.estimate == iso_time(GRID, *full)
    assert res.low.time <= res.high.time
    again = iso_time_bootstrap_statistic(GRID, statistic, n, n_boot=200, strata=labels)
    assert again == res
    # without strata a resample can (rarely, here: 40 subjects) lose a class; a statistic that
    # returns NaN is reported
    with pytest.raises(ValueError, match="non-finite"):
        iso_time_bootstrap_statistic(GRID, lambda idx: (np.full(GRID.size, np.nan), 0.5), n)


def test_bootstrap_rejects_bad_input():
    method, ref = _subjects(np.random.default_rng(7), 10)
    bad = method.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="drop incomplete subjects"):
        iso_time_bootstrap(GRID, bad, ref)
    with pytest.raises(ValueError, match="reference_per_subject"):
        iso_time_bootstrap(GRID, method, ref[:-1])
    with pytest.raises(ValueError, match="per_subject"):
        iso_time_bootstrap(GRID, method[:, :-1], ref)
    with pytest.raises(ValueError, match="level"):
        iso_time_bootstrap(GRID, method, ref, level=1.0)
    with pytest.raises(ValueError, match="statistic must return"):
        iso_time_bootstrap_statistic(GRID, lambda idx: (np.zeros(3), 0.0), 10)


# ---------------------------------------------------------------------------- scaling_exponent


def test_scaling_exponent_exact_power_law():
    fit = scaling_exponent(GRID, _sd(GRID, c=0.3))
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(0.3), abs=1e-12)
    assert fit.se == pytest.approx(0.0, abs=1e-12)
    assert fit.n == GRID.size


def test_scaling_exponent_noisy_power_law():
    rng = np.random.default_rng(8)
    fit = scaling_exponent(GRID, _sd(GRID) * np.exp(rng.normal(0, 0.05, GRID.size)))
    assert abs(fit.slope + 0.5) < 3 * fit.se
    assert fit.se > 0
    # the SE is calibrated: over 500 noisy curves the slopes' SD matches the mean SE
    # (lognormal noise makes the log-log model exact; the OLS SE is sigma / sqrt(Sxx))
    slopes, ses = [], []
    for _ in range(500):
        f = scaling_exponent(GRID, _sd(GRID) * np.exp(rng.normal(0, 0.05, GRID.size)))
        slopes.append(f.slope)
        ses.append(f.se)
    x = np.log(GRID)
    sigma_slope = 0.05 / np.sqrt(((x - x.mean()) ** 2).sum())
    assert np.std(slopes) == pytest.approx(sigma_slope, rel=0.1)
    assert np.mean(slopes) == pytest.approx(-0.5, abs=3 * sigma_slope / np.sqrt(500))
    assert np.sqrt(np.mean(np.square(ses))) == pytest.approx(sigma_slope, rel=0.1)


def test_scaling_exponent_rejects_bad_input():
    with pytest.raises(ValueError, match="> 0"):
        scaling_exponent([1.0, 2.0, 3.0], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="3 distinct"):
        scaling_exponent([1.0, 2.0], [1.0, 0.5])
