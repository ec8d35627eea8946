"""Agreement and rank statistics, written here in numpy with scipy.stats distributions only.

scikit-learn, pingouin, statsmodels, scipy's own tests and scikit-posthocs are the independent
references of the tests; none is called here. Agreement: weighted kappa (Cohen 1968; SE of
Fleiss, Cohen & Everitt 1969), intraclass correlations (Shrout & Fleiss 1979; McGraw & Wong
1996), Bland-Altman limits of agreement (Bland & Altman 1986, 1999). Methods scored on the same
images: Friedman's test with Dunn's post-hoc (as in the paper) and the paired Wilcoxon
signed-rank test, Holm-adjusted. :func:`fastdat.stats.tables.run_stats` runs one of them on a CSV
file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

# Shrout & Fleiss form -> McGraw & Wong (1996) name (pingouin's ``Type`` column).
MCGRAW_WONG = {
    "ICC1": "ICC(1,1)",
    "ICC2": "ICC(A,1)",
    "ICC3": "ICC(C,1)",
    "ICC1k": "ICC(1,k)",
    "ICC2k": "ICC(A,k)",
    "ICC3k": "ICC(C,k)",
}


@dataclass(frozen=True)
class Kappa:
    """Kappa, its non-null SE, the 95 % CI, the number of items and the weights used."""

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    weights: str | None


@dataclass(frozen=True)
class ICC:
    """One ICC form: value, F test of ICC = 0 (``F``, ``df1``, ``df2``, ``p``) and 95 % CI."""

    value: float
    F: float
    df1: int
    df2: int
    p: float
    ci_low: float
    ci_high: float
    n: int  # targets used (complete rows)
    k: int  # raters


@dataclass(frozen=True)
class Friedman:
    """Friedman's chi-square (tie-corrected), its p-value, ``k`` methods, ``n`` blocks."""

    statistic: float
    p: float
    k: int
    n: int


@dataclass(frozen=True)
class BlandAltman:
    """Bias (mean of a - b), SD, limits of agreement and 95 % CIs of the three, as (low, high)."""

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    n: int
    bias_ci: tuple[float, float]
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]


def _complete_table(table: Any, what: str, min_rows: int, min_cols: int) -> np.ndarray:
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D table (rows, columns), got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{what}: missing values (NaN); drop incomplete rows first")
    if x.shape[0] < min_rows or x.shape[1] < min_cols:
        raise ValueError(
            f"{what}: needs at least {min_rows} rows and {min_cols} columns, got {x.shape}"
        )
    return x


