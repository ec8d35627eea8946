"""The count-aware U-Net: shapes in 2D / 2.5D / 3D, the residual on the centre slice, the
conditioning contract, and that a trained network's output depends on the stated scan time in
the direction the noise needs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fastdat.models import build_model, model_info, save_model
from fastdat.models.countnet import condition_value


@pytest.mark.parametrize(
    "dims, channels, shape",
    [(2, 1, (24, 40)), (2, 3, (64, 64)), (2, 5, (8, 16)), (3, 1, (16, 24, 8)), (3, 1, (8, 8, 8))],
)
def test_shapes(dims, channels, shape):
    model = build_model(
        "countunet", in_channels=channels, spatial_dims=dims, residual=True, levels=4, features=4
    )
    x = torch.rand(2, channels, *shape)
    y = model(x, condition_value(torch.tensor([2.0, 10.0])))
    assert y.shape == (2, 1, *shape)
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.rand(1, channels, *[s + 4 for s in shape]), condition_value(5.0))


def test_condition_value():
    assert condition_value(5.0).item() == 0.0
    assert condition_value(torch.tensor([2.5, 10.0, 20.0])).tolist() == [-1.0, 1.0, 2.0]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positive number of minutes"):
            condition_value(bad)


def test_conditioning_contract():
    model = build_model("countunet", features=4)
    assert model_info("countunet").conditioned and model.conditioned
    with pytest.raises(ValueError, match="count-aware"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="2 conditioning values for 3 images"):
        model(torch.rand(3, 1, 16, 16), torch.zeros(2))
    # one value serves a whole batch
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(model(x, torch.zeros(1)), model(x, torch.zeros(3)))
    plain = build_model("unet2")
    with pytest.raises(ValueError, match="takes no scan-time condition"):
        plain(torch.rand(1, 1, 16, 16), torch.zeros(1))


def test_residual_adds_the_centre_slice_of_a_stack():
    model = build_model("countunet", in_channels=5, residual=True, nonneg=True, features=4)
    for p in model.net.head.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 5, 16, 16)
    assert torch.equal(model(x, torch.zeros(2)), torch.relu(x[:, 2:3]))
    with pytest.raises(ValueError, match="odd stack"):
        build_model("countunet", in_channels=4, residual=True)


def test_starts_unconditioned():
    """Zero-initialized FiLM maps: before training the scan time changes nothing."""
    model = build_model("countunet", features=4)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x, condition_value(2.0)), model(x, condition_value(15.0)))


def test_trained_network_uses_the_stated_scan_time():
    """Denoising with a noise SD that depends on the scan time (SD ~ 1 / sqrt(minutes), as for
    counts): after training on a mix of 2- and 15-min inputs, the network's correction is larger
    for a 2-min statement than a 15-min one on the same image, and each scan time is denoised
    better with its own statement than with the other's."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model("countunet", features=8, levels=2, residual=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")

    def batch(n, minutes):
        c = 4 + 4 * torch.rand(n, 2, generator=gen)
        clean = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 8)
        sd = 0.25 * (5.0 / minutes) ** 0.5
        noisy = clean + sd[:, None, None] * torch.randn(n, 16, 16, generator=gen)
        return noisy[:, None], clean[:, None], condition_value(minutes)

    for _ in range(300):
        minutes = torch.where(torch.rand(32, generator=gen) < 0.5, 2.0, 15.0)
        x, y, c = batch(32, minutes)
        loss = torch.nn.functional.mse_loss(model(x, c), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        err = {}
        for true in (2.0, 15.0):
            x, y, _ = batch(64, torch.full((64,), true))
            for stated in (2.0, 15.0):
                pred = model(x, condition_value(torch.full((64,), stated)))
                err[true, stated] = torch.mean((pred - y) ** 2).item()
            if true == 2.0:
                hard = (model(x, condition_value(2.0)) - x).abs().mean().item()
                soft = (model(x, condition_value(15.0)) - x).abs().mean().item()
    assert hard > 1.5 * soft
    assert err[2.0, 2.0] < 0.8 * err[2.0, 15.0]
    assert err[15.0, 15.0] < 0.8 * err[15.0, 2.0]


def test_building_it_does_not_import_monai():
    code = (
        "import sys; from fastdat.models import load_model, build_model; "
        "build_model('countunet', features=4); print('monai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _member(seed: int, **kw):
    torch.manual_seed(seed)
    model = build_model("countunet", in_channels=3, residual=True, nonneg=True, features=4, **kw)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_ensemble_is_the_mean_of_its_members_and_saves_as_one_model(tmp_path):
    from fastdat.methods import predict_volume
    from fastdat.models import load_model
    from fastdat.models.ensemble import ensemble_from

    members = [_member(s) for s in (1, 2, 3)]
    ens = ensemble_from(members)
    assert ens.conditioned and ens.config["name"] == "ensemble" and ens.config["size"] == 3
    x, c = torch.rand(2, 3, 16, 16), condition_value(torch.tensor([2.0, 10.0]))
    with torch.no_grad():
        pre = torch.stack([m.net(x, c) + x[:, 1:2] for m in members])
        np.testing.assert_allclose(ens(x, c), torch.relu(pre.mean(0)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ens.each(x, c), pre, rtol=1e-5, atol=1e-6)
    save_model(ens, tmp_path / "ens")
    again = load_model(tmp_path / "ens")
    with torch.no_grad():
        assert torch.equal(again(x, c), ens(x, c))
    # the spread map: SD of the members' clamped outputs, on the volume's scale
    vol = np.random.default_rng(0).gamma(2.0, 1.0, (16, 16, 5))
    mean, sd = predict_volume(ens, vol, 5.0, spread=True)
    outs = np.stack([predict_volume(m, vol, 5.0) for m in members])
    np.testing.assert_allclose(sd, outs.std(axis=0), rtol=1e-4, atol=1e-6 * vol.max())
    assert sd.max() > 0
    single_mean, single_sd = predict_volume(members[0], vol, 5.0, spread=True)
    np.testing.assert_allclose(single_mean, outs[0])
    assert not single_sd.any()
    with pytest.raises(ValueError, match="built differently"):
        ensemble_from([members[0], _member(4, levels=3)])


def test_save_ensemble_joins_runs_of_one_recipe_and_refuses_others(tmp_path):
    from fastdat.models import load_model
    from fastdat.models.checkpoint import read_sidecar
    from fastdat.models.ensemble import ensemble_from, save_ensemble

    base = {"model": "countunet", "input_kinds": ["2min", "5min"], "target_kind": "noisefree"}
    runs = []
    for seed in (1, 2):
        extra = {
            "train": {**base, "seed": seed},
            "dataset_fingerprint": "abc",
            "epoch": seed,
            "training_voxel_mm": 3.3,
        }
        save_model(_member(seed), tmp_path / f"run{seed}" / "best", extra=extra)
        runs.append(tmp_path / f"run{seed}")
    save_ensemble(runs, tmp_path / "ens")
    meta = read_sidecar(tmp_path / "ens")
    assert meta["train"]["target_kind"] == "noisefree" and meta["dataset_fingerprint"] == "abc"
    assert [m["seed"] for m in meta["members"]] == [1, 2]
    assert meta["training_voxel_mm"] == 3.3  # denoise resamples other voxel sizes to it
    x, c = torch.rand(2, 3, 16, 16), condition_value(torch.tensor([2.0, 10.0]))
    expected = ensemble_from([load_model(r / "best") for r in runs])
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "ens")(x, c), expected(x, c))
    with pytest.raises(ValueError, match="exists"):
        save_ensemble(runs, tmp_path / "ens")
    other = {"train": {**base, "seed": 3, "target_kind": "25min"}, "dataset_fingerprint": "abc"}
    save_model(_member(3), tmp_path / "run3" / "best", extra=other)
    with pytest.raises(ValueError, match="target_kind"):
        save_ensemble([runs[0], tmp_path / "run3"], tmp_path / "ens2")
    refit = {"train": {**base, "seed": 4}, "dataset_fingerprint": "xyz"}
    save_model(_member(4), tmp_path / "run4" / "best", extra=refit)
    with pytest.raises(ValueError, match="another dataset"):
        save_ensemble([runs[0], tmp_path / "run4"], tmp_path / "ens3")
    with pytest.raises(ValueError, match="at least two"):
        save_ensemble(runs[:1], tmp_path / "ens4")
