from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fastdat import stats as st
from fastdat.stats.tables import StatsInputError, read_pairs, read_wide, run_stats

# Shrout & Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns).
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=np.float64,
)
# Their Table 4 (two decimals): ICC(1,1), ICC(2,1), ICC(3,1), ICC(1,4), ICC(2,4), ICC(3,4).
SHROUT_FLEISS_PUBLISHED = {
    "ICC1": 0.17,
    "ICC2": 0.29,
    "ICC3": 0.71,
    "ICC1k": 0.44,
    "ICC2k": 0.62,
    "ICC3k": 0.91,
}


def _random_ratings(rng, n, k, missing=0):
    """Targets x raters: target effect + rater bias + noise, ``missing`` cells set to NaN."""
    x = rng.normal(0, 2, (n, 1)) + rng.normal(0, 0.7, (1, k)) + rng.normal(0, 1, (n, k))
    x[rng.integers(0, n, missing), rng.integers(0, k, missing)] = np.nan
    return x


def _pingouin_icc(x, monkeypatch):
    """pingouin's table keyed by McGraw & Wong name, CIs not rounded (it rounds to 2 by default)."""
    import pandas as pd
    import pingouin as pg

    monkeypatch.setitem(pg.options, "round.column.CI95", None)
    n, k = x.shape
    long = pd.DataFrame(
        {"t": np.repeat(np.arange(n), k), "r": np.tile(np.arange(k), n), "y": x.ravel()}
    )
    return pg.intraclass_corr(long, "t", "r", "y", nan_policy="omit").set_index("Type")


def test_icc_reproduces_shrout_fleiss_1979():
    res = st.icc(SHROUT_FLEISS)
    assert set(res) == set(SHROUT_FLEISS_PUBLISHED)
    for name, published in SHROUT_FLEISS_PUBLISHED.items():
        assert res[name].value == pytest.approx(published, abs=0.005), name
        assert (res[name].n, res[name].k) == (6, 4)
    # their ANOVA (Table 3): BMS 11.24, WMS 6.26, JMS 32.49, EMS 1.02 -> F = BMS / EMS etc.
    assert res["ICC3"].F == pytest.approx(11.24 / 1.02, rel=0.01)
    assert res["ICC1"].F == pytest.approx(11.24 / 6.26, rel=0.01)
    assert (res["ICC1"].df1, res["ICC1"].df2, res["ICC2"].df2) == (5, 18, 15)


