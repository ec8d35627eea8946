"""An independent reader and reconstruction: PyTomography reads our projection DICOM and its OSEM
agrees with ``fastdat recon`` on the same grid.

One simulated study (the simulator's striatal phantom, left striatum grade 2, right normal) is
written as projection DICOM in both vendor layouts (``"siemens"``: one file, both heads;
``"ge"``: one file per head). PyTomography 3.4 (in a subprocess: importing it silences warnings
process-wide) reads each with its own DICOM reader (``get_metadata`` / ``get_projections`` at
the photopeak index; PyTomography reads one file at a time, so the two GE files are read one by
one and their views put together, sorted by angle as its reader sorts them) and reconstructs with
``SPECTSystemMatrix`` (the same mu map, the collimator response of our collimator's parameters as
in ``benchmarks/bench_projector.py``, no scatter) and ``OSEM``. ``recon_path`` reconstructs the
same files on the same (whole-detector) grid with the same settings.

PyTomography's image reaches our RAS grid through documented geometry only, nothing fitted:

* Axes: its object is indexed like its DICOM output (``save_dcm``: pixel data ``object.permute(2,
  1, 0)``, Image Orientation ``[1, 0, 0, 0, 1, 0]``, slice ``k`` at ``Sz + k dz``): ``i`` along
  DICOM +x (the patient's left), ``j`` along +y (posterior), ``k`` along +z (superior), LPS.
* Slices: its reader reverses the frame rows (``projections[..., ::-1]``), so slice 0 is the
  frame's last row; DICOM puts that row at Image Position + (Rows - 1) x row spacing along the
  column direction (Image Orientation), where its own affine (``_get_affine_spect_projections``:
  ``Sz - (Rows - 1) dz``) puts it too (checked below).
* In-plane position: its projector turns the object about the grid centre and projects that
  centre onto the frame's middle column, so the grid centre lies on the rotation axis: Image
  Position + (Columns - 1) / 2 x column spacing along the row direction (Center of Rotation
  Offset 0). Its affine's in-plane translation is not used: it is a vendor guess (the corner of
  the first frame taken as the grid's corner, or with ``y == 0`` a table-height origin that
  needs Table Height, type 3 and not written by us), not what DICOM says of these files.

A mirror image of its reconstruction (left and right swapped) must fail the SBR criterion, so
the comparison sees an orientation error.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import generate_uid

from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject
from fastdat.io.projection_dicom import read_projections
from fastdat.io.projection_write import write_projections
from fastdat.simulate.acquisition import AcquisitionConfig, ReconConfig, simulate_acquisition
from fastdat.simulate.export import projection_set
from fastdat.tomo.attenuation import resample_to_grid
from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator
from fastdat.tomo.files import recon_path
from fastdat.tomo.reconstruct import ReconSettings

if importlib.util.find_spec("pytomography") is None:
    pytest.skip("pytomography is not installed", allow_module_level=True)

# A small study: 48 x 48-bin detector of 5.5 mm (264 mm, the default field), 48 views, the
# phantom on a 40 x 40 x 24 grid in its centre. Both reconstruct the whole detector: 48^3.
VOXEL, N, NZ = 5.5, 40, 24
ACQ = AcquisitionConfig(detector_size=48, n_views=48, orbit_radius_mm=135.0)
D = ACQ.detector_size
ITERS, SUBSETS = 4, 4
COUNTS = 1.5e6
STRIATUM = {"left": (1, 3, 5), "right": (2, 4, 6)}  # fastdat.anatomy.phantom.LABELS
OCCIPITAL = 7
LAYOUTS = ("siemens", "ge")

SCRIPT = r"""
import json, sys
import numpy as np, pydicom, torch
from pytomography.algorithms import OSEM
from pytomography.io.SPECT import dicom
from pytomography.likelihoods import PoissonLogLikelihood
from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
from pytomography.projectors.SPECT import SPECTSystemMatrix
from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform
job = json.load(open(sys.argv[1]))
peak = job["index_peak"]
for run in job["runs"]:
    ys, angles, radii, affine, notes = [], [], [], None, []
    for f in run["files"]:
        try:
            object_meta, proj_meta = dicom.get_metadata(f, index_peak=peak)
            a, r = proj_meta.angles.cpu().numpy(), np.asarray(proj_meta.radii)
            affine = object_meta.affine_matrix if affine is None else affine
        except Exception as err:  # its affine needs Table Height when Image Position y == 0
            notes.append(f"get_metadata({f.rsplit('/', 1)[-1]}): {type(err).__name__}: {err}")
            _, a, r, _ = dicom.parse_projection_dataset(pydicom.dcmread(f))
        ys.append(dicom.get_projections(f, index_peak=peak))
        angles.append(a)
        radii.append(r)
    order = np.argsort(np.concatenate(angles), kind="stable")
    y = torch.cat(ys)[torch.from_numpy(order)]
    ds = pydicom.dcmread(run["files"][0], stop_before_pixels=True)
    dx, dz = ds.PixelSpacing[0] / 10, ds.PixelSpacing[1] / 10  # as get_metadata
    object_meta = SPECTObjectMeta((dx, dx, dz), (y.shape[1], y.shape[1], y.shape[2]))
    proj_meta = SPECTProjMeta(
        (y.shape[1], y.shape[2]), (dx, dz), np.concatenate(angles)[order].tolist(),
        np.concatenate(radii)[order])
    psf = SPECTPSFMeta(job["psf"], sigma_fit=lambda r, a, b, c: ((a * r + b) ** 2 + c ** 2) ** 0.5)
    mu = torch.from_numpy(np.load(job["mu"]))
    system = SPECTSystemMatrix(
        [SPECTAttenuationTransform(mu), SPECTPSFTransform(psf)], [], object_meta, proj_meta)
    x = OSEM(PoissonLogLikelihood(system, y))(n_iters=job["iters"], n_subsets=job["subsets"])
    np.save(run["out"], x.cpu().numpy())
    json.dump({"affine": None if affine is None else np.asarray(affine).tolist(),
               "notes": notes}, open(run["out"] + ".json", "w"))
