"""fastdat.stats.roc against scikit-learn, explicit O(n^2) formulas, simulation, hand examples."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from fastdat.stats.roc import (
    auc,
    auc_delong,
    auc_difference_delong,
    inconclusive_share,
)

# Hanley & McNeil (1982), Table 1: ratings 1 (definitely normal) .. 5 (definitely abnormal) of
# 58 normal and 51 abnormal CT images; their AUC 0.893, their (approximate) SE 0.032.
HM_NORMAL = [33, 6, 6, 11, 2]
HM_ABNORMAL = [3, 2, 2, 11, 33]


def _binormal(rng, n_pos, n_neg, d):
    """Positives N(d, 1), negatives N(0, 1): AUC = Phi(d / sqrt 2)."""
    s = np.concatenate([rng.normal(d, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)])
    y = np.concatenate([np.ones(n_pos, int), np.zeros(n_neg, int)])
    return s, y


def _psi(s, y):
    """Explicit Mann-Whitney kernel matrix psi(X_i, Y_j), positives x negatives."""
    x, z = s[y == 1][:, None], s[y == 0][None, :]
    return (x > z) + 0.5 * (x == z)


def _delong_cov_explicit(score_list, y):
    """DeLong's 1988 covariance from the explicit V10 / V01 of the O(m n) kernel matrices."""
    psis = [_psi(np.asarray(s, float), y) for s in score_list]
    v10 = np.array([p.mean(axis=1) for p in psis])  # (k, m)
    v01 = np.array([p.mean(axis=0) for p in psis])  # (k, n)
    m, n = v10.shape[1], v01.shape[1]
    a = v10.mean(axis=1)
    s10 = (v10 - a[:, None]) @ (v10 - a[:, None]).T / (m - 1)
    s01 = (v01 - a[:, None]) @ (v01 - a[:, None]).T / (n - 1)
    return a, s10 / m + s01 / n


# ------------------------------------------------------------------------------------------- AUC


@pytest.mark.parametrize("seed", range(6))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    # coarse scores: many ties within and across the classes
    s = np.round(rng.normal(0, 1, n) + 0.8 * y, 1) if seed % 2 else rng.integers(0, 5, n) + y
    assert abs(auc(s, y) - roc_auc_score(y, s)) < 1e-12
    assert abs(auc_delong(s, y).auc - roc_auc_score(y, s)) < 1e-12
    # bool labels, lists
    assert abs(auc(list(s), y.astype(bool)) - roc_auc_score(y, s)) < 1e-12


def test_auc_edge_values():
    assert auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    r = auc_delong([1, 2, 3, 4], [0, 0, 1, 1])
    assert (r.auc, r.se, r.low, r.high) == (1.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([1, 2, 3], [1, 1, 1], "both classes"),
        ([1, 2, 3], [0, 0, 0], "both classes"),
        ([1, 2, 3], [0, 1], "equal length"),
        ([1, np.nan, 3], [0, 1, 1], "finite"),
        ([1, np.inf, 3], [0, 1, 1], "finite"),
        ([1, 2, 3], [0, 1, 2], "0/1"),
        ([], [], "both classes"),
    ],
)
def test_auc_refuses_bad_input(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        auc(scores, labels)


def test_delong_refuses_bad_input():
    with pytest.raises(ValueError, match=">= 2 cases per class"):
        auc_delong([1, 2, 3], [0, 1, 1])
    with pytest.raises(ValueError, match="level"):
        auc_delong([1, 2, 3, 4], [0, 0, 1, 1], level=1.0)
    with pytest.raises(ValueError, match="ci must be"):
        auc_delong([1, 2, 3, 4], [0, 0, 1, 1], ci="exact")


# --------------------------------------------------------------------------------------- DeLong


@pytest.mark.parametrize("seed", range(5))
def test_delong_variance_matches_explicit_u_statistic(seed):
    rng = np.random.default_rng(100 + seed)
    s, y = _binormal(rng, int(rng.integers(5, 80)), int(rng.integers(5, 80)), 1.0)
    if seed % 2:
        s = np.round(s, 1)  # ties
    a, cov = _delong_cov_explicit([s], y)
    r = auc_delong(s, y)
    assert r.auc == pytest.approx(a[0], abs=1e-12)
    assert r.se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-10)
    assert (r.n_pos, r.n_neg) == (int(y.sum()), int((1 - y).sum()))


