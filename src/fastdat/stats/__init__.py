"""Statistics: agreement (kappa, ICC, Bland-Altman), rank tests, paired differences, equivalence.

A leaf: every stage may import it, it imports no stage. :mod:`.formulas` holds the formulas
(numpy and scipy distributions only, tested against independent references);
:mod:`.tables` reads CSV files for ``fastdat stats`` and formats results. For task-based
evaluation across scan times: :mod:`.roc` (AUC with DeLong intervals, paired differences, the
inconclusive share of a decision variable), :mod:`.observer` (channelized Hotelling observer,
Laguerre-Gauss and Gabor channels, subject-grouped train / test folds) and :mod:`.iso`
(iso-performance scan time with subject bootstrap, noise scaling exponent); for uncertainty,
:mod:`.conformal` (split conformal intervals and their coverage).
"""

from fastdat.stats.formulas import (
    ICC,
    MCGRAW_WONG,
    MIN_PAIRED_N,
    BlandAltman,
    Friedman,
    Kappa,
    PairedDifference,
    bland_altman,
    dunn,
    equivalence,
    friedman,
    holm,
    icc,
    paired_difference,
    weighted_kappa,
    wilcoxon_holm,
)

__all__ = [
    "ICC",
    "MCGRAW_WONG",
    "MIN_PAIRED_N",
    "BlandAltman",
    "Friedman",
    "Kappa",
    "PairedDifference",
    "bland_altman",
    "dunn",
    "equivalence",
    "friedman",
    "holm",
    "icc",
    "paired_difference",
    "weighted_kappa",
    "wilcoxon_holm",
]
