from __future__ import annotations

import numpy as np
import pytest

from fastdat.anatomy.labels import LABELS
from fastdat.anatomy.phantom import (
    PhantomConfig,
    Subject,
    make_phantom,
    sample_subject,
)

CFG = PhantomConfig()
SHAPE, VOXEL = (64, 64, 48), 3.5


def _subject(seed=0, left=0, right=0, age=60.0, sex="M"):
    return sample_subject(np.random.default_rng(seed), CFG, left, right, age, sex)


def _centred(**kw) -> Subject:
    """A subject without pose, shape or volume variability."""
    s = _subject(**kw)
    return Subject(s.age, s.sex, s.grade_left, s.grade_right, s.sbr, texture_seed=1)


@pytest.fixture(scope="module")
def normal():
    return make_phantom(_centred(), SHAPE, VOXEL, CFG)


def test_every_label_present_with_anatomical_volumes(normal):
    ml = VOXEL**3 / 1000
    vol = {name: (normal.labels == k).sum() * ml for k, name in LABELS.items()}
    for side in ("left", "right"):
        # domain.md: caudate ~3.5-4.7 mL, putamen ~4.5-5.2 mL per hemisphere (voxelized, +/-)
        assert 2.8 < vol[f"caudate_{side}"] < 5.0
        put = vol[f"putamen_anterior_{side}"] + vol[f"putamen_posterior_{side}"]
        assert 3.8 < put < 6.0
    assert vol["occipital"] > 10
    brain = ((normal.mu > 0.14) & (normal.mu < 0.16)).sum() * ml
    assert 1100 < brain < 1700  # brain ~1.2-1.4 L plus CSF


def test_skull_scalp_and_mu_values(normal):
    mu = normal.mu
    assert mu.min() >= 0 and mu.max() <= CFG.mu_bone + 1e-6
    assert (np.isclose(mu, CFG.mu_bone)).sum() * VOXEL**3 / 1000 > 100  # a skull of ~0.1-0.2 L
    # activity only inside the head
    assert (normal.activity[mu == 0] == 0).all()


def test_left_is_negative_x_and_striatum_anterior(normal):
    xyz = np.stack(np.nonzero(normal.labels), -1) * VOXEL + normal.affine[:3, 3]
    lab = normal.labels[np.nonzero(normal.labels)]
    assert xyz[lab == 1, 0].mean() < 0 < xyz[lab == 2, 0].mean()
    # occipital reference lies posterior of the striatum
    assert xyz[lab == 7, 1].mean() < xyz[np.isin(lab, [1, 2]), 1].mean() - 60


def test_striatal_uptake_ratio_and_reference(normal):
    ref = normal.activity[normal.labels == 7].mean()
    for k in range(1, 7):
        ratio = normal.activity[normal.labels == k].mean() / ref
        assert 4.5 < ratio < 10.5  # healthy 8 : 1, range 6-10, partial volume at edges


@pytest.mark.parametrize("grade", [1, 2, 3])
def test_disease_posterior_first_caudate_last(grade):
    ph = make_phantom(_centred(left=grade, right=0), SHAPE, VOXEL, CFG)
    ref = ph.activity[ph.labels == 7].mean()
    sbr = {k: ph.activity[ph.labels == k].mean() / ref - 1 for k in range(1, 7)}
    # left (diseased) below right (normal) in every region
    for left, right in ((1, 2), (3, 4), (5, 6)):
        assert sbr[left] < sbr[right]
    assert sbr[5] < sbr[3] < sbr[1]  # posterior putamen < anterior putamen < caudate


def test_seeded_and_varied():
    a = make_phantom(_subject(seed=3), SHAPE, VOXEL, CFG)
    b = make_phantom(_subject(seed=3), SHAPE, VOXEL, CFG)
    c = make_phantom(_subject(seed=4), SHAPE, VOXEL, CFG)
    np.testing.assert_array_equal(a.activity, b.activity)
    assert not np.array_equal(a.activity, c.activity)
    assert not np.array_equal(a.labels, c.labels)  # pose and size differ


def test_age_and_sex_effects():
    young = _subject(seed=5, age=45.0)
    old = _subject(seed=5, age=80.0)
    woman = _subject(seed=5, age=45.0, sex="F")
    assert old.sbr["putamen_posterior_left"] < young.sbr["putamen_posterior_left"]
    assert woman.sbr["caudate_right"] == pytest.approx(1.10 * young.sbr["caudate_right"])
    # putamen loses binding faster than caudate with age
    put = old.sbr["putamen_anterior_left"] / young.sbr["putamen_anterior_left"]
    cau = old.sbr["caudate_left"] / young.sbr["caudate_left"]
    assert put < cau


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"striatum_ratio": 0.5}, "striatum_ratio"),
        ({"mu_bone": -0.1}, "mu_bone"),
        ({"supersample": 0}, "supersample"),
        ({"texture_sd": -1}, "texture_sd"),
    ],
)
def test_config_rejects_impossible_values(kw, match):
    with pytest.raises(ValueError, match=match):
        PhantomConfig(**kw)


def test_unknown_grade_rejected():
    with pytest.raises(ValueError, match="grade"):
        sample_subject(np.random.default_rng(0), CFG, 4, 0, 60.0, "M")
