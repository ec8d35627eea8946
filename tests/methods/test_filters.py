from __future__ import annotations

import numpy as np
import pytest

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