def test_delong_loosely_matches_hanley_mcneil():
    # published example: AUC 0.893 (ours is exact), SE 0.032 (their exponential approximation)
    s = np.concatenate(
        [np.repeat(np.arange(1, 6), HM_NORMAL), np.repeat(np.arange(1, 6), HM_ABNORMAL)]
    )
    y = np.concatenate([np.zeros(sum(HM_NORMAL), int), np.ones(sum(HM_ABNORMAL), int)])
    r = auc_delong(s, y)
    assert round(r.auc, 3) == 0.893
    assert r.se == pytest.approx(0.032, rel=0.10)
    # and on binormal data against the Hanley-McNeil formula computed from the AUC
    rng = np.random.default_rng(7)
    for d in (0.5, 1.0, 2.0):
        s, y = _binormal(rng, 200, 150, d)
        r = auc_delong(s, y)
        a, m, n = r.auc, r.n_pos, r.n_neg
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        se_hm = math.sqrt((a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n))
        assert r.se == pytest.approx(se_hm, rel=0.25)


@pytest.mark.parametrize("ci", ["wald", "logit"])
def test_delong_ci_coverage_by_simulation(ci):
    rng = np.random.default_rng(2024 if ci == "wald" else 2025)
    d = 1.5
    true_auc = sps.norm.cdf(d / math.sqrt(2))  # 0.856
    reps, hits = 400, 0
    for _ in range(reps):
        s, y = _binormal(rng, 50, 60, d)
        r = auc_delong(s, y, level=0.95, ci=ci)
        assert 0.0 <= r.low <= r.auc <= r.high <= 1.0
        hits += r.low <= true_auc <= r.high
    assert 0.92 <= hits / reps <= 0.98


def test_delong_ci_formulas():
    rng = np.random.default_rng(3)
    s, y = _binormal(rng, 40, 40, 1.0)
    w = auc_delong(s, y, level=0.9)
    z = sps.norm.ppf(0.95)
    assert (w.low, w.high) == pytest.approx((w.auc - z * w.se, w.auc + z * w.se), abs=1e-14)
    lg = auc_delong(s, y, level=0.9, ci="logit")
    logit = math.log(lg.auc / (1 - lg.auc))
    h = z * lg.se / (lg.auc * (1 - lg.auc))
    assert lg.low == pytest.approx(1 / (1 + math.exp(-(logit - h))), abs=1e-14)
    assert lg.high == pytest.approx(1 / (1 + math.exp(-(logit + h))), abs=1e-14)
    assert lg.ci == "logit" and w.ci == "wald" and w.level == 0.9
    # near-perfect separation: Wald is clipped at 1, logit stays below 1
    s, y = _binormal(rng, 20, 20, 4.0)
    s[0] = -5.0  # one positive below every negative: AUC < 1
    assert auc_delong(s, y).high == 1.0
    assert auc_delong(s, y, ci="logit").high < 1.0


# ------------------------------------------------------------------------------ paired DeLong


def test_paired_difference_of_identical_scores_is_zero():
    rng = np.random.default_rng(11)
    s, y = _binormal(rng, 30, 30, 1.0)
    r = auc_difference_delong(s, s, y)
    assert (r.difference, r.se, r.low, r.high, r.z, r.p) == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    # a monotone transform has the same ranks: the same AUC, difference 0
    r = auc_difference_delong(s, np.exp(s), y)
    assert r.difference == 0.0 and r.p == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_paired_difference_matches_explicit_covariance(seed):
    rng = np.random.default_rng(200 + seed)
    s_a, y = _binormal(rng, 35, 45, 1.2)
    s_b = 0.6 * s_a + rng.normal(0, 0.8, s_a.size)  # correlated second reader
    if seed == 2:
        s_a, s_b = np.round(s_a, 1), np.round(s_b, 1)
    a, cov = _delong_cov_explicit([s_a, s_b], y)
    r = auc_difference_delong(s_a, s_b, y, level=0.9)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert (r.auc_a, r.auc_b) == pytest.approx((a[0], a[1]), abs=1e-12)
    assert r.auc_a == pytest.approx(roc_auc_score(y, s_a), abs=1e-12)
    assert r.difference == pytest.approx(a[0] - a[1], abs=1e-12)
    assert r.se == pytest.approx(se, rel=1e-10)
    assert r.z == pytest.approx(r.difference / se, rel=1e-10)
    assert r.p == pytest.approx(2 * sps.norm.sf(abs(r.difference / se)), rel=1e-10)
    h = sps.norm.ppf(0.95) * se
    assert (r.low, r.high) == pytest.approx((r.difference - h, r.difference + h), abs=1e-12)
    # positive correlation: the paired SE is below the unpaired one
    unpaired = math.hypot(auc_delong(s_a, y).se, auc_delong(s_b, y).se)
    assert r.se < unpaired


def _two_readers(rng, n, d_a, d_b, rho):
    """Binormal scores of two readers with correlated noise: AUC = Phi(d / sqrt 2) each."""
    y = np.concatenate([np.ones(n, int), np.zeros(n, int)])
    z = rng.normal(0, 1, (2 * n, 2))
    e_a = z[:, 0]
    e_b = rho * z[:, 0] + math.sqrt(1 - rho * rho) * z[:, 1]
    return d_a * y + e_a, d_b * y + e_b, y


