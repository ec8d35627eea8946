from __future__ import annotations

import json

import numpy as np
import pytest

from fastdat.cli import main

SHROUT_FLEISS = "target,j1,j2,j3,j4\n" + "\n".join(
    f"t{i},{r}"
    for i, r in enumerate(
        ["9,2,5,8", "6,1,3,2", "8,4,6,8", "7,1,2,6", "10,5,6,9", "6,2,4,7"], start=1
    )
)


def _write(tmp_path, text, name="ratings.csv"):
    path = tmp_path / name
    path.write_text(text + "\n")
    return path


def _json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture()
def pairs(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 60)
    b = np.clip(a + rng.choice([-1, 0, 0, 1], 60), 0, 3)
    rows = [f"p{i},{x},{y}" for i, (x, y) in enumerate(zip(a, b, strict=True))]
    return _write(tmp_path, "patient,reader1,reader2\n" + "\n".join(rows)), a, b


def test_icc_json_and_text(tmp_path, capsys):
    path = _write(tmp_path, SHROUT_FLEISS)
    doc = _json(capsys, ["stats", "icc", str(path)])
    published = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62}
    for name, value in {**published, "ICC3k": 0.91}.items():
        assert doc["icc"][name]["value"] == pytest.approx(value, abs=0.005), name
    assert (doc["kind"], doc["n"], doc["k"], doc["raters"]) == (
        "icc",
        6,
        4,
        ["j1", "j2", "j3", "j4"],
    )
    assert doc["icc"]["ICC2"]["ci95"][0] < 0.29 < doc["icc"]["ICC2"]["ci95"][1]
    assert main(["stats", "icc", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("ICC2 "))
    assert "ICC(A,1)" in line and "0.2898" in line and "95% CI" in line


@pytest.mark.parametrize("weights", ["none", "linear", "quadratic"])
def test_kappa_matches_sklearn(pairs, capsys, weights):
    from sklearn.metrics import cohen_kappa_score

    path, a, b = pairs
    doc = _json(capsys, ["stats", "kappa", str(path), "--weights", weights])
    want = cohen_kappa_score(a, b, weights=None if weights == "none" else weights)
    assert doc["kappa"] == pytest.approx(want, abs=1e-12)
    assert doc["raters"] == ["reader1", "reader2"] and doc["n"] == 60
    assert doc["ci95"][0] < doc["kappa"] < doc["ci95"][1]
    assert main(["stats", "kappa", str(path), "--weights", weights]) == 0
    assert f"kappa = {want:.4f}" in capsys.readouterr().out


def test_friedman_and_dunn_match_references(tmp_path, capsys):
    import scikit_posthocs as sp
    from scipy import stats

    rng = np.random.default_rng(1)
    x = rng.normal(30, 2, (20, 1)) + rng.normal([0, 0.5, 1.0, 0.2], 0.5, (20, 4))
    names = ["unet", "gauss", "raw", "nlm"]  # not alphabetical: the given order is kept
    rows = [",".join(repr(float(v)) for v in row) for row in x]
    path = _write(tmp_path, ",".join(names) + "\n" + "\n".join(rows))
    fr = _json(capsys, ["stats", "friedman", str(path)])
    ref = stats.friedmanchisquare(*x.T)
    assert fr["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert fr["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert (fr["n"], fr["k"], fr["methods"]) == (20, 4, names)
    dn = _json(capsys, ["stats", "dunn", str(path), "--p-adjust", "holm"])
    np.testing.assert_allclose(dn["p"], sp.posthoc_dunn(list(x.T), p_adjust="holm"), rtol=1e-10)
    assert dn["methods"] == names and dn["pairs"][0]["a"] == "unet"
    none = _json(capsys, ["stats", "dunn", str(path), "--p-adjust", "none"])
    np.testing.assert_allclose(none["p"], sp.posthoc_dunn(list(x.T)), rtol=1e-10)
    assert main(["stats", "dunn", str(path)]) == 0  # default holm
    out = capsys.readouterr().out
    assert "adjusted by holm" in out and "unet vs gauss: p = " in out
    assert main(["stats", "friedman", str(path)]) == 0
    assert f"chi2 = {ref.statistic:.4f}" in capsys.readouterr().out


def test_bland_altman(pairs, capsys):
    path, a, b = pairs
    doc = _json(capsys, ["stats", "bland-altman", str(path)])
    d = (a - b).astype(float)
    assert doc["bias"] == pytest.approx(d.mean(), abs=1e-12)
    assert doc["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1), abs=1e-12)
    assert doc["difference"] == "reader1 - reader2"
    assert main(["stats", "bland-altman", str(path)]) == 0
    assert "limits of agreement" in capsys.readouterr().out


def test_long_format(tmp_path, capsys):
    wide = _write(tmp_path, SHROUT_FLEISS, "wide.csv")
    lines = [x.split(",") for x in SHROUT_FLEISS.splitlines()]
    header, body = lines[0], lines[1:]
    rows = [f"{r[0]},{header[j]},{r[j]}" for r in body for j in range(1, 5)]
    long = _write(tmp_path, "target,rater,rating\n" + "\n".join(rows), "long.csv")
    a, b = _json(capsys, ["stats", "icc", str(wide)]), _json(capsys, ["stats", "icc", str(long)])
    assert a["icc"] == b["icc"]


BAD = [
    ("empty.csv", "", "the file is empty"),
    ("ragged.csv", "target,a,b\nt1,1,2\nt2,1,2,3", "line 3 has 4 fields"),
    ("text.csv", "target,a,b\nt1,1,2\nt2,1,high", "column 'b': 'high' is not a finite number"),
    ("silent.csv", "target,a,b,c\nt1,1,,2\nt2,1,NA,3\nt3,2,,2", "column 'b' has no values"),
    ("header.csv", "target,a,b", "header but no data rows"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD)
@pytest.mark.parametrize("kind", ["icc", "friedman", "dunn", "kappa", "bland-altman"])
def test_bad_input_exits_nonzero_naming_the_file(tmp_path, capsys, name, text, message, kind):
    path = tmp_path / name
    path.write_text(text)
    assert main(["stats", kind, str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"fastdat stats: error: {path}: " in captured.err and message in captured.err


def test_option_and_file_errors(tmp_path, capsys):
    path = _write(tmp_path, SHROUT_FLEISS)
    assert main(["stats", "icc", str(path), "--weights", "linear"]) == 2
    assert "icc takes no option weights" in capsys.readouterr().err
    assert main(["stats", "kappa", str(path)]) == 2
    assert "exactly two rating columns, found 4" in capsys.readouterr().err
    assert main(["stats", "icc", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stats", "anova", str(path)])
