from __future__ import annotations

import json

import pytest
import torch

from fastdat.models import build_model, list_models, load_model, model_info, save_model

STUDY = [
    "unet1",
    "unet2",
    "unet3",
    "unet4",
    "unet5",
    "vnet",
    "unetpp",
    "r2unet",
    "attention_unet",
    "transunet",
]
# small widths keep the tests quick; the architecture (depth, blocks) is unchanged
SMALL = {
    "unet1": {"features": 8},
    "unet2": {"features": 8},
    "unet3": {"features": 8},
    "unet4": {"features": 8},
    "unet5": {"features": 8},
    "vnet": {},
    "unetpp": {"features": (8, 8, 16, 16, 32, 8)},
    "r2unet": {"features": (8, 16, 16, 32)},
    "attention_unet": {"channels": (8, 16, 16, 32)},
    "transunet": {"features": (8, 16, 16, 32), "hidden": 32, "depth": 2, "heads": 4},
}


def test_the_study_models_are_registered_in_order():
    assert list_models()[:10] == STUDY
    for name in STUDY:
        assert model_info(name).reference


@pytest.fixture(params=STUDY)
def name(request):
    return request.param


def _other_size(name):
    m = model_info(name).multiple
    return 3 * max(m, 16) if name != "unet1" else 37  # odd sizes where the model allows


@pytest.mark.parametrize("residual", [False, True])
def test_shapes_gradients_and_determinism(name, residual):
    torch.manual_seed(0)
    model = build_model(name, residual=residual, nonneg=True, **SMALL[name])
    for side in (64, _other_size(name)):
        x = torch.rand(2, 1, side, side)
        y = model.train()(x)
        assert y.shape == x.shape and (y >= 0).all()
        y.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        model.zero_grad()
    model.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_residual_predicts_the_correction(name):
    torch.manual_seed(0)
    plain = build_model(name, **SMALL[name]).eval()
    res = build_model(name, residual=True, **SMALL[name]).eval()
    res.load_state_dict(plain.state_dict())
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(res(x), x + plain(x))


def test_wrong_size_names_the_multiple(name):
    m = model_info(name).multiple
    if m == 1:
        pytest.skip("takes any size")
    model = build_model(name, **SMALL[name])
    with pytest.raises(ValueError, match=f"multiple of {m}"):
        model(torch.rand(1, 1, m * 4 + 1, m * 4))


def test_safetensors_round_trip(name, tmp_path):
    torch.manual_seed(1)
    model = build_model(name, **SMALL[name])
    model.train()(torch.rand(2, 1, 64, 64))  # move batch-norm statistics off their defaults
    model.eval()
    path = save_model(model, tmp_path / name, extra={"note": "test"})
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    assert meta["model"]["name"] == name and meta["note"] == "test"
    again = load_model(path)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    # the same weights make the same file: its SHA-256 in the sidecar names the weights alone
    for k in range(3):
        save_model(again, tmp_path / f"copy{k}")
        assert (tmp_path / f"copy{k}.safetensors").read_bytes() == path.read_bytes()
        copy = json.loads((tmp_path / f"copy{k}.json").read_text())
        assert copy["weights_sha256"] == meta["weights_sha256"]


@pytest.mark.parametrize("name3d", STUDY)
def test_three_dimensional(name3d):
    model = build_model(name3d, spatial_dims=3, **SMALL[name3d]).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_bad_requests():
    with pytest.raises(ValueError, match="unknown model 'unet9'"):
        build_model("unet9")
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        build_model("unet4", in_channels=2, out_channels=1, residual=True)


def test_corrupt_or_mismatched_checkpoints(tmp_path):
    model = build_model("unet2", features=8)
    path = save_model(model, tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)
    path = save_model(model, tmp_path / "m2")
    meta = json.loads((tmp_path / "m2.json").read_text())
    meta["model"]["features"] = 16  # sidecar no longer matches the weights
    (tmp_path / "m2.json").write_text(json.dumps(meta))
    with pytest.raises((ValueError, RuntimeError)):
        load_model(path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent")


def test_running_statistics_match_the_batch_statistics_they_were_collected_from(name):
    """Evaluation mode must reproduce training mode on the batch the running statistics came from.

    With ``momentum=None`` a normalization layer's running statistics after one training-mode pass
    are that pass's batch statistics (the variance unbiased; rescaled here to the biased one that
    training mode divides by), so evaluation mode on the same batch must give the same output. A
    layer reused on differently distributed inputs (R2U-Net's recurrent steps sharing one
    BatchNorm) averages statistics that match none of its uses, and evaluation-mode output then
    departs from training-mode output.
    """
    torch.manual_seed(0)
    model = build_model(name, residual=False, nonneg=False, **SMALL[name])
    per_channel = {}
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass gives that pass's statistics
            m.register_forward_pre_hook(
                lambda mod, inp: per_channel.setdefault(mod, []).append(
                    inp[0].numel() // inp[0].shape[1]
                )
            )
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0  # dropout differs between the modes by design
    x = torch.rand(8, 1, 64, 64)
    with torch.no_grad():
        y_train = model.train()(x)
        for m, ns in per_channel.items():
            (n,) = set(ns)
            m.running_var *= (n - 1) / n
        y_eval = model.eval()(x)
    err = float((y_eval - y_train).abs().max() / y_train.abs().max())
    assert err < 1e-4, f"{name}: evaluation output departs from training output by {err:.2e}"


def test_nonneg_clamp_passes_gradient_in_training_only():
    """In training the clamp's value is relu's but its gradient is the identity's, so a network
    whose output fell below zero everywhere is pulled back (a plain relu would pass no gradient
    and keep it at zero); in evaluation the output is exactly relu's."""
    torch.manual_seed(0)
    model = build_model("unet2", residual=True, nonneg=True, features=4)
    for p in model.net.parameters():  # push the correction far below zero
        p.data.zero_()
    last = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last.bias.data.fill_(-5.0)
    x, target = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    model.train()
    y = model(x)
    assert torch.equal(y, torch.zeros_like(y))  # the value: clamped at zero
    torch.nn.functional.mse_loss(y, target).backward()
    assert last.bias.grad is not None and float(last.bias.grad.abs().sum()) > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), torch.relu(x + model.net(x)))
