"""The method concept: one interface, one scaling rule, one loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastdat.methods import (
    LONG,
    RAW,
    Method,
    image_scale,
    load_methods,
    predict,
    predict_tensor,
)
from fastdat.methods import filters as fl
from fastdat.models import build_model


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("unet2", features=4).eval()


def _images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 1.0, size=(n, size, size))


def test_a_network_output_scales_with_its_input(net):
    """Each image is divided by its maximum before the network and multiplied back, so scaling
    the input by k scales the output by k (counts vs counts / s give the same image)."""
    x = _images()
    y = predict(net, x)
    for k in (0.01, 7.0):
        assert np.allclose(predict(net, k * x), k * y, rtol=1e-5, atol=1e-6 * k * y.max())
    assert not np.allclose(y, x)  # the network did something


def test_empty_images_stay_empty(net):
    x = _images()
    x[1] = 0.0
    y = predict(net, x)
    assert np.all(y[1] == 0.0) and np.abs(y[0]).max() > 0


def test_one_rule_for_training_and_prediction(net):
    x = torch.from_numpy(_images()).float()[:, None]
    s = image_scale(x)
    assert torch.equal(s[:, 0, 0, 0], x.amax(dim=(1, 2, 3)))
    with torch.no_grad():
        by_hand = net(x / s) * s
    assert torch.allclose(predict_tensor(net, x, batch=2), by_hand, atol=1e-6)


def test_method_kinds_apply_as_named(net):
    x = _images()
    assert np.array_equal(Method(RAW, "raw").apply(x), x)
    assert np.array_equal(Method(LONG, "reference", input_kind=LONG).apply(x), x)
    g = Method("gaussian", "filter", params={"sigma": 1.5})
    assert np.array_equal(g.apply(x), fl.apply("gaussian", x, {"sigma": 1.5}))
    n = Method("net", "network", model=net)
    assert np.array_equal(n.apply(x), predict(net, x))
    vol = np.moveaxis(x, 0, -1)  # (X, Y, Z): axial slices
    assert np.array_equal(n.apply_volume(vol), np.moveaxis(n.apply(x), 0, -1))
    with pytest.raises(ValueError, match="unknown kind"):
        Method("x", "magic")
    with pytest.raises(ValueError, match="needs its model"):
        Method("x", "network")


def test_load_methods_order_and_clashes(tmp_path, net):
    from fastdat.models import save_model

    stem = tmp_path / "run" / "best"
    stem.parent.mkdir()
    save_model(net, stem)
    tuned = {"gaussian": {"params": {"sigma": 1.0}}, "nlm": {"params": {"h": 0.1}}}
    methods = load_methods({"mine": stem}, tuned)
    assert [(m.name, m.kind) for m in methods] == [
        ("5min", "raw"),
        ("gaussian", "filter"),
        ("nlm", "filter"),
        ("mine", "network"),
        ("25min", "reference"),
    ]
    x = _images()
    assert np.allclose(methods[3].apply(x), predict(net, x), atol=1e-6)
    with pytest.raises(ValueError, match="clash"):
        load_methods({"gaussian": stem})
    with pytest.raises(ValueError, match="unknown filter"):
        load_methods(None, {"median": {"params": {}}})


def _volume_net(**kw):
    torch.manual_seed(0)
    model = build_model("countunet", residual=True, features=4, levels=3, **kw).eval()
    for p in model.parameters():  # non-zero FiLM maps: the scan time matters
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def test_volume_networks_see_neighbours_and_the_scan_time():
    """2.5D: slice z is restored from slices z-1, z, z+1 (edge slices repeated), the whole volume
    divided by its maximum; odd sides are padded and cropped back."""
    from fastdat.methods import predict_volume, restores_volumes
    from fastdat.models.countnet import condition_value

    model = _volume_net(in_channels=3)
    assert restores_volumes(model) and not restores_volumes(build_model("unet2"))
    vol = np.random.default_rng(0).gamma(2.0, 1.0, (13, 11, 6))
    got = predict_volume(model, vol, minutes=2.0)
    assert got.shape == vol.shape
    s = vol.max()
    x = torch.from_numpy(vol / s).float().permute(2, 0, 1)
    z = 0  # first slice: its lower neighbour is itself
    stack = torch.stack([x[0], x[0], x[1]])[None]
    stack = torch.nn.functional.pad(stack, (0, 1, 0, 3), mode="replicate")  # to 16 x 12
    with torch.no_grad():
        ref = model(stack, condition_value(2.0))[0, 0, :13, :11] * s
    np.testing.assert_allclose(got[:, :, z], ref.double().numpy(), rtol=1e-5, atol=1e-6 * s)
    assert not np.allclose(got, predict_volume(model, vol, minutes=15.0))
    # the one scale: the volume's maximum
    np.testing.assert_allclose(
        predict_volume(model, 7 * vol, 2.0), 7 * got, rtol=1e-4, atol=1e-5 * s
    )
    assert not predict_volume(model, np.zeros((8, 8, 3)), 2.0).any()
    with pytest.raises(ValueError, match="give the scan time"):
        predict_volume(model, vol)


def test_3d_network_restores_the_whole_volume():
    from fastdat.methods import predict_volume

    model = _volume_net(spatial_dims=3)
    vol = np.random.default_rng(1).gamma(2.0, 1.0, (10, 12, 7))
    got = predict_volume(model, vol, minutes=5.0)
    assert got.shape == vol.shape and np.isfinite(got).all()
    # the slice restored depends on its neighbours in z (a slab, not independent slices)
    other = vol.copy()
    other[:, :, 6] *= 0.5
    changed = predict_volume(model, other, minutes=5.0)
    assert not np.allclose(changed[:, :, 5], got[:, :, 5])


def test_a_volume_network_method_restores_each_study_and_knows_its_minutes():
    model = _volume_net(in_channels=3)
    m = Method("count", "network", input_kind="7.5min", model=model)
    assert m.scan_minutes == 7.5
    rng = np.random.default_rng(2)
    a, b = rng.gamma(2, 1, (4, 16, 16)), rng.gamma(2, 1, (3, 16, 16))
    got = m.apply(np.concatenate([a, b]), np.array(["s1"] * 4 + ["s2"] * 3))
    vol_a = np.moveaxis(m.apply_volume(np.moveaxis(a, 0, -1)), -1, 0)
    np.testing.assert_allclose(got[:4], vol_a)
    from fastdat.methods import predict_volume

    direct = predict_volume(model, np.moveaxis(b, 0, -1), 7.5)
    np.testing.assert_allclose(got[4:], np.moveaxis(direct, -1, 0))
    with pytest.raises(ValueError, match="give each slice's study"):
        m.apply(a)
    told = Method("count", "network", input_kind="noisefree", model=model, minutes=2.0)
    assert told.scan_minutes == 2.0
    with pytest.raises(ValueError, match="scan time"):
        Method("count", "network", input_kind="noisefree", model=model).apply_volume(a)
