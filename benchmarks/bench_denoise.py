"""One 128 x 128 x 128 study from DICOM to DICOM with the default model, against alternatives.

The study: one simulated study on the training grid (80 x 80 x 48 at 3.3 mm; fewer views and
iterations than the paper preset, which changes nothing for speed) placed in the middle of a
128 x 128 x 128 grid, written as one NM multi-frame object. Each measurement is
:func:`fastdat.inference.denoise_path` from that file to a fresh output folder (read, rescale,
reorient, infer every slice, write the derived series and its provenance JSON), in this process
with the model loaded:

- ``anchored`` (the default): locate the striata, whole slices on the crop's grid, the
  striatal crop blended in. The first study in a process also builds the localizer's template
  for the grid (cached afterwards): reported apart as ``cold``.
- ``slice``: whole slices only (no localizer); ``tiles``: 64 x 64 tiles, stride 32, blended.
- ``io``: reading and writing alone (:func:`series_volume` + :func:`write_derived_series`).

Prints seconds per study (median of ``--repeats``) and each one's ratio to ``anchored``.

Usage::

    python benchmarks/bench_denoise.py [--threads 2] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from pydicom.uid import generate_uid

from fastdat.inference import denoise_path
from fastdat.io.dicom import series_volume
from fastdat.io.dicom_write import write_derived_series, write_nm_volume
from fastdat.io.image import scan_folder
from fastdat.simulate.cohort import resolve_config, simulate_cohort

SIDE = 128


def make_study(root: Path) -> Path:
    """A 128^3 NM multi-frame file holding one simulated 5-min reconstruction (3.3 mm)."""
    sets = ["cohort.n_studies=1", "acquisition.n_views=60", "recon.iterations=4"]
    simulate_cohort(resolve_config({}, [*sets, "recon.subsets=6"]), root / "sim", progress=False)
    img = nib.load(root / "sim" / "studies" / "sim0001" / "recon_5min.nii.gz")
    small = np.asarray(img.dataobj, dtype=np.float32)
    vol = np.zeros((SIDE,) * 3, np.float32)
    lo = [(SIDE - n) // 2 for n in small.shape]
    vol[tuple(slice(a, a + n) for a, n in zip(lo, small.shape, strict=True))] = small
    affine = img.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.asarray(lo, dtype=np.float64)
    (root / "in").mkdir()
    return write_nm_volume(
        vol,
        affine,
        root / "in" / "study.dcm",
        patient_id="BENCH",
        study_uid=generate_uid(),
        series_description="DaTscan 5min",
        duration_s=300.0,
    )


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        src = make_study(root)
        runs = iter(range(10**6))

        def study(mode: str) -> float:
            out = root / f"out{next(runs)}"
            return timed(lambda: denoise_path(src, "default", out, args.device, mode=mode))

        def io_only() -> None:
            (series,), _ = scan_folder(src.parent)
            vol, aff = series_volume(series)
            out = root / f"io{next(runs)}.dcm"
            write_derived_series(vol, aff, series, out, derivation="benchmark")

        cold = study("anchored")
        seconds = {
            "anchored": statistics.median(study("anchored") for _ in range(args.repeats)),
            "slice": statistics.median(study("slice") for _ in range(args.repeats)),
            "tiles": statistics.median(study("tiles") for _ in range(args.repeats)),
            "io": statistics.median(timed(io_only) for _ in range(args.repeats)),
        }
    print(
        f"one {SIDE}^3 study, DICOM -> DICOM, default model, {args.device}, "
        f"{args.threads} thread(s), median of {args.repeats}:"
    )
    print(f"  anchored (default), first in process (cold): {cold:6.2f} s")
    for name, s in seconds.items():
        print(f"  {name:<8} {s:6.2f} s   ({s / seconds['anchored']:.2f} x anchored)")


if __name__ == "__main__":
    main()
