"""Package a trained run as FastDaT's default model (``src/fastdat/models/default/``).

    python scripts/package_default_model.py --run RUN --eval EVAL [--label unet4]

``RUN`` is the run folder of ``fastdat train`` (its ``best`` checkpoint is packaged), ``EVAL`` the
``fastdat evaluate`` folder of that run on the same dataset (its test-split ``summary.csv`` is
recorded). Run it from a clean checkout: it refuses a source tree with uncommitted changes, and a
run trained from one, so that the sidecar's ``git_commit`` names code anyone can check out. The
sidecar records the training cohort (simulation preset, seed, size, split) so that ``fastdat
study`` refuses to test the model on its own training patients, and the input range
(``input_range``: :func:`fastdat.inference.safety.input_range_of`, the min and max of the
:func:`~fastdat.inference.safety.input_features` of the training split's 5-min volumes) that
``fastdat denoise`` checks its inputs against;
``--input-range FILE`` records a given one instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

from fastdat.config import git_commit
from fastdat.data import read_dataset
from fastdat.data.volumes import study_sources
from fastdat.inference.safety import input_features, input_range_of
from fastdat.models import load_model, save_model
from fastdat.models.checkpoint import PACKAGED, read_sidecar


def training_input_range(dataset: Path, kind: str) -> dict:
    """:func:`~fastdat.inference.safety.input_range_of` the training split's whole ``kind``
    volumes (min and max of each input feature, one voxel size)."""
    ds = read_dataset(dataset)
    split = ds.split_of_study
    feats = []
    for src in study_sources(ds, (kind,)):
        if split.get(src.study_id) != "train":
            continue
        volume, voxel_mm = src.loaders[kind]()
        feats.append(input_features(volume, float(voxel_mm)))
    try:
        rng = input_range_of(feats)
    except ValueError as err:
        sys.exit(f"refused: {dataset}'s training studies: {err}")
    return rng | {
        "source": f"{kind} volumes of the {len(feats)} training-split studies of the "
        "training cohort (scripts/package_default_model.py)",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="run folder of fastdat train")
    ap.add_argument("--eval", required=True, type=Path, help="fastdat evaluate folder of the run")
    ap.add_argument("--label", default="unet4", help="the run's method name in the evaluation")
    ap.add_argument("--input-range", type=Path, help="JSON input range (else the training split's)")
    args = ap.parse_args(argv)

    here = git_commit()
    if here.endswith("+dirty") or here == "unknown":
        sys.exit(f"refused: the source tree is {here!r}; package from a clean checkout")
    run = read_sidecar(args.run / "best")
    if str(run.get("git_commit", "")).endswith("+dirty"):
        sys.exit(f"refused: {args.run} was trained from uncommitted code ({run['git_commit']})")
    ds_cfg = yaml.safe_load((args.eval / "config.yaml").read_text())
    dataset = Path(ds_cfg["dataset"])
    ds = yaml.safe_load((dataset / "config.yaml").read_text())
    if ds.get("fingerprint") != run.get("dataset_fingerprint"):
        sys.exit(f"refused: {args.eval} evaluated another dataset than {args.run} was trained on")
    sim = yaml.safe_load((Path(ds["source"]["path"]) / "config.yaml").read_text())["config"]
    with open(args.eval / "summary.csv") as f:
        test = {r["method"]: r for r in csv.DictReader(f)}
    stem = PACKAGED["default"]
    input_range = (
        json.loads(args.input_range.read_text())
        if args.input_range
        else training_input_range(dataset, run["train"]["input_kind"])
    )
    extra = {
        "trained_on": "simulated data: FastDaT's paper cohort (fastdat study --preset paper)",
        "trained_at_commit": run["git_commit"],
        "training_cohort": {
            "simulate_preset": "paper",
            "cohort_seed": sim["cohort"]["seed"],
            "n_studies": sim["cohort"]["n_studies"],
            "split_patients": [int(v) for v in ds["dataset"]["split"]],
            "split_seed": ds["dataset"]["seed"],
        },
        "intended_use": "research only; not for diagnosis or any clinical decision",
        "training_voxel_mm": sim["grid"]["voxel_mm"],
        "input_range": input_range,
        "train": run["train"],
        "dataset_fingerprint": run["dataset_fingerprint"],
        "epoch": run["epoch"],
        "val": run["val"],
        "test": {
            m: {k: float(test[m][k]) for k in ("psnr_mean", "ssim_mean")}
            for m in ("5min", args.label)
        },
    }
    weights = save_model(load_model(args.run / "best"), stem, extra=extra)
    print(f"wrote {weights} (git_commit {here}, trained at {run['git_commit']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
