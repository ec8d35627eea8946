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
