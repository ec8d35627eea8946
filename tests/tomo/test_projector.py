from __future__ import annotations

import pytest
import torch

from fastdat.tomo.projector import SPECTProjector


def _projector(dtype=torch.float64, mu=True, collimator="siemens-lehr", n=17, nz=5):
    g = torch.Generator().manual_seed(0)
    mu_map = 0.15 * torch.rand(n, n, nz, generator=g, dtype=dtype) if mu else None
    return SPECTProjector(
        n,
        nz,
        4.0,
        n_views=12,
        orbit_radius_mm=60.0,
        mu_map=mu_map,
        collimator=collimator,
        dtype=dtype,
    )


@pytest.mark.parametrize("mu", [True, False])
@pytest.mark.parametrize("collimator", ["siemens-lehr", "ge-lehr", None])
def test_adjointness(mu, collimator):
    p = _projector(mu=mu, collimator=collimator)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(17, 17, 5, generator=g, dtype=torch.float64)
    y = torch.rand(12, 17, 5, generator=g, dtype=torch.float64)
    ax = p.A(x)
    err = abs((ax * y).sum() - (x * p.A_adjoint(y)).sum()) / (ax.norm() * y.norm())
    assert err < 1e-5


def test_linearity_and_nonnegativity():
    p = _projector()
    g = torch.Generator().manual_seed(2)
    x1, x2 = (torch.rand(17, 17, 5, generator=g, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(p.A(2.5 * x1 + x2), 2.5 * p.A(x1) + p.A(x2))
    assert (p.A(x1) >= 0).all() and (p.A_adjoint(p.A(x1)) >= 0).all()


def test_point_source_blur_grows_with_distance():
    # A point near the detector of view 0 is sharper than one on the far side.
    p = _projector(mu=False)
    near, far = (
        torch.zeros(17, 17, 5, dtype=torch.float64),
        torch.zeros(17, 17, 5, dtype=torch.float64),
    )
    near[8, 14, 2] = 1.0  # +y is toward the detector at theta = 0
    far[8, 2, 2] = 1.0
    pn, pf = p.A(near)[0], p.A(far)[0]
    assert pn.max() > pf.max()
    assert pn.sum().item() == pytest.approx(pf.sum().item(), rel=0.02)  # no attenuation: conserved


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="orbit_radius_mm"):
        SPECTProjector(64, 4, 4.0, orbit_radius_mm=100.0)
    with pytest.raises(ValueError, match="n_views"):
        SPECTProjector(16, 4, 4.0, n_views=0)
    with pytest.raises(ValueError, match="unknown collimator"):
        SPECTProjector(16, 4, 4.0, collimator="nope")


def test_field_of_view_is_the_inscribed_cylinder():
    from fastdat.tomo.projector import field_of_view, outside_field_of_view

    n = 16
    fov = field_of_view(n)
    assert fov[n // 2, n // 2] and not fov[0, 0] and not fov[0, n - 1]
    # a point source inside the cylinder is seen with the same total from every view
    p = SPECTProjector(n, 2, 4.0, n_views=8, orbit_radius_mm=40.0, collimator=None)
    x = torch.zeros(n, n, 2)
    x[4, 5, :] = 1.0
    assert fov[4, 5] and not outside_field_of_view(x)
    totals = p.A(x).sum((1, 2))
    assert totals.min() > 0.85 * totals.max()
    x[1, 1, :] = 1.0
    assert outside_field_of_view(x)