def weighted_kappa(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    weights: str | None = None,
    categories: Sequence[float] | None = None,
) -> Kappa:
    """Cohen's kappa of two raters, unweighted or with linear / quadratic weights.

    With ``p_ij`` the proportion of items rated category ``i`` by A and ``j`` by B, row and column
    margins ``p_i.``, ``p_.j`` and agreement weights ``w_ij = 1 - d_ij / max d`` where ``d_ij`` is
    ``[i != j]``, ``|i - j|`` or ``(i - j)^2`` on the category *indices* (as scikit-learn):
    ``p_o = sum w_ij p_ij``, ``p_e = sum w_ij p_i. p_.j``, ``kappa = (p_o - p_e) / (1 - p_e)``.
    Standard error (Fleiss, Cohen & Everitt 1969, non-null), with ``wr_i = sum_j p_.j w_ij`` and
    ``wc_j = sum_i p_i. w_ij``::

        var = [sum p_ij (w_ij - (wr_i + wc_j)(1 - kappa))^2 - (kappa - p_e (1 - kappa))^2]
              / (n (1 - p_e)^2)

    and the 95 % CI is ``kappa +- 1.96 se``, clipped to kappa's range [-1, 1] (the Wald interval
    passes 1 when agreement is near perfect and ``n`` small).

    Args:
        a, b: ratings of the same ``n`` items, 1-D, no missing values.
        weights: None, ``"linear"`` or ``"quadratic"``.
        categories: ordered categories; default the sorted union of the observed values. Give
            them to include grades nobody used (this changes weighted kappa).

    Raises:
        ValueError: unequal lengths, missing values, a rating outside ``categories``, or a
            degenerate table (chance agreement 1, e.g. one category everywhere).
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"kappa: need two 1-D ratings of equal length, got {a.shape}, {b.shape}")
    if a.size == 0:
        raise ValueError("kappa: no (complete) pairs of ratings")
    if any(np.issubdtype(v.dtype, np.floating) and np.isnan(v).any() for v in (a, b)):
        raise ValueError("kappa: missing ratings (NaN); drop incomplete pairs first")
    cats = np.unique(np.concatenate([a, b])) if categories is None else np.asarray(categories)
    index = {c: i for i, c in enumerate(cats.tolist())}
    if len(index) != cats.size:
        raise ValueError("kappa: categories must be unique")
    try:
        ia = np.array([index[v] for v in a.tolist()])
        ib = np.array([index[v] for v in b.tolist()])
    except KeyError as err:
        raise ValueError(f"kappa: rating {err.args[0]!r} is not one of the categories") from None
    m, n = cats.size, a.size
    if m < 2:
        raise ValueError(
            f"kappa is undefined: every rating is the single category {cats.tolist()[0]!r}"
        )
    p = np.zeros((m, m))
    np.add.at(p, (ia, ib), 1.0 / n)
    i, j = np.indices((m, m))
    d = {None: (i != j) * 1.0, "linear": np.abs(i - j) * 1.0, "quadratic": (i - j) ** 2.0}
    w = 1.0 - d[weights] / d[weights].max()
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    po, pe = (w * p).sum(), (w * np.outer(pr, pc)).sum()
    if 1.0 - pe <= 1e-12:
        raise ValueError("kappa is undefined: chance agreement is 1 (one category everywhere)")
    kappa = (po - pe) / (1.0 - pe)
    wr, wc = w @ pc, pr @ w
    var = (p * (w - (wr[:, None] + wc[None, :]) * (1.0 - kappa)) ** 2).sum()
    var = (var - (kappa - pe * (1.0 - kappa)) ** 2) / (n * (1.0 - pe) ** 2)
    se = float(np.sqrt(max(var, 0.0)))
    lo, hi = max(kappa - 1.96 * se, -1.0), min(kappa + 1.96 * se, 1.0)
    return Kappa(float(kappa), se, float(lo), float(hi), n, weights)


def icc(ratings: Any, raters: Sequence[str] | None = None) -> dict[str, ICC]:
    """Intraclass correlations of ``n`` targets rated by the same ``k`` raters.

    From the two-way ANOVA of ``x`` (``n x k``): mean squares between targets ``MSR`` (df
    ``n-1``), between raters ``MSC`` (``k-1``), residual ``MSE`` (``(n-1)(k-1)``) and within
    targets ``MSW = (SSC + SSE) / (n(k-1))``. Shrout & Fleiss (1979) forms, McGraw & Wong (1996)
    names in brackets:

    * ICC1 [ICC(1,1)] = (MSR - MSW) / (MSR + (k-1) MSW), one-way random;
    * ICC2 [ICC(A,1), absolute agreement] = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n);
    * ICC3 [ICC(C,1), consistency] = (MSR - MSE) / (MSR + (k-1) MSE);
    * ICC1k = (MSR - MSW) / MSR, ICC2k = (MSR - MSE) / (MSR + (MSC - MSE) / n),
      ICC3k = (MSR - MSE) / MSR: the reliability of the mean of the ``k`` raters.

    F tests of ``ICC = 0``: ``MSR / MSW`` on ``(n-1, n(k-1))`` for the 1 forms, ``MSR / MSE`` on
    ``(n-1, (n-1)(k-1))`` otherwise. 95 % CIs: the exact F intervals for forms 1 and 3 and
    Satterthwaite's approximate interval for form 2 (McGraw & Wong 1996, Table 7; as pingouin).

    Args:
        ratings: ``(n_targets, k_raters)``; NaN = missing. Targets with a missing rating are
            dropped listwise (``ICC.n`` is the number used).
        raters: names for the error messages (default ``rater 1``, ...).

    Returns:
        ``{"ICC1": ICC, "ICC2": ..., "ICC3": ..., "ICC1k": ..., "ICC2k": ..., "ICC3k": ...}``.

    Raises:
        ValueError: a rater without any rating, fewer than 2 complete targets or 2 raters, or
            every rating identical.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ICC needs a (targets, raters) table with >= 2 raters, got {x.shape}")
    names = list(raters) if raters is not None else [f"rater {j + 1}" for j in range(x.shape[1])]
    for j, name in enumerate(names):
        if np.isnan(x[:, j]).all():
            raise ValueError(f"ICC: {name!r} has no ratings (every value missing)")
    if np.isinf(x).any():
        raise ValueError("ICC: ratings must be finite")
    x = x[~np.isnan(x).any(axis=1)]
    n, k = x.shape
    if n < 2:
        raise ValueError(f"ICC needs >= 2 targets rated by every rater, got {n}")
    gm = x.mean()
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    ss_r, ss_c = k * ((rows - gm) ** 2).sum(), n * ((cols - gm) ** 2).sum()
    ss_e = ((x - rows[:, None] - cols[None, :] + gm) ** 2).sum()
    if ss_r + ss_c + ss_e == 0:
        raise ValueError("ICC is undefined: every rating is identical")
    df1, df_w, df_e = n - 1, n * (k - 1), (n - 1) * (k - 1)
    msr, msc, mse = ss_r / df1, ss_c / (k - 1), ss_e / df_e
    msw = (ss_c + ss_e) / df_w
    f_ = sps.f.ppf
    with np.errstate(divide="ignore", invalid="ignore"):
        v1 = (msr - msw) / (msr + (k - 1) * msw)
        v2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        v3 = (msr - mse) / (msr + (k - 1) * mse)
        f1, f3 = msr / msw, msr / mse
        p1, p3 = sps.f.sf(f1, df1, df_w), sps.f.sf(f3, df1, df_e)
        f1l, f1u = f1 / f_(0.975, df1, df_w), f1 * f_(0.975, df_w, df1)
        f3l, f3u = f3 / f_(0.975, df1, df_e), f3 * f_(0.975, df_e, df1)
        # Satterthwaite's df of the denominator of ICC(A,1)
        fj = msc / mse
        c = n * (1 + (k - 1) * v2) - k * v2
        nu = df_e * (k * v2 * fj + c) ** 2 / (df1 * k**2 * v2**2 * fj**2 + c**2)
        fu, fl = f_(0.975, df1, nu), f_(0.975, nu, df1)
        den = k * msc + (k * n - k - n) * mse
        l2, u2 = (
            n * (msr - fu * mse) / (fu * den + n * msr),
            n * (fl * msr - mse) / (den + n * fl * msr),
        )
        ci2k = (l2 * k / (1 + l2 * (k - 1)), u2 * k / (1 + u2 * (k - 1)))  # Spearman-Brown
        forms = {
            "ICC1": (v1, f1, df_w, p1, (f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)),
            "ICC2": (v2, f3, df_e, p3, l2, u2),
            "ICC3": (v3, f3, df_e, p3, (f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)),
            "ICC1k": ((msr - msw) / msr, f1, df_w, p1, 1 - 1 / f1l, 1 - 1 / f1u),
            "ICC2k": ((msr - mse) / (msr + (msc - mse) / n), f3, df_e, p3, *ci2k),
            "ICC3k": ((msr - mse) / msr, f3, df_e, p3, 1 - 1 / f3l, 1 - 1 / f3u),
        }
    return {
        name: ICC(float(v), float(f), df1, df2, float(p), float(lo), float(hi), n, k)
        for name, (v, f, df2, p, lo, hi) in forms.items()
    }


