"""An independent reader and reconstruction: PyTomography reads our projection DICOM and its OSEM
agrees with ``fastdat recon`` on the same grid.

PyTomography 3.4 (run in a subprocess: importing it silences warnings process-wide) reads the
exported file with its own DICOM reader (``get_metadata`` / ``get_projections``) and reconstructs
with its ``SPECTSystemMatrix`` (the same attenuation map and the same collimator response as ours,
the Gaussian depth model of ``bench_projector.py``) and ``OSEM``. Its object grid is DICOM's patient
frame in index order, LPS (x towards the patient's left, y posterior, z superior), so its voxel
``(i, j, k)`` is our RAS voxel ``(N - 1 - i, N - 1 - j, k)``: that documented mapping, and nothing
fitted, brings its image onto ours.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import generate_uid
from recon_support import ACQ, NZ, RECON, VOXEL, N, phantom, regions

from fastdat.cli import main
from fastdat.io.projection_dicom import write_projections
from fastdat.simulate.acquisition import simulate_acquisition
from fastdat.simulate.export import projection_set
from fastdat.simulate.phantom import grid_affine
from fastdat.tomo.attenuation import resample_to_grid
from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator

if importlib.util.find_spec("pytomography") is None:
    pytest.skip("pytomography is not installed", allow_module_level=True)

D = ACQ.detector_size  # PyTomography reconstructs the whole detector: a D x D x D grid
ITERS, SUBSETS = 4, 4

SCRIPT = """
import sys, numpy as np, torch
from pytomography.io.SPECT import dicom
from pytomography.algorithms import OSEM
from pytomography.likelihoods import PoissonLogLikelihood
from pytomography.metadata.SPECT import SPECTPSFMeta
from pytomography.projectors.SPECT import SPECTSystemMatrix
from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform
path, mu_path, out = sys.argv[1:4]
iters, subsets = int(sys.argv[4]), int(sys.argv[5])
psf = [float(v) for v in sys.argv[6:9]]
object_meta, proj_meta = dicom.get_metadata(path, index_peak=0)
y = dicom.get_projections(path, index_peak=0)
mu = torch.from_numpy(np.load(mu_path))
system = SPECTSystemMatrix(
    [SPECTAttenuationTransform(mu), SPECTPSFTransform(SPECTPSFMeta(
        psf, sigma_fit=lambda r, a, b, c: ((a * r + b) ** 2 + c ** 2) ** 0.5))],
    [], object_meta, proj_meta)
x = OSEM(PoissonLogLikelihood(system, y))(n_iters=iters, n_subsets=subsets)
np.save(out, x.cpu().numpy())
"""


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("pyt")
    act, mu = phantom()
    sim = simulate_acquisition(act, mu, VOXEL, 4e5, ACQ, RECON, torch.Generator().manual_seed(11))
    header = pydicom.Dataset()
    header.PatientID, header.StudyInstanceUID = "PHANTOM", generate_uid()
    ps = projection_set(sim["projections"][25.0], 25.0, ACQ, VOXEL, (N, NZ), header)
    (path,) = write_projections(ps, root / "proj", "siemens")
    # the mu map on the whole-detector grid (ours, RAS) and in PyTomography's index order (LPS)
    small = grid_affine((N, N, NZ), VOXEL)
    full = grid_affine((D, D, D), VOXEL)
    mu_full = resample_to_grid(mu.numpy(), small, full, (D, D, D), order=0).astype(np.float32)
    nib.save(nib.Nifti1Image(mu_full, full), root / "mu.nii.gz")
    np.save(root / "mu_lps.npy", np.ascontiguousarray(mu_full[::-1, ::-1, :]))
    col = get_collimator(ACQ.collimator)
    d_cm, leff_cm = col.hole_diameter_mm / 10, col.effective_length_mm / 10
    psf = [d_cm / leff_cm, d_cm, ACQ.intrinsic_fwhm_mm / 10]
    subprocess.run(
        [str(a) for a in (sys.executable, "-c", SCRIPT, path, root / "mu_lps.npy",
         root / "pyt.npy", ITERS, SUBSETS, *(p * FWHM_TO_SIGMA for p in psf))],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    args = ["recon", str(root / "proj"), "--out", str(root / "ours"), "--grid", f"{D},{D}"]
    args += ["--attenuation", str(root / "mu.nii.gz"), "--collimator", ACQ.collimator]
    args += ["--iterations", str(ITERS), "--subsets", str(SUBSETS), "--postfilter-mm", "0"]
    assert main([*args, "--format", "nifti"]) == 0
    img = nib.load(root / "ours" / "recon.nii.gz")
    assert np.allclose(img.affine, full)
    theirs_lps = np.load(root / "pyt.npy")
    return np.asarray(img.dataobj), theirs_lps[::-1, ::-1, :] / ps.acquisition_s, full, mu_full


def _sbr(vol: np.ndarray, affine: np.ndarray, head: np.ndarray) -> tuple[float, float]:
    r = regions(vol, affine)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in vol.shape], indexing="ij"), -1)
    ras = ijk.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]
    posterior = (ras[:, 1] < -30).reshape(vol.shape) & head  # background: posterior head
    ref = float(vol[posterior].mean())
    return r["right"] / ref - 1, r["left"] / ref - 1


def test_pytomography_reads_and_reconstructs_our_dicom_like_fastdat(both):
    ours, theirs, affine, mu = both
    head = mu > 0
    r = np.corrcoef(ours[head], theirs[head])[0, 1]
    assert r > 0.98, r
    sbr_ours, sbr_theirs = _sbr(ours, affine, head), _sbr(theirs, affine, head)
    for a, b in zip(sbr_ours, sbr_theirs, strict=True):
        assert abs(a - b) <= 0.05 * abs(b), (sbr_ours, sbr_theirs)
    # the criterion sees a mirror image: left and right swapped fail it
    mirrored = _sbr(theirs[::-1].copy(), affine, head[::-1])
    assert any(abs(a - b) > 0.05 * abs(b) for a, b in zip(sbr_ours, mirrored, strict=True))
