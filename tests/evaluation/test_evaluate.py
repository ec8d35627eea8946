from __future__ import annotations

import numpy as np
import pytest

from fastdat.evaluation.evaluate import statistics
from fastdat.stats import holm


def test_statistics_match_scipy_and_scikit_posthocs():
    import pandas as pd
    import scikit_posthocs as sp
    from scipy import stats

    rng = np.random.default_rng(1)
    base = rng.normal(30, 2, 40)
    table = {"a": base, "b": base + 0.5 + rng.normal(0, 0.3, 40), "c": base + rng.normal(0, 1, 40)}
    doc = statistics(table)
    ref = stats.friedmanchisquare(*table.values())
    assert doc["friedman"]["chi2"] == pytest.approx(ref.statistic, rel=1e-12)
    assert doc["friedman"]["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    long = pd.DataFrame([{"g": k, "v": v} for k, vals in table.items() for v in vals])
    dunn = sp.posthoc_dunn(long, val_col="v", group_col="g", p_adjust="holm")
    for pair in doc["pairs"]:
        assert pair["dunn_holm_p"] == pytest.approx(dunn.loc[pair["a"], pair["b"]], rel=1e-12)
    raw = [
        stats.wilcoxon(table[a], table[b]).pvalue for a, b in (("a", "b"), ("a", "c"), ("b", "c"))
    ]
    np.testing.assert_allclose([p["wilcoxon_holm_p"] for p in doc["pairs"]], holm(raw))
