"""``fastdat recon`` end to end: projection DICOM in, NIfTI and DICOM out, orientation kept.

A simulated asymmetric study (right striatum twice the left, a marker anterior-superior) is
written as projection DICOM in every vendor layout, rotation direction and head order, read,
reconstructed, and both outputs are read back (nibabel; FastDaT's DICOM reader; dcm2niix and
dciodvfy when installed): the right striatum stays right, the marker anterior and superior.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from recon_support import ACQ, NZ, RECON, VOXEL, N, oriented, phantom

from fastdat.anatomy.phantom import grid_affine
from fastdat.cli import main
from fastdat.io.dicom import Series, read_header, series_volume
from fastdat.io.dicom_write import write_nm_volume
from fastdat.io.projection_dicom import LAYOUTS, ROTATIONS
from fastdat.io.projection_write import write_projections
from fastdat.simulate.acquisition import simulate_acquisition
from fastdat.simulate.export import projection_set
from fastdat.tomo.attenuation import ct_to_mu

FAST = ["--iterations", "3", "--subsets", "4", "--collimator", "siemens-lehr"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The simulation, its projection set (with a patient header) and the mu map NIfTI."""
    act, mu = phantom()
    sim = simulate_acquisition(act, mu, VOXEL, 3e5, ACQ, RECON, torch.Generator().manual_seed(5))
    header = pydicom.Dataset()
    header.PatientID = header.PatientName = "PHANTOM"
    header.StudyInstanceUID = generate_uid()
    header.FrameOfReferenceUID = generate_uid()
    ps = projection_set(sim["projections"][25.0], 25.0, ACQ, VOXEL, (N, NZ), header)
    root = tmp_path_factory.mktemp("recon")
    aff = grid_affine((N, N, NZ), VOXEL)
    nib.save(nib.Nifti1Image(mu.numpy(), aff), root / "mu.nii.gz")
    return sim, ps, root


def _written(ps, folder: Path, layout="siemens", **kw) -> Path:
    write_projections(ps, folder, layout, **kw)
    return folder


def _dicom_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ds = read_header(path)
    series = Series(str(ds.PatientID), ds.StudyInstanceUID, ds.SeriesInstanceUID, "", [path], [ds])
    series.multiframe = True
    return series_volume(series)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("heads", [(1, 2), (2, 1)])
def test_orientation_through_write_read_reconstruct_and_both_outputs(
    study, tmp_path, layout, rotation, heads
):
    _, ps, _ = study
    src = _written(ps, tmp_path / "in", layout, rotation=rotation, head_order=heads)
    out = tmp_path / "out"
    assert main(["recon", str(src), "--out", str(out), "--attenuation", "chang", *FAST]) == 0
    img = nib.load(out / "recon.nii.gz")
    assert oriented(np.asarray(img.dataobj), img.affine)
    vol, aff = _dicom_volume(out / "recon.dcm")
    assert oriented(vol, aff)
    assert np.allclose(aff, img.affine, atol=1e-3)
    # DICOM values: uint16 over the range, so within one step of the NIfTI's
    step = float(np.asarray(img.dataobj).max()) / 65535
    assert np.abs(vol - np.asarray(img.dataobj)).max() <= step


def test_recon_reproduces_the_simulator_through_dicom(study, tmp_path):
    sim, ps, root = study
    src = _written(ps, tmp_path / "in", "ge")
    out = tmp_path / "out"
    args = ["recon", str(src), "--out", str(out), "--attenuation", str(root / "mu.nii.gz")]
    args += ["--grid", f"{N},{NZ}", "--postfilter-mm", "6", "--format", "nifti", *FAST]
    assert main(args) == 0
    img = nib.load(out / "recon.nii.gz")
    ref = sim["images"][25.0].numpy()
    assert np.allclose(img.affine, grid_affine((N, N, NZ), VOXEL))
    assert np.abs(np.asarray(img.dataobj) - ref).max() <= 1e-4 * ref.max()
    doc = json.loads((out / "recon.json").read_text())
    assert doc["settings"]["iterations"] == 3 and doc["resolved"]["collimator"] == "siemens-lehr"
    assert doc["provenance"]["git_commit"] and doc["inputs"]