def test_paired_difference_known_binormal_case():
    rng = np.random.default_rng(5)
    d_a, d_b = 1.6, 1.0
    true = sps.norm.cdf(d_a / math.sqrt(2)) - sps.norm.cdf(d_b / math.sqrt(2))  # 0.129
    s_a, s_b, y = _two_readers(rng, 1500, d_a, d_b, 0.5)
    r = auc_difference_delong(s_a, s_b, y)
    assert r.low <= true <= r.high
    assert abs(r.difference - true) < 0.02
    assert r.p < 1e-10
    # coverage of the difference's CI under the same model, smaller studies
    hits, reps = 0, 200
    for _ in range(reps):
        s_a, s_b, y = _two_readers(rng, 60, d_a, d_b, 0.5)
        r = auc_difference_delong(s_a, s_b, y)
        hits += r.low <= true <= r.high
    assert 0.91 <= hits / reps <= 0.985
    # under H0 (same d, independent noise) p is uniform: roughly 5 % below 0.05
    rejections = sum(
        auc_difference_delong(*_two_readers(rng, 60, 1.0, 1.0, 0.3)).p < 0.05 for _ in range(200)
    )
    assert rejections <= 20


def test_paired_difference_refuses_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        auc_difference_delong([1, 2, 3, 4], [1, 2, 3], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=">= 2 cases per class"):
        auc_difference_delong([1, 2, 3], [1, 2, 3], [0, 1, 1])


# --------------------------------------------------------------------------- inconclusive zone

# Hand example (SBR-like: low = abnormal, label 1 = abnormal), 8 cases, sorted by score:
#   score  1  2  3  4  5  6  7  8
#   label  A  A  A  N  A  N  N  N
# Candidate thresholds: -inf, 1.5, 2.5, ..., 7.5, +inf. The classes overlap on {4 (N), 5 (A)}.
# * target 1.0: no conclusive error allowed. Leaving 4 conclusive needs t_low <= 3.5 (else 4
#   is called abnormal); leaving 5 conclusive needs t_high >= 5.5 (else 5 is called normal).
#   Both inconclusive with t_low = 3.5, t_high = 5.5: 2 of 8 cases -> share 0.25, BA 1. Any
#   zone of 0 or 1 case leaves an error (checked below by the brute force as well).
# * target 0.9: one inconclusive case is not enough: excluding 4 -> A: 1,2,3 correct, 5 called
#   normal, sens 3/4, spec 3/3, BA 0.875; excluding 5 -> 4 called abnormal, spec 3/4, BA
#   0.875; excluding 3 or 6 is worse. So again [3.5, 5.5], share 0.25, BA 1.
# * target 0.8: no zone: cut 3.5 -> sens 3/4, spec 4/4, BA 0.875; cut 5.5 -> sens 4/4, spec
#   3/4, BA 0.875 (cut 4.5: 0.75). Equal share and BA: the lower t_low wins -> [3.5, 3.5].
HAND_SCORES = [1, 2, 3, 4, 5, 6, 7, 8]
HAND_LABELS = [1, 1, 1, 0, 1, 0, 0, 0]


@pytest.mark.parametrize(
    ("target", "share", "low", "high", "ba", "sens", "spec"),
    [
        (1.0, 0.25, 3.5, 5.5, 1.0, 1.0, 1.0),
        (0.9, 0.25, 3.5, 5.5, 1.0, 1.0, 1.0),
        (0.8, 0.0, 3.5, 3.5, 0.875, 0.75, 1.0),
    ],
)
def test_inconclusive_hand_example(target, share, low, high, ba, sens, spec):
    r = inconclusive_share(HAND_SCORES, HAND_LABELS, target=target)
    assert (r.share, r.low_threshold, r.high_threshold) == (share, low, high)
    assert (r.balanced_accuracy, r.sensitivity, r.specificity) == (ba, sens, spec)
    assert (r.n, r.n_inconclusive, r.target, r.positive_low) == (8, round(8 * share), target, True)
    # the mirrored problem: high = abnormal, the zone mirrors
    m = inconclusive_share(-np.array(HAND_SCORES), HAND_LABELS, target, positive_low=False)
    assert (m.share, m.balanced_accuracy) == (share, ba)
    if share > 0:
        assert (m.low_threshold, m.high_threshold) == (-high, -low)


def test_inconclusive_separable_classes_need_no_zone():
    abnormal = [0.5, 0.9, 1.2, 1.5]
    normal = [2.0, 2.2, 2.9, 3.0, 3.3]
    r = inconclusive_share(abnormal + normal, [1] * 4 + [0] * 5, target=1.0)
    assert (r.share, r.n_inconclusive, r.balanced_accuracy) == (0.0, 0, 1.0)
    assert r.low_threshold == r.high_threshold == 1.75  # the only error-free cut


