"""Intensity-histogram and head-fraction input features, and the ``input_range`` built from a
training set's features (:func:`fastdat.inference.safety.input_range_of`).

The volumes are small synthetic heads (an ellipsoid brain with two hot striata, Poisson noise)
whose training set varies counts, striatal ratio and head size, as a training cohort does.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fastdat.inference.safety import (
    HIST_QUANTILES,
    INPUT_MARGIN,
    RANGE_FEATURES,
    check_input,
    input_features,
    input_range_of,
)

SHAPE = (41, 37, 19)
HIST = {f"hist_p{q}" for q in HIST_QUANTILES}
OLD_RANGE = {  # the packaged default model's sidecar, written before the histogram features
    "voxel_mm": 3.3,
    "noise": [0.1442, 0.1973],
    "contrast": [3.3125, 8.8192],
    "n_studies": 120,
}


def head_phantom(
    seed: int,
    counts: float = 120.0,
    ratio: float = 3.0,
    scale: float = 1.0,
    halves: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Poisson counts ``(X, Y, Z)``: a brain of ``counts`` per voxel (its posterior and anterior
    halves scaled by ``halves``), two striata at ``ratio`` times ``counts``."""
    i, j, k = np.indices(SHAPE, dtype=float)
    c = (np.array(SHAPE) - 1) / 2
    u, v, w = (i - c[0]) / (14 * scale), (j - c[1]) / (16 * scale), (k - c[2]) / (7 * scale)
    head = u**2 + v**2 + w**2 <= 1
    lam = np.where(head, np.where(j < c[1], halves[0], halves[1]) * counts, 0.0)
    for dx in (-4, 4):
        lam[(i - c[0] - dx) ** 2 + 0.5 * (j - c[1] - 3) ** 2 + (k - c[2]) ** 2 <= 4] = (
            ratio * counts
        )
    lam = ndimage.gaussian_filter(lam, 0.7)
    return np.random.default_rng(seed).poisson(lam).astype(np.float32)


@pytest.fixture(scope="module")
def training_range():
    feats = []
    for s in range(12):
        r = np.random.default_rng(100 + s)
        x = head_phantom(
            s, counts=r.uniform(80, 160), ratio=r.uniform(2.6, 3.4), scale=r.uniform(0.95, 1.05)
        )
        feats.append(input_features(x, 3.3))
    return input_range_of(feats)


def test_features_are_invariant_to_intensity_scale():
    x = head_phantom(1)
    f, g = input_features(x, 3.3), input_features(7.3 * x, 3.3)
    assert set(f) == {"voxel_mm", *RANGE_FEATURES}
    for key in RANGE_FEATURES:
        assert g[key] == pytest.approx(f[key], rel=1e-6), key
    q = [f[f"hist_p{p}"] for p in HIST_QUANTILES]
    assert q == sorted(q) and 0 < q[0] and q[-1] < 1
    i, j, k = np.indices(SHAPE, dtype=float) - (np.array(SHAPE)[:, None, None, None] - 1) / 2
    ellipsoid = (i / 14) ** 2 + (j / 16) ** 2 + (k / 7) ** 2 <= 1  # the phantom's brain
    assert f["head_fraction"] == pytest.approx(ellipsoid.mean(), rel=0.15)


def test_higher_contrast_lowers_every_quantile():
    base, hot = (
        input_features(head_phantom(1), 3.3),
        input_features(head_phantom(1, ratio=5.0), 3.3),
    )
    for key in HIST:  # the brain relative to hotter striata: about 3/5 of its former level
        assert hot[key] < 0.9 * base[key], key
    for key in ("hist_p50", "hist_p75", "hist_p90"):  # (the 10th: a higher head threshold)
        assert 0.5 < hot[key] / base[key] < 0.75, key
    assert hot["contrast"] > 1.4 * base["contrast"]


