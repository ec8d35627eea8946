from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastdat.simulate.acquisition import (
    AcquisitionConfig,
    ReconConfig,
    add_background,
    crop,
    draw_total_counts,
    embed,
    simulate_acquisition,
)
from fastdat.tomo.osem import gaussian_filter3d


def test_background_share_positive_and_broad():
    cfg = AcquisitionConfig(background_fraction=0.3)
    p = torch.zeros(3, 64, 64, dtype=torch.float64)
    p[:, 28:36, 28:36] = 1.0
    b = add_background(p, 3.5, cfg)
    assert (b >= 0).all()
    assert float(b.sum() / (b.sum() + p.sum())) == pytest.approx(0.3, rel=1e-9)
    # broad: counts far from the source (a corner ~150 mm away) and a smooth profile
    assert b[:, 2, 2].min() > 0.005 * b[:, 32, 32].max()
    assert b[0, 32, 32] > b[0, 32, 10] > b[0, 32, 2]


def test_no_background_when_fraction_zero():
    p = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert (add_background(p, 4.0, AcquisitionConfig(background_fraction=0.0)) == 0).all()


def test_embed_crop_round_trip():
    x = torch.rand(4, 10, 6, generator=torch.Generator().manual_seed(0))
    d = embed(x, 16)
    assert d.shape == (4, 16, 16) and d.sum() == pytest.approx(float(x.sum()))
    torch.testing.assert_close(crop(d, 10, 6), x)
    with pytest.raises(ValueError, match="does not fit"):
        embed(x, 8)


def test_gaussian_filter_matches_scipy_inside():
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(30, 30, 30, dtype=torch.float64)
    x[10:20, 8:22, 12:18] = torch.rand(10, 14, 6, generator=g, dtype=torch.float64)
    fwhm, vox = 8.0, 3.0
    ours = gaussian_filter3d(x, fwhm, vox).numpy()
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2))) / vox
    ref = ndimage.gaussian_filter(x.numpy(), sigma, mode="constant", truncate=3.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    assert ours.sum() == pytest.approx(x.sum().item(), rel=1e-3)


def test_total_counts_within_clinical_range():
    cfg = AcquisitionConfig(counts_log_sd=1.0)  # wide, so the clip matters
    g = torch.Generator().manual_seed(0)
    draws = [draw_total_counts(g, cfg) for _ in range(200)]
    assert min(draws) >= 1.5e6 and max(draws) <= 3.0e6
    assert min(draws) == 1.5e6 and max(draws) == 3.0e6


@pytest.fixture(scope="module")
def small_study():
    n, nz = 24, 12
    act = torch.zeros(n, n, nz)
    act[6:18, 5:19, 2:10] = 1.0
    act[9:12, 10:14, 5:8] = 6.0
    mu = torch.where(act > 0, 0.15, 0.0)
    cfg = AcquisitionConfig(detector_size=32, n_views=24, durations_min=(25.0, 10.0, 5.0))
    rc = ReconConfig(iterations=2, subsets=4, postfilter_fwhm_mm=8.0)
    out = simulate_acquisition(act, mu, 8.0, 2.0e6, cfg, rc, torch.Generator().manual_seed(0))
    return act, out


def test_counts_thinned_and_nested(small_study):
    _, out = small_study
    y = out["projections"]
    assert set(y) == {25.0, 10.0, 5.0}
    assert y[25.0].dtype == torch.int32 and y[25.0].shape == (24, 32, 32)
    assert abs(int(y[25.0].sum()) - 2.0e6) < 5 * 2.0e6**0.5
    assert (y[5.0] <= y[10.0]).all() and (y[10.0] <= y[25.0]).all()
    assert int(y[5.0].sum()) / int(y[25.0].sum()) == pytest.approx(0.2, abs=0.005)
    # background reaches bins outside the object's shadow
    assert y[25.0][:, 0, :].sum() > 0


def test_images_share_one_scale(small_study):
    act, out = small_study
    im = out["images"]
    assert all(x.shape == act.shape and (x >= 0).all() for x in im.values())
    hot = act == 6.0
    m25, m5 = im[25.0][hot].mean(), im[5.0][hot].mean()
    assert float(m5 / m25) == pytest.approx(1.0, abs=0.05)
    # the hot insert stays hotter than the warm background
    warm = act == 1.0
    assert im[25.0][hot].mean() > 2 * im[25.0][warm].mean()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_views": 0}, "n_views"),
        ({"collimator": "nope"}, "collimator"),
        ({"background_fraction": 1.0}, "background_fraction"),
        ({"counts_median": -5.0}, "counts"),
        ({"durations_min": (25.0, 0.0)}, "durations_min"),
    ],
)
def test_acquisition_config_rejects_impossible_values(kw, match):
    with pytest.raises(ValueError, match=match):
        AcquisitionConfig(**kw)


def test_recon_config_rejects_bad_values():
    with pytest.raises(ValueError, match="scatter_correction"):
        ReconConfig(scatter_correction="tew")
    with pytest.raises(ValueError, match="iterations"):
        ReconConfig(iterations=0)
