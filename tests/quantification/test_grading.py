"""Automated grading: normal database, the z-score rule and its calibration."""

from __future__ import annotations

import numpy as np
import pytest

from fastdat.quantification.grading import GradingRule, NormalDatabase, build_normals, calibrate


def test_rule_maps_z_scores_to_grades():
    rule = GradingRule(normal_z=-2.0, absent_z=-4.0, caudate_z=-3.0)
    zp = np.array([0.5, -1.9, -2.1, -3.9, -4.1, -6.0, -2.5, 1.0])
    zc = np.array([0.0, 0.0, 0.0, 0.0, -2.9, -3.1, -3.5, -5.0])
    # a low caudate alone (normal putamen) is not grade 3: loss starts in the putamen
    np.testing.assert_array_equal(rule.grade(zp, zc), [0, 0, 1, 1, 2, 3, 3, 0])
    with pytest.raises(ValueError, match="absent_z"):
        GradingRule(normal_z=-3.0, absent_z=-2.0)


def test_normal_database_zscores_and_round_trip():
    recs = [{"caudate": c, "putamen": p} for c, p in ((3.0, 2.0), (3.2, 2.4), (3.4, 2.2))]
    db = build_normals(recs, source="test")
    assert db.mean["putamen"] == pytest.approx(2.2)
    assert db.sd["putamen"] == pytest.approx(0.2)  # ddof = 1
    z = db.zscores({"caudate_left": 3.2, "putamen_left": 1.8}, "left")
    assert z["putamen"] == pytest.approx(-2.0)
    assert z["caudate"] == pytest.approx(0.0)
    assert NormalDatabase.from_dict(db.to_dict()) == db
    with pytest.raises(ValueError, match="at least 3"):
        build_normals(recs[:2])
    with pytest.raises(ValueError, match="positive SD|normal database"):
        NormalDatabase.from_dict({"mean": {"putamen": 1}, "sd": {"putamen": 0}, "n": 3})


def test_calibration_recovers_a_known_rule():
    rng = np.random.default_rng(3)
    truth = GradingRule(normal_z=-2.5, absent_z=-5.0, caudate_z=-4.0)
    zp = rng.uniform(-9, 2, 400)
    zc = rng.uniform(-9, 2, 400)
    grades = truth.grade(zp, zc)
    rule, kappa = calibrate(zp, zc, grades)
    assert kappa == pytest.approx(1.0)
    np.testing.assert_array_equal(rule.grade(zp, zc), grades)
    assert rule.normal_z == pytest.approx(-2.5, abs=0.25)
    assert rule.absent_z == pytest.approx(-5.0, abs=0.25)