"""


def pytomography_grid(path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Voxel -> RAS mm affine and shape of PyTomography's object grid for the file ``path``
    (module docstring: LPS axes, grid centre on the rotation axis, slice 0 the last row)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    det = ds.DetectorInformationSequence[0]
    position = np.array(det.ImagePositionPatient, float)  # LPS, centre of the first pixel
    cosines = np.array(det.ImageOrientationPatient, float)
    along_row, along_col = cosines[:3], cosines[3:]  # column index / row index directions
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)  # between rows \ between columns
    assert float(getattr(det, "CenterOfRotationOffset", 0) or 0) == 0
    axis = position + (ds.Columns - 1) / 2 * col_mm * along_row
    bottom = position + (ds.Rows - 1) * row_mm * along_col
    d, n = col_mm, int(ds.Columns)
    lps = np.diag([d, d, row_mm, 1.0])
    lps[:3, 3] = [axis[0] - (n - 1) / 2 * d, axis[1] - (n - 1) / 2 * d, bottom[2]]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, (n, n, int(ds.Rows))


def sbrs(vol: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean striatum / mean occipital - 1 per side, in the phantom's label VOIs."""
    ref = float(vol[labels == OCCIPITAL].mean())
    return {s: float(vol[np.isin(labels, ls)].mean()) / ref - 1 for s, ls in STRIATUM.items()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Both layouts written and reconstructed by both: per layout (ours, theirs on our grid,
    PyTomography's own affine and notes), plus the head mask and labels on our grid."""
    root = tmp_path_factory.mktemp("pyt")
    pcfg = PhantomConfig(supersample=1)
    subject = sample_subject(np.random.default_rng(3), pcfg, 2, 0, age=62.0, sex="M")
    ph = make_phantom(subject, (N, N, NZ), VOXEL, pcfg)
    sim = simulate_acquisition(
        torch.from_numpy(ph.activity), torch.from_numpy(ph.mu), VOXEL, COUNTS, ACQ,
        ReconConfig(iterations=1, subsets=1), torch.Generator().manual_seed(5),
    )  # fmt: skip
    header = pydicom.Dataset()
    header.PatientID, header.StudyInstanceUID = "PHANTOM", generate_uid()
    ps = projection_set(sim["projections"][25.0], 25.0, ACQ, VOXEL, (N, NZ), header)
    files = {lay: write_projections(ps, root / lay, lay) for lay in LAYOUTS}
    nib.save(nib.Nifti1Image(ph.mu, ph.affine), root / "mu.nii.gz")
    ours = {}
    for lay in LAYOUTS:
        cfg = ReconSettings(
            iterations=ITERS, subsets=SUBSETS, attenuation="map", collimator=ACQ.collimator,
            intrinsic_fwhm_mm=ACQ.intrinsic_fwhm_mm, postfilter_mm=0, grid=(D, D),
        )  # fmt: skip
        res = recon_path(root / lay, root / f"ours_{lay}", cfg, str(root / "mu.nii.gz"), ("nifti",))
        ours[lay] = res.recon
    grid = ours["siemens"].affine
    pyt_affine, pyt_shape = pytomography_grid(files["siemens"][0])
    for lay in LAYOUTS:  # every file of both layouts puts PyTomography's grid in the same place
        for f in files[lay]:
            a, s = pytomography_grid(f)
            assert s == pyt_shape and np.allclose(a, pyt_affine, atol=1e-6), (f, a)
        assert np.allclose(ours[lay].affine, grid)
    index = np.linalg.inv(grid) @ pyt_affine  # PyTomography index -> our index
    assert np.allclose(index, np.round(index), atol=1e-6), index  # same voxels, reordered
    mu_lps = resample_to_grid(ph.mu, ph.affine, pyt_affine, pyt_shape, order=0)
    np.save(root / "mu_pyt.npy", mu_lps.astype(np.float32))
    col = get_collimator(ACQ.collimator)
    d_cm, leff_cm = col.hole_diameter_mm / 10, col.effective_length_mm / 10
    psf = [d_cm / leff_cm, d_cm, ACQ.intrinsic_fwhm_mm / 10]
    index_peak = read_projections(files["siemens"][0]).window("photopeak")
    job = {
        "index_peak": index_peak,
        "mu": str(root / "mu_pyt.npy"),
        "iters": ITERS,
        "subsets": SUBSETS,
        "psf": [p * FWHM_TO_SIGMA for p in psf],
        "runs": [
            {"files": [str(f) for f in files[lay]], "out": str(root / f"pyt_{lay}.npy")}
            for lay in LAYOUTS
        ],
    }
    (root / "job.json").write_text(json.dumps(job))
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root / "job.json")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = {}
    for lay in LAYOUTS:
        theirs = np.load(root / f"pyt_{lay}.npy") / ps.acquisition_s  # ours: counts / s
        meta = json.loads((root / f"pyt_{lay}.npy.json").read_text())
        on_ours = resample_to_grid(theirs, pyt_affine, grid, ours[lay].volume.shape, order=0)
        out[lay] = (ours[lay].volume, on_ours, meta)
    labels = resample_to_grid(ph.labels, ph.affine, grid, ours["siemens"].volume.shape, order=0)
    head = resample_to_grid(ph.mu, ph.affine, grid, ours["siemens"].volume.shape, order=0) > 0
    return out, labels.round().astype(int), head, pyt_affine


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pytomography_reads_and_reconstructs_our_dicom_like_fastdat(study, layout):
    out, labels, head, pyt_affine = study
    ours, theirs, meta = out[layout]
    r = np.corrcoef(ours[head], theirs[head])[0, 1]
    sbr_ours, sbr_theirs = sbrs(ours, labels), sbrs(theirs, labels)
    rel = {s: sbr_ours[s] / sbr_theirs[s] - 1 for s in STRIATUM}
    scale = float(theirs[head].sum() / ours[head].sum())
    print(f"{layout}: r {r:.4f}, SBR ours {sbr_ours}, PyTomography {sbr_theirs}, rel {rel}, "
          f"total PyTomography / ours {scale:.4f}, its affine {meta['affine']}, "
          f"notes {meta['notes']}")  # fmt: skip
    assert r > 0.98, r
    assert all(abs(v) <= 0.05 for v in rel.values()), (sbr_ours, sbr_theirs)
    assert sbr_ours["right"] > 1.5 * sbr_ours["left"]  # the grade-2 side is the left one
    # the criterion sees an orientation error: the mirror image (left and right swapped) fails
    mirrored = sbrs(theirs[::-1].copy(), labels)
    assert any(abs(sbr_ours[s] / mirrored[s] - 1) > 0.05 for s in STRIATUM), mirrored
    if meta["affine"] is not None:  # its own affine: same axes and slices, other in-plane origin
        own = np.asarray(meta["affine"])
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ pyt_affine
        assert np.allclose(own[:3, :3], lps[:3, :3]) and np.isclose(own[2, 3], lps[2, 3])


def test_both_layouts_give_the_same_images(study):
    """One file with both heads (CW) or one file per head (CC): the same views for both readers."""
    out = study[0]
    for i in (0, 1):  # ours, PyTomography's
        ge, siemens = out["ge"][i], out["siemens"][i]
        np.testing.assert_allclose(ge, siemens, rtol=0, atol=1e-5 * float(siemens.max()))
