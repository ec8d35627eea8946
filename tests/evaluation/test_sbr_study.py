"""The evaluation's SBR half on a tiny case worked by hand: normals, grades, Bland-Altman, the
patient-level headline and the weighted kappa (``fastdat.evaluation.sbr_study.analyse``)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fastdat.evaluation.sbr_study import VALUE_KEYS, analyse
from fastdat.quantification.sbr import QuantConfig

T_975_DF3 = 3.182446305284263  # Student t, 97.5 % quantile, 3 degrees of freedom (tables)

# train + val 25-min striata: (study, side, grade, caudate, putamen); the grade-0 ones form the
# normal database: caudate 4.0 +- 0.2, putamen 3.0 +- 0.2 (mean, SD with ddof 1) by construction
TRAIN = [
    ("n1", "left", 0, 3.8, 2.8),
    ("n1", "right", 0, 4.0, 3.0),
    ("n2", "left", 0, 4.2, 3.2),
    ("n2", "right", 0, 4.0, 3.0),
    ("a1", "left", 1, 3.8, 2.2),
    ("a1", "right", 2, 3.5, 1.0),
]
# test striata: (study, side, truth grade, putamen by 25min, 5min, truth), caudate 4.0 everywhere
TEST = [
    ("t1", "left", 0, 3.0, 3.1, 3.6),
    ("t1", "right", 0, 2.9, 2.7, 3.5),
    ("t2", "left", 1, 2.3, 2.5, 2.8),
    ("t2", "right", 0, 3.1, 3.0, 3.7),
    ("t3", "left", 2, 1.0, 1.3, 1.2),
    ("t3", "right", 1, 2.2, 2.0, 2.7),
    ("t4", "left", 0, 3.2, 3.0, 3.9),
    ("t4", "right", 1, 2.1, 2.6, 2.6),
]


def _row(study, split, side, grade, method, caudate, putamen):
    rec = {"study_id": study, "split": split, "side": side, "grade": grade, "method": method}
    for key in VALUE_KEYS:
        rec[key] = float("nan")
    rec.update(caudate=caudate, putamen=putamen, southampton=putamen + 1.0, striatum=putamen)
    return rec


def _rows():
    rows = [_row(s, "train", side, g, "25min", c, p) for s, side, g, c, p in TRAIN]
    for s, side, g, p25, p5, pt in TEST:
        rows.append(_row(s, "test", side, g, "truth", 4.0, pt))
        rows.append(_row(s, "test", side, g, "5min", 4.0, p5))
        rows.append(_row(s, "test", side, g, "25min", 4.0, p25))
    return rows


def _mean(x):
    return sum(x) / len(x)


def _sd(x):
    m = _mean(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


def _quadratic_kappa(a, b, k=4):
    """Cohen's weighted kappa with quadratic weights, by its definition (Cohen 1968)."""
    n = len(a)
    w = [[1 - (i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    obs = sum(w[x][y] for x, y in zip(a, b, strict=True)) / n
    pa = [sum(1 for x in a if x == i) / n for i in range(k)]
    pb = [sum(1 for y in b if y == j) / n for j in range(k)]
    exp = sum(w[i][j] * pa[i] * pb[j] for i in range(k) for j in range(k))
    return (obs - exp) / (1 - exp)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("quant")
    analyse(_rows(), ["5min", "25min"], {"network": None, "filter": None}, out, QuantConfig(), [])
    return out


def test_normals_and_z_scores_by_hand(result):
    normals = json.loads((result / "normals.json").read_text())
    assert normals["n"] == 4
    assert normals["mean"]["putamen"] == pytest.approx(3.0, abs=1e-12)
    assert normals["sd"]["putamen"] == pytest.approx(_sd([2.8, 3.0, 3.2, 3.0]), abs=1e-12)
    assert normals["mean"]["caudate"] == pytest.approx(4.0, abs=1e-12)
    sbr = pd.read_csv(result / "sbr.csv")
    row = sbr[(sbr["study_id"] == "t3") & (sbr["side"] == "left") & (sbr["method"] == "5min")]
    z = (1.3 - 3.0) / _sd([2.8, 3.0, 3.2, 3.0])
    assert float(row["z_putamen"].iloc[0]) == pytest.approx(z, abs=1e-9)


def _putamen_agreement(result, reference: str):
    """The ``agreement.csv`` row of 5-min putamen SBR against ``reference``, all grades."""
    ag = pd.read_csv(result / "agreement.csv")
    sel = (ag["method"] == "5min") & (ag["measure"] == "putamen") & (ag["grade"] == "all")
    return ag[sel & (ag["reference"] == reference)].iloc[0]


def test_bland_altman_of_putamen_against_25min_by_hand(result):
    rec = _putamen_agreement(result, "25min")
    d = [p5 - p25 for *_, p25, p5, _ in TEST]
    bias, sd = _mean(d), _sd(d)
    assert rec["n"] == 8
    assert rec["bias"] == pytest.approx(bias, abs=1e-12)
    assert rec["sd"] == pytest.approx(sd, abs=1e-12)
    assert rec["loa_low"] == pytest.approx(bias - 1.96 * sd, abs=1e-12)
    assert rec["loa_high"] == pytest.approx(bias + 1.96 * sd, abs=1e-12)
    truth = _putamen_agreement(result, "truth")
    assert truth["bias"] == pytest.approx(_mean([p5 - pt for *_, p5, pt in TEST]), abs=1e-12)


def test_patient_level_bias_and_ci_by_hand(result):
    head = json.loads((result / "headline.json").read_text())
    rec = head["methods"]["5min"]["putamen_vs_25min"]
    per_patient = []
    for study in ("t1", "t2", "t3", "t4"):
        d = [p5 - p25 for s, _, _, p25, p5, _ in TEST if s == study]
        per_patient.append(_mean(d))
    m, h = _mean(per_patient), T_975_DF3 * _sd(per_patient) / 2.0  # sqrt(4) patients
    assert rec["n"] == 4
    assert rec["mean"] == pytest.approx(m, abs=1e-12)
    assert (rec["low"], rec["high"]) == pytest.approx((m - h, m + h), abs=1e-9)


def test_grading_kappa_by_hand(result):
    grading = json.loads((result / "grading.json").read_text())
    rule = grading["rule"]
    sbr = pd.read_csv(result / "sbr.csv")
    sd = _sd([2.8, 3.0, 3.2, 3.0])
    for method in ("5min", "25min"):
        sel = sbr[(sbr["split"] == "test") & (sbr["method"] == method)]
        auto = []
        for _, r in sel.iterrows():  # the rule, applied by hand (caudate z is 0 here)
            z = (r["putamen"] - 3.0) / sd
            auto.append(0 if z >= rule["normal_z"] else (1 if z >= rule["absent_z"] else 2))
        assert sel["auto_grade"].astype(int).tolist() == auto
        rec = grading["methods"][method]
        truth = sel["grade"].astype(int).tolist()
        assert rec["n"] == 8
        assert rec["kappa_quadratic_vs_truth"] == pytest.approx(
            _quadratic_kappa(truth, auto), abs=1e-12
        )
        agree = sum(a == t for a, t in zip(auto, truth, strict=True)) / 8
        assert rec["exact_agreement_vs_truth"] == pytest.approx(agree, abs=1e-12)