def test_smoothing_flattens_the_histogram_and_widens_the_head():
    x = head_phantom(1)
    base, smooth = input_features(x, 3.3), input_features(ndimage.gaussian_filter(x, 1.5), 3.3)
    for key in ("hist_p50", "hist_p75", "hist_p90"):  # striata spread, peak lower
        assert smooth[key] > 1.15 * base[key], key
    assert smooth["head_fraction"] > 1.2 * base["head_fraction"]  # the blurred rim enters
    assert smooth["noise"] < 0.5 * base["noise"]


def test_in_distribution_passes_every_check(training_range):
    checks = check_input(input_features(head_phantom(99), 3.3), training_range)
    assert {c.name for c in checks} == {"voxel_mm", *RANGE_FEATURES}
    assert all(c.ok for c in checks), [c.message() for c in checks if not c.ok]


def test_histogram_outside_the_range_fails_only_histogram_checks(training_range):
    """Same counts, striata and head; the brain's posterior half at 0.45 and its anterior half
    at 1.55 of the level: same mean, noise and contrast, another histogram."""
    x = head_phantom(99, halves=(0.45, 1.55))
    checks = check_input(input_features(x, 3.3), training_range)
    failed = {c.name for c in checks if not c.ok}
    assert failed and failed <= HIST
    assert {"hist_p25", "hist_p75", "hist_p90"} <= failed
    c = next(c for c in checks if c.name == "hist_p90")
    width = training_range["hist_p90"][1] - training_range["hist_p90"][0]
    assert c.high == pytest.approx(training_range["hist_p90"][1] + INPUT_MARGIN * width)
    assert (
        c.message()
        == f"hist_p90 {c.value:.3g} outside the accepted range [{c.low:.3g}, {c.high:.3g}]"
    )


def test_old_sidecars_get_no_new_checks():
    f = input_features(head_phantom(1), 3.3)
    assert f["hist_p50"] is not None
    assert {c.name for c in check_input(f, OLD_RANGE)} == {"voxel_mm", "noise", "contrast"}
    assert check_input(f, None) == [] and check_input(f, {}) == []


def test_empty_head_has_no_features_and_fails_a_recorded_range(training_range):
    f = input_features(np.zeros(SHAPE, np.float32), 3.3)
    assert all(f[k] is None for k in RANGE_FEATURES)
    failed = {c.name for c in check_input(f, training_range) if not c.ok}
    assert failed == set(RANGE_FEATURES)


def test_input_range_of_is_the_min_and_max_rounded_outward():
    feats = [
        {"voxel_mm": 3.3, "noise": 0.123456, "hist_p50": 0.5, "contrast": None},
        {"voxel_mm": 3.3, "noise": 0.198765, "hist_p50": 0.25, "contrast": None},
        {"voxel_mm": 3.3, "noise": 0.15, "hist_p50": 0.3, "contrast": None},
        {"voxel_mm": 3.3, "noise": 0.16, "hist_p50": 0.3, "contrast": None, "hist_p90": 0.3},
    ]
    rng = input_range_of(feats)
    assert rng == {
        "voxel_mm": 3.3,
        "noise": [0.1234, 0.1988],
        "hist_p50": [0.25, 0.5],
        "hist_p90": [0.3, 0.3],  # one value: an exact decimal stays exact
        "n_studies": 4,
    }
    wide = input_range_of(feats, margin=0.1)
    assert wide["hist_p50"] == pytest.approx([0.225, 0.525])
    for f in feats:  # every training input inside its own range, so it passes with no margin
        assert all(c.ok for c in check_input(f, rng) if f.get(c.name) is not None)


def test_input_range_of_refuses_mixed_voxels_and_nothing():
    with pytest.raises(ValueError, match=r"voxel sizes \[2\.4, 3\.3\]"):
        input_range_of([{"voxel_mm": 3.3, "noise": 0.1}, {"voxel_mm": 2.4, "noise": 0.1}])
    with pytest.raises(ValueError, match="no input features"):
        input_range_of([])
    with pytest.raises(ValueError, match="margin"):
        input_range_of([{"noise": 0.1}], margin=-0.1)
