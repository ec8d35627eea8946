from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fastdat.methods import filters as b


def test_butterworth_gain_at_dc_and_cutoff():
    n = 64
    x = np.arange(n)
    k = 16  # cycles per image: f = 2 k / n = 0.5 Nyquist
    wave = 1.0 + 0.5 * np.cos(2 * np.pi * k * x / n)[None, :] * np.ones((n, 1))
    out = b.butterworth(wave[None], cutoff=0.5, order=4)[0]
    assert out.mean() == pytest.approx(1.0, abs=1e-9)  # DC passes
    amp = (out.max() - out.min()) / 2
    assert amp == pytest.approx(0.5 / np.sqrt(2), rel=1e-6)  # -3 dB at the cutoff


def test_tuning_picks_the_filter_that_removes_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    clean = np.exp(-((xx - 24) ** 2 + (yy - 20) ** 2) / 60.0)[None].repeat(6, 0) + 0.2
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    res = b.tune("gaussian", noisy, clean, {"sigma": [0.5, 1.0, 2.0, 4.0, 8.0]})
    scores = {g["sigma"]: g["psnr"] for g in res["grid"]}
    assert res["params"]["sigma"] not in (0.5, 8.0)  # neither too little nor too much
    assert res["val_psnr"] == max(scores.values()) > scores[0.5]
    assert b.apply("gaussian", noisy, res["params"]).shape == noisy.shape
    with pytest.raises(ValueError, match="unknown baseline"):
        b.apply("wiener", noisy, {})


def test_nlm_reduces_noise():
    rng = np.random.default_rng(1)
    clean = np.ones((2, 32, 32)) * 0.5
    clean[:, 10:20, 10:22] = 1.0
    noisy = clean + 0.08 * rng.standard_normal(clean.shape)
    out = b.nlm(noisy, h=0.08)
    assert np.abs(out - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_volume_filters_are_3d_low_passes_without_wrap_around():
    """``gaussian3d`` is scipy's 3D Gaussian; ``butterworth3d`` keeps a constant volume, keeps
    mass, lowers high frequencies and, mirrored at the borders, leaks nothing from one face to
    the opposite one; a :class:`Method` of either filters volumes only."""
    from fastdat.methods import Method
    from fastdat.methods.filters import butterworth3d, gaussian3d

    rng = np.random.default_rng(0)
    v = rng.poisson(20, (16, 18, 10)).astype(float)
    np.testing.assert_allclose(gaussian3d(v, 1.2), ndimage.gaussian_filter(v, 1.2, mode="reflect"))
    np.testing.assert_allclose(butterworth3d(np.full((8, 8, 6), 3.0), 0.3, 4), 3.0, atol=1e-12)
    b = butterworth3d(v, 0.3, 4)
    assert b.sum() == pytest.approx(v.sum(), rel=0.02)
    hf = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731
    assert hf(b) < 0.5 * hf(v)
    edge = np.zeros((16, 16, 8))
    edge[0, 8, 4] = 100.0
    be = butterworth3d(edge, 0.3, 4)  # a periodic filter would give [-1] as much as [1]
    assert be[-1, 8, 4] < 0.01 * be[1, 8, 4]
    m = Method("butterworth3d", "filter", params={"cutoff": 0.3, "order": 4})
    np.testing.assert_allclose(m.apply_volume(v), b)
    with pytest.raises(ValueError, match="volumes"):
        m.apply(np.moveaxis(v, -1, 0))
