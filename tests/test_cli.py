from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from fastdat.anatomy.phantom import Phantom
from fastdat.cli import main
from fastdat.data.sources import default_recon_dir, pick_source, read_splits
from fastdat.models.registry import STUDY_MODELS
from fastdat.simulate.user_maps import user_map_config, user_phantom


def test_collimators_table(capsys):
    assert main(["collimators"]) == 0
    out = capsys.readouterr().out
    assert "siemens-lehr" in out
    # domain.md: Siemens LEHR system FWHM ~6.9 mm at 10 cm
    line = next(x for x in out.splitlines() if x.startswith("siemens-lehr"))
    assert abs(float(line.split()[-1]) - 6.9) < 0.2


def test_models_table(capsys):
    assert main(["models", "--no-speed"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out[1:]]
    assert names[:10] == list(STUDY_MODELS)
    assert "Alom" in next(x for x in out if x.startswith("r2unet"))


def test_set_reads_exponent_floats():
    from fastdat.config import apply_overrides

    doc = apply_overrides({}, ["a.lr=1e-5", "b=3E+2", "c=1.0e-3", "d=siemens-lehr", "e=1e5x"])
    assert doc == {"a": {"lr": 1e-5}, "b": 300.0, "c": 1e-3, "d": "siemens-lehr", "e": "1e5x"}


def test_every_command_takes_config_file_and_names_its_errors(tmp_path, capsys):
    """train, dataset build, simulate and quantify read --config FILE (under --set) the same
    way; a bad key, bad YAML or missing file is refused before any work, naming the file."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_epoch: 3}\ndataset: {crops: 2}\nquantify: {foo: 1}\nfoo: 1\n")
    out = tmp_path / "out"
    cases = [
        (["train", "--dataset", "ds", "--out", str(out)], "train.max_epoch"),
        (["dataset", "build", "--nifti", "x", "--out", str(out)], "dataset.crops"),
        (["quantify", "x", "--out", str(out)], "quantify.foo"),
        (["simulate", "--out", str(out)], "unknown config key 'dataset'"),
    ]
    for args, key in cases:
        assert main([*args, "--config", str(bad)]) == 2, args
        err = capsys.readouterr().err
        assert key in err and str(bad) in err, err
        assert main([*args, "--config", str(tmp_path / "missing.yaml")]) == 2, args
        assert "missing.yaml" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1\n")
    assert main(["train", "--dataset", "ds", "--out", str(out), "--config", str(broken)]) == 2
    assert f"config file {broken}: not valid YAML" in capsys.readouterr().err
    assert not out.exists()


def test_train_set_overrides_config_file(tmp_path, capsys):
    """--set wins over the file; the file's invalid value is still refused (naming the file)."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text("lr: 0\n")
    args = ["train", "--dataset", "ds", "--out", str(tmp_path / "o"), "--config", str(cfg)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.lr > 0" in err and str(cfg) in err
    # with the bad value overridden, resolution passes and the missing dataset is what fails
    assert main([*args, "--set", "lr=1e-3", "--device", "cpu"]) == 2
    assert "train.lr" not in capsys.readouterr().err


def test_source_and_user_map_choices_are_checked(tmp_path, capsys):
    out = str(tmp_path / "ds")
    for extra in ([], ["--nifti", "a", "--dicom", "b"]):
        assert main(["dataset", "build", "--out", out, *extra]) == 2
        assert "give exactly one of --from SIMDIR" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "s"), "--activity", "a.nii.gz"]) == 2
    assert "--activity and --mu-map must be given together" in capsys.readouterr().err