@pytest.mark.parametrize("seed", range(4))
def test_inconclusive_target_one_covers_the_overlap(seed):
    rng = np.random.default_rng(300 + seed)
    ab, no = rng.normal(1.0, 0.4, 40), rng.normal(2.0, 0.4, 50)
    s, y = np.concatenate([ab, no]), np.concatenate([np.ones(40, int), np.zeros(50, int)])
    lo_n, hi_a = no.min(), ab.max()
    assert lo_n < hi_a  # the classes overlap
    r = inconclusive_share(s, y, target=1.0)
    below, above = s[s < lo_n].max(), s[s > hi_a].min()
    assert r.low_threshold == 0.5 * below + 0.5 * lo_n
    assert r.high_threshold == 0.5 * hi_a + 0.5 * above
    assert r.n_inconclusive == int(((s >= lo_n) & (s <= hi_a)).sum())
    assert r.share == r.n_inconclusive / s.size and r.balanced_accuracy == 1.0


def test_inconclusive_unreachable_target():
    r = inconclusive_share([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1], target=0.6)
    assert (r.share, r.n_inconclusive, r.n) == (1.0, 4, 4)
    assert all(math.isnan(v) for v in (r.low_threshold, r.high_threshold, r.balanced_accuracy))


def test_inconclusive_refuses_bad_input():
    with pytest.raises(ValueError, match="target"):
        inconclusive_share(HAND_SCORES, HAND_LABELS, target=1.5)
    with pytest.raises(ValueError, match="target"):
        inconclusive_share(HAND_SCORES, HAND_LABELS, target=0.0)
    with pytest.raises(ValueError, match="both classes"):
        inconclusive_share([1, 2], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        inconclusive_share([1, np.nan], [0, 1])


def _calls(s, y, lo, hi, positive_low):
    """(n_inconclusive, BA or None) of the gray zone [lo, hi] by direct comparisons."""
    pos_call = s < lo if positive_low else s > hi
    neg_call = s > hi if positive_low else s < lo
    inc = ~(pos_call | neg_call)
    cp, cn = ((y == 1) & ~inc).sum(), ((y == 0) & ~inc).sum()
    if cp == 0 or cn == 0:
        return int(inc.sum()), None
    sens = ((y == 1) & pos_call).sum() / cp
    spec = ((y == 0) & neg_call).sum() / cn
    return int(inc.sum()), 0.5 * (sens + spec)


def _naive_best(s, y, target, positive_low):
    """(n_inconclusive, BA) of the best zone by trying every pair of candidate thresholds."""
    u = np.unique(s)
    cand = [-np.inf, *((u[:-1] + u[1:]) / 2), np.inf]
    best = None
    for i, lo in enumerate(cand):
        for hi in cand[i:]:
            n_inc, ba = _calls(s, y, lo, hi, positive_low)
            if ba is None or ba < target - 1e-12:
                continue
            if best is None or n_inc < best[0] or (n_inc == best[0] and ba > best[1] + 1e-12):
                best = (n_inc, ba)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_inconclusive_matches_naive_search(seed):
    rng = np.random.default_rng(400 + seed)
    n = int(rng.integers(20, 36))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(2.0, 0.5, n) - (0.6 + 0.1 * seed) * y, 1)  # low = abnormal, ties
    for positive_low in (True, False):
        ss = s if positive_low else -s
        for target in (0.7, 0.85, 0.95, 1.0):
            r = inconclusive_share(ss, y, target=target, positive_low=positive_low)
            best = _naive_best(ss, y, target, positive_low)
            if best is None:
                assert r.share == 1.0 and math.isnan(r.low_threshold)
                continue
            assert r.n_inconclusive == best[0] and r.share == best[0] / n
            assert r.balanced_accuracy == pytest.approx(best[1], abs=1e-12)
            # the returned zone reproduces its own claim
            assert r.low_threshold <= r.high_threshold
            n_inc, ba = _calls(ss, y, r.low_threshold, r.high_threshold, positive_low)
            assert n_inc == r.n_inconclusive
            assert ba == pytest.approx(r.balanced_accuracy, abs=1e-12)
            assert ba >= target - 1e-12


def test_inconclusive_is_fast_for_2000_cases():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(2.0, 0.5, 2000) - 1.0 * y
    t0 = time.perf_counter()
    r = inconclusive_share(s, y, target=0.98)
    assert time.perf_counter() - t0 < 2.0  # ~0.03 s here; a generous bound for slow CI
    assert 0.0 < r.share < 1.0 and r.balanced_accuracy >= 0.98 - 1e-12
