"""How much a restoration's quality changes when the head moves in the image.

Not a speed benchmark: a robustness measurement beside the speed ones. For test studies of a
simulated dataset (its crop corners and slices, the cohort's reconstructions), each move is
applied to the whole reconstructed volume (the scan's and the noise-free one alike), the
dataset's crop column (all slices) is cut at the dataset's corner and restored, and PSNR against
the moved noise-free crop is averaged over its crop slices, as the scan-time sweep scores it
(:mod:`fastdat.sweep.measure`). Moves:

- ``shift`` ``+-d`` px along x or y: the volume is moved by whole voxels (``np.roll``; the head
  stays inside the field of view, so nothing real wraps), an exact move without interpolation;
- ``rotate`` ``+-a`` degrees in the transaxial plane about the volume's centre (cubic spline,
  applied to the scan and the noise-free volume alike).

The change against the unmoved restoration is reported per method, beside raw OSEM's own change
(how much of it comes from the crop's content or the interpolation rather than the method). A
volume network told the scan time sees the whole column; the study's 2D networks see its 64 x 64
slices, so they see the striata move within their input exactly as a mis-placed crop would.

Usage::

    python benchmarks/move_robustness.py --dataset SWEEP/dataset --sim SIM \\
        --networks default RUN1 RUN2 [--minutes 5] [--studies 40] [--shift 2] [--rotate 5]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import yaml
from scipy import ndimage

from fastdat.evaluation.evaluate import crop_column
from fastdat.methods import Method, load_methods
from fastdat.metrics import psnr


def moves(shift: int, angle: float) -> list[tuple[str, dict]]:
    """``(label, move)`` pairs: none, +-shift along x and y, +-angle in-plane."""
    out = [("none", {})]
    for axis, name in ((0, "x"), (1, "y")):
        out += [(f"shift {name} {s:+d} px", {"shift": (axis, s)}) for s in (-shift, shift)]
    out += [(f"rotate {a:+g} deg", {"angle": a}) for a in (-angle, angle)]
    return out


def move(volume: np.ndarray, how: dict) -> np.ndarray:
    """``volume`` ``(X, Y, Z)`` moved as ``how`` says (see :func:`moves`)."""
    if "shift" in how:
        axis, s = how["shift"]
        return np.roll(volume, s, axis=axis)
    if "angle" in how:
        out = ndimage.rotate(volume, how["angle"], axes=(0, 1), reshape=False, order=3)
        return np.clip(out, 0, None)
    return volume


def measure(
    dataset: Path,
    sim: Path,
    methods: list[Method],
    minutes: float,
    n: int,
    shift: int,
    angle: float,
) -> pd.DataFrame:
    """One row per (study, method, move) with the PSNR against the moved noise-free crop."""
    studies = pd.read_csv(dataset / "studies.csv").set_index("study_id")
    index = pd.read_csv(dataset / "index.csv")
    size = int(yaml.safe_load((dataset / "config.yaml").read_text())["dataset"]["crop"])
    test = list(dict.fromkeys(index.loc[index["split"] == "test", "study_id"]))[:n]
    kind = f"{minutes:g}min"
    rows = []
    for sid in test:
        st = studies.loc[sid]
        i0, j0 = int(st["corner_i"]), int(st["corner_j"])
        slices = np.array(json.loads(st["slices"]), int)
        load = lambda k, sid=sid: np.asarray(  # noqa: E731
            nib.load(sim / "studies" / sid / f"recon_{k}.nii.gz").dataobj, dtype=np.float64
        )
        x, nf = load(kind), load("noisefree")
        for label, how in moves(shift, angle):
            xm = crop_column(move(x, how), i0, j0, size)
            nfm = crop_column(move(nf, how), i0, j0, size)
            ref = torch.from_numpy(np.moveaxis(nfm[:, :, slices], -1, 0))
            for m in methods:
                y = m.apply_volume(xm)
                p = psnr(torch.from_numpy(np.moveaxis(y[:, :, slices], -1, 0)), ref).mean()
                rows.append({"study_id": sid, "method": m.name, "move": label, "psnr_nf": float(p)})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR change (dB) of every move against no move, per method; the worst move last."""
    base = df[df["move"] == "none"].set_index(["study_id", "method"])["psnr_nf"]
    d = df.join(base.rename("base"), on=["study_id", "method"])
    d["change"] = d["psnr_nf"] - d["base"]
    table = d[d["move"] != "none"].pivot_table(index="method", columns="move", values="change")
    table["worst"] = table.min(axis=1)
    table.insert(0, "psnr_nf", base.groupby("method").mean())
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="the sweep's dataset directory")
    p.add_argument("--sim", type=Path, required=True, help="its simulated cohort")
    p.add_argument("--networks", nargs="+", required=True, help="run folders or 'default'")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--studies", type=int, default=40, help="first N test studies")
    p.add_argument("--shift", type=int, default=2, help="pixels")
    p.add_argument("--rotate", type=float, default=5.0, help="degrees")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--csv", type=Path, help="also write the per-study rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    nets = [m for m in load_methods(args.networks, None, "cpu", ()) if m.kind == "network"]
    methods = [Method("osem", "raw"), *(replace(m, minutes=args.minutes) for m in nets)]
    df = measure(
        args.dataset, args.sim, methods, args.minutes, args.studies, args.shift, args.rotate
    )
    if args.csv:
        df.to_csv(args.csv, index=False)
    n = df["study_id"].nunique()
    print(f"PSNR vs noise-free at {args.minutes:g} min ({n} test studies) and its change (dB):")
    print(summary(df).round(3).to_markdown())


if __name__ == "__main__":
    main()
