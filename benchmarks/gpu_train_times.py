"""Training times on one GPU: the paper study's ten networks and the count-aware ones, at once.

The run behind the GPU training figures of issue 19 (one NVIDIA H200, 2026-12-04). Two steps:

``prepare`` (here, on the CPU) cuts what travels to the GPU machine (64 MiB at most):

- ``paper_ds``: a paper-sized crop dataset (5 central 64 x 64 slices per study, 5-min and
  25-min kinds, 120 / 37 / rest patients: the paper's 600 / 185 train / validation crops) cut
  from a sweep dataset built with ``--slices 16`` (``fastdat dataset build --from SIM --slices 16
  --durations 2min,...,noisefree``);
- ``count_ds``: three studies (2 training, 1 validation) of a whole-volume dataset (``--crop 80
  --slices 40``) with the 2-15 min and noise-free kinds: enough to time an epoch per sample.

``run`` (on the GPU machine) trains, all at once on the one GPU, each network of the study
preset's ``train`` settings (``presets/study/paper.yaml``: up to 100 epochs, patience 10, batch
16) and the count-aware 2.5D and 3D networks (``--preset countaware``, 15 epochs), each for at
most ``--limit-s`` seconds, and writes ``r.tar.gz`` (every run's ``history.csv`` and log, and
``done.txt``: when each ended). Seconds per epoch are measured while sharing the GPU with the
other eleven runs, so they are upper bounds of a run alone.

Usage::

    python benchmarks/gpu_train_times.py prepare --ds SWEEP_DS --dsv WHOLE_DS --out .gpu
    python benchmarks/gpu_train_times.py run --data .gpu --out $OUT        # on the GPU machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

STUDY_MODELS = "unet1 unet2 unet3 unet4 unet5 vnet unetpp r2unet attention_unet transunet".split()
COUNT_KINDS = ("2min", "3min", "5min", "10min", "15min", "noisefree")
THREE_D = ["--set", "spatial_dims=3", "--set", "context=0", "--set", "batch_size=4"]
"""``fastdat train --preset countaware`` settings of the 3D variant (whole slabs, 4 a batch)."""


def _subset(src: Path, dst: Path, keep, kinds, split=None, config=None) -> None:
    """Rows ``keep(index)`` of dataset ``src`` (kinds ``kinds``) into ``dst``."""
    import numpy as np
    import pandas as pd
    import yaml

    dst.mkdir(parents=True)
    ix = pd.read_csv(src / "index.csv", dtype={"study_id": str, "patient_id": str})
    ix = keep(ix).copy()
    if split is not None:
        ix["split"] = ix.patient_id.map(split(ix))
    rows = ix.crop_id.to_numpy()
    for k in kinds:
        arr = np.load(src / f"crops_{k}.npy", mmap_mode="r")
        np.save(dst / f"crops_{k}.npy", np.ascontiguousarray(arr[rows]))
    ix["crop_id"] = range(len(ix))
    ix.to_csv(dst / "index.csv", index=False)
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    if config:
        config(cfg)
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(src / "studies.csv", dst / "studies.csv")
    print(dst, ix.groupby("split").size().to_dict())


def prepare(args) -> None:
    import numpy as np

    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out}: exists; not overwritten")

    def paper_split(ix):
        patients = sorted(ix.patient_id.unique())
        np.random.default_rng(0).shuffle(patients)
        return {
            p: "train" if i < 120 else "val" if i < 157 else "test" for i, p in enumerate(patients)
        }

    def paper_config(cfg):
        cfg["dataset"].update(durations=["5min", "25min"], n_slices=5)
        cfg["fingerprint"] = f"paper-sized subset of {cfg['fingerprint']}"

    def central(ix):
        ix = ix[(ix.slice_rank >= 5) & (ix.slice_rank < 10)].copy()
        ix["slice_rank"] -= 5
        return ix

    _subset(Path(args.ds), out / "paper_ds", central, ("5min", "25min"), paper_split, paper_config)

    def three(ix):
        train = list(ix[ix.split == "train"].study_id.unique()[:2])
        val = list(ix[ix.split == "val"].study_id.unique()[:1])
        return ix[ix.study_id.isin(train + val)]

    _subset(Path(args.dsv), out / "count_ds", three, COUNT_KINDS)


def run(args) -> None:
    data, out = Path(args.data), Path(args.out)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fastdat = [sys.executable, "-m", "fastdat.cli", "train", "--device", args.device]
    preset = Path(__file__).resolve().parents[1] / "src/fastdat/presets/study/paper.yaml"
    count = ["--dataset", str(data / "count_ds"), "--preset", "countaware"]
    count += ["--set", "max_epochs=15", "--set", "patience=100", "--set", "shift_px=8"]
    jobs = {
        m: ["--dataset", str(data / "paper_ds"), "--config", str(preset), "--model", m]
        for m in STUDY_MODELS
    }
    jobs["ca25d"] = count
    jobs["ca3d"] = [*count, *THREE_D]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    procs = {
        name: subprocess.Popen(
            [*fastdat, *extra, "--out", str(work / name)],
            stdout=open(work / f"{name}.log", "w"),  # noqa: SIM115 - one per process
            stderr=subprocess.STDOUT,
            env=env,
        )
        for name, extra in jobs.items()
    }
    ended = {}
    while procs:
        for name, p in list(procs.items()):
            if p.poll() is not None or time.perf_counter() - t0 > args.limit_s:
                if p.poll() is None:
                    p.kill()
                ended[name] = (p.wait(), round(time.perf_counter() - t0, 1))
                del procs[name]
        time.sleep(0.5)
    lines = [f"{n} rc={rc} end={t}s" for n, (rc, t) in sorted(ended.items(), key=lambda i: i[1][1])]
    (work / "done.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "r.tar.gz", "w:gz") as tar:
        tar.add(work / "done.txt", arcname="done.txt")
        for name in jobs:
            tar.add(work / f"{name}.log", arcname=f"{name}.log")
            if (work / name / "history.csv").exists():
                tar.add(work / name / "history.csv", arcname=f"{name}_history.csv")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare", help="cut the datasets that travel (on the CPU)")
    a.add_argument("--ds", required=True, help="sweep dataset: 64 x 64 crops, 16 slices")
    a.add_argument("--dsv", required=True, help="whole-volume dataset: --crop 80 --slices 40")
    a.add_argument("--out", required=True)
    a.set_defaults(func=prepare)
    b = sub.add_parser("run", help="train everything at once on the GPU")
    b.add_argument("--data", required=True, help="the folder prepare wrote")
    b.add_argument("--out", required=True, help="where r.tar.gz goes")
    b.add_argument("--work", default="/tmp/r")
    b.add_argument("--device", default="cuda", help="cuda (cpu: a check of the script)")
    b.add_argument("--limit-s", type=float, default=225.0, help="each run's wall-time limit (s)")
    b.set_defaults(func=run)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
