"""Split conformal intervals against their finite-sample theory and a hand example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from fastdat.stats.conformal import calibrate, conformal_quantile, coverage


def test_quantile_hand_example():
    s = np.array([0.5, 0.1, 0.9, 0.3])  # sorted 0.1 0.3 0.5 0.9, n = 4
    assert conformal_quantile(s, 0.6) == 0.5  # ceil(5 * 0.6) = 3rd
    assert conformal_quantile(s, 0.8) == 0.9  # ceil(4.0) = 4th
    assert conformal_quantile(s, 0.81) == math.inf  # ceil(4.05) = 5 > n
    with pytest.raises(ValueError, match="non-negative"):
        conformal_quantile([-1.0, 2.0], 0.5)


@pytest.mark.parametrize("n, level", [(19, 0.9), (40, 0.9), (99, 0.8)])
def test_average_coverage_is_exactly_k_over_n_plus_1(n, level):
    """Over calibration draws, the coverage of a new exchangeable case is ``k / (n + 1)``,
    ``k = ceil((n + 1) level)``: between ``level`` and ``level + 1 / (n + 1)``. Heteroscedastic
    Gaussian residuals with a known SD (the normalized score), 4000 replications."""
    rng = np.random.default_rng(0)
    reps, hits = 4000, 0
    for _ in range(reps):
        sigma = rng.uniform(0.05, 0.3, n + 1)
        y_hat = rng.uniform(1, 4, n + 1)
        y = y_hat + sigma * rng.standard_normal(n + 1)
        rule = calibrate(y[:n], y_hat[:n], sigma[:n], level)
        lo, hi = rule.interval(y_hat[n:], sigma[n:])
        hits += int(lo[0] <= y[n] <= hi[0])
    k = math.ceil((n + 1) * level)
    expected = k / (n + 1)
    se = math.sqrt(expected * (1 - expected) / reps)
    assert abs(hits / reps - expected) < 4 * se
    assert level <= expected <= level + 1 / (n + 1)


def test_large_calibration_recovers_the_gaussian_quantile():
    rng = np.random.default_rng(1)
    n = 20000
    sigma = rng.uniform(0.1, 1.0, n)
    y = sigma * rng.standard_normal(n)
    rule = calibrate(y, np.zeros(n), sigma, 0.9)
    assert rule.q == pytest.approx(st.norm.ppf(0.95), abs=0.03)


def test_coverage_and_its_clopper_pearson_interval():
    c = coverage([1, 2, 3, 4], [0, 2.5, 2, 5], [1.5, 3, 3, 6])
    assert (c.covered, c.n) == (2, 4) and c.share == 0.5
    ref = st.binomtest(2, 4).proportion_ci(0.95, method="exact")
    assert c.low == pytest.approx(ref.low) and c.high == pytest.approx(ref.high)
    full = coverage([1.0], [0.0], [2.0])
    assert full.high == 1.0 and full.low == pytest.approx(0.025)
