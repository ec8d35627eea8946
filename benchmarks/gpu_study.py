"""GPU timing of the paper study and of the count-aware model, in one prepared run (issue 19).

One script for a lent GPU machine (a 10-minute window), that measures:

1. **The paper study** (``fastdat study --preset paper``: 207 simulated patients, ten networks of
   up to 100 epochs, evaluation and report), its cohort simulated on the CPU cores
   (``--sim-device cpu --workers W``) and its networks trained on the GPU. Stage times come
   from the study's ``timings.json``.
2. **The count-aware model**: a cohort with 2, 3, 5, 10, 15 and 25-min reconstructions and the
   noise-free one (``--preset sweep`` physics, ``--count-studies`` patients), simulated at the
   same time on the GPU in-process (on the CPU cores if that fails); a whole-volume dataset
   (``--crop 80 --slices 40``: whole 80 x 80 slices, almost every slice of the head); then
   three ``fastdat train --preset countaware`` runs share the GPU at once (2.5D seed 0, the 3D
   variant, 2.5D seed 1) with the study's training, until the budget's end. Their
   ``history.csv`` gives seconds per epoch (shared, not alone).

Everything runs as separate ``fastdat`` processes, as a user would run them; each is killed
when the budget runs out and the figures reached so far are still written. Writes to ``--out``:
``summary.json`` (every stage's wall time, exit status and the GPU's name), ``logs.tar.gz``
(logs, timings, histories, the study's evaluation tables) and ``nets.tar.gz`` (the count-aware
runs' best checkpoints and configs, to evaluate on the CPU).

Usage (on the GPU machine, from the repository root, fastdat importable)::

    python benchmarks/gpu_study.py --out $OUT --budget-s 540

A quick check of the script itself on a CPU (minutes)::

    python benchmarks/gpu_study.py --out /tmp/g --device cpu --study-preset quick \
        --count-studies 4 --epochs 1 --budget-s 900
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

FASTDAT = [sys.executable, "-m", "fastdat.cli"]
sys.path.insert(0, str(Path(__file__).parent))
from gpu_train_times import THREE_D  # noqa: E402


class Clock:
    """Wall time since the start and what is left of the budget (s)."""

    def __init__(self, budget: float) -> None:
        self.t0 = time.perf_counter()
        self.budget = budget

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.now()


def start(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    """Start ``cmd`` with stdout and stderr into ``log``; returns the process and its start."""
    print(f"[{time.strftime('%H:%M:%S')}] start: {' '.join(cmd[2:])}", flush=True)
    f = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), time.perf_counter()


def finish(
    proc: subprocess.Popen,
    t_start: float,
    clock: Clock,
    name: str,
    summary: dict,
    deadline: float | None = None,
) -> int | None:
    """Wait for ``proc`` within the budget or until ``deadline`` (s since the start), killed
    then; record its time."""
    limit = clock.left() if deadline is None else min(clock.left(), deadline - clock.now())
    try:
        rc = proc.wait(timeout=max(limit, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    seconds = round(time.perf_counter() - t_start, 1)
    summary["stages"][name] = {"seconds": seconds, "rc": rc, "killed": rc is None}
    print(f"[{time.strftime('%H:%M:%S')}] {name}: rc={rc} in {seconds} s", flush=True)
    return rc


def partial_manifest(sim: Path) -> int:
    """Write ``manifest.csv`` of the studies a killed ``fastdat simulate`` finished (each
    study's ``study.json`` holds its manifest row); returns how many. A benchmark's shortcut
    to train on what the time allowed, not a cohort to publish (``fastdat simulate --merge``
    refuses a cohort with missing studies)."""
    import csv

    rows = [json.loads(p.read_text())["manifest"] for p in sorted(sim.glob("studies/*/study.json"))]
    if rows:
        with open(sim / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return len(rows)


def epoch_seconds(run: Path) -> dict | None:
    """Epochs trained, mean seconds per epoch and best validation loss of a run."""
    path = run / "history.csv"
    if not path.exists():
        return None
    import csv

    rows = list(csv.DictReader(open(path)))
    if not rows:
        return None
    secs = [float(r.get("seconds", r.get("train_seconds", "nan"))) for r in rows]
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    return {
        "epochs": len(rows),
        "seconds_per_epoch": round(sum(secs) / len(secs), 2),
        "seconds_total": round(sum(secs), 1),
        "best_val_loss": min(val) if val else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="where summary.json and the tarballs go")
    p.add_argument("--work", default="/tmp/gpu_study", help="scratch folder (new or resumed)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=540.0, help="wall-time budget (s)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--study-preset", default="paper")
    p.add_argument("--no-study", action="store_true", help="only the count-aware model")
    p.add_argument("--count-studies", type=int, default=100)
    p.add_argument(
        "--count-seed",
        type=int,
        default=300,
        help="cohort seed of the count cohort (not the sweep preset's 100, whose patients the "
        "networks are tested on)",
    )
    p.add_argument(
        "--sim-deadline-s", type=float, default=270.0, help="stop the count cohort's simulation"
    )
    p.add_argument("--epochs", type=int, default=40, help="max epochs of the count-aware runs")
    args = p.parse_args()

    clock = Clock(args.budget_s)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    summary: dict = {"args": vars(args), "stages": {}, "runs": {}}
    try:
        import torch

        summary["torch"] = torch.__version__
        if torch.cuda.is_available():
            summary["gpu"] = torch.cuda.get_device_name(0)
    except Exception as err:  # noqa: BLE001 - recorded, not fatal
        summary["torch_error"] = repr(err)

    paper = work / "paper"
    count_sim = work / "count_sim"
    # 1. the study (its cohort simulated on the CPU cores, its networks trained on the GPU) and,
    # at the same time, the count cohort simulated on the GPU in-process
    study_cmd = (
        [
            *FASTDAT,
            "study",
            "--preset",
            args.study_preset,
            "--out",
            str(paper),
            "--device",
            args.device,
            "--sim-device",
            "cpu",
            "--workers",
            str(args.workers),
        ],
        work / "study.log",
        env,
    )
    study = None if args.no_study else start(*study_cmd)
    count_sets = [
        "--set",
        f"cohort.n_studies={args.count_studies}",
        "--set",
        f"cohort.seed={args.count_seed}",
        "--set",
        "acquisition.durations_min=[25,15,10,5,3,2]",
        "--set",
        "acquisition.save_projections=none",
    ]
    sim_count = start(
        [
            *FASTDAT,
            "simulate",
            "--preset",
            "sweep",
            *count_sets,
            "--out",
            str(count_sim),
            "--device",
            args.device,
        ],
        work / "simulate_count.log",
        env,
    )
    rc = finish(*sim_count, clock, "simulate_count", summary, deadline=args.sim_deadline_s)
    if rc not in (0, None) and clock.now() < args.sim_deadline_s - 60:
        # the GPU path failed early: the CPU cores, shared with the study's simulation
        cpu_sim = work / "count_sim_cpu"
        rc = finish(
            *start(
                [
                    *FASTDAT,
                    "simulate",
                    "--preset",
                    "sweep",
                    *count_sets,
                    "--out",
                    str(cpu_sim),
                    "--workers",
                    str(max(2, args.workers // 2)),
                ],
                work / "simulate_count_cpu.log",
                dict(env, OMP_NUM_THREADS="1"),
            ),
            clock,
            "simulate_count_cpu",
            summary,
            deadline=args.sim_deadline_s,
        )
        count_sim = cpu_sim
    if rc is None:  # killed at its deadline: train on the studies it finished
        summary["count_studies_simulated"] = partial_manifest(count_sim)
    ds = work / "count_ds"
    if (count_sim / "manifest.csv").exists() and clock.left() > 60:
        finish(
            *start(
                [
                    *FASTDAT,
                    "dataset",
                    "build",
                    "--from",
                    str(count_sim),
                    "--out",
                    str(ds),
                    "--slices",
                    "40",
                    "--crop",
                    "80",
                    "--split",
                    "75,25,0",
                    "--durations",
                    "2min,3min,5min,10min,15min,25min,noisefree",
                ],
                work / "dataset_count.log",
                env,
            ),
            clock,
            "dataset_count",
            summary,
        )
    # 3. count-aware runs on the GPU, beside the study's training, while time is left
    runs = {
        "countaware_nf_s0": [],
        "countaware3d_nf_s0": THREE_D,
        "countaware_nf_s1": ["--set", "seed=1"],
    }
    started = {}  # at once: small networks leave most of the GPU idle
    for name, extra in runs.items():
        if not (ds / "config.yaml").exists() or clock.left() < 60:
            break
        started[name] = start(
            [
                *FASTDAT,
                "train",
                "--dataset",
                str(ds),
                "--preset",
                "countaware",
                "--out",
                str(work / "nets" / name),
                "--device",
                args.device,
                "--set",
                f"max_epochs={args.epochs}",
                "--set",
                "patience=8",
                "--set",
                "shift_px=8",
                *extra,
            ],
            work / f"train_{name}.log",
            env,
        )
    for name, proc in started.items():  # a run stopped at the deadline keeps its best epoch
        finish(*proc, clock, f"train:{name}", summary, deadline=args.budget_s - 20)
        summary["runs"][name] = epoch_seconds(work / "nets" / name)
    if study is not None:
        finish(*study, clock, "study", summary)
    timings = paper / "timings.json"
    summary["study_timings"] = json.loads(timings.read_text()) if timings.exists() else None
    summary["study_runs"] = {
        r.name: epoch_seconds(r) for r in sorted((paper / "runs").glob("*")) if r.is_dir()
    }
    summary["wall_s"] = round(clock.now(), 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for f in sorted(work.glob("*.log")):
            tar.add(f, arcname=f.name)
        for f in [timings, paper / "eval" / "summary.csv", paper / "eval" / "metrics.csv"]:
            if f.exists():
                tar.add(f, arcname=f"study_{f.name}")
        for f in sorted(paper.glob("runs/*/history.csv")):
            tar.add(f, arcname=f"study_{f.parent.name}_history.csv")
    with tarfile.open(out / "nets.tar.gz", "w:gz") as tar:
        for run in sorted((work / "nets").glob("*")):
            for f in ("best.safetensors", "best.json", "config.yaml", "history.csv"):
                if (run / f).exists():
                    tar.add(run / f, arcname=f"{run.name}/{f}")
    print(json.dumps(summary, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
