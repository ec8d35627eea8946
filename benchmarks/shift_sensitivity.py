"""How much a model's output depends on where the striata sit in its 64 x 64 input.

Not a speed benchmark: a robustness measurement beside the speed ones. For every test study of a
simulated dataset the crops are cut again from the reconstructed volumes at the dataset's corner
moved by ``d`` pixels along ``--axis`` (i: x, left-right; j: y, anterior-posterior; real anatomy
comes in at the edges, nothing is padded); each model denoises them, and PSNR / SSIM against the
25-min crop cut at the same place are averaged over the studies whose crop fits at every shift. A
model that does not care where the striata sit scores the same at every ``d``; the raw 5-min row
shows how much of a change comes from the crop's content rather than the model. ``--modes`` also
denoises whole volumes with :func:`fastdat.denoise` and scores them on the dataset's crop.

Usage::

    python benchmarks/shift_sensitivity.py --dataset runs/paper-study/dataset \\
        --runs runs/default-model runs/default-shift4 [--shifts 0 1 2 4] [--axis i] [--threads 2] \\
        [--modes anchored slice]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from fastdat.data.dataset import load_nifti
from fastdat.methods import predict
from fastdat.metrics import psnr, ssim
from fastdat.models import load_model


def cut(vol: np.ndarray, i0: int, j0: int, size: int, slices: list[int]) -> np.ndarray:
    """The ``(len(slices), size, size)`` crop of ``vol`` ``(X, Y, Z)`` at corner ``(i0, j0)``."""
    return np.moveaxis(vol[i0 : i0 + size, j0 : j0 + size, slices], -1, 0)


def test_studies(dataset: Path, shifts: list[int], axis: int) -> tuple[pd.DataFrame, int]:
    """The test studies whose crop stays inside the volume at every shift, and the crop side."""
    cfg = yaml.safe_load((dataset / "config.yaml").read_text())
    size = int(cfg["dataset"]["crop"])
    index = pd.read_csv(dataset / "index.csv")
    studies = pd.read_csv(dataset / "studies.csv").set_index("study_id")
    test = studies.loc[list(dict.fromkeys(index.loc[index["split"] == "test", "study_id"]))]
    dims = test["shape"].str.split("x", expand=True).astype(int)
    fits = np.ones(len(test), dtype=bool)
    corner = ("corner_i", "corner_j")[axis]
    for d in shifts:
        start = test[corner].to_numpy() + d
        fits &= (start >= 0) & (start + size <= dims[axis].to_numpy())
    return test[fits], size


def load_volumes(studies: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Each study's 5-min and 25-min reconstructions and voxel size (mm), read once."""
    vols = {}
    for sid, row in studies.iterrows():
        origin = Path(row["origin"])
        v5, vox = load_nifti(origin / "recon_5min.nii.gz")
        vols[sid] = (v5, load_nifti(origin / "recon_25min.nii.gz")[0], vox)
    return vols


def crops(
    vols: dict, studies: pd.DataFrame, size: int, shift: int, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """5-min and 25-min crops ``(N, size, size)`` cut ``shift`` pixels along ``axis`` off each
    dataset corner."""
    xs, ys = [], []
    for sid, row in studies.iterrows():
        i0 = int(row["corner_i"]) + (shift if axis == 0 else 0)
        j0 = int(row["corner_j"]) + (shift if axis == 1 else 0)
        sl = json.loads(row["slices"])
        xs.append(cut(vols[sid][0], i0, j0, size, sl))
        ys.append(cut(vols[sid][1], i0, j0, size, sl))
    return np.concatenate(xs), np.concatenate(ys)


def score(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of ``(N, H, W)`` images, FastDaT's convention."""
    p, r = torch.from_numpy(pred).double(), torch.from_numpy(ref).double()
    return {"psnr": float(psnr(p, r).mean()), "ssim": float(ssim(p, r).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--axis", choices=["i", "j"], default="i")
    parser.add_argument(
        "--modes", nargs="*", default=[], help="also denoise whole volumes (anchored, slice, tiles)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {r.name: load_model(r / "best") for r in args.runs}
    axis = "ij".index(args.axis)
    studies, size = test_studies(args.dataset, args.shifts, axis)
    vols = load_volumes(studies)
    rows = []
    for d in args.shifts:
        x, y = crops(vols, studies, size, d, axis)
        for name, pred in [("5min", x)] + [(n, predict(m, x)) for n, m in models.items()]:
            rows.append({"method": name, "shift_px": d, **score(pred, y)})
    table = pd.DataFrame(rows)
    base = table[table["shift_px"] == args.shifts[0]].set_index("method")
    table["d_psnr"] = table["psnr"] - table["method"].map(base["psnr"])
    table["d_ssim"] = table["ssim"] - table["method"].map(base["ssim"])
    print(
        f"{len(studies)} test studies (those whose crop fits at every shift), {len(x)} crops; "
        "PSNR / SSIM vs the 25-min crop cut at the same place"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.modes:
        print("\nwhole volumes through fastdat.denoise, scored on the dataset's crop (shift 0):")
        table = whole_volumes(vols, studies, size, models, args.modes)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def whole_volumes(
    vols: dict, studies: pd.DataFrame, size: int, models: dict, modes: list[str]
) -> pd.DataFrame:
    """PSNR / SSIM on the dataset crop of each study's 5-min volume denoised whole in each mode."""
    from fastdat.inference import denoise

    preds: dict[tuple[str, str], list[np.ndarray]] = {}
    for sid, row in studies.iterrows():
        i0, j0, sl = int(row["corner_i"]), int(row["corner_j"]), json.loads(row["slices"])
        v5, _, vox = vols[sid]
        for name, net in models.items():
            for mode in modes:
                out = denoise(v5, net, "cpu", voxel_mm=vox, mode=mode)
                preds.setdefault((name, mode), []).append(cut(out, i0, j0, size, sl))
    _, ref = crops(vols, studies, size, 0, 0)
    rows = [
        {"model": name, "mode": mode, **score(np.concatenate(parts), ref)}
        for (name, mode), parts in preds.items()
    ]
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
