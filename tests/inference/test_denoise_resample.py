"""``denoise_volume`` restores an input of another voxel size on the network's training grid and
returns it on the input's own grid; outside the stated range it says so (or refuses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastdat.inference import resample as rs
from fastdat.inference.denoise import RestorationRefused, denoise_volume
from fastdat.models import build_model


class Spy(torch.nn.Module):
    """A volume network that returns its input and records the grids it was given."""

    def __init__(self, net):
        super().__init__()
        self.inner = net
        self.shapes = []

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, x, *args, **kwargs):
        self.shapes.append(tuple(x.shape))
        return self.inner(x, *args, **kwargs)


def _identity_countnet():
    torch.manual_seed(0)
    model = build_model("countunet", residual=True, nonneg=True, features=4, levels=2).eval()
    for p in model.net.head.parameters():  # zero correction: output = input
        torch.nn.init.zeros_(p)
    return model


def _head(shape, voxel_mm):
    """A smooth head (30 mm SD) with two striatum-sized blobs (6 mm SD), in mm about the centre."""
    axes = [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, voxel_mm, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    g = lambda cx, s: np.exp(-((x - cx) ** 2 + y**2 + z**2) / (2 * s**2))  # noqa: E731
    return (10 * g(0, 30) + 40 * g(-12, 6) + 40 * g(12, 6)).astype(np.float32)


@pytest.mark.parametrize("voxel_mm", [(4.4, 4.4, 4.4), (2.6, 2.6, 3.9)])
def test_restored_on_the_training_grid_and_back(voxel_mm):
    net = _identity_countnet()
    net.training_voxel_mm = 3.3
    shape = (40, 40, 30)
    vol = _head(shape, voxel_mm)
    out, info = denoise_volume(
        vol,
        net,
        "cpu",
        "anchored",
        voxel_mm,
        minutes=5.0,
        guard=False,
        input_range={"voxel_mm": 3.3},
    )
    assert out.shape == vol.shape
    grid = rs.grid_shape(shape, voxel_mm, 3.3)
    assert info["resampled"]["grid_shape"] == list(grid)
    assert info["resampled"]["input_voxel_mm"] == list(voxel_mm)
    # an identity network: the round trip 3.3 mm and back, within the spline's error (1 %)
    assert np.abs(out - vol).max() < 0.01 * vol.max()
    # the input checks saw the training grid, not the input's voxels (no warning)
    assert [(c["name"], c["value"], c["ok"]) for c in info["input_checks"]] == [
        ("voxel_mm", 3.3, True)
    ]
    assert info["warnings"] == []


def test_the_network_sees_the_training_grid():
    spy = Spy(_identity_countnet())
    spy.training_voxel_mm = 3.3
    vol = _head((40, 40, 30), (4.4,) * 3)
    denoise_volume(vol, spy, "cpu", "anchored", 4.4, minutes=5.0, guard=False)
    grid = rs.grid_shape(vol.shape, 4.4, 3.3)  # (53, 53, 40)
    seen = {s[-2:] for s in spy.shapes}
    # slices of the grid (padded up to the network's multiple), never of the 4.4 mm input
    assert all(h >= grid[0] and w >= grid[1] for h, w in seen)
    assert all(h < grid[0] + 4 and w < grid[1] + 4 for h, w in seen)


def test_within_tolerance_nothing_is_resampled():
    net = _identity_countnet()
    net.training_voxel_mm = 3.3
    vol = _head((32, 32, 24), (3.4,) * 3)
    out, info = denoise_volume(vol, net, "cpu", "anchored", 3.4, minutes=5.0, guard=False)
    assert "resampled" not in info
    np.testing.assert_allclose(out, np.clip(vol, 0, None), rtol=1e-5, atol=1e-5 * vol.max())


def test_outside_the_stated_range_warned_or_refused():
    net = _identity_countnet()
    net.training_voxel_mm = 3.3
    vol = _head((20, 20, 16), (6.0,) * 3)
    out, info = denoise_volume(vol, net, "cpu", "anchored", 6.0, minutes=5.0, guard=False)
    assert out.shape == vol.shape and "resampled" not in info
    assert info["warnings"][0].startswith("not resampled: voxel size 6 x 6 x 6 mm is outside")
    with pytest.raises(RestorationRefused, match="outside the range this model accepts"):
        denoise_volume(vol, net, "cpu", "anchored", 6.0, minutes=5.0, refuse_ood=True)


def test_without_a_training_voxel_nothing_is_resampled():
    net = _identity_countnet()  # no training_voxel_mm (a run trained before it was recorded)
    vol = _head((32, 32, 24), (4.4,) * 3)
    _, info = denoise_volume(vol, net, "cpu", "anchored", 4.4, minutes=5.0, guard=False)
    assert "resampled" not in info
