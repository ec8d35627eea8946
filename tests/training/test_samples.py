"""Training samples (2D, 2.5D, 3D; several scan times; the self-supervised target), the in-plane
augmentations, and a count-aware network trained end to end on a multi-duration cohort."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation
from fastdat.data.load import Dataset
from fastdat.models import load_model
from fastdat.models.countnet import condition_value
from fastdat.simulate.cohort import resolve_config, simulate_cohort
from fastdat.training import loop
from fastdat.training.config import TrainConfig
from fastdat.training.samples import sample_scale, split_samples

S, H = 4, 8  # slices per study, crop side


def _dataset(kinds=("2min", "5min", "rest2min", "rest5min", "25min")) -> Dataset:
    """Two train studies of S slices; crop value = 1000 * kind + 100 * study + slice."""
    rows = [
        {"study_id": f"s{i}", "patient_id": f"p{i}", "split": "train", "slice": 10 + z}
        for i in range(2)
        for z in range(S)
    ]
    index = pd.DataFrame(rows)
    crops = {}
    for k_i, k in enumerate(kinds):
        arr = np.zeros((len(rows), H, H), np.float32)
        for r, row in enumerate(rows):
            arr[r] = 1000 * (k_i + 1) + 100 * int(row["study_id"][1]) + row["slice"] - 10
        crops[k] = arr
    return Dataset(Path("DS"), crops, index, pd.DataFrame(), {}, {}, None)


def test_2d_samples_are_the_crops():
    ds = _dataset()
    got = split_samples(ds, TrainConfig(), "train", conditioned=False)
    assert got.x.shape == (2 * S, 1, H, H) and got.cond is None and got.scale is None
    assert torch.equal(got.x[:, 0], torch.from_numpy(ds.crops["5min"]))
    assert torch.equal(got.y[:, 0], torch.from_numpy(ds.crops["25min"]))


def test_25d_stacks_neighbours_and_repeats_the_edges():
    ds = _dataset()
    got = split_samples(ds, TrainConfig(context=1), "train", conditioned=False)
    assert got.x.shape == (2 * S, 3, H, H)
    centre = got.x[:, :, 0, 0] % 1000  # 100 * study + slice
    assert centre[:S].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert centre[S:, 1].tolist() == [100, 101, 102, 103]
    assert torch.equal(got.y[:, 0], torch.from_numpy(ds.crops["25min"]))


def test_count_aware_samples_pool_scan_times_with_conditions_and_study_scales():
    ds = _dataset()
    cfg = TrainConfig(input_kinds=("2min", "5min"), target_kind="rest")
    got = split_samples(ds, cfg, "train", conditioned=True)
    assert got.x.shape[0] == 2 * 2 * S  # studies x kinds x slices
    # ordered by study, then kind: study 0's 2-min slices, its 5-min slices, study 1's ...
    expected = [condition_value(2.0).item()] * S + [condition_value(5.0).item()] * S
    assert got.cond.tolist() == pytest.approx(expected * 2)
    # target of each input: the rest of its own thinning
    assert (got.y[:S, 0, 0, 0] // 1000).tolist() == [3] * S  # rest2min
    assert (got.y[S : 2 * S, 0, 0, 0] // 1000).tolist() == [4] * S  # rest5min
    # one scale per study and kind: the maximum of that input slab
    assert got.scale[:S].tolist() == [1003.0] * S and got.scale[-1].item() == 2103.0
    s = sample_scale(got.x, got.scale)
    assert s.shape == (len(got), 1, 1, 1)
    with pytest.raises(ValueError, match="no '10min' crops"):
        split_samples(ds, replace(cfg, input_kinds=("10min",)), "train", conditioned=True)
    with pytest.raises(ValueError, match="not a scan time"):
        split_samples(
            _dataset(("x", "rest" + "x", "25min")), replace(cfg, input_kinds=("x",)), "train", True
        )


def test_3d_samples_are_slabs():
    ds = _dataset()
    got = split_samples(ds, TrainConfig(spatial_dims=3), "train", conditioned=False, multiple=4)
    assert got.x.shape == (2, 1, S, H, H)
    assert torch.equal(got.x[1, 0], torch.from_numpy(ds.crops["5min"][S:]))
    assert sample_scale(got.x, None).flatten().tolist() == [2003.0, 2103.0]
    with pytest.raises(ValueError, match="multiple of 8"):
        split_samples(ds, TrainConfig(spatial_dims=3), "train", conditioned=False, multiple=8)


def test_rotation_and_shift_move_input_and_target_alike():
    x = torch.rand(2, 3, 4, 16, 16)
    r0 = loop._rotate(x, torch.zeros(2))
    assert torch.allclose(r0, x, atol=1e-5)
    r90 = loop._rotate(x[:, :, 0], torch.full((2,), 90.0))
    assert torch.allclose(
        r90, torch.rot90(x[:, :, 0], 1, dims=(-2, -1)), atol=1e-5
    ) or torch.allclose(r90, torch.rot90(x[:, :, 0], -1, dims=(-2, -1)), atol=1e-5)
    shifted = loop._shift(x, 2, -1, 3)
    assert torch.equal(shifted[..., 2:, :-1], x[..., :-2, 1:])
    cfg = TrainConfig(rotate_deg=30, shift_px=2)
    gen = torch.Generator().manual_seed(0)
    a, b = loop._augment(x, x.clone(), gen, cfg)
    assert torch.equal(a, b) and not torch.allclose(a, x)


@pytest.fixture(scope="module")
def durations_dataset(tiny_sim_sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    sets = tiny_sim_sets + ["acquisition.durations_min=[25,10,5,2.5]", "recon.noise_free=true"]
    simulate_cohort(resolve_config({}, sets), root / "sim", progress=False)
    kinds = ("2.5min", "5min", "10min", "25min", "noisefree")
    cfg = DatasetConfig(n_slices=8, crop=24, split=(2, 1, 1), durations=kinds)
    build_dataset(
        sources_from_simulation(root / "sim", kinds), root / "ds", cfg, {}, progress=False
    )
    return root / "ds"


@pytest.mark.parametrize("context, dims", [(1, 2), (0, 3)])
def test_count_aware_network_trains_on_every_scan_time(durations_dataset, tmp_path, context, dims):
    """countunet, 2.5D and 3D, on 2.5 / 5 / 10-min inputs against the noise-free image: the run
    finishes, its checkpoint rebuilds a conditioned network of the right shape, and the
    trained network's output depends on the stated scan time."""
    cfg = TrainConfig(
        model="countunet",
        model_kwargs={"features": 4, "levels": 2},
        input_kinds=("2.5min", "5min", "10min"),
        target_kind="noisefree",
        context=context,
        spatial_dims=dims,
        rotate_deg=10,
        max_epochs=3,
        batch_size=4,
        lr=3e-3,
    )
    run = tmp_path / "run"
    loop.train(durations_dataset, run, cfg, "cpu", progress=False)
    model = load_model(run / "best")
    meta = json.loads((run / "best.json").read_text())
    assert meta["model"]["in_channels"] == 2 * context + 1 and meta["model"]["spatial_dims"] == dims
    assert model.conditioned
    # what denoise checks an input against: the scan times and the voxel it was trained on
    assert meta["input_range"]["minutes"] == [2.5, 10.0]
    assert meta["input_range"]["voxel_mm"] == meta["training_voxel_mm"] > 0
    data, _ = loop.load_split_tensors(durations_dataset, cfg, torch.device("cpu"), model)
    x = data["val"].x[:1] / sample_scale(data["val"].x[:1], data["val"].scale[:1])
    with torch.no_grad():
        assert not torch.allclose(model(x, condition_value(2.5)), model(x, condition_value(10.0)))
