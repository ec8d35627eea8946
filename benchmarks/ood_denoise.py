"""Out-of-distribution behaviour of ``fastdat.denoise``: input features and output checks.

For the studies of simulated cohorts (``fastdat simulate`` / a study's ``sim/``), prints the input
features (:func:`fastdat.inference.safety.input_features`) and output checks
(:func:`~fastdat.inference.safety.output_features`) of the network's raw restoration (no guard)
and of the guarded one (spectral limit; rows ``[guarded]``, refusals counted) for:

- the 5-min images (in distribution: what the model was trained on);
- the same resampled to 3.9, 4.8 and 2.4 mm voxels on a 128 x 128 x 64 grid;
- smooth, noise-free inputs: the noise-free truth blurred to the reconstruction's resolution
  (12 mm FWHM), and the 25-min image smoothed with a 1-voxel Gaussian;

and, with ``--range``, the training range of the input features (min, max over the 5-min images)
to record in a model's sidecar as ``input_range``. Not a speed benchmark: a measurement of what
the safety checks see.

    python benchmarks/ood_denoise.py runs/quick/sim --studies 8
    python benchmarks/ood_denoise.py SIM --model RUN/best --minutes 5   # a count-aware model

Inputs at other voxel sizes are resampled to the model's training voxel by ``denoise`` (within
2-5 mm), so the 3.9 / 4.8 / 2.4 mm rows measure the restoration through that resampling.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from fastdat.inference.denoise import RestorationRefused, denoise_volume, load_denoiser
from fastdat.inference.safety import input_features, input_range_of, output_features


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def resample(volume: np.ndarray, voxel_mm: float, source_mm: float, shape=(128, 128, 64)):
    """``volume`` resampled from ``source_mm`` to ``voxel_mm`` voxels, centred in ``shape``."""
    r = ndimage.zoom(volume, source_mm / voxel_mm, order=1)
    out = np.zeros(shape, np.float32)
    s = [min(a, b) for a, b in zip(r.shape, shape, strict=True)]
    o = [(b - a) // 2 for a, b in zip(s, shape, strict=True)]
    i = [(a - c) // 2 for a, c in zip(r.shape, s, strict=True)]
    out[o[0] : o[0] + s[0], o[1] : o[1] + s[1], o[2] : o[2] + s[2]] = r[
        i[0] : i[0] + s[0], i[1] : i[1] + s[1], i[2] : i[2] + s[2]
    ]
    return out


def variants(study: Path, voxel_mm: float) -> dict[str, tuple[np.ndarray, float]]:
    """Named inputs ``(volume, voxel_mm)`` of one simulated study."""
    x5 = _load(study / "recon_5min.nii.gz")
    x25 = _load(study / "recon_25min.nii.gz")
    truth = _load(study / "truth.nii.gz")
    sigma = 12.0 / 2.355 / voxel_mm
    smooth_truth = ndimage.gaussian_filter(truth, sigma) * (x25.sum() / max(truth.sum(), 1e-12))
    out = {"5min": (x5, voxel_mm)}
    for vox in (3.9, 4.8, 2.4):
        out[f"5min@{vox}mm"] = (resample(x5, vox, voxel_mm), vox)
    out["truth, 12 mm blur"] = (smooth_truth.astype(np.float32), voxel_mm)
    out["25min, G1 smoothed"] = (ndimage.gaussian_filter(x25, 1.0), voxel_mm)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sims", nargs="+", help="cohort folders (manifest.csv, studies/)")
    p.add_argument("--studies", type=int, default=8, help="studies per cohort")
    p.add_argument("--model", default="default")
    p.add_argument("--mode", default="anchored")
    p.add_argument("--minutes", type=float, help="scan time told a count-aware model (e.g. 5)")
    p.add_argument("--range", action="store_true", help="print the 5-min input range as JSON")
    args = p.parse_args()
    net, meta = load_denoiser(args.model, "cpu")
    voxel = float(meta.get("training_voxel_mm") or 3.3)
    rows: dict[str, list[dict[str, float]]] = {}
    feats: list[dict] = []
    refused: dict[str, int] = {}
    for sim in args.sims:
        studies = sorted((Path(sim) / "studies").iterdir())[: args.studies]
        for study in studies:
            for name, (vol, vox) in variants(study, voxel).items():
                f = input_features(vol, vox)
                if name == "5min":
                    feats.append(f)
                y, _ = denoise_volume(
                    vol, net, "cpu", args.mode, vox, guard=False, minutes=args.minutes
                )
                rows.setdefault(name, []).append({**f, **output_features(vol, y)})
                try:
                    y, _ = denoise_volume(vol, net, "cpu", args.mode, vox, minutes=args.minutes)
                except RestorationRefused:
                    refused[name] = refused.get(name, 0) + 1
                    continue
                rows.setdefault(f"{name} [guarded]", []).append({**f, **output_features(vol, y)})
    keys = [
        "noise",
        "contrast",
        "hf_ratio",
        "hf_ratio_slice_max",
        "head_change",
        "hot_change",
        "slice_sum_change",
    ]
    print(f"{'input':22s}" + "".join(f"{k:>22s}" for k in keys))
    for name, rs in rows.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in rs], float)
            cells.append(f"{v.min():9.3f} .. {v.max():9.3f}")
        print(f"{name:22s}" + "".join(f"{c:>22s}" for c in cells))
    print("refused by the guard (of", len(feats), "studies):", refused)
    if args.range:
        print(json.dumps(input_range_of(feats)))


if __name__ == "__main__":
    main()
