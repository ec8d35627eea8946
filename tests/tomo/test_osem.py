from __future__ import annotations

import pytest
import torch

from fastdat.tomo.osem import OSEMConfig, osem, subset_views
from fastdat.tomo.projector import SPECTProjector


def _setup(n=24, nz=3, views=24, subsets=4):
    yy, xx = torch.meshgrid(
        torch.arange(n) - (n - 1) / 2, torch.arange(n) - (n - 1) / 2, indexing="ij"
    )
    head = ((xx**2 + yy**2) < (n / 2 - 3) ** 2).to(torch.float64)
    mu = 0.15 * head[..., None].expand(n, n, nz).contiguous()
    x = head.clone()
    x[(xx - 3) ** 2 + (yy + 2) ** 2 < 9] = 6.0  # hot spot
    x = x[..., None].expand(n, n, nz).contiguous()
    kw = dict(
        n=n,
        n_slices=nz,
        pixel_mm=4.0,
        n_views=views,
        orbit_radius_mm=80.0,
        mu_map=mu,
        dtype=torch.float64,
    )
    full = SPECTProjector(**kw)
    subs = [SPECTProjector(**kw, view_indices=v) for v in subset_views(views, subsets)]
    return x, full, subs


def test_subset_projectors_match_full():
    x, full, subs = _setup()
    y = full.A(x)
    for p, v in zip(subs, subset_views(24, 4), strict=True):
        torch.testing.assert_close(p.A(x), y[v])


def test_osem_noise_free_approaches_truth_and_keeps_counts():
    x, full, subs = _setup()
    y = full.A(x)
    err = []
    for it in (1, 4, 16):
        rec = osem(y, subs, cfg=OSEMConfig(iterations=it, subsets=4))
        assert (rec >= 0).all()
        err.append(((rec - x).norm() / x.norm()).item())
        # the estimate reproduces the measured total counts closely
        assert full.A(rec).sum().item() == pytest.approx(y.sum().item(), rel=0.02)
    assert err[0] > err[1] > err[2]
    assert err[2] < 0.6 * err[0]


def test_osem_bad_config():
    with pytest.raises(ValueError, match="iterations"):
        OSEMConfig(iterations=0)
    with pytest.raises(ValueError, match="subsets"):
        subset_views(10, 11)


def test_subset_of_full_projector_equals_a_subset_projector():
    x, full, subs = _setup()
    g = torch.Generator().manual_seed(3)
    for built, v in zip(subs, subset_views(24, 4), strict=True):
        sliced = full.subset(v)
        torch.testing.assert_close(sliced.A(x), built.A(x), rtol=0, atol=0)
        y = torch.rand(len(v), *built.A(x).shape[1:], generator=g, dtype=torch.float64)
        torch.testing.assert_close(sliced.A_adjoint(y), built.A_adjoint(y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="all views"):
        subs[0].subset([0])