@pytest.mark.parametrize(
    ("n", "k", "missing", "seed"),
    [(6, 4, 0, None), (5, 2, 0, 0), (12, 3, 0, 1), (30, 5, 0, 2), (7, 6, 0, 3), (25, 4, 5, 4)],
)
def test_icc_matches_pingouin(n, k, missing, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    x = SHROUT_FLEISS if seed is None else _random_ratings(rng, n, k, missing)
    ours = st.icc(x)
    ref = _pingouin_icc(x, monkeypatch)
    assert ours["ICC1"].n == int((~np.isnan(x).any(axis=1)).sum())
    for name, r in ours.items():
        row = ref.loc[st.MCGRAW_WONG[name]]  # ICC2 = ICC(A,1), ICC3 = ICC(C,1), ...
        assert r.value == pytest.approx(row["ICC"], rel=1e-9, abs=1e-12), name
        assert r.F == pytest.approx(row["F"], rel=1e-9), name
        assert (r.df1, r.df2) == (row["df1"], row["df2"]), name
        assert r.p == pytest.approx(row["pval"], rel=1e-7, abs=1e-15), name
        np.testing.assert_allclose([r.ci_low, r.ci_high], row["CI95"], rtol=1e-7, atol=1e-9)


def test_icc_ci_matches_pingouin_default_rounding():
    """With pingouin's defaults the CI is rounded to 2 decimals: agree within half a unit."""
    import pandas as pd
    import pingouin as pg

    x = _random_ratings(np.random.default_rng(5), 15, 3)
    long = pd.DataFrame(
        {"t": np.repeat(np.arange(15), 3), "r": np.tile(np.arange(3), 15), "y": x.ravel()}
    )
    ref = pg.intraclass_corr(long, "t", "r", "y").set_index("Type")
    for name, r in st.icc(x).items():
        ci = ref.loc[st.MCGRAW_WONG[name], "CI95"]
        assert np.allclose(ci, np.round(ci, 2))  # it is rounded indeed
        np.testing.assert_allclose([r.ci_low, r.ci_high], ci, atol=0.005 + 1e-12)


def test_icc_bad_input():
    x = SHROUT_FLEISS.copy()
    x[:, 2] = np.nan
    with pytest.raises(ValueError, match="'judge 3' has no ratings"):
        st.icc(x, raters=["judge 1", "judge 2", "judge 3", "judge 4"])
    with pytest.raises(ValueError, match=">= 2 raters"):
        st.icc(SHROUT_FLEISS[:, :1])
    x = SHROUT_FLEISS.copy()
    x[1:, 0] = np.nan
    with pytest.raises(ValueError, match=">= 2 targets"):
        st.icc(x)
    with pytest.raises(ValueError, match="identical"):
        st.icc(np.ones((4, 3)))


def _table(a, b, cats):
    index = {c: i for i, c in enumerate(cats)}
    t = np.zeros((len(cats), len(cats)))
    np.add.at(t, ([index[v] for v in a], [index[v] for v in b]), 1)
    return t


KAPPA_CASES = [  # (seed, n, category probabilities)
    (0, 50, [0.25, 0.25, 0.25, 0.25]),
    (1, 200, [0.7, 0.2, 0.07, 0.03]),
    (2, 31, [0.1, 0.6, 0.3]),
    (3, 500, [0.5, 0.5]),
    (4, 80, [0.05, 0.15, 0.3, 0.3, 0.15, 0.05]),
]


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize(("seed", "n", "probs"), KAPPA_CASES)
def test_kappa_matches_sklearn_and_statsmodels_se(seed, n, probs, weights):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(seed)
    m = len(probs)
    a = rng.choice(m, n, p=probs)
    noise = rng.choice([-1, 0, 0, 1], n)
    b = np.where(rng.random(n) < 0.3, rng.choice(m, n, p=probs), np.clip(a + noise, 0, m - 1))
    k = st.weighted_kappa(a, b, weights)
    assert k.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    cats = sorted(set(a) | set(b))
    # statsmodels reports the non-null (Fleiss, Cohen & Everitt 1969) SE as std_kappa
    ref = (
        cohens_kappa(_table(a, b, cats), wt=weights)
        if weights
        else cohens_kappa(_table(a, b, cats))
    )
    assert k.kappa == pytest.approx(ref.kappa, abs=1e-12)
    assert k.se == pytest.approx(ref.std_kappa, rel=1e-9)
    assert k.ci_low == pytest.approx(max(k.kappa - 1.96 * ref.std_kappa, -1), abs=1e-12)
    assert k.ci_high == pytest.approx(min(k.kappa + 1.96 * ref.std_kappa, 1), abs=1e-12)
    assert (k.n, k.weights) == (n, weights)


def test_kappa_interval_stays_within_kappas_range():
    # 9 of 10 agree, one off by one grade: the Wald interval passes 1 and is clipped there
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
    b = a.copy()
    b[-1] = 2
    k = st.weighted_kappa(a, b, "quadratic")
    assert k.kappa + 1.96 * k.se > 1.0  # the unclipped interval would leave [-1, 1]
    assert k.ci_high == 1.0
    assert k.ci_low == pytest.approx(k.kappa - 1.96 * k.se, abs=1e-12)


def test_kappa_fleiss_1981_example_and_properties():
    from sklearn.metrics import cohen_kappa_score

    # Fleiss (1981), two raters, 100 subjects, 3 categories: p_o = .70, p_e = .475, kappa = 3/7
    counts = np.array([[53, 5, 2], [11, 14, 5], [1, 6, 3]])
    a = np.repeat(np.repeat(np.arange(3), 3), counts.ravel())
    b = np.repeat(np.tile(np.arange(3), 3), counts.ravel())
    assert st.weighted_kappa(a, b).kappa == pytest.approx(3 / 7, abs=1e-12)
    # perfect agreement: kappa 1, SE 0
    perfect = st.weighted_kappa([0, 1, 2, 2, 1], [0, 1, 2, 2, 1], "quadratic")
    assert (perfect.kappa, perfect.se) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))
    # a grade nobody used changes weighted kappa; scikit-learn's labels= does the same
    x, y = [0, 1, 3, 3, 1, 0, 3], [0, 3, 3, 1, 1, 1, 3]
    full = st.weighted_kappa(x, y, "linear", categories=[0, 1, 2, 3]).kappa
    assert full == pytest.approx(
        cohen_kappa_score(x, y, weights="linear", labels=[0, 1, 2, 3]), abs=1e-12
    )
    assert full != pytest.approx(st.weighted_kappa(x, y, "linear").kappa, abs=1e-3)
    # nominal labels
    s, t = ["dat+", "dat-", "dat+", "dat+"], ["dat+", "dat-", "dat-", "dat+"]
    assert st.weighted_kappa(s, t).kappa == pytest.approx(cohen_kappa_score(s, t), abs=1e-12)


