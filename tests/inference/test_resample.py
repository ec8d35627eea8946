"""Resampling to the network's training voxel size and back (:mod:`fastdat.inference.resample`).

Positions are in mm from the centre of the field of view (the module's convention): voxel ``i``
of ``n`` voxels of size ``v`` lies at ``(i - (n - 1) / 2) * v``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fastdat.inference.resample import from_grid, grid_shape, plan, to_grid


def positions(shape, voxel_mm):
    """Voxel-centre coordinates (mm), three arrays of ``shape``."""
    v = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    return [
        (np.arange(n) - (n - 1) / 2)[tuple(slice(None) if a == b else None for b in range(3))]
        * v[a]
        for a, n in enumerate(shape)
    ]


def blob(shape, voxel_mm, centre_mm, sigma_mm):
    """A Gaussian of activity concentration at ``centre_mm`` (mm), peak 1."""
    x, y, z = positions(shape, voxel_mm)
    cx, cy, cz = centre_mm
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma_mm**2))


def centre_of_mass_mm(volume, voxel_mm):
    v = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    com = np.array(ndimage.center_of_mass(volume))
    return (com - (np.array(volume.shape) - 1) / 2) * v


def smooth_volume(shape=(61, 57, 33), voxel_mm=3.3):
    """Two striatum-sized blobs on a brain-sized one (sigma 6 and 30 mm)."""
    return (
        blob(shape, voxel_mm, (0, 0, 0), 30.0)
        + 2 * blob(shape, voxel_mm, (-12, 10, 3), 6.0)
        + 2 * blob(shape, voxel_mm, (12, 10, 3), 6.0)
    ).astype(np.float32)


def test_round_trip_of_a_smooth_volume():
    x = smooth_volume()
    grid = to_grid(x, 3.3, 4.42)
    assert grid.shape == grid_shape(x.shape, 3.3, 4.42) == (46, 43, 25)
    back = from_grid(grid, x.shape, 3.3, 4.42)
    assert back.shape == x.shape and back.dtype == np.float32
    interior = (slice(3, -3),) * 3
    err = np.abs(back - x)[interior].max() / x.max()
    assert err < 0.01
    # and the 4.42 mm grid holds the volume itself, sampled where its voxels lie
    expected = smooth_volume(grid.shape, 4.42)
    assert np.abs(grid - expected)[interior].max() / x.max() < 0.005


@pytest.mark.parametrize("voxel_mm", [2.4, 3.3, 4.8, (2.4, 2.4, 4.0), (3.9, 3.3, 2.2)])
def test_uniform_stays_uniform(voxel_mm):
    x = np.full((37, 41, 23), 5.25, np.float32)
    grid = to_grid(x, voxel_mm, 3.3)
    assert np.all(grid == np.float32(5.25))
    assert np.all(from_grid(grid, x.shape, voxel_mm, 3.3) == np.float32(5.25))


@pytest.mark.parametrize("voxel_mm", [3.3, 2.4, (2.4, 2.4, 4.0)])
def test_position_and_concentration_are_kept(voxel_mm):
    shape = (63, 59, 29) if voxel_mm == 2.4 else (47, 45, 25)
    x = blob(shape, voxel_mm, (14.0, -9.5, 6.0), 8.0)
    com = centre_of_mass_mm(x, voxel_mm)
    np.testing.assert_allclose(com, (14.0, -9.5, 6.0), atol=0.05)
    grid = to_grid(x, voxel_mm, 4.42)
    assert np.abs(centre_of_mass_mm(grid, 4.42) - com).max() < 0.5 * 4.42
    back = from_grid(grid, shape, voxel_mm, 4.42)
    v = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    assert np.all(np.abs(centre_of_mass_mm(back, voxel_mm) - com) < 0.5 * v)
    # values are concentrations: the grid holds the same blob, and the same total activity
    # (sum x voxel volume)
    expected = blob(grid.shape, 4.42, (14.0, -9.5, 6.0), 8.0)
    assert np.abs(grid - expected).max() < 0.005
    assert grid.sum() * 4.42**3 == pytest.approx(x.sum() * np.prod(v), rel=0.01)


def test_anisotropic_voxels_map_each_axis_by_its_own_size():
    """A linear function of position (mm) is reproduced by the spline, away from the edges of
    the input (where the edge-value extension bends it)."""
    shape, voxel = (31, 29, 17), (2.4, 2.6, 4.0)
    x, y, z = positions(shape, voxel)
    vol = 100 + 1.0 * x - 0.5 * y + 2.0 * z
    grid = to_grid(vol, voxel, 3.3)
    assert grid.shape == (23, 23, 21)
    gx, gy, gz = positions(grid.shape, 3.3)
    expected = 100 + 1.0 * gx - 0.5 * gy + 2.0 * gz
    half = np.array([(n - 1 - 8) / 2 * v for n, v in zip(shape, voxel, strict=True)])
    inside = (np.abs(gx) <= half[0]) & (np.abs(gy) <= half[1]) & (np.abs(gz) <= half[2])
    assert inside.sum() > 2000
    # 0.01 is a position error of 0.005 mm along z (2 per mm)
    np.testing.assert_allclose(grid[inside], expected[inside], rtol=0, atol=1e-2)
    back = from_grid(grid, shape, voxel, 3.3)
    core = (slice(6, -6),) * 3
    np.testing.assert_allclose(back[core], vol[core], rtol=0, atol=1e-2)


def test_non_negative_input_stays_non_negative():
    rng = np.random.default_rng(0)
    x = rng.poisson(0.4, (33, 35, 21)).astype(np.float32)  # mostly 0 and 1: sharp everywhere
    x[10:20, 10:20, 5:12] = 50.0  # a hot cube with hard edges: the spline rings around it
    for voxel, target in ((3.3, 4.42), (2.4, 3.3), (4.8, 3.3)):
        grid = to_grid(x, voxel, target)
        back = from_grid(grid, x.shape, voxel, target)
        for y in (grid, back):
            assert y.min() == 0
    # no overshoot at the reconstruction's resolution (12 mm FWHM at 3.3 mm voxels)
    smooth = ndimage.gaussian_filter(x, 12.0 / 2.355 / 3.3)
    grid = to_grid(smooth, 3.3, 4.42)
    assert grid.max() < 1.01 * smooth.max()
    assert from_grid(grid, x.shape, 3.3, 4.42).max() < 1.01 * smooth.max()
    # the clamp is for activity: an input with negative values keeps its undershoot
    shifted = to_grid(x - 1, 3.3, 4.42)
    assert shifted.min() < -1


def test_same_voxel_size_is_the_identity():
    x = smooth_volume((21, 19, 11))
    np.testing.assert_array_equal(to_grid(x, 3.3, 3.3), x)
    np.testing.assert_array_equal(from_grid(x, x.shape, 3.3, 3.3), x)


def test_plan():
    assert plan(3.3, 3.3) is False
    assert plan(3.4, 3.3) is False  # within 5 %
    assert plan(3.6, 3.3) is True
    assert plan(2.4, 3.3) is True
    assert plan((3.3, 3.3, 4.0), 3.3) is True
    assert plan(3.6, 3.3, tolerance=0.1) is False
    assert plan(6.0, 3.3, stated_range=(2.0, 6.5)) is True


@pytest.mark.parametrize("voxel_mm", [6.5, 1.2, (3.3, 3.3, 5.5)])
def test_plan_refuses_outside_the_stated_range(voxel_mm):
    with pytest.raises(ValueError) as err:
        plan(voxel_mm, 3.3)
    msg = str(err.value)
    sizes = np.broadcast_to(np.asarray(voxel_mm, float), (3,))
    assert " x ".join(f"{v:g}" for v in sizes) + " mm" in msg
    assert "2-5 mm" in msg and "3.3 mm" in msg


def test_bad_arguments():
    x = np.ones((9, 9, 9), np.float32)
    with pytest.raises(ValueError, match="positive"):
        to_grid(x, 0.0, 3.3)
    with pytest.raises(ValueError, match="positive"):
        plan(3.3, -1.0)
    with pytest.raises(ValueError, match=r"expected a volume"):
        to_grid(x[0], 3.3, 3.3)
    with pytest.raises(ValueError, match=r"has shape \(9, 9, 9\)"):
        from_grid(x, (9, 9, 9), 2.4, 3.3)