def friedman(table: Any) -> Friedman:
    """Friedman's test of ``k`` methods over ``n`` blocks, with the tie correction.

    Ranks within each block (average ranks for ties), rank sums ``R_j``::

        chi2 = [12 / (n k (k+1)) sum_j R_j^2 - 3 n (k+1)] / [1 - sum (t^3 - t) / (n k (k^2 - 1))]

    where ``t`` runs over the sizes of the tie groups in every block; ``p`` from chi-square with
    ``k - 1`` df (equals ``scipy.stats.friedmanchisquare``).

    Args:
        table: ``(n_blocks, k_methods)``, complete, ``k >= 3`` (for two use the Wilcoxon test).
    """
    x = _complete_table(table, "Friedman", 2, 3)
    n, k = x.shape
    r = sps.rankdata(x, axis=1)
    ties = sum(
        float((t**3 - t).sum()) for t in (np.unique(row, return_counts=True)[1] for row in x)
    )
    c = 1.0 - ties / (n * k * (k * k - 1))
    if c <= 0:
        raise ValueError("Friedman is undefined: every block has all methods tied")
    chi2 = (12.0 / (n * k * (k + 1)) * (r.sum(axis=0) ** 2).sum() - 3.0 * n * (k + 1)) / c
    return Friedman(float(chi2), float(sps.chi2.sf(chi2, k - 1)), k, n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    With ``p_(1) <= ... <= p_(m)``: ``adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj.tolist()


def _adjust(p: np.ndarray, method: str | None) -> np.ndarray:
    if method is None:
        return p
    if method == "holm":
        return np.asarray(holm(p))
    if method == "bonferroni":
        return np.minimum(1.0, p * len(p))
    raise ValueError(f"p_adjust must be 'holm', 'bonferroni' or None, not {method!r}")


def _pair_matrix(p: np.ndarray, k: int) -> np.ndarray:
    """Symmetric ``(k, k)`` matrix from the pairs ``(0,1), (0,2), ...`` in row-major order."""
    out = np.ones((k, k))
    iu = np.triu_indices(k, 1)
    out[iu] = p
    out[iu[::-1]] = p
    return out


def dunn(groups: Any, p_adjust: str | None = "holm") -> np.ndarray:
    """Dunn's (1964) test of all pairs of groups on the pooled ranks, with the tie correction.

    All ``N`` values are ranked together (average ranks); for groups ``i, j`` with mean ranks
    ``Rbar`` and sizes ``n``::

        z = |Rbar_i - Rbar_j| / sqrt((N (N+1) / 12 - sum (t^3 - t) / (12 (N-1))) (1/n_i + 1/n_j))

    and the two-sided ``p = 2 (1 - Phi(|z|))``, adjusted over the ``k (k-1) / 2`` pairs.

    Args:
        groups: a ``(n, k)`` array or table (columns are the groups) or a list of 1-D groups,
            in the order of the result. NaNs are dropped per group (the groups are independent).
        p_adjust: ``"holm"``, ``"bonferroni"`` or None.

    Returns:
        ``(k, k)`` symmetric p-values, ones on the diagonal.
    """
    if not isinstance(groups, (list, tuple)):
        table = np.asarray(groups, dtype=np.float64)
        if table.ndim != 2:
            raise ValueError(f"dunn: expected a (n, k) table, got shape {table.shape}")
        groups = list(table.T)
    gs = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    gs = [g[~np.isnan(g)] for g in gs]
    if len(gs) < 2 or any(g.size == 0 for g in gs):
        raise ValueError("dunn: needs at least 2 groups, each with at least one value")
    values = np.concatenate(gs)
    total = values.size
    ranks = np.split(sps.rankdata(values), np.cumsum([g.size for g in gs])[:-1])
    t = np.unique(values, return_counts=True)[1].astype(np.float64)
    var = total * (total + 1) / 12.0 - (t**3 - t).sum() / (12.0 * (total - 1))
    if var <= 0:
        raise ValueError("dunn is undefined: every value is identical")
    mean = np.array([r.mean() for r in ranks])
    size = np.array([g.size for g in gs], dtype=np.float64)
    i, j = np.triu_indices(len(gs), 1)
    z = np.abs(mean[i] - mean[j]) / np.sqrt(var * (1 / size[i] + 1 / size[j]))
    return _pair_matrix(_adjust(2.0 * sps.norm.sf(z), p_adjust), len(gs))


def wilcoxon_holm(table: Any) -> np.ndarray:
    """Paired Wilcoxon signed-rank tests of all column pairs, Holm-adjusted.

    Args:
        table: ``(n, k)``, complete; rows are the paired units (images), columns the methods.

    Returns:
        ``(k, k)`` symmetric adjusted p-values (``scipy.stats.wilcoxon`` defaults); a pair whose
        differences are all (close to) zero gets the raw ``p = 1``.
    """
    x = _complete_table(table, "Wilcoxon", 1, 2)
    raw = [
        1.0 if np.allclose(x[:, a] - x[:, b], 0) else float(sps.wilcoxon(x[:, a], x[:, b]).pvalue)
        for a, b in zip(*np.triu_indices(x.shape[1], 1), strict=True)
    ]
    return _pair_matrix(np.asarray(holm(raw)), x.shape[1])


def _pairs(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two finite 1-D float arrays of equal length >= 2, or a ValueError naming ``what``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"{what} needs two 1-D arrays of equal length >= 2, got {a.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{what}: missing or non-finite values; drop incomplete pairs first")
    return a, b


def bland_altman(a: Any, b: Any) -> BlandAltman:
    """Bland-Altman agreement of two methods: bias and 95 % limits of agreement.

    ``d = a - b``, ``bias = mean(d)``, ``sd = SD(d)`` (ddof 1), limits ``bias +- 1.96 sd``. 95 %
    CIs with ``t = t_{0.975, n-1}``: bias ``+- t sd / sqrt(n)``; each limit ``+- t sd sqrt(3/n)``
    (Bland & Altman 1999, the approximate SE of a limit).

    Args:
        a, b: 1-D, equal length ``n >= 2``, no missing values.
    """
    a, b = _pairs(a, b, "Bland-Altman")
    d = a - b
    n = d.size
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    t = float(sps.t.ppf(0.975, n - 1))
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    h_bias, h_loa = t * sd / float(np.sqrt(n)), t * sd * float(np.sqrt(3.0 / n))
    cis = [(m - h, m + h) for m, h in ((bias, h_bias), (lo, h_loa), (hi, h_loa))]
    return BlandAltman(bias, sd, lo, hi, n, *cis)


MIN_PAIRED_N = 6
"""Fewest paired units with which an exact two-sided signed-rank test can reach p < 0.05
(``2 / 2^n < 0.05``); below it a comparison is reported as "too few to conclude"."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of paired differences ``a - b`` with its t-based CI and the signed-rank test.

    Attributes:
        mean: Mean difference. low, high: Its ``level`` CI (``mean +- t_{(1+level)/2, n-1}
            SD / sqrt(n)``). n: Paired units. level: CI level.
        p_wilcoxon: Two-sided Wilcoxon signed-rank p (``scipy.stats.wilcoxon`` defaults; 1
            when every difference is zero). enough: ``n >= MIN_PAIRED_N``.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float
    p_wilcoxon: float
    enough: bool


def paired_difference(a: Any, b: Any, level: float = 0.95) -> PairedDifference:
    """Mean paired difference ``a - b`` over units (patients), its CI and signed-rank p.

    Args:
        a, b: 1-D, equal length ``n >= 2``, one value per unit (e.g. a patient's mean PSNR).
        level: Confidence level of the interval.
    """
    a, b = _pairs(a, b, "paired difference")
    d = a - b
    n = d.size
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(n))
    h = float(sps.t.ppf((1 + level) / 2, n - 1)) * se
    p = 1.0 if np.allclose(d, 0) else float(sps.wilcoxon(a, b).pvalue)
    return PairedDifference(mean, mean - h, mean + h, n, level, p, n >= MIN_PAIRED_N)


def equivalence(a: Any, b: Any, margin: float) -> dict[str, float | bool | int]:
    """Two one-sided t-tests (TOST) of ``|mean(a - b)| < margin`` for paired values.

    Equivalence at the 5 % level is shown when the 90 % CI of the mean difference lies inside
    ``(-margin, margin)``; ``p`` is the larger of the two one-sided p-values (Schuirmann 1987).
    """
    if margin <= 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    ci = paired_difference(a, b, level=0.90)
    n = d.size
    se = float(d.std(ddof=1) / np.sqrt(n))
    if se == 0:
        p = 0.0 if abs(ci.mean) < margin else 1.0
    else:
        p_low = float(sps.t.sf((ci.mean + margin) / se, n - 1))
        p_high = float(sps.t.cdf((ci.mean - margin) / se, n - 1))
        p = max(p_low, p_high)
    return {
        "margin": float(margin),
        "mean": ci.mean,
        "ci90_low": ci.low,
        "ci90_high": ci.high,
        "n": n,
        "p": p,
        "equivalent": bool(p < 0.05),
    }
