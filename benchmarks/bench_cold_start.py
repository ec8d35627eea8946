"""Cold start: ``fastdat denoise`` of one 128^3 study as a fresh process, start to exit.

What a clinic's script pays per call: Python start, imports, loading the model, reading the
DICOM, restoring, the checks, writing the derived series and its provenance. The study is
:func:`bench_denoise.make_study` (a simulated 5-min study in a 128^3 NM multi-frame file, 300 s
recorded in its header). Measured, each as a new process, median of ``--repeats``:

- ``python -c 'import torch'``: the floor any PyTorch network pays;
- ``fastdat denoise --model default``: today's packaged 2D network (anchored mode: localizer);
- ``fastdat denoise --model COUNT``: a count-aware 2.5D ``countunet`` (16 features, 4 levels;
  the scan time from the header; whole volume, no localizer). Its weights are a zero correction
  (the identity), which costs what trained weights cost and passes the guard;
- ``fastdat denoise --model M`` for every ``--model M`` given (e.g. a trained count-aware
  ensemble).

Prints seconds and each one's ratio to the default model's.

Usage::

    python benchmarks/bench_cold_start.py [--repeats 5] [--threads 2] [--model CKPT ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_denoise import make_study  # noqa: E402

from fastdat.models import build_model, save_model  # noqa: E402


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", default=[], help="a checkpoint to time too")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = make_study(root)
        torch.manual_seed(0)
        net = build_model("countunet", in_channels=3, residual=True, nonneg=True)
        for p in net.net.head.parameters():
            torch.nn.init.zeros_(p)
        count = root / "countunet"
        save_model(net, count, extra={"input_range": {"minutes": [2.0, 15.0]}})
        fastdat = [sys.executable, "-m", "fastdat.cli"]
        cases = {
            "import torch": lambda i: [sys.executable, "-c", "import torch"],
            "default (2D, anchored)": lambda i: [
                *fastdat,
                "denoise",
                str(study),
                "--out",
                str(root / f"d{i}"),
                "--device",
                "cpu",
            ],
            "countunet (2.5D, volume)": lambda i: [
                *fastdat,
                "denoise",
                str(study),
                "--out",
                str(root / f"c{i}"),
                "--device",
                "cpu",
                "--model",
                str(count),
            ],
        }
        for ckpt in args.model:
            cases[Path(ckpt).name] = lambda i, c=ckpt: [
                *fastdat,
                "denoise",
                str(study),
                "--out",
                str(root / f"m{abs(hash(c))}_{i}"),
                "--device",
                "cpu",
                "--model",
                str(Path(c).resolve()),
            ]
        times = {}
        for name, cmd in cases.items():
            run(cmd(-1), env)  # warm the file cache
            times[name] = statistics.median(run(cmd(i), env) for i in range(args.repeats))
    base = times["default (2D, anchored)"]
    print(f"fastdat denoise of one 128^3 study, new process each, {args.threads} threads")
    for name, t in times.items():
        print(f"  {name:28s} {t:6.2f} s   x{t / base:.2f} of the default model")


if __name__ == "__main__":
    main()
