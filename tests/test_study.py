"""The one-command study: mechanics on a tiny cohort, and the quick preset's answer on real-size
simulated patients (a check that fails if the packaged weights or the training recipe break)."""

from __future__ import annotations

import csv
import json

import pandas as pd

from fastdat.cli import main

TINY = [
    "dataset.crop=24",
    "dataset.n_slices=3",
    "dataset.split=[2,1,1]",
    "train.max_epochs=1",
    "train.batch_size=4",
    "models=[unet1,unet2]",
    "pretrained=[]",
    "finetune={}",
]


def _args(out, sets, *extra):
    args = ["study", "--preset", "quick", "--out", str(out), "--device", "cpu", "--workers", "1"]
    for s in sets:
        args += ["--set", s]
    return [*args, *extra]


def test_tiny_study_end_to_end_rerun_and_refusals(tmp_path, tiny_sim_sets, caplog):
    """simulate -> dataset -> train 2 models -> evaluate (image quality and SBR) -> report once; a
    rerun skips every stage and says so; a changed config or a typo is refused before any work."""
    sim = "simulate.set=[" + ",".join([*tiny_sim_sets, "cohort.seed=5"]) + "]"
    sets = [sim, *TINY]
    out = tmp_path / "s"
    assert main(_args(out, sets)) == 0
    ev = out / "eval"
    with open(ev / "summary.csv") as f:
        methods = [r["method"] for r in csv.DictReader(f)]
    assert methods == ["5min", "gaussian", "butterworth", "nlm", "unet1", "unet2", "25min"]
    stats = json.loads((ev / "stats.json").read_text())
    assert stats["psnr"]["friedman"]["k"] == 6 and len(stats["psnr"]["pairs"]) == 15
    assert stats["patient_level"]["n_patients"] == 1
    head = json.loads((ev / "headline.json").read_text())
    assert head["chosen_on"] == "validation"
    validation = pd.read_csv(ev / "validation.csv").set_index("method")
    html = (ev / "report.html").read_text()
    assert "data:image/png;base64" in html
    summary = pd.read_csv(ev / "summary.csv").set_index("method")
    for m in methods:  # our numbers, as the files hold them, in the every-method table
        r = summary.loc[m]
        if m != "25min":
            assert f"{r['psnr_pmean']:.2f} &plusmn; {r['psnr_psd']:.2f}" in html, m
        assert f"{r['psnr_truth_pmean']:.2f} &plusmn; {r['psnr_truth_psd']:.2f}" in html, m
    assert "Too few test patients (n = 1)" in html or "only 1 test patients" in html
    for m in ("unet1", "unet2"):
        if not validation.loc[m, "converged"]:  # 1 epoch: marked, never ranked
            assert head["best"]["network"] != m and f"{m} <b>(not converged)</b>" in html
    assert html.count("Wall time per stage") == 1 and "<td>train:unet2</td>" in html
    assert "<td>evaluate</td>" in html and "Southampton SBR against the 25-min image" in html
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"simulate", "dataset", "train:unet1", "train:unet2", "evaluate"}
    with open(ev / "quant" / "sbr.csv") as f:
        sbr = list(csv.DictReader(f))
    assert {r["method"] for r in sbr if r["split"] == "test"} == {"truth", *methods}
    history = json.loads((out / "runs" / "unet1" / "state.json").read_text())["history"]
    assert timings["train:unet1"] >= sum(h["seconds"] for h in history) - 0.05

    mtime = (out / "runs" / "unet1" / "best.safetensors").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level("INFO", logger="fastdat.study"):
        assert main(_args(out, sets)) == 0  # everything complete: nothing redone
    said = caplog.text
    for name in ("simulate", "dataset", "train:unet1", "train:unet2", "evaluate"):
        assert f"stage {name}: already complete, skipped" in said, name
    assert (out / "runs" / "unet1" / "best.safetensors").stat().st_mtime_ns == mtime
    again = json.loads((out / "timings.json").read_text())
    assert again == timings  # skips keep the work's time

    # a different config in the same folder: refused, naming the key, nothing touched
    assert main(_args(out, [*sets, "train.max_epochs=2"])) == 2
    assert (out / "runs" / "unet1" / "best.safetensors").stat().st_mtime_ns == mtime
    # a typo: refused before the cohort is simulated
    fresh = tmp_path / "typo"
    assert main(_args(fresh, [*sets, "train.max_epoch=2"])) == 2
    assert not fresh.exists()