def test_kappa_bad_input():
    with pytest.raises(ValueError, match="single category"):
        st.weighted_kappa([2, 2, 2], [2, 2, 2])
    with pytest.raises(ValueError, match="equal length"):
        st.weighted_kappa([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        st.weighted_kappa([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="not one of the categories"):
        st.weighted_kappa([1, 5], [1, 2], categories=[1, 2, 3])
    with pytest.raises(ValueError, match="weights"):
        st.weighted_kappa([1, 2], [1, 2], weights="cubic")


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 10, 3), (1, 40, 5), (2, 7, 8), (3, 100, 4)])
def test_friedman_matches_scipy(seed, n, k):
    from scipy import stats

    rng = np.random.default_rng(seed)
    for x in (rng.normal(size=(n, k)) + np.arange(k) * 0.3, rng.integers(0, 3, (n, k))):
        ours = st.friedman(x)
        ref = stats.friedmanchisquare(*x.T)
        assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert ours.p == pytest.approx(ref.pvalue, rel=1e-10)
        assert (ours.n, ours.k) == (n, k)


def test_friedman_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows and 3 columns"):
        st.friedman(np.ones((5, 2)))
    with pytest.raises(ValueError, match="missing"):
        st.friedman([[1, 2, np.nan], [1, 2, 3]])
    with pytest.raises(ValueError, match="all methods tied"):
        st.friedman(np.ones((4, 3)))


@pytest.mark.parametrize("k", [3, 4, 5, 6])
@pytest.mark.parametrize("p_adjust", ["holm", "bonferroni", None])
def test_dunn_matches_scikit_posthocs(k, p_adjust):
    import scikit_posthocs as sp

    rng = np.random.default_rng(k)
    for groups in (
        [rng.normal(j * 0.4, 1, rng.integers(4, 25)) for j in range(k)],
        [rng.integers(0, 6, rng.integers(3, 15)).astype(float) for _ in range(k)],  # ties
    ):
        ours = st.dunn(groups, p_adjust=p_adjust)
        ref = sp.posthoc_dunn(groups, p_adjust=p_adjust).to_numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-15)
    # the given order is kept: reversing the groups reverses the matrix
    np.testing.assert_allclose(st.dunn(groups[::-1], p_adjust), ours[::-1, ::-1], rtol=1e-12)
    # a (n, k) table: columns are the groups
    table = rng.normal(size=(9, k))
    np.testing.assert_allclose(st.dunn(table, p_adjust), st.dunn(list(table.T), p_adjust))


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    cases = [rng.random(rng.integers(1, 15)) ** 3 for _ in range(30)]
    cases += [np.array([0.01, 0.01, 0.04, 0.9, 0.9]), np.array([0.5, 0.6, 0.7])]
    for p in cases:
        np.testing.assert_allclose(st.holm(p), multipletests(p, method="holm")[1], atol=1e-12)


