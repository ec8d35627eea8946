"""ROC statistics of one decision variable: empirical AUC, DeLong CIs, the inconclusive zone.

Written in numpy with scipy distributions only; scikit-learn is the tests' independent reference
and is never imported here. ``labels`` are 0/1 with 1 = positive (abnormal); for the AUC a higher
score means "more likely positive".

Empirical AUC (Mann-Whitney). With ``m`` positives ``X_i`` and ``n`` negatives ``Y_j`` and the
kernel ``psi(x, y) = 1 if x > y, 1/2 if x == y, 0 if x < y``::

    AUC = 1 / (m n) sum_i sum_j psi(X_i, Y_j) = (R_X - m (m + 1) / 2) / (m n)

where ``R_X`` is the sum of the positives' midranks in the pooled sample (ties count 1/2).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 44:837-845.
Structural components (placements) of each case::

    V10(X_i) = 1/n sum_j psi(X_i, Y_j)      (i = 1..m)
    V01(Y_j) = 1/m sum_i psi(X_i, Y_j)      (j = 1..n)

so that ``AUC = mean(V10) = mean(V01)``, and, for ``k`` decision variables scored on the same
cases, ``S10 = cov(V10)`` and ``S01 = cov(V01)`` (``k x k`` sample covariances, ddof 1)::

    Cov(AUC) = S10 / m + S01 / n.

The placements are computed from midranks in ``O((m + n) log(m + n))`` (Sun & Xu 2014, IEEE
Signal Process. Lett. 21:1389): ``V10(X_i) = (r_i - r^X_i) / n`` and ``V01(Y_j) = 1 - (r_j -
r^Y_j) / m`` with ``r`` the pooled midranks and ``r^X``, ``r^Y`` the midranks within each class.
The variance of a difference of two AUCs on the same cases is ``c^T Cov(AUC) c`` with
``c = (1, -1)`` (paired DeLong test).

Confidence intervals (see :func:`auc_delong`): Wald on the AUC scale, ``AUC +- z se`` clipped to
[0, 1] (the default, as pROC), or on the logit scale, ``logit(AUC) +- z se / (AUC (1 - AUC))``
mapped back (stays inside (0, 1) and covers better near AUC = 1, where DaT SPECT often is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "AUCDifference",
    "AUCResult",
    "Inconclusive",
    "auc",
    "auc_delong",
    "auc_difference_delong",
    "inconclusive_share",
]

_CI_METHODS = ("wald", "logit")
_TIE = 1e-12  # balanced accuracies closer than this are equal (target test and tie-break)


@dataclass(frozen=True)
class AUCResult:
    """Empirical AUC with its DeLong standard error and confidence interval.

    Attributes:
        auc: Mann-Whitney AUC in [0, 1]. se: DeLong (1988) standard error. low, high: The
            ``level`` CI (method ``ci``; ``[auc, auc]`` when ``se == 0``). n_pos, n_neg: Cases
            per class. level: CI level. ci: ``"wald"`` (AUC scale, clipped to [0, 1]) or
            ``"logit"``.
    """

    auc: float
    se: float
    low: float
    high: float
    n_pos: int
    n_neg: int
    level: float
    ci: str = "wald"


@dataclass(frozen=True)
class AUCDifference:
    """Paired DeLong comparison of two decision variables scored on the same cases.

    Attributes:
        auc_a, auc_b: The two AUCs. difference: ``auc_a - auc_b``. se: DeLong SE of the
            difference (uses the covariance of the two AUCs). low, high: Wald ``level`` CI of
            the difference, clipped to [-1, 1]. z: ``difference / se``. p: Two-sided p of
            ``H0: AUC_a = AUC_b`` (``2 (1 - Phi(|z|))``; when ``se == 0``: 1 if the difference
            is 0, else 0). n_pos, n_neg: Cases per class. level: CI level.
    """

    auc_a: float
    auc_b: float
    difference: float
    se: float
    low: float
    high: float
    z: float
    p: float
    n_pos: int
    n_neg: int
    level: float


@dataclass(frozen=True)
class Inconclusive:
    """The smallest gray zone of a decision variable that reaches a target balanced accuracy.

    Attributes:
        share: Fraction of the ``n`` cases inside the gray zone (called inconclusive); 1.0 when
            no admissible zone reaches the target. low_threshold, high_threshold: The zone
            ``[low, high]`` on the original score scale (``low <= high``; equal when nothing is
            inconclusive; ``-inf`` / ``+inf`` when one side calls nobody; NaN when the target is
            unreachable). balanced_accuracy: ``(sensitivity + specificity) / 2`` over the
            conclusive cases (NaN when unreachable). sensitivity, specificity: Over the
            conclusive cases of each class. n: Cases. n_inconclusive: Cases in the zone.
            target: The balanced accuracy asked for. positive_low: Whether low scores are
            called positive (abnormal).
    """

    share: float
    low_threshold: float
    high_threshold: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    n: int
    n_inconclusive: int
    target: float
    positive_low: bool


def _scores_labels(scores: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite 1-D float scores and boolean labels (True = positive), or a ValueError."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"{what}: scores and labels must be 1-D of equal length, got {s.shape}, {y.shape}"
        )
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores must be finite (no NaN or inf)")
    if y.dtype != bool:
        try:
            yf = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: labels must be 0/1 (1 = positive)") from None
        if not np.isin(yf, (0.0, 1.0)).all():
            raise ValueError(f"{what}: labels must be 0/1 (1 = positive), got {np.unique(y)}")
        y = yf == 1.0
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"{what}: needs both classes, got {n_pos} positive and {y.size - n_pos} negative"
        )
    return s, y


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def _placements(s: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the structural components ``V10`` (positives, ``(m,)``), ``V01`` (``(n,)``)."""
    x_pos, x_neg = s[y], s[~y]
    m, n = x_pos.size, x_neg.size
    r = sps.rankdata(np.concatenate([x_pos, x_neg]))
    v10 = (r[:m] - sps.rankdata(x_pos)) / n
    v01 = 1.0 - (r[m:] - sps.rankdata(x_neg)) / m
    a = (r[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    return float(a), v10, v01


def auc(scores: Any, labels: Any) -> float:
    """Empirical (Mann-Whitney) area under the ROC curve; ties count 1/2.

    Args:
        scores: ``(N,)`` finite decision variables, higher = more likely positive.
        labels: ``(N,)`` 0/1 (or bool), 1 = positive (abnormal).

    Returns:
        ``P(X > Y) + P(X = Y) / 2`` over all positive-negative pairs, in [0, 1].

    Raises:
        ValueError: lengths differ, non-finite scores, labels not 0/1, or a class is empty.
    """
    s, y = _scores_labels(scores, labels, "AUC")
    return _placements(s, y)[0]


def _ci(a: float, se: float, level: float, ci: str) -> tuple[float, float]:
    z = float(sps.norm.ppf(0.5 + level / 2.0))
    if se == 0.0:
        return a, a
    if ci == "wald":
        return max(a - z * se, 0.0), min(a + z * se, 1.0)
    # logit: the delta-method SE of logit(AUC) is se / (AUC (1 - AUC)); se > 0 implies 0 < a < 1
    lg, h = np.log(a / (1.0 - a)), z * se / (a * (1.0 - a))
    return float(1.0 / (1.0 + np.exp(-(lg - h)))), float(1.0 / (1.0 + np.exp(-(lg + h))))


def auc_delong(scores: Any, labels: Any, level: float = 0.95, ci: str = "wald") -> AUCResult:
    """Empirical AUC with the DeLong et al. (1988) standard error and a confidence interval.

    ``se^2 = var(V10) / m + var(V01) / n`` (structural components, ddof 1; see the module
    docstring). The CI is, with ``z = Phi^-1((1 + level) / 2)``:

    * ``ci="wald"`` (default): ``AUC +- z se`` clipped to [0, 1];
    * ``ci="logit"``: ``expit(logit(AUC) +- z se / (AUC (1 - AUC)))``, inside (0, 1).

    When ``se == 0`` (e.g. perfect separation, AUC 0 or 1, or every score tied) the interval is
    the point ``[auc, auc]``.

    Args:
        scores: ``(N,)`` finite decision variables, higher = more likely positive.
        labels: ``(N,)`` 0/1 (or bool), 1 = positive.
        level: Confidence level in (0, 1).
        ci: ``"wald"`` or ``"logit"``.

    Raises:
        ValueError: as :func:`auc`, fewer than 2 cases in a class, or a bad ``level`` / ``ci``.
    """
    s, y = _scores_labels(scores, labels, "DeLong AUC")
    level = _check_level(level)
    if ci not in _CI_METHODS:
        raise ValueError(f"ci must be one of {_CI_METHODS}, not {ci!r}")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong AUC needs >= 2 cases per class, got {m} positive, {n} negative")
    a, v10, v01 = _placements(s, y)
    se = float(np.sqrt(max(v10.var(ddof=1) / m + v01.var(ddof=1) / n, 0.0)))
    low, high = _ci(a, se, level, ci)
    return AUCResult(a, se, float(low), float(high), m, n, level, ci)


def auc_difference_delong(
    scores_a: Any, scores_b: Any, labels: Any, level: float = 0.95
) -> AUCDifference:
    """Paired DeLong test of two correlated AUCs (two decision variables, the same cases).

    With the placements of both variables, ``S10`` and ``S01`` their ``2 x 2`` covariances over
    the positives and negatives (ddof 1)::

        var(AUC_a - AUC_b) = (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n

    ``z = (AUC_a - AUC_b) / se``, two-sided ``p = 2 (1 - Phi(|z|))`` and the Wald CI
    ``difference +- Phi^-1((1 + level) / 2) se`` clipped to [-1, 1].

    Args:
        scores_a, scores_b: ``(N,)`` finite decision variables of the same ``N`` cases (same
            order), higher = more likely positive.
        labels: ``(N,)`` 0/1, 1 = positive.
        level: Confidence level in (0, 1).

    Raises:
        ValueError: as :func:`auc_delong`, or ``scores_a`` and ``scores_b`` of different shapes.
    """
    sa, y = _scores_labels(scores_a, labels, "DeLong AUC difference")
    sb, _ = _scores_labels(scores_b, labels, "DeLong AUC difference")
    level = _check_level(level)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(
            f"DeLong AUC difference needs >= 2 cases per class, got {m} positive, {n} negative"
        )
    a_a, v10a, v01a = _placements(sa, y)
    a_b, v10b, v01b = _placements(sb, y)
    d10, d01 = v10a - v10b, v01a - v01b  # c^T S c == var of the differenced placements
    se = float(np.sqrt(max(d10.var(ddof=1) / m + d01.var(ddof=1) / n, 0.0)))
    d = a_a - a_b
    if se == 0.0:
        z = 0.0 if d == 0.0 else float(np.copysign(np.inf, d))
        p = 1.0 if d == 0.0 else 0.0
        low = high = d
    else:
        z = d / se
        p = float(2.0 * sps.norm.sf(abs(z)))
        h = float(sps.norm.ppf(0.5 + level / 2.0)) * se
        low, high = max(d - h, -1.0), min(d + h, 1.0)
    return AUCDifference(a_a, a_b, d, se, float(low), float(high), float(z), p, m, n, level)


def inconclusive_share(
    scores: Any,
    labels: Any,
    target: float = 0.98,
    positive_low: bool = True,
) -> Inconclusive:
    """The smallest inconclusive (gray) zone with which the conclusive calls reach ``target``.

    Made for a striatal binding ratio (SBR), where a LOW value means abnormal
    (``positive_low=True``, label 1 = abnormal). A gray zone ``[t_low, t_high]`` calls

    * ``score < t_low`` positive (abnormal), ``score > t_high`` negative (normal), the rest
      inconclusive, when ``positive_low=True``;
    * ``score > t_high`` positive, ``score < t_low`` negative, the rest inconclusive, when
      ``positive_low=False`` (higher = more likely positive, as for the AUC).

    Rules:

    * Candidate thresholds are ``-inf``, the midpoints ``(u_k + u_{k+1}) / 2`` between
      consecutive sorted distinct scores ``u``, and ``+inf``; every pair ``t_low <= t_high`` of
      candidates is searched exactly (``O(n^2)``, vectorized in row blocks). ``t_low == t_high``
      leaves nothing inconclusive; an infinite threshold means that side calls nobody.
    * Balanced accuracy ``BA = (sensitivity + specificity) / 2`` is computed over the conclusive
      cases only: sensitivity = correctly called positives / conclusive positives, specificity
      = correctly called negatives / conclusive negatives.
    * A zone is admissible only if it leaves at least one conclusive case of each class (else
      one rate is undefined), and it reaches the target when ``BA >= target - 1e-12``.
    * Among admissible zones that reach the target, the one with the fewest inconclusive cases
      wins; among those the higher BA (BAs within 1e-12 count as equal); remaining ties go to
      the lowest ``t_low``, then the lowest ``t_high`` (on the score scale when
      ``positive_low=True``; on the negated scale when ``positive_low=False``).
    * If no admissible zone reaches the target (not even one that leaves a single case of each
      class conclusive) the result has ``share = 1.0``, ``n_inconclusive = n`` and NaN
      thresholds, BA, sensitivity and specificity.

    Args:
        scores: ``(N,)`` finite decision variables (e.g. SBR, unitless).
        labels: ``(N,)`` 0/1 (or bool), 1 = positive (abnormal).
        target: Required balanced accuracy of the conclusive calls, in (0, 1].
        positive_low: True when low scores mean positive (SBR); False when high scores do.

    Returns:
        :class:`Inconclusive`. Thresholds are on the original score scale.

    Raises:
        ValueError: as :func:`auc`, or ``target`` outside (0, 1].
    """
    s, y = _scores_labels(scores, labels, "inconclusive share")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target balanced accuracy must be in (0, 1], got {target}")
    # canonical orientation: low = positive
    c = s if positive_low else -s
    u, inv = np.unique(c, return_inverse=True)
    m = u.size
    # p_cum[k] / n_cum[k]: positives / negatives whose value is below cut k (u_0 .. u_{k-1})
    p_cum = np.concatenate([[0], np.cumsum(np.bincount(inv[y], minlength=m))])
    n_cum = np.concatenate([[0], np.cumsum(np.bincount(inv[~y], minlength=m))])
    p_tot, n_tot = int(p_cum[-1]), int(n_cum[-1])
    cuts = np.concatenate([[-np.inf], 0.5 * u[:-1] + 0.5 * u[1:], [np.inf]])

    # For a fixed a the count of inconclusive cases, c_cum[b] - c_cum[a], grows strictly with b
    # (every distinct value holds a case): the best zone of row a is its first admissible b.
    # A class without conclusive cases makes its rate 0/0 = NaN, so BA >= target is False there.
    pf, nf = p_cum.astype(np.float64), n_cum.astype(np.float64)
    c_cum = p_cum + n_cum
    fn_row, tn_row = p_tot - pf, n_tot - nf  # positives / negatives at or above cut b
    need = 2.0 * (target - _TIE)
    rows_a, rows_b = [], []
    block = max(1, 1_000_000 // (m + 1))
    for a0 in range(0, m + 1, block):
        a1 = min(a0 + block, m + 1)
        pa, na = pf[a0:a1, None], nf[a0:a1, None]  # called positive: true / false
        fn, tn = fn_row[None, a0:], tn_row[None, a0:]  # columns b = a0 .. m
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = pa / (pa + fn) + tn / (na + tn) >= need
        ok &= np.arange(a0, m + 1)[None, :] >= np.arange(a0, a1)[:, None]  # b >= a
        hit = ok.any(axis=1)
        if hit.any():
            a_hit = np.arange(a0, a1)[hit]
            rows_a.append(a_hit)
            rows_b.append(a0 + np.argmax(ok[hit], axis=1))
    best: tuple[int, float, int, int] | None = None  # (n_inconclusive, BA, a, b)
    if rows_a:
        a_all, b_all = np.concatenate(rows_a), np.concatenate(rows_b)
        inc_all = c_cum[b_all] - c_cum[a_all]
        tp, fn, fp, tn = pf[a_all], fn_row[b_all], nf[a_all], tn_row[b_all]
        ba_all = 0.5 * (tp / (tp + fn) + tn / (fp + tn))
        sel = inc_all == inc_all.min()
        sel &= ba_all >= ba_all[sel].max() - _TIE
        k = int(np.argmax(sel))  # rows are in increasing a: the lowest t_low
        best = (int(inc_all[k]), float(ba_all[k]), int(a_all[k]), int(b_all[k]))
    n = s.size
    if best is None:
        nan = float("nan")
        return Inconclusive(1.0, nan, nan, nan, nan, nan, n, n, float(target), positive_low)
    n_inc, ba_best, a, b = best
    sens = float(p_cum[a] / (p_cum[a] + p_tot - p_cum[b]))
    spec = float((n_tot - n_cum[b]) / (n_cum[a] + n_tot - n_cum[b]))
    lo, hi = float(cuts[a]), float(cuts[b])
    if not positive_low:
        lo, hi = -hi, -lo
    return Inconclusive(
        n_inc / n, lo, hi, ba_best, sens, spec, n, n_inc, float(target), positive_low
    )
