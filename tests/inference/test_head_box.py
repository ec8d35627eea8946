"""A volume network restores the head's box and keeps the input outside it (cold start)."""

from __future__ import annotations

import numpy as np
import torch

from fastdat.inference.denoise import denoise_volume
from fastdat.methods import head_box, predict_volume
from fastdat.methods.base import BOX_MARGIN, HEAD_FLOOR
from fastdat.models import build_model
from fastdat.models.ensemble import ensemble_from


def _net(seed=0):
    torch.manual_seed(seed)
    model = build_model("countunet", residual=True, nonneg=True, features=4, levels=2).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def _padded_head():
    """A 40 x 36 x 20 head of noisy activity in the middle of an empty 96 x 96 x 64 field."""
    rng = np.random.default_rng(0)
    vol = np.zeros((96, 96, 64), np.float32)
    vol[30:70, 20:56, 22:42] = rng.gamma(4.0, 1.0, (40, 36, 20)).astype(np.float32)
    vol[45:55, 30:40, 28:34] += 30.0  # a hot region
    return vol


def test_the_box_holds_every_voxel_above_the_floor_plus_the_margin():
    vol = _padded_head()
    box = head_box(vol)
    level = np.percentile(vol, 99.9)
    inside = np.zeros(vol.shape, bool)
    inside[box] = True
    assert not (vol > HEAD_FLOOR * level)[~inside].any()
    # an isolated hot voxel far from the head does not stretch the box
    stray = vol.copy()
    stray[2, 90, 60] = vol.max()
    assert head_box(stray) == box
    assert [(b.start, b.stop) for b in box] == [
        (30 - BOX_MARGIN, 70 + BOX_MARGIN),
        (20 - BOX_MARGIN, 56 + BOX_MARGIN),
        (22 - BOX_MARGIN, 42 + BOX_MARGIN),
    ]
    # clipped at the volume's sides; nothing to restore in an empty volume
    edge = np.zeros((20, 20, 10), np.float32)
    edge[0:3, 15:20, 9] = 1.0
    assert [(b.start, b.stop) for b in head_box(edge)] == [(0, 11), (7, 20), (1, 10)]
    assert head_box(np.zeros((8, 8, 8), np.float32)) is None


def test_input_kept_outside_the_box_and_the_network_inside_it():
    vol = _padded_head()
    net = ensemble_from([_net(0), _net(1)])
    out, info, each = denoise_volume(
        vol, net, "cpu", "anchored", 3.3, minutes=5.0, guard=False, members=True
    )
    box = head_box(vol)
    assert info["restored_box"] == [[b.start, b.stop] for b in box]
    outside = np.ones(vol.shape, bool)
    outside[box] = False
    np.testing.assert_array_equal(out[outside], vol[outside])
    for member in each:  # the members too: no spread outside the box
        np.testing.assert_array_equal(member[outside], vol[outside])
    expected = np.clip(predict_volume(net, vol[box], 5.0), 0, None)
    np.testing.assert_allclose(out[box], expected, rtol=1e-5, atol=1e-6 * vol.max())