def test_wilcoxon_holm_matches_scipy():
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 4)) + [0, 0.2, 0.8, 0.1]
    x[:, 3] = x[:, 0]  # identical columns: p = 1
    raw = [
        1.0 if (a, b) == (0, 3) else stats.wilcoxon(x[:, a], x[:, b]).pvalue
        for a, b in zip(*np.triu_indices(4, 1), strict=True)
    ]
    want = multipletests(raw, method="holm")[1]
    got = st.wilcoxon_holm(x)
    np.testing.assert_allclose(got[np.triu_indices(4, 1)], want, rtol=1e-12)
    np.testing.assert_allclose(got, got.T)
    assert got[0, 3] == 1.0 and np.all(np.diag(got) == 1.0)


def test_bland_altman_hand_example():
    a = np.array([10.0, 12.0, 9.0, 15.0, 11.0])
    b = np.array([9.0, 12.5, 8.0, 13.0, 11.5])
    res = st.bland_altman(a, b)
    # d = [1, -0.5, 1, 2, -0.5]: mean 0.6, sum of squared deviations 4.7, SD sqrt(4.7 / 4)
    sd = math.sqrt(4.7 / 4)
    t4 = 2.7764451051977987  # t_{0.975, 4}
    assert (res.bias, res.sd, res.n) == (pytest.approx(0.6), pytest.approx(sd), 5)
    assert res.loa_low == pytest.approx(0.6 - 1.96 * sd)
    assert res.loa_high == pytest.approx(0.6 + 1.96 * sd)
    np.testing.assert_allclose(res.bias_ci, [0.6 - t4 * sd / 5**0.5, 0.6 + t4 * sd / 5**0.5])
    h = t4 * sd * math.sqrt(3 / 5)
    np.testing.assert_allclose(res.loa_low_ci, [0.6 - 1.96 * sd - h, 0.6 - 1.96 * sd + h])
    np.testing.assert_allclose(res.loa_high_ci, [0.6 + 1.96 * sd - h, 0.6 + 1.96 * sd + h])
    for bad in (([1.0, 2.0], [1.0]), ([1.0, np.nan], [1.0, 2.0]), ([[1.0, 2.0]], [[1.0, 2.0]])):
        with pytest.raises(ValueError, match="Bland-Altman"):
            st.bland_altman(*bad)


# --- CSV readers and run_stats ---------------------------------------------------------------


