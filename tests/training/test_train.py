from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from fastdat.cli import main
from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation
from fastdat.models import load_model
from fastdat.training import loop
from fastdat.training.config import TrainConfig

CFG = TrainConfig(
    model="unet2", model_kwargs={"features": 8}, max_epochs=4, patience=100, batch_size=4
)


def _train(*args: str) -> int:
    """``fastdat train ARGS --device cpu``: the CLI's exit code."""
    return main(["train", *args, "--device", "cpu"])


def _unet2_args(dataset, run, *sets: str) -> list[str]:
    """``train`` arguments of a small unet2 (8 features) on ``dataset`` into ``run``."""
    args = ["--dataset", str(dataset), "--model", "unet2", "--out", str(run)]
    for s in ("model_kwargs.features=8", *sets):
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def dataset(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    cfg = DatasetConfig(n_slices=3, crop=24, split=(2, 1, 1))
    build_dataset(
        sources_from_simulation(cohort, cfg.durations), out, cfg, {"kind": "test"}, progress=False
    )
    return out


def test_end_to_end_cli(dataset, tmp_path):
    run = tmp_path / "run"
    assert _train(*_unet2_args(dataset, run, "max_epochs=2")) == 0
    for name in (
        "best.safetensors",
        "best.json",
        "config.yaml",
        "history.csv",
        "curves.png",
        "state.json",
    ):
        assert (run / name).exists(), name
    meta = json.loads((run / "best.json").read_text())
    assert meta["model"]["name"] == "unet2" and meta["dataset_fingerprint"]
    # the voxel the crops were cut at, which denoise resamples other inputs to
    voxels = {float(v) for v in pd.read_csv(dataset / "studies.csv")["voxel_mm"]}
    assert len(voxels) == 1 and meta["training_voxel_mm"] == pytest.approx(voxels.pop(), abs=1e-3)
    model = load_model(run / "best")
    assert model(torch.rand(1, 1, 24, 24)).shape == (1, 1, 24, 24)
    # a second run into the same folder is refused without --resume
    assert _train("--dataset", str(dataset), "--out", str(run)) == 2


def test_resume_gives_the_same_weights(dataset, tmp_path, monkeypatch):
    full = loop.train(dataset, tmp_path / "full", CFG, progress=False)
    calls = {"n": 0}
    original = loop._write_history

    def killed_after_two_epochs(run, history):
        original(run, history)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the process were killed here

    monkeypatch.setattr(loop, "_write_history", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        loop.train(dataset, tmp_path / "part", CFG, progress=False)
    monkeypatch.setattr(loop, "_write_history", original)
    assert json.loads((tmp_path / "part" / "state.json").read_text())["epoch"] == 2
    resumed = loop.train(dataset, tmp_path / "part", CFG, resume=True, progress=False)
    for name in ("last.safetensors", full.name):
        a = load_file(tmp_path / "full" / name)
        b = load_file(tmp_path / "part" / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert resumed.name == full.name


def test_nan_loss_stops_and_keeps_last_good(dataset, tmp_path, monkeypatch, capsys):
    original = loop.loss_fn
    state = {"calls": 0}

    def poisoned(name, pred, target):
        state["calls"] += 1
        loss = original(name, pred, target)
        return loss * float("nan") if state["calls"] > 6 else loss

    monkeypatch.setattr(loop, "loss_fn", poisoned)
    run = tmp_path / "nan"
    assert _train(*_unet2_args(dataset, run, "batch_size=4")) == 2
    err = capsys.readouterr().err
    assert "loss became nan" in err and "last good checkpoint" in err
    good = json.loads((run / "state.json").read_text())["epoch"]
    assert good >= 1
    load_model(run / "last")  # still loadable


def test_bad_inputs(dataset, tmp_path, capsys):
    assert _train("--dataset", str(dataset), "--model", "unet9", "--out", str(tmp_path / "a")) == 2
    assert "unknown model 'unet9'" in capsys.readouterr().err
    assert _train("--dataset", str(tmp_path), "--out", str(tmp_path / "b")) == 2
    assert "not a FastDaT dataset" in capsys.readouterr().err
    assert (
        _train("--dataset", str(dataset), "--out", str(tmp_path / "c"), "--set", "loss=huber") == 2
    )
    assert "train.loss" in capsys.readouterr().err
    assert _train("--dataset", str(dataset), "--out", str(tmp_path / "d"), "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_dataset_without_validation_split(cohort, tmp_path, capsys):
    out = tmp_path / "ds"
    cfg = DatasetConfig(n_slices=3, crop=24, split=(1, 0, 1))
    build_dataset(
        sources_from_simulation(cohort, cfg.durations), out, cfg, {"kind": "test"}, progress=False
    )
    assert _train("--dataset", str(out), "--out", str(tmp_path / "r")) == 2
    assert "needs 'train' and 'val' splits" in capsys.readouterr().err


def test_ddp_under_torchrun(dataset, tmp_path):
    """Two CPU processes (gloo) train together; rank 0 writes one run."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "fastdat.cli",
        "train",
        *_unet2_args(dataset, run, "max_epochs=2", "batch_size=4"),
        "--device",
        "cpu",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs, written once
    assert "world_size: 2" in (run / "config.yaml").read_text()
    load_model(run / "best")


def test_shift_augmentation_moves_input_and_target_together():
    """With ``shift_px`` the pair moves by one integer offset (edges replicated); without it the
    generator's stream is what it was, so existing configs train bit-identically."""
    import dataclasses

    x = torch.rand(3, 1, 12, 10)
    y = x * 2.0  # any pair: the relation must survive the shift
    cfg = dataclasses.replace(CFG, flips=False, intensity_scale=0.0, shift_px=3)
    gen = torch.Generator().manual_seed(5)
    xs, ys = loop._augment(x, y, gen, cfg)
    di, dj = torch.randint(-3, 4, (2,), generator=torch.Generator().manual_seed(5)).tolist()
    assert (di, dj) != (0, 0)
    torch.testing.assert_close(ys, 2.0 * xs, rtol=0, atol=0)
    # interior: a plain translation of the original
    i0, j0 = max(di, 0), max(dj, 0)
    torch.testing.assert_close(
        xs[..., i0 : 12 + min(di, 0), j0 : 10 + min(dj, 0)],
        x[..., i0 - di : 12 + min(di, 0) - di, j0 - dj : 10 + min(dj, 0) - dj],
        rtol=0,
        atol=0,
    )
    off = dataclasses.replace(cfg, shift_px=0)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loop._augment(x, y, g1, off)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    with pytest.raises(ValueError, match="shift_px"):
        TrainConfig(shift_px=-1)


def test_finetuning_starts_from_the_checkpoint_and_keeps_it_if_nothing_improves(dataset, tmp_path):
    """``init``: epoch 0 is the checkpoint itself (same validation loss as evaluating it), it is
    the best checkpoint until an epoch beats it on validation, and the run records where it
    started; a checkpoint of another architecture is refused by name."""
    from dataclasses import replace

    start = tmp_path / "start"
    loop.train(dataset, start, replace(CFG, max_epochs=1), "cpu", progress=False)
    base = load_model(start / "best")
    data, _ = loop.load_split_tensors(dataset, CFG, torch.device("cpu"))
    expected = loop.evaluate_split(base, data["val"], CFG)["loss"]

    ft = tmp_path / "ft"
    cfg = replace(CFG, init=str(start), lr=1e-12, max_epochs=2, patience=100)
    loop.train(dataset, ft, cfg, "cpu", progress=False)
    state = json.loads((ft / "state.json").read_text())
    meta = json.loads((ft / "best.json").read_text())
    assert meta["init"]["checkpoint"] == str(start / "best")
    assert (
        meta["init"]["weights_sha256"]
        == json.loads((start / "best.json").read_text())["weights_sha256"]
    )
    if state["best_epoch"] == 0:  # lr ~ 0: no epoch can beat the start except by round-off
        assert meta["val"]["loss"] == pytest.approx(expected, rel=1e-6)
        for k, v in load_model(ft / "best").state_dict().items():
            assert torch.equal(v, base.state_dict()[k]), k
    assert state["best_val"] <= expected + 1e-9

    with pytest.raises(ValueError, match="differs from the config"):
        loop.train(
            dataset,
            tmp_path / "bad",
            replace(CFG, init=str(start), model_kwargs={"features": 4}),
            "cpu",
            progress=False,
        )


def test_freeze_norm_keeps_batchnorm_statistics(dataset, tmp_path):
    """With ``freeze_norm`` the running statistics of every batch-norm layer stay those of the
    starting checkpoint while the weights train; without it they move."""
    from dataclasses import replace

    start = tmp_path / "start"
    loop.train(dataset, start, replace(CFG, model="unet4", max_epochs=1), "cpu", progress=False)
    base = load_model(start / "best").state_dict()
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats
    for freeze in (True, False):
        run = tmp_path / f"ft{freeze}"
        cfg = replace(CFG, model="unet4", init=str(start), max_epochs=2, freeze_norm=freeze)
        loop.train(dataset, run, cfg, "cpu", progress=False)
        last = load_model(run / "last").state_dict()
        same = all(torch.equal(last[k], base[k]) for k in stats)
        assert same is freeze
        assert not all(torch.equal(last[k], base[k]) for k in base if k not in stats)