def test_source_helpers(tmp_path):
    assert pick_source(nifti="a.csv") == ("nifti", Path("a.csv"))
    assert pick_source(projections=tmp_path)[0] == "projections"
    assert default_recon_dir(tmp_path / "ds") == tmp_path / "ds.recon"
    good = tmp_path / "splits.json"
    good.write_text(json.dumps({"seed": 0, "patients": {"p1": "train"}}))
    assert read_splits(good) == {"p1": "train"}
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1]")
    with pytest.raises(ValueError, match="not a dataset's splits.json"):
        read_splits(wrong)
    assert user_phantom(None, None) is None and user_map_config(None) == {}
    zeros = np.zeros((16, 16, 10), np.float32)
    phantom = Phantom(zeros, zeros, zeros.astype(np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    assert user_map_config(phantom) == {
        "grid": {"size": 16, "n_slices": 10, "voxel_mm": 3.0},
        "cohort": {"n_studies": 1},
    }


def _nifti_studies(root: Path, n: int) -> Path:
    """``root/<study>/{5min,25min}.nii.gz``: smoothed phantom heads on an 8 mm grid."""
    from scipy import ndimage

    from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject

    for i in range(n):
        subject = sample_subject(np.random.default_rng(i), PhantomConfig(), 0, 0, 65.0, "F")
        act = make_phantom(subject, (32, 32, 20), 8.0, PhantomConfig(supersample=1)).activity
        head = ndimage.gaussian_filter(act.astype(np.float32), 12.0 / 2.355 / 8.0)
        (root / f"s{i}").mkdir(parents=True)
        for kind in ("5min", "25min"):
            image = nib.Nifti1Image(head, np.diag([8.0, 8, 8, 1]))
            nib.save(image, root / f"s{i}" / f"{kind}.nii.gz")
    return root


def test_dataset_build_from_config_file_and_summary(tmp_path, capsys):
    """dataset build: a study.yaml-style 'dataset' section, a flag over it, the printed summary
    (library: sources.build_from_source, overview.summarize_dataset) and splits reuse."""
    root = _nifti_studies(tmp_path / "nifti", 4)
    cfg = tmp_path / "study.yaml"
    cfg.write_text("dataset: {n_slices: 3, crop: 32, split: [2, 1, 1]}\ntrain: {lr: 1.0}\n")
    first = tmp_path / "a"
    args = ["dataset", "build", "--nifti", str(root), "--config", str(cfg), "--crop", "24"]
    assert main([*args, "--out", str(first)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {first}" in out and "4 studies used, 0 skipped" in out
    assert "crops" in out and "patients" in out
    doc = yaml.safe_load((first / "config.yaml").read_text())
    saved = doc["dataset"]
    assert saved["crop"] == 24 and saved["n_slices"] == 3 and saved["split"] == [2, 1, 1]
    # a dataset's own config.yaml (its 'dataset' section) reproduces its settings
    again = tmp_path / "c"
    redo = ["dataset", "build", "--nifti", str(root), "--config", str(first / "config.yaml")]
    assert main([*redo, "--out", str(again)]) == 0
    assert yaml.safe_load((again / "config.yaml").read_text())["dataset"] == saved
    second = tmp_path / "b"
    splits = first / "splits.json"
    assert main([*args, "--out", str(second), "--seed", "5", "--splits", str(splits)]) == 0
    capsys.readouterr()
    assert (
        json.loads((second / "splits.json").read_text())["patients"]
        == json.loads(splits.read_text())["patients"]
    )


def test_projection_source_is_reconstructed_beside_the_dataset(monkeypatch, tmp_path):
    """--projections: OUT.recon by default, the settings and attenuation recorded."""
    import fastdat.data.projections as projections
    from fastdat.data.sources import choose_sources
    from fastdat.tomo.reconstruct import ReconSettings, settings_dict

    seen = []
    monkeypatch.setattr(projections, "sources_from_projections", lambda *a: seen.append(a) or [])
    settings = ReconSettings(iterations=2, subsets=5)
    chosen = choose_sources(
        "projections",
        tmp_path / "archive",
        ("5min", "25min"),
        out_dir=tmp_path / "ds",
        settings=settings,
        attenuation="chang",
    )
    assert seen == [
        (tmp_path / "archive", tmp_path / "ds.recon", ("5min", "25min"), settings, "chang", "cpu")
    ]
    assert chosen.desc == {
        "kind": "projections",
        "path": str((tmp_path / "archive").resolve()),
        "recon_dir": str((tmp_path / "ds.recon").resolve()),
        "attenuation": "chang",
        "recon": settings_dict(settings),
    }
    assert chosen.skipped is None
    with pytest.raises(ValueError, match="unknown source kind"):
        choose_sources("tape", tmp_path, ("5min", "25min"))
