"""The analysis on a fabricated complete study whose answers are computed independently
(scikit-learn's kappa, pingouin's ICC) from the rules that made the grades."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from rs_support import METHODS, READERS

from fastdat.readerstudy import analyze_study
from fastdat.readerstudy.analyze import consensus_grade
from fastdat.readerstudy.store import connect, reader_by_token, save_grade

SIDES = ("left", "right")


def rule(reader: str, method: str, repeat: bool, case: str, side: str, truth: int) -> int:
    """The fabricated grade. 25-min: ann and bob give the dataset grade and cy is off on every
    third case (so the majority consensus is the dataset grade); the model: everybody gives the
    dataset grade (kappa 1); 5-min: a reader-specific, deterministic confusion. Repeats: ann
    repeats herself, bob and cy drift on some striata."""
    r, c, s = READERS.index(reader), int(case[4:]), SIDES.index(side)
    if method == "unet1":
        g = truth
    elif method == "25min":
        g = truth if reader != "cy" or c % 3 else (truth + 1) % 4
    else:
        g = truth + ((c * 7 + s * 3 + r) % 5) - 2
    if repeat and reader != "ann" and (c + s + r) % 3 == 0:
        g += 1 if g < 2 else -1
    return int(np.clip(g, 0, 3))


def fill(study) -> dict:
    """Grade every read of ``study`` by :func:`rule`; returns the key."""
    key = json.loads((study / "key.json").read_text())
    tokens = dict(
        line.split() for line in (study / "tokens.txt").read_text().splitlines() if line[:1] != "#"
    )
    conn = connect(study)
    users = {n: reader_by_token(conn, t) for n, t in tokens.items()}
    for rid, r in key["reads"].items():
        case = key["cases"][r["case"]]
        left, right = (
            rule(r["reader"], r["method"], r["repeat"], r["case"], s, case[f"grade_{s}"])
            for s in SIDES
        )
        assert save_grade(conn, users[r["reader"]], rid, left, right)
    conn.close()
    return key


@pytest.fixture
def analysed(study, tmp_path):
    key = fill(study)
    report = analyze_study(study, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text())  # strict JSON: no NaN
    return key, doc, report


def _striata(key) -> list[tuple[str, str, int]]:
    return [(c, s, v[f"grade_{s}"]) for c, v in sorted(key["cases"].items()) for s in SIDES]


@pytest.mark.parametrize(
    "grades, expected",
    [([2, 2, 0], 2), ([0, 1, 2], 1), ([0, 1, 3], 1), ([3], 3), ([0, 2], 2), ([1, 3, 3, 1], 3)],
)
def test_consensus_tie_rule(grades, expected):
    assert consensus_grade(grades) == expected


def test_kappa_against_scikit_learn(analysed):
    from sklearn.metrics import cohen_kappa_score

    key, doc, _ = analysed
    striata = _striata(key)
    assert len({t for *_, t in striata}) >= 3  # a real confusion table, not a degenerate one
    cons = [t for *_, t in striata]  # the consensus the rules were built to give
    assert doc["consensus"] == {f"{c}/{s}": t for c, s, t in striata}
    for method in METHODS:
        for reader in READERS:
            mine = [rule(reader, method, False, c, s, t) for c, s, t in striata]
            for w in ("linear", "quadratic"):
                ref = cohen_kappa_score(mine, cons, labels=[0, 1, 2, 3], weights=w)
                got = doc["kappa_vs_consensus"][method][reader][w]
                assert got["kappa"] == pytest.approx(ref, abs=1e-12), (method, reader, w)
                assert got["ci"][0] <= got["kappa"] <= got["ci"][1]
            assert doc["kappa_vs_consensus"][method][reader]["n"] == len(striata)
    for reader in READERS:  # the model was graded perfectly: kappa 1, vs the dataset grade too
        assert doc["kappa_vs_consensus"]["unet1"][reader]["linear"]["kappa"] == 1.0
        assert doc["kappa_vs_dataset_grade"]["unet1"][reader]["quadratic"]["kappa"] == 1.0
    assert doc["kappa_vs_consensus"]["5min"]["ann"]["linear"]["kappa"] < 0.9


def _pingouin(long: pd.DataFrame) -> dict[str, tuple[float, list[float]]]:
    import pingouin as pg

    res = pg.intraclass_corr(data=long, targets="target", raters="rater", ratings="grade")
    res = res.set_index("Type")
    ci = "CI95" if "CI95" in res else "CI95%"  # pingouin >= 0.7 / older
    out = {}
    for form, name in (("ICC2", "ICC(A,1)"), ("ICC3", "ICC(C,1)")):
        row = res.loc[name if name in res.index else form]  # McGraw & Wong names since 0.7
        out[form] = (row["ICC"], list(row[ci]))
    return out


def _check_icc(got: dict, ref: dict) -> None:
    for form in ("ICC2", "ICC3"):
        value, ci = ref[form]
        assert got[form]["value"] == pytest.approx(value, abs=1e-10), form
        assert got[form]["ci"] == pytest.approx(ci, abs=0.0051), form  # pingouin rounds to 0.01


def test_inter_reader_icc_against_pingouin(analysed):
    key, doc, _ = analysed
    striata = _striata(key)
    for method in ("5min", "25min"):
        long = pd.DataFrame(
            [
                {"target": f"{c}/{s}", "rater": r, "grade": rule(r, method, False, c, s, t)}
                for c, s, t in striata
                for r in READERS
            ]
        )
        _check_icc(doc["inter_reader_icc"][method], _pingouin(long))
        assert doc["inter_reader_icc"][method]["n"] == len(striata)
        assert doc["inter_reader_icc"][method]["k"] == len(READERS)
    assert doc["inter_reader_icc"]["unet1"]["ICC2"]["value"] == pytest.approx(1.0)


def test_intra_reader_icc_against_pingouin(analysed):
    key, doc, _ = analysed
    for reader in READERS:
        reps = [r for r in key["reads"].values() if r["reader"] == reader and r["repeat"]]
        rows = []
        for r in reps:
            truth = key["cases"][r["case"]]
            for s in SIDES:
                for rep in (False, True):
                    g = rule(reader, r["method"], rep, r["case"], s, truth[f"grade_{s}"])
                    rows.append({"target": f"{r['image']}/{s}", "rater": rep, "grade": g})
        got = doc["intra_reader_icc"][reader]["all methods"]
        assert got["n"] == 2 * len(reps)
        if reader == "ann":  # repeats herself exactly
            assert got["ICC2"]["value"] == pytest.approx(1.0)
        else:
            _check_icc(got, _pingouin(pd.DataFrame(rows)))
            assert got["ICC2"]["value"] < 1.0


def test_outputs_in_the_papers_layout(analysed, tmp_path):
    key, doc, report = analysed
    out = report.parent
    assert {p.name for p in out.iterdir()} >= {
        "analysis.json",
        "table.csv",
        "kappa.png",
        "icc.png",
        "report.html",
    }
    with open(out / "table.csv", newline="") as f:
        table = {r["quantity"]: r for r in csv.DictReader(f)}
    assert list(next(iter(table.values())))[1:4] == list(METHODS)
    row = table["weighted kappa (linear) vs 25-min consensus, ann"]
    assert row["unet1"].startswith("1.00 [")
    k = [doc["kappa_vs_consensus"]["5min"][r]["linear"]["kappa"] for r in READERS]
    rng = table["weighted kappa (linear) vs 25-min consensus, range over readers"]["5min"]
    assert rng == f"{min(k):.2f}-{max(k):.2f}"
    assert table["inter-reader ICC(A,1) [95 % CI]"]["5min"].count("[") == 1
    assert table["intra-reader ICC(A,1), ann"]["all methods"].startswith("1.00")
    assert doc["completeness"] == {"reads": len(key["reads"]), "graded": len(key["reads"])}
    html = report.read_text()
    assert "kappa.png" in html and "ICC(A,1)" in html and "Incomplete" not in html


def test_incomplete_study_is_analysed_with_what_it_has(study, tmp_path):
    key = json.loads((study / "key.json").read_text())
    conn = connect(study)
    tokens = dict(
        line.split() for line in (study / "tokens.txt").read_text().splitlines() if line[:1] != "#"
    )
    ann = reader_by_token(conn, tokens["ann"])
    mine = sorted((r["position"], rid) for rid, r in key["reads"].items() if r["reader"] == "ann")
    for _, rid in mine[:10]:
        save_grade(conn, ann, rid, 1, 2)
    conn.close()
    report = analyze_study(study, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert doc["completeness"]["graded"] == 10
    assert "Incomplete" in report.read_text()
    assert doc["kappa_vs_consensus"]["5min"]["bob"]["linear"]["kappa"] is None
