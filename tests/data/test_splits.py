from __future__ import annotations

import numpy as np
import pytest

from fastdat.data.splits import split_patients, split_sizes


def test_paper_sizes_exact():
    assert split_sizes(207, (120, 37, 50)) == (120, 37, 50)
    assert split_sizes(10, (120, 37, 50)) == (6, 2, 2)
    assert sum(split_sizes(13, (1, 1, 1))) == 13


def _cohort(n=207, seed=0):
    rng = np.random.default_rng(seed)
    patients = [f"P{i:04d}" for i in range(n)]
    grades = list(rng.choice(4, size=n, p=[0.4, 0.15, 0.3, 0.15]))
    return patients, grades


def test_paper_split_sizes_and_stratification():
    patients, grades = _cohort()
    s = split_patients(patients, grades, (120, 37, 50), seed=0)
    assert set(s) == set(patients)
    counts = {k: sum(v == k for v in s.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 120, "val": 37, "test": 50}
    # every grade is spread over the splits in proportion (within one patient of the share)
    for g in range(4):
        members = [p for p, gr in zip(patients, grades, strict=True) if gr == g]
        n_test = sum(s[p] == "test" for p in members)
        assert abs(n_test - len(members) * 50 / 207) <= 1.0


def test_seeded_reproducible_and_seed_matters():
    patients, grades = _cohort()
    a = split_patients(patients, grades, seed=3)
    assert a == split_patients(patients, grades, seed=3)
    assert a != split_patients(patients, grades, seed=4)


def test_unknown_strata_and_bad_input():
    patients = [f"p{i}" for i in range(9)]
    s = split_patients(patients, [None] * 9, (1, 1, 1), seed=0)
    assert sorted(s.values()).count("val") == 3
    with pytest.raises(ValueError, match="unique"):
        split_patients(["a", "a"], [0, 0])
    with pytest.raises(ValueError, match="proportions"):
        split_patients(["a"], [0], (1, -1, 1))
