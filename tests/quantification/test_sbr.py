"""SBR methods on phantoms whose answer is known analytically."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fastdat.anatomy.labels import true_sbr
from fastdat.quantification.sbr import (
    NoStriatumError,
    QuantConfig,
    derived,
    quantify_volume,
)

TRUE = {"caudate": 5.0, "putamen": 3.0}  # the striatal_phantom fixture's analytic SBRs
SHAPE, VOXEL = (64, 64, 40), 3.3


def _shifted(phantom, shift=(0, 0, 0)):
    assert phantom.sbr == TRUE and phantom.shape == SHAPE and phantom.voxel_mm == VOXEL
    act, labels = phantom.activity, phantom.labels
    return np.roll(act, shift, axis=(0, 1, 2)), np.roll(labels, shift, axis=(0, 1, 2))


@pytest.mark.parametrize("shift", [(0, 0, 0), (2, -3, 1)])
def test_template_vois_give_the_analytic_sbr_on_noise_free_unblurred_truth(shift, striatal_phantom):
    act, labels = _shifted(striatal_phantom, shift)
    values, vois = quantify_volume(act, VOXEL)
    assert vois.shift == shift
    for side in ("left", "right"):
        assert values[f"caudate_{side}"] == pytest.approx(TRUE["caudate"], abs=1e-9)
        for r in ("putamen", "putamen_anterior", "putamen_posterior"):
            assert values[f"{r}_{side}"] == pytest.approx(TRUE["putamen"], abs=1e-9)
        n_c = (labels == (1 if side == "left" else 2)).sum()
        n_p = np.isin(labels, (3, 5) if side == "left" else (4, 6)).sum()
        expected = (5.0 * n_c + 3.0 * n_p) / (n_c + n_p)  # voxel-weighted striatum
        assert values[f"striatum_{side}"] == pytest.approx(expected, abs=1e-9)
        assert values[f"putamen_caudate_{side}"] == pytest.approx(0.6, abs=1e-9)
    assert values["asymmetry_putamen"] == pytest.approx(0.0, abs=1e-9)
    # the truth definition (own labels, own occipital lobe) gives the same numbers
    t = true_sbr(act, labels)
    assert t["caudate_left"] == pytest.approx(5.0, abs=1e-9)
    assert t["putamen_right"] == pytest.approx(3.0, abs=1e-9)


def test_southampton_is_exact_unblurred_and_insensitive_to_blur_unlike_vois(striatal_phantom):
    act, labels = _shifted(striatal_phantom)
    v_s = np.isin(labels, (1, 3, 5)).sum() * VOXEL**3 / 1000  # true left striatal volume (mL)
    cfg = QuantConfig(striatal_volume_ml=float(v_s))
    sharp, _ = quantify_volume(act, VOXEL, cfg)
    expected = sharp["striatum_left"]  # voxel-weighted true SBR, checked exact above
    assert sharp["southampton_left"] == pytest.approx(expected, abs=1e-9)
    sigma = 12.0 / 2.3548 / VOXEL  # 12 mm FWHM, the reconstructed resolution
    blurred, _ = quantify_volume(ndimage.gaussian_filter(act, sigma), VOXEL, cfg)
    # nearly all striatal counts stay in the Southampton VOI; small VOIs lose them to blur
    assert blurred["southampton_left"] == pytest.approx(expected, rel=0.04)
    assert blurred["striatum_left"] < 0.75 * expected
    assert blurred["putamen_left"] < 0.75 * TRUE["putamen"]


def test_sbr_does_not_depend_on_the_image_scale(striatal_phantom):
    act, _ = _shifted(striatal_phantom)
    a, _ = quantify_volume(act, VOXEL)
    b, _ = quantify_volume(act * 1234.5, VOXEL)
    for k in ("caudate_left", "putamen_right", "southampton_left"):
        assert b[k] == pytest.approx(a[k], rel=1e-9)


def test_asymmetry_and_putamen_caudate_ratio():
    d = derived(
        {
            "caudate_left": 4.0,
            "caudate_right": 4.0,
            "putamen_left": 3.0,
            "putamen_right": 1.0,
            "striatum_left": 3.5,
            "striatum_right": 2.5,
        }
    )
    assert d["asymmetry_putamen"] == pytest.approx(100.0)  # |3 - 1| / 2
    assert d["asymmetry_caudate"] == pytest.approx(0.0)
    assert d["putamen_caudate_left"] == pytest.approx(0.75)
    assert d["putamen_caudate_right"] == pytest.approx(0.25)


@pytest.mark.parametrize("kind", ["uniform head", "noise", "no striatal uptake", "zeros"])
def test_images_without_a_striatum_are_refused(kind, striatal_phantom):
    act, labels = _shifted(striatal_phantom)
    rng = np.random.default_rng(0)
    if kind == "uniform head":
        img = (act > 0).astype(float)
    elif kind == "noise":
        img = rng.random(SHAPE)
    elif kind == "no striatal uptake":
        img = np.where(np.isin(labels, range(1, 7)), 1.0, act)
    else:
        img = np.zeros(SHAPE)
    with pytest.raises((NoStriatumError, ValueError), match="striat|positive"):
        quantify_volume(img, VOXEL)


def test_config_is_validated():
    with pytest.raises(ValueError, match="striatal_volume_ml"):
        QuantConfig(striatal_volume_ml=0)
    with pytest.raises(ValueError, match="refine_voxels"):
        QuantConfig(refine_voxels=-1)
