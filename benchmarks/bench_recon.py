"""Benchmark ``fastdat recon`` against PyTomography's OSEM on the same projection data.

One study of the simulator's default acquisition (128 x 128 detector, 3.3 mm bins, 120 views,
Siemens LEHR, 25 min) is written as projection DICOM with its mu map. Then, each in its own process
(wall time and peak resident memory from ``/usr/bin/time -v``):

* ``fastdat recon`` as a user runs it: OSEM 8 x 8, attenuation from the mu map, LEHR response, on
  its default grid (the object's extent) and on the simulator's 80 x 80 x 48 grid;
* PyTomography 3.4: ``SPECTSystemMatrix`` with the same attenuation map and the same collimator
  response (Gaussian of the same depth dependence, as in ``bench_projector.py``), ``OSEM`` with
  ``PoissonLogLikelihood``, 8 x 8, on the same 80 x 80 x 48 grid and the same counts (the central
  80 x 48 bins of every view, the region that grid sees).

Printed: seconds, peak memory, the ratio PyTomography / fastdat on the same grid, and the
correlation of the two images.

Usage::

    python benchmarks/bench_recon.py [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ITERATIONS, SUBSETS = 8, 8


def make_study(folder: Path) -> tuple[Path, Path]:
    """Simulate one default study and write it as projection DICOM + mu map NIfTI."""
    import nibabel as nib
    import torch

    from fastdat.io.projection_write import write_projections
    from fastdat.simulate.acquisition import AcquisitionConfig, ReconConfig, simulate_acquisition
    from fastdat.simulate.cohort import GridConfig
    from fastdat.simulate.export import projection_set
    from fastdat.simulate.phantom import PhantomConfig, make_phantom, sample_subject

    g, acq = GridConfig(), AcquisitionConfig()
    rng = np.random.default_rng(0)
    subject = sample_subject(rng, PhantomConfig(), age=65.0, sex="F", grade_left=1, grade_right=0)
    ph = make_phantom(subject, (g.size, g.size, g.n_slices), g.voxel_mm, PhantomConfig())
    sim = simulate_acquisition(
        torch.from_numpy(ph.activity),
        torch.from_numpy(ph.mu),
        g.voxel_mm,
        2.0e6,
        acq,
        ReconConfig(iterations=1, subsets=1),
        torch.Generator().manual_seed(0),
    )
    ps = projection_set(sim["projections"][25.0], 25.0, acq, g.voxel_mm, (g.size, g.n_slices))
    write_projections(ps, folder / "proj", "siemens")
    nib.save(nib.Nifti1Image(ph.mu.astype(np.float32), ph.affine), folder / "mu.nii.gz")
    return folder / "proj", folder / "mu.nii.gz"


def timed_child(args: list[str], threads: int) -> tuple[float, float, str]:
    """Run ``args`` under ``/usr/bin/time -v``: ``(seconds, peak MB, output)``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    run = subprocess.run(
        ["/usr/bin/time", "-v", *args], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    return seconds, int(peak.group(1)) / 1024 if peak else float("nan"), run.stdout


def pytomography_recon(proj: Path, mu_path: Path, out: Path, device: str, threads: int) -> None:
    """PyTomography's OSEM on the central 80 x 48 bins of the same projections (child process)."""
    import nibabel as nib
    import torch

    torch.set_num_threads(threads)
    import pytomography
    from pytomography.algorithms import OSEM
    from pytomography.likelihoods import PoissonLogLikelihood
    from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
    from pytomography.projectors.SPECT import SPECTSystemMatrix
    from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform

    from fastdat.io.projection_dicom import read_projections
    from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator

    t0 = time.perf_counter()
    ps = read_projections(proj)
    mu = np.asarray(nib.load(mu_path).dataobj, dtype=np.float32)
    n, _, nz = mu.shape
    s, z = ps.shape
    y = ps.counts[ps.window("photopeak")][:, (s - n) // 2 : (s + n) // 2, (z - nz) // 2 :][
        :, :, :nz
    ]
    pytomography.set_device(device)
    col = get_collimator("siemens-lehr")
    d_cm, leff_cm = col.hole_diameter_mm / 10, col.effective_length_mm / 10
    psf = [d_cm / leff_cm * FWHM_TO_SIGMA, d_cm * FWHM_TO_SIGMA, 0.36 * FWHM_TO_SIGMA]
    dr = ps.bin_mm[0] / 10
    # our view t is PyTomography's view t + 180 with the lateral axis reversed (see
    # tests/tomo/test_pytomography_agreement.py); object axes are the same
    angles = ((ps.angles_deg.numpy() + 180.0) % 360.0).tolist()
    system = SPECTSystemMatrix(
        [
            SPECTAttenuationTransform(torch.from_numpy(mu).to(device)),
            SPECTPSFTransform(
                SPECTPSFMeta(psf, sigma_fit=lambda r, a, b, c: ((a * r + b) ** 2 + c**2) ** 0.5)
            ),
        ],
        [],
        SPECTObjectMeta([dr] * 3, (n, n, nz)),
        SPECTProjMeta((n, nz), [dr] * 2, angles, radii=(ps.radii_mm.numpy() / 10).tolist()),
    )
    likelihood = PoissonLogLikelihood(system, y.flip(1).to(device))
    x = OSEM(likelihood)(n_iters=ITERATIONS, n_subsets=SUBSETS)
    x = (x / ps.acquisition_s).cpu().numpy().astype(np.float32)
    np.save(out, x)
    print(f"pytomography seconds {time.perf_counter() - t0:.2f}")


def main(argv: list[str] | None = None) -> None:
    """Make the study, run both reconstructions, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=("pytomography",), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        data = Path(args.data)
        pytomography_recon(
            data / "proj", data / "mu.nii.gz", data / "pyt.npy", args.device, args.threads
        )
        return
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        proj, mu = make_study(data)
        rows = {}
        fast = [sys.executable, "-m", "fastdat.cli", "recon", str(proj), "--attenuation", str(mu)]
        fast += ["--collimator", "siemens-lehr", "--iterations", str(ITERATIONS), "--subsets"]
        fast += [str(SUBSETS), "--postfilter-mm", "0", "--format", "nifti", "--device", args.device]
        for name, extra in (
            ("fastdat, object grid", []),
            ("fastdat, 80x80x48", ["--grid", "80,48"]),
        ):
            out = data / name.split(",")[1].strip().replace(" ", "_")
            rows[name] = timed_child([*fast, "--out", str(out), *extra], args.threads)[:2]
        pyt = [sys.executable, __file__, "--part", "pytomography", "--data", str(data)]
        rows["PyTomography, 80x80x48"] = timed_child(
            [*pyt, "--device", args.device, "--threads", str(args.threads)], args.threads
        )[:2]
        ours = np.asarray(nib.load(data / "80x80x48" / "recon.nii.gz").dataobj)
        theirs = np.load(data / "pyt.npy")
        head = np.asarray(nib.load(mu).dataobj) > 0
        r = float(np.corrcoef(ours[head], theirs[head])[0, 1])
    print(
        f"\n128 x 128 x 120-view study, OSEM {ITERATIONS} x {SUBSETS}, attenuation + LEHR, "
        f"{args.threads} threads, {args.device}"
    )
    print(f"{'':26s}{'wall s':>9s}{'peak MB':>10s}")
    for name, (sec, mb) in rows.items():
        print(f"{name:26s}{sec:9.2f}{mb:10.0f}")
    ratio = rows["PyTomography, 80x80x48"][0] / rows["fastdat, 80x80x48"][0]
    print(f"ratio PyTomography / fastdat on the same grid: {ratio:.1f}x")
    print(f"correlation of the two images inside the head: {r:.4f}")


if __name__ == "__main__":
    main()