def test_config_errors_are_named_before_any_work(tmp_path, capsys):
    for bad, word in (
        ("train.max_epoch=2", "train.max_epoch"),
        ("dataset.crops=2", "dataset.crops"),
        ("simulate.set=[cohort.n_studie=3]", "cohort.n_studie"),
        ("finetune={x: {lr: 1.0e-4}}", "finetune.x"),
        ("modelz=[unet1]", "modelz"),
    ):
        out = tmp_path / "s"
        assert main(_args(out, [bad])) == 2, bad
        assert word in capsys.readouterr().err, bad
        assert not out.exists()
    # the pretrained network's own training cohort (seed 0) is not a test cohort
    assert main(_args(tmp_path / "s", [], "--seed", "0")) == 2
    assert "choose another --seed" in capsys.readouterr().err


def test_quick_pipeline_networks_beat_raw_5min(tmp_path):
    """The quick recipe on 6 real-size simulated patients (3 test): the packaged network and its
    fine-tuned copy restore every test patient's 5-min crops closer to the 25-min ones than the
    raw 5-min image (paper cohort: +3.7 dB on average; required here: +1 dB per patient), and the
    report says what was trained where."""
    sets = [
        "simulate.set=[cohort.n_studies=6]",
        "dataset.split=[2,1,3]",
        "finetune.default-ft.max_epochs=3",
    ]
    out = tmp_path / "q"
    assert main(_args(out, sets, "--seed", "11", "--workers", "2")) == 0
    patients = pd.read_csv(out / "eval" / "patients.csv")
    psnr = patients.pivot(index="patient_id", columns="method", values="psnr")
    ssim = patients.pivot(index="patient_id", columns="method", values="ssim")
    assert len(psnr) == 3
    for net in ("default", "default-ft"):
        gain = psnr[net] - psnr["5min"]
        assert (gain > 1.0).all(), (net, gain.to_dict())
        assert (ssim[net] > ssim["5min"]).all(), net
    html = (out / "eval" / "report.html").read_text()
    assert "pretrained elsewhere, evaluated as is" in html
    assert "fine-tuned here, on this cohort" in html
    assert "Too few test patients (n = 3)" in html


def test_quick_preset_resolves():
    """The shipped quick preset is valid, uses the packaged network, and a fresh cohort."""
    from fastdat.study import resolve_study

    plan = resolve_study("quick")
    assert "default" in plan.pretrained and plan.trained["default-ft"].init == "default"
    assert plan.simulation.cohort.seed != 0 and plan.simulation.cohort.n_studies >= 32
    assert plan.trained["default-ft"].model_kwargs == {"features": 16}


def test_sim_device_moves_only_the_simulation(tmp_path, monkeypatch):
    """``--sim-device cpu --workers N`` simulates in N CPU processes while ``--device`` stays
    the networks' (a GPU machine's cores simulate, its GPU trains)."""
    import pytest

    import fastdat.simulate.cohort as cohort
    from fastdat.study import run_study

    seen = {}

    def fake(cfg, out_dir, workers=1, device="cpu", **kwargs):
        seen.update(workers=workers, device=device)
        raise RuntimeError("stop after the simulate stage's call")

    monkeypatch.setattr(cohort, "simulate_cohort", fake)
    with pytest.raises(RuntimeError, match="stop after"):
        run_study("quick", tmp_path / "a", device="cuda", workers=3, sim_device="cpu")
    assert seen == {"workers": 3, "device": "cpu"}
    with pytest.raises(RuntimeError, match="stop after"):
        run_study("quick", tmp_path / "b", device="cuda", workers=3)
    assert seen == {"workers": 3, "device": "cuda"}