def test_thinned_recon_records_fraction_and_seed(study, tmp_path, capsys):
    _, ps, _ = study
    src = _written(ps, tmp_path / "in")
    outs = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / name
        args = ["recon", str(src), "--out", str(out), "--fraction", "0.2", "--seed", seed]
        assert main([*args, "--format", "nifti", *FAST]) == 0
        outs.append(np.asarray(nib.load(out / "recon.nii.gz").dataobj))
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    doc = json.loads((tmp_path / "a" / "recon.json").read_text())
    assert doc["settings"]["fraction"] == 0.2 and doc["settings"]["seed"] == 7
    assert doc["resolved"]["acquisition_s"] == pytest.approx(300.0)
    # --complement: the counts seed 7 did not keep, a 20-min scan; with the 5-min part they
    # are every count of the acquisition
    args = ["recon", str(src), "--out", str(tmp_path / "rest"), "--fraction", "0.2"]
    assert main([*args, "--seed", "7", "--complement", "--format", "nifti", *FAST]) == 0
    rest = json.loads((tmp_path / "rest" / "recon.json").read_text())
    assert rest["settings"]["complement"] is True
    assert rest["resolved"]["acquisition_s"] == pytest.approx(1200.0)
    total = int(ps.counts[ps.window("photopeak")].sum())
    assert doc["resolved"]["counts_photopeak"] + rest["resolved"]["counts_photopeak"] == total


def _ct_series(folder: Path, mu: np.ndarray, affine: np.ndarray, frame_uid: str) -> np.ndarray:
    """Write ``mu`` (RAS grid) as a 120 kVp CT series (LPS slices); returns its HU."""
    water = float(ct_to_mu(np.zeros(1), 120.0)[0])
    air = float(ct_to_mu(np.full(1, -1000.0), 120.0)[0])
    hu = np.where(mu > 0, (mu - water) / (water - air) * 1000.0, -1000.0)
    hu = np.minimum(hu, -1.0)  # the soft-tissue branch only: exact inverse
    folder.mkdir()
    series, n, v = generate_uid(), mu.shape[0], float(affine[0, 0])
    x0 = -(affine[0, 3] + (n - 1) * v)  # LPS x of column 0 (RAS x of the last voxel, negated)
    y0 = -(affine[1, 3] + (n - 1) * v)
    for k in range(mu.shape[2]):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.KVP = "CT", "120"
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "PHANTOM", generate_uid(), series
        ds.FrameOfReferenceUID = frame_uid
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [x0, y0, float(affine[2, 3] + k * v)]
        ds.PixelSpacing, ds.SliceThickness = [v, v], v
        ds.Rows = ds.Columns = n
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        frame = hu[::-1, ::-1, k].T  # (rows = -y, cols = -x)
        ds.PixelData = np.round(frame + 1024).astype("<i2").tobytes()
        ds.save_as(folder / f"ct{k:03d}.dcm", enforce_file_format=True)
    return hu