def _write(tmp_path, text, name="ratings.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _wide_csv(x, ids=True):
    k = x.shape[1]
    lines = [",".join((["target"] if ids else []) + [f"judge{j + 1}" for j in range(k)])]
    for i, row in enumerate(x):
        cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(",".join(([f"t{i + 1}"] if ids else []) + cells))
    return "\n".join(lines) + "\n"


def test_read_wide_layouts_agree(tmp_path):
    x = SHROUT_FLEISS.copy()
    x[2, 1] = np.nan
    wide = _write(tmp_path, _wide_csv(x), "wide.csv")
    got, ids, names = read_wide(wide)
    np.testing.assert_array_equal(got, x)
    assert ids == [f"t{i + 1}" for i in range(6)] and names == [
        "judge1",
        "judge2",
        "judge3",
        "judge4",
    ]
    plain, ids, _ = read_wide(_write(tmp_path, _wide_csv(x, ids=False), "plain.csv"))
    np.testing.assert_array_equal(plain, x)
    assert ids == ["1", "2", "3", "4", "5", "6"]
    rows = [
        f"judge{j + 1},t{i + 1},{'NA' if np.isnan(x[i, j]) else x[i, j]}"
        for j in range(4)
        for i in range(6)
    ]
    long = _write(tmp_path, "rater,target,rating\n" + "\n".join(rows) + "\n", "long.csv")
    got, ids, names = read_wide(long)
    np.testing.assert_array_equal(got, x)
    assert ids[0] == "t1" and names == ["judge1", "judge2", "judge3", "judge4"]
    # numeric ids in a column named "id" stay ids; NaN / empty / NA cells are missing
    got, ids, names = read_wide(_write(tmp_path, "id,a,b\n7,1,nan\n8,,3\n9,N/A,4\n", "ids.csv"))
    assert ids == ["7", "8", "9"] and names == ["a", "b"]
    np.testing.assert_array_equal(np.isnan(got), [[False, True], [True, False], [True, False]])


def test_read_pairs(tmp_path):
    a, b, names = read_pairs(_write(tmp_path, "patient,A,B\np1,1,2\np2,3,3\n"))
    assert names == ["A", "B"] and a.tolist() == [1, 3] and b.tolist() == [2, 3]
    a, b, names = read_pairs(
        _write(tmp_path, "target,rater,rating\n1,x,2\n1,y,3\n2,x,0\n", "long.csv")
    )
    assert names == ["x", "y"] and a.tolist() == [2, 0] and b[0] == 3 and np.isnan(b[1])
    with pytest.raises(StatsInputError, match="exactly two rating columns, found 3"):
        read_pairs(_write(tmp_path, "A,B,C\n1,2,3\n", "three.csv"))
    with pytest.raises(StatsInputError, match="exactly two raters, found 3"):
        read_pairs(_write(tmp_path, "target,rater,rating\n1,x,2\n1,y,3\n1,z,1\n", "three_long.csv"))


BAD_FILES = [
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ("target,a,b\n", "header but no data rows"),
    ("target,a,b\nt1,1,2\nt2,3\n", "line 3 has 2 fields but the header has 3"),
    ("target,a,b\nt1,1,2\nt2,3,4,5\n", "line 3 has 4 fields but the header has 3"),
    ("target,a,b\nt1,1,2\nt2,3,four\n", "line 3, column 'b': 'four' is not a finite number"),
    ("a,b,c\n1,2,3\n1,x,3\n", "line 3, column 'b': 'x' is not a finite number"),
    ("target,a,b\nt1,1,inf\n", "line 2, column 'b': 'inf' is not a finite number"),
    ("target,a,b\nt1,1,\nt2,2,NA\n", "column 'b' has no values"),
    ("target,rater,rating\n1,x,2\n1,y,3\n1,x,4\n", "line 4: target '1' is rated twice by 'x'"),
    ("target,rater,rating\n1,x,2\n1,y,\n2,x,3\n2,y,NaN\n", "rater 'y' has no values"),
    ("target,rater,rating\n1,x,good\n", "line 2, column 'rating': 'good' is not a finite"),
    ("1,2,3\n4,5,6\n", "header with column names"),
    ("a,a,b\n1,2,3\n", "duplicate column names"),
    ("a,,b\n1,2,3\n", "column 2 has no name"),
    ("target\nt1\n", "no rating columns"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_reader_errors_name_the_file_and_the_problem(tmp_path, text, message):
    path = _write(tmp_path, text, "bad input.csv")
    with pytest.raises(StatsInputError) as err:
        read_wide(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_reader_missing_file_and_binary(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_wide(tmp_path / "nothere.csv")
    binary = tmp_path / "img.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x9f")
    with pytest.raises(StatsInputError, match="UTF-8"):
        read_wide(binary)


def test_run_stats_results(tmp_path):
    x = SHROUT_FLEISS.copy()
    x[0, 0] = np.nan
    path = _write(tmp_path, _wide_csv(x))
    icc_doc = run_stats("icc", path)
    assert (icc_doc["n"], icc_doc["k"], icc_doc["n_dropped"]) == (5, 4, 1)
    assert icc_doc["icc"]["ICC2"]["mcgraw_wong"] == "ICC(A,1)"
    assert icc_doc["icc"]["ICC3"]["value"] == pytest.approx(st.icc(x)["ICC3"].value, abs=1e-15)
    fr = run_stats("friedman", path)
    assert (fr["n"], fr["n_dropped"]) == (5, 1)
    assert fr["statistic"] == pytest.approx(st.friedman(x[1:]).statistic, rel=1e-12)
    dn = run_stats("dunn", path, p_adjust="none")
    assert dn["n_per_method"] == {"judge1": 5, "judge2": 6, "judge3": 6, "judge4": 6}
    want = st.dunn([c[~np.isnan(c)] for c in x.T], p_adjust=None)
    np.testing.assert_allclose(dn["p"], want, rtol=1e-12)
    assert [(p["a"], p["b"]) for p in dn["pairs"]][:2] == [
        ("judge1", "judge2"),
        ("judge1", "judge3"),
    ]
    pairs = _write(tmp_path, "id,A,B\n1,1,2\n2,2,2\n3,,1\n4,3,3\n5,0,1\n6,2,1\n", "pairs.csv")
    kp = run_stats("kappa", pairs, weights="linear")
    assert (kp["n"], kp["n_dropped"], kp["weights"]) == (5, 1, "linear")
    assert kp["kappa"] == pytest.approx(
        st.weighted_kappa([1, 2, 3, 0, 2], [2, 2, 3, 1, 1], "linear").kappa, abs=1e-15
    )
    ba = run_stats("bland-altman", pairs)
    assert ba["difference"] == "A - B" and ba["n"] == 5
    assert ba["bias"] == pytest.approx(np.mean([-1, 0, 0, -1, 1]), abs=1e-15)
    for doc in (icc_doc, fr, dn, kp, ba):
        json.dumps(doc, allow_nan=False)  # plain JSON: no NaN, no numpy types
        assert doc["file"] == str(path) or doc["file"] == str(pairs)


def test_run_stats_errors(tmp_path):
    path = _write(tmp_path, _wide_csv(SHROUT_FLEISS))
    with pytest.raises(ValueError, match="icc takes no option weights"):
        run_stats("icc", path, weights="linear")
    with pytest.raises(ValueError, match="unknown analysis"):
        run_stats("anova", path)
    one = _write(tmp_path, "target,a,b,c\nt1,1,2,3\n", "one.csv")
    with pytest.raises(StatsInputError, match=r"one\.csv: ICC needs >= 2 targets"):
        run_stats("icc", one)
    with pytest.raises(StatsInputError, match=r"ratings\.csv: .*exactly two rating columns"):
        run_stats("kappa", path)
    same = _write(tmp_path, "a,b\n1,1\n1,1\n", "same.csv")
    with pytest.raises(StatsInputError, match=r"same\.csv: kappa is undefined"):
        run_stats("kappa", same)
    with pytest.raises(StatsInputError, match="p_adjust"):
        run_stats("dunn", path, p_adjust="fdr")


def test_paired_difference_matches_scipy_ttest_rel():
    from scipy import stats as sps

    from fastdat.stats import paired_difference

    rng = np.random.default_rng(5)
    a = rng.normal(30, 2, 12)
    b = a - 0.8 + rng.normal(0, 0.5, 12)
    res = paired_difference(a, b)
    ref = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert res.mean == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert (res.low, res.high) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert res.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12)
    assert res.n == 12 and res.enough
    assert not paired_difference(a[:5], b[:5]).enough  # exact signed-rank p >= 0.0625 at n = 5


def test_equivalence_matches_statsmodels_ttost_paired():
    from statsmodels.stats.weightstats import ttost_paired

    from fastdat.stats import equivalence

    rng = np.random.default_rng(6)
    for shift, margin in ((0.02, 0.2), (0.15, 0.2), (0.5, 0.2)):
        a = rng.normal(2.0, 0.5, 20)
        b = a - shift + rng.normal(0, 0.15, 20)
        res = equivalence(a, b, margin)
        p_ref = ttost_paired(a, b, -margin, margin)[0]
        assert res["p"] == pytest.approx(p_ref, rel=1e-9)
        assert res["equivalent"] == (p_ref < 0.05)
        assert res["ci90_low"] < res["mean"] < res["ci90_high"]
    with pytest.raises(ValueError, match="margin"):
        equivalence(a, b, 0.0)
