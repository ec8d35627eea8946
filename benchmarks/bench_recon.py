"""Benchmark ``fastdat recon`` against PyTomography's OSEM on the same projection DICOM.

One study of the simulator's default acquisition (``AcquisitionConfig()``: 128 x 128 detector of
3.3 mm bins, 120 views, Siemens LEHR, 2e6 counts in 25 min; one phantom of the default
``PhantomConfig`` on the default cohort grid, 80 x 80 x 48) is written as projection DICOM
(``"siemens"`` layout) beside its mu map NIfTI. Then, each in its own process (wall time of the
whole process, imports included; its peak resident memory, ``ru_maxrss`` as a small launcher
process sees it):

* ``fastdat recon`` exactly as a user runs it (``python -m fastdat.cli recon DIR --out OUT
  --attenuation MU --collimator siemens-lehr --iterations 8 --subsets 8 --format nifti``, and
  ``--postfilter-mm 0``, PyTomography having no post-filter), on its default grid (the object's
  extent) and with ``--grid 128,128`` (the whole detector, PyTomography's own grid);
* PyTomography 3.4: its own DICOM reader (``get_metadata`` / ``get_projections`` at the
  photopeak index), ``SPECTSystemMatrix`` with the same mu map and the same collimator response
  (the Gaussian depth model of ``bench_projector.py`` with our LEHR's hole diameter, effective
  length and 3.6 mm intrinsic resolution), ``OSEM`` with ``PoissonLogLikelihood``, 8 x 8, no
  scatter. ``--pyt-grid full``: its reader's grid, the whole detector, 128^3 (about 7 min on 2
  cores); ``crop``: the same projections cropped to fastdat's default grid (the central lateral
  bins and the axial bins of that grid); ``both`` (default). The mu map is handed to it already
  resampled onto its grid (not timed; fastdat's time includes reading and resampling it).

PyTomography's image is put onto fastdat's grid by documented geometry only (as in
``tests/tomo/test_pytomography_recon.py``: its axes are DICOM's LPS, as its ``save_dcm`` writes
them; its grid centre lies on the rotation axis; its slice 0 is the frame's last row), and the two
are compared inside the head (Pearson correlation).

Printed: wall and reconstruction seconds, peak memory, the ratio PyTomography / fastdat for each
pair on the same grid, the correlation, and the issue's criteria for ``fastdat recon``.

Usage::

    python benchmarks/bench_recon.py [--threads 2] [--device cpu] [--pyt-grid both]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ITERATIONS, SUBSETS = 8, 8
COLLIMATOR = "siemens-lehr"


def make_study(folder: Path) -> tuple[Path, Path, float]:
    """Simulate one default study; write it as projection DICOM and its mu map as NIfTI.

    Returns:
        ``(projection file, mu map NIfTI, acquisition time in s)``.
    """
    import nibabel as nib
    import pydicom
    import torch
    from pydicom.uid import generate_uid

    from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject
    from fastdat.io.projection_write import write_projections
    from fastdat.simulate.acquisition import AcquisitionConfig, ReconConfig, simulate_acquisition
    from fastdat.simulate.cohort import GridConfig
    from fastdat.simulate.export import projection_set

    g, acq, pcfg = GridConfig(), AcquisitionConfig(), PhantomConfig()
    subject = sample_subject(np.random.default_rng(0), pcfg, 1, 0, age=65.0, sex="F")
    ph = make_phantom(subject, (g.size, g.size, g.n_slices), g.voxel_mm, pcfg)
    sim = simulate_acquisition(
        torch.from_numpy(ph.activity),
        torch.from_numpy(ph.mu),
        g.voxel_mm,
        acq.counts_median,
        acq,
        ReconConfig(iterations=1, subsets=1),
        torch.Generator().manual_seed(0),
    )
    header = pydicom.Dataset()
    header.PatientID, header.StudyInstanceUID = "BENCH", generate_uid()
    header.FrameOfReferenceUID = generate_uid()
    minutes = max(acq.durations_min)
    ps = projection_set(
        sim["projections"][minutes], minutes, acq, g.voxel_mm, (g.size, g.n_slices), header
    )
    (path,) = write_projections(ps, folder / "proj", "siemens")
    nib.save(nib.Nifti1Image(ph.mu.astype(np.float32), ph.affine), folder / "mu.nii.gz")
    return path, folder / "mu.nii.gz", ps.acquisition_s


def pytomography_grid(path: Path, size: int | None = None, slices: int | None = None, first=0):
    """Voxel -> RAS mm affine and shape of PyTomography's object grid for the projection file
    ``path`` (LPS axes as its ``save_dcm`` writes them; grid centre on the rotation axis, the
    frame's middle column; slice 0 the frame's last row, its reader reversing the rows), cropped
    to ``size`` lateral bins and ``slices`` axial bins from axial bin ``first``."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    det = ds.DetectorInformationSequence[0]
    position = np.array(det.ImagePositionPatient, float)
    cosines = np.array(det.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    if float(getattr(det, "CenterOfRotationOffset", 0) or 0) != 0:
        raise ValueError(f"{path}: a center of rotation offset, which PyTomography ignores")
    axis = position + (ds.Columns - 1) / 2 * col_mm * cosines[:3]
    bottom = position + (ds.Rows - 1) * row_mm * cosines[3:]
    n = int(size or ds.Columns)
    nz = int(slices or ds.Rows)
    lps = np.diag([col_mm, col_mm, row_mm, 1.0])
    lps[:3, 3] = [axis[0] - (n - 1) / 2 * col_mm, axis[1] - (n - 1) / 2 * col_mm, bottom[2]]
    lps[2, 3] += first * row_mm
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, (n, n, nz)


#: Runs a command and writes its peak resident memory (kB) to a file. The command is started from
#: this small process, not from the benchmark's: Linux counts in a child's ru_maxrss the memory of
#: the process it was forked from (kept across exec), which here holds the simulated study.
LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def timed_child(args: list[str], threads: int) -> tuple[float, float, str]:
    """Run ``args``: ``(wall seconds, peak resident MB of the process, stdout)``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "maxrss"
        t0 = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(peak_file), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
        peak_kb = int(peak_file.read_text())  # ru_maxrss: kB on Linux
    return seconds, peak_kb / 1024, run.stdout


def pytomography_part(args: argparse.Namespace) -> None:
    """In a child process: PyTomography reads the file and reconstructs (OSEM 8 x 8)."""
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    import pytomography
    from pytomography.algorithms import OSEM
    from pytomography.io.SPECT import dicom
    from pytomography.likelihoods import PoissonLogLikelihood
    from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
    from pytomography.projectors.SPECT import SPECTSystemMatrix
    from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform

    device = torch.device(args.device)
    pytomography.set_device(device)
    job = json.loads(Path(args.job).read_text())
    t_import = time.perf_counter()
    object_meta, proj_meta = dicom.get_metadata(job["file"], index_peak=job["index_peak"])
    y = dicom.get_projections(job["file"], index_peak=job["index_peak"])
    if job["crop"]:  # the same projections, cropped to fastdat's grid
        size, slices, first = job["crop"]
        lat = (y.shape[1] - size) // 2
        y = y[:, lat : lat + size, first : first + slices].contiguous()
        object_meta = SPECTObjectMeta(object_meta.dr, (size, size, slices))
        proj_meta = SPECTProjMeta(
            (size, slices), proj_meta.dr, proj_meta.angles.cpu().tolist(), proj_meta.radii
        )
    t_read = time.perf_counter()
    mu = torch.from_numpy(np.load(job["mu"])).to(device)
    psf = SPECTPSFMeta(job["psf"], sigma_fit=lambda r, a, b, c: ((a * r + b) ** 2 + c**2) ** 0.5)
    system = SPECTSystemMatrix(
        [SPECTAttenuationTransform(mu), SPECTPSFTransform(psf)], [], object_meta, proj_meta
    )
    x = OSEM(PoissonLogLikelihood(system, y.to(device)))(
        n_iters=job["iterations"], n_subsets=job["subsets"]
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_done = time.perf_counter()
    np.save(job["out"], x.cpu().numpy().astype(np.float32))
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    print(
        json.dumps(
            {
                "import_s": t_import - t0,
                "read_s": t_read - t_import,
                "recon_s": t_done - t_import,
                "shape": list(x.shape),
                "gpu_peak_mb": gpu,
            }
        )
    )


def pearson_in_head(ours_dir: Path, pyt_npy: Path, pyt_affine, mu_path: Path, scale: float):
    """Correlation inside the head of fastdat's image and PyTomography's on fastdat's grid."""
    import nibabel as nib

    from fastdat.tomo.attenuation import resample_to_grid

    img = nib.load(ours_dir / "recon.nii.gz")
    ours = np.asarray(img.dataobj, dtype=np.float64)
    index = np.linalg.inv(img.affine) @ pyt_affine
    if not np.allclose(index, np.round(index), atol=1e-6):
        raise RuntimeError(f"the grids are not the same voxels: {index}")
    theirs = resample_to_grid(np.load(pyt_npy) / scale, pyt_affine, img.affine, ours.shape, 0)
    mu = nib.load(mu_path)
    head = resample_to_grid(np.asarray(mu.dataobj), mu.affine, img.affine, ours.shape, 0) > 0
    r = float(np.corrcoef(ours[head], theirs[head])[0, 1])
    return r, float(theirs[head].sum() / ours[head].sum())


def main(argv: list[str] | None = None) -> None:
    """Make the study, run both reconstructions, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every process")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for both")
    parser.add_argument(
        "--pyt-grid",
        choices=("full", "crop", "both"),
        default="both",
        help="PyTomography's grid: its own (the whole detector, 128^3, ~7 min on 2 cores), "
        "fastdat's default grid (projections cropped to it), or both",
    )
    parser.add_argument("--workdir", help="keep the study and images here (new or empty folder)")
    parser.add_argument("--part", choices=("pytomography",), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        pytomography_part(args)
        return
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        if any(Path(args.workdir).iterdir()):
            parser.error(f"--workdir {args.workdir}: not empty")
        run(Path(args.workdir), args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args)


def run(data: Path, args: argparse.Namespace) -> None:
    """The benchmark in the folder ``data``."""
    from fastdat.io.projection_dicom import read_projections
    from fastdat.simulate.acquisition import AcquisitionConfig
    from fastdat.tomo.attenuation import resample_to_grid
    from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proj, mu_path, acq_s = make_study(data)
    print(f"study simulated and written in {time.perf_counter() - t0:.1f} s: {proj}")
    ps = read_projections(proj)
    s, z = ps.shape
    rows: dict[str, dict] = {}

    # fastdat recon as a user runs it
    fast = [sys.executable, "-m", "fastdat.cli", "recon", str(proj.parent), "--attenuation"]
    fast += [str(mu_path), "--collimator", COLLIMATOR, "--iterations", str(ITERATIONS)]
    fast += ["--subsets", str(SUBSETS), "--postfilter-mm", "0", "--format", "nifti"]
    fast += ["--device", args.device]
    for key, extra in (("object", []), ("full", ["--grid", f"{s},{z}"])):
        out = data / f"fastdat_{key}"
        wall, peak, _ = timed_child([*fast, "--out", str(out), *extra], args.threads)
        info = json.loads((out / "recon.json").read_text())["resolved"]
        rows[f"fastdat {key}"] = {
            "grid": info["grid"],
            "first": info["first_slice"],
            "wall": wall,
            "recon": info["seconds"],
            "peak": peak,
            "load": os.getloadavg()[0],
            "out": out,
        }

    # PyTomography on the same file
    import nibabel as nib

    mu_img = nib.load(mu_path)
    acq = AcquisitionConfig()
    col = get_collimator(COLLIMATOR)
    d_cm, leff_cm = col.hole_diameter_mm / 10, col.effective_length_mm / 10
    psf = [p * FWHM_TO_SIGMA for p in (d_cm / leff_cm, d_cm, acq.intrinsic_fwhm_mm / 10)]
    keys = {"full": ["full"], "crop": ["object"], "both": ["object", "full"]}[args.pyt_grid]
    for key in keys:
        ours = rows[f"fastdat {key}"]
        size, _, slices = ours["grid"]
        crop = None if key == "full" else [size, slices, ours["first"]]
        affine, shape = pytomography_grid(proj, *(crop or (None, None, 0)))
        mu = resample_to_grid(np.asarray(mu_img.dataobj), mu_img.affine, affine, shape, order=0)
        np.save(data / f"mu_pyt_{key}.npy", mu.astype(np.float32))
        job = {
            "file": str(proj),
            "index_peak": ps.window("photopeak"),
            "crop": crop,
            "mu": str(data / f"mu_pyt_{key}.npy"),
            "psf": psf,
            "iterations": ITERATIONS,
            "subsets": SUBSETS,
            "out": str(data / f"pyt_{key}.npy"),
        }
        (data / f"job_{key}.json").write_text(json.dumps(job))
        child = [sys.executable, __file__, "--part", "pytomography", "--job"]
        child += [str(data / f"job_{key}.json"), "--device", args.device]
        wall, peak, stdout = timed_child([*child, "--threads", str(args.threads)], args.threads)
        info = json.loads(stdout.strip().splitlines()[-1])
        r, total = pearson_in_head(ours["out"], data / f"pyt_{key}.npy", affine, mu_path, acq_s)
        rows[f"PyTomography {key}"] = {
            "grid": info["shape"],
            "wall": wall,
            "recon": info["recon_s"],
            "peak": peak,
            "r": r,
            "total": total,
            "load": os.getloadavg()[0],
        }

    print(
        f"\nload: 1-min load average after the run ({os.cpu_count()} CPUs; above {args.threads} "
        "other processes shared them)"
    )
    print(
        f"{s} x {z} x {ps.n_views}-view study, OSEM {ITERATIONS} x {SUBSETS}, attenuation (mu "
        f"map) + {COLLIMATOR} response, no scatter, no post-filter; {args.threads} threads, "
        f"{args.device}; load average {load:.2f} at the start"
    )
    head = f"{'':30s}{'grid':>13s}{'wall s':>9s}{'recon s':>9s}{'peak MB':>9s}"
    print(head + f"{'PyT/fastdat':>13s}{'r':>8s}{'load':>6s}")
    label = {"object": "default grid", "full": "--grid 128,128"}
    for key in ("object", "full"):
        for who in ("fastdat", "PyTomography"):
            row = rows.get(f"{who} {key}")
            if row is None:
                continue
            name = f"{who} recon, {label[key]}" if who == "fastdat" else f"{who} OSEM, same grid"
            line = f"{name:30s}{'x'.join(map(str, row['grid'])):>13s}"
            line += f"{row['wall']:9.1f}{row['recon']:9.1f}{row['peak']:9.0f}"
            if who == "PyTomography":
                ratio = row["wall"] / rows[f"fastdat {key}"]["wall"]
                line += f"{ratio:12.1f}x{row['r']:8.4f}"
            else:
                line += " " * 21
            print(line + f"{row['load']:6.1f}")
    for key in keys:
        row, ours = rows[f"PyTomography {key}"], rows[f"fastdat {key}"]
        print(
            f"{label[key]}: PyTomography / fastdat {row['wall'] / ours['wall']:.1f}x wall, "
            f"{row['recon'] / ours['recon']:.1f}x reconstruction alone; correlation inside the "
            f"head {row['r']:.4f}; image totals PyTomography / fastdat {row['total']:.3f}"
        )
    ours = rows["fastdat object"]
    print(
        f"fastdat recon (default grid): {ours['wall']:.1f} s wall (<= 10 s: "
        f"{'yes' if ours['wall'] <= 10 else 'NO'}), peak {ours['peak']:.0f} MB (< 2048 MB: "
        f"{'yes' if ours['peak'] < 2048 else 'NO'})"
    )


if __name__ == "__main__":
    main()