def test_ct_attenuation_matches_its_mu_map_and_a_foreign_frame_is_refused(study, tmp_path, capsys):
    _, ps, root = study
    src = _written(ps, tmp_path / "in")
    aff = grid_affine((N, N, NZ), VOXEL)
    mu = np.asarray(nib.load(root / "mu.nii.gz").dataobj)
    hu = _ct_series(tmp_path / "ct", mu, aff, str(ps.header.FrameOfReferenceUID))
    nib.save(nib.Nifti1Image(ct_to_mu(hu, 120.0), aff), tmp_path / "ctmu.nii.gz")
    got = {}
    for name, att in (("ct", tmp_path / "ct"), ("map", tmp_path / "ctmu.nii.gz")):
        args = ["recon", str(src), "--out", str(tmp_path / f"o{name}"), "--attenuation", str(att)]
        assert main([*args, "--format", "nifti", *FAST]) == 0
        got[name] = np.asarray(nib.load(tmp_path / f"o{name}" / "recon.nii.gz").dataobj)
    assert np.allclose(got["ct"], got["map"], rtol=1e-4, atol=1e-6 * got["map"].max())
    other = tmp_path / "ct2"
    _ct_series(other, mu, aff, generate_uid())
    out = tmp_path / "refused"
    assert main(["recon", str(src), "--out", str(out), "--attenuation", str(other), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{other}: the CT's Frame of Reference UID" in err and not out.exists()


def _case(tmp_path: Path, ps, kind: str) -> tuple[list[str], str]:
    """Arguments of a bad run and the message it must print."""
    src = tmp_path / "in"
    if kind == "recon tomo":
        src.mkdir()
        path = src / "recon.dcm"
        write_nm_volume(
            np.ones((8, 8, 4)),
            np.diag([4.0, 4, 4, 1]),
            path,
            patient_id="P",
            study_uid=generate_uid(),
            series_description="recon",
        )
        return [str(path)], "RECON TOMO"
    if kind == "file collimator":
        _written(ps.replace(collimator="XYZ9"), src)
        (path,) = src.glob("*.dcm")
        return [str(src)], f"{path}: unknown collimator 'XYZ9'"
    _written(ps, src)
    (path,) = src.glob("*.dcm")
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
        return [str(path)], str(path)
    if kind == "fan beam":
        return [str(src), "--collimator", "LEFB"], "fan-beam collimators are not supported"
    if kind == "hu map":
        nifti = tmp_path / "hu.nii.gz"
        nib.save(nib.Nifti1Image(np.full((8, 8, 8), 40.0), np.eye(4)), nifti)
        return [str(src), "--attenuation", str(nifti)], f"{nifti}: a mu map needs"
    if kind == "no rotation":
        ds = pydicom.dcmread(path)
        del ds.RotationInformationSequence
        ds.save_as(path)
        return [str(path)], "Rotation Information Sequence"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["recon tomo", "truncated", "fan beam", "file collimator", "hu map", "no rotation"]
)
def test_bad_input_is_one_message_exit_2_and_nothing_written(study, tmp_path, capsys, kind):
    _, ps, _ = study
    args, message = _case(tmp_path, ps, kind)
    out = tmp_path / "out"
    iters = ["--iterations", "1", "--subsets", "4"]
    if "--collimator" not in args and kind != "file collimator":
        iters += ["--collimator", "siemens-lehr"]
    assert main(["recon", *args, "--out", str(out), *iters]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_existing_output_is_never_overwritten(study, tmp_path, capsys):
    _, ps, _ = study
    src = _written(ps, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["recon", str(src), "--out", str(out), *FAST]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def test_recon_dicom_is_valid_and_placed_alike_by_dcm2niix(study, tmp_path):
    _, ps, _ = study
    src = _written(ps, tmp_path / "in")
    out = tmp_path / "out"
    assert main(["recon", str(src), "--out", str(out), *FAST]) == 0
    run = subprocess.run([_tool("dciodvfy"), out / "recon.dcm"], capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    assert "NMImage" in lines and [x for x in lines if x.startswith("Error")] == []
    conv = tmp_path / "nii"
    conv.mkdir()
    run = subprocess.run(
        [_tool("dcm2niix"), "-b", "n", "-z", "n", "-f", "c", "-o", conv, out / "recon.dcm"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = nib.as_closest_canonical(nib.load(next(conv.glob("*.nii"))))
    ours = nib.load(out / "recon.nii.gz")
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-3)
    assert oriented(np.asarray(theirs.dataobj, dtype=np.float64), theirs.affine)
