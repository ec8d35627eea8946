"""Real DICOM clients on the NM series FastDaT writes (issue 15, "real clients in CI").

dcm2niix (geometry and values), GDCM (python-gdcm, a dependency, and the ``gdcmraw`` /
``gdcmdump`` tools), dcmtk (``dcmdump``, and a network round trip: ``storescu`` to ``storescp``
on 127.0.0.1), dicom3tools' ``dciodvfy`` and, when installed, SimpleITK read three outputs: a
derived series of a source in integer counts without rescale (what most cameras export), one of
a source with a Rescale Slope (stored in the source's units with a Real World Value Mapping), and
the output of :func:`fastdat.inference.files.denoise_path` end to end on an NM multi-frame
built here (the network replaced by a cheap stand-in: the files are the subject). Every client
must agree with FastDaT's reader on the geometry (within 1e-4 mm) and see the same values
(within the quantisation step). Each test skips, naming the Debian package, where its tool is
absent; ``.ci/run`` installs them with apt.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nm_support import add_i123_acquisition, code
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastdat.io.dicom import (
    LPS_TO_RAS,
    NM_IMAGE_STORAGE,
    Series,
    native_geometry,
    read_header,
    series_volume,
)
from fastdat.io.dicom_write import write_derived_series, write_nm_volume

PACKAGE = {
    "dcm2niix": "dcm2niix",
    "dcmdump": "dcmtk",
    "storescp": "dcmtk",
    "storescu": "dcmtk",
    "gdcmraw": "libgdcm-tools",
    "gdcmdump": "libgdcm-tools",
    "dciodvfy": "dicom3tools",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (Debian package {PACKAGE[name]}; .ci/run installs it)"
        )
    return path


def _run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def _camera_export(path: Path, shape=(16, 20, 18)) -> None:
    """An NM RECON TOMO multi-frame as a camera exports it: integer counts, no rescale, every
    attribute the NM Image IOD requires (``dciodvfy`` finds no error in it)."""
    counts = np.random.default_rng(7).poisson(200.0, shape).astype(np.uint16)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = NM_IMAGE_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.PatientName, ds.PatientID = "Doe^Jane", "PAT-1"
    ds.PatientBirthDate, ds.PatientSex = "19500102", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "S1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC1", "Roe^John"
    ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "DaTSCAN 30min", 3, 1
    ds.Manufacturer, ds.BodyPartExamined = "ACME NM", "HEAD"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    ds.ContentDate, ds.ContentTime = "20240102", "103000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240102", "101600"
    ds.PatientOrientation = ["R", "A"]
    ds.CountsAccumulated, ds.AcquisitionTerminationCondition = 2345678, "TIME"
    ds.CorrectedImage = ["UNIF", "COR", "ATTN"]
    ds.PatientOrientationCodeSequence = [code("102538003", "recumbent")]
    ds.PatientGantryRelationshipCodeSequence = [code("102540008", "headfirst")]
    add_i123_acquisition(ds, frame_ms=25000)
    ds.NumberOfFrames = ds.NumberOfSlices = shape[0]
    ds.FrameIncrementPointer, ds.SliceVector = 0x00540080, list(range(1, shape[0] + 1))
    ds.NumberOfEnergyWindows = ds.NumberOfDetectors = ds.NumberOfRotations = 1
    ds.Rows, ds.Columns = shape[1], shape[2]
    ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = ["3.9", "3.9"], "3.9", "3.9"
    det = pydicom.Dataset()
    det.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
    det.ImagePositionPatient = [120.0, 130.0, -60.0]
    det.CollimatorType, det.CollimatorGridName = "PARA", "LEHR"
    ds.DetectorInformationSequence = [det]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = counts.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _series(path: Path) -> Series:
    """The series of one NM multi-frame file."""
    h = read_header(path)
    uids = (h.PatientID, h.StudyInstanceUID, h.SeriesInstanceUID, h.SeriesDescription)
    return Series(*map(str, uids), files=[path], headers=[h], multiframe=True)


def _smooth(vol: np.ndarray) -> np.ndarray:
    """A stand-in restoration: a 3-voxel mean along x (values neither integers nor scaled)."""
    return (np.roll(vol, 1, 0) + vol + np.roll(vol, -1, 0)) / 3.0


@dataclass(frozen=True)
class Case:
    source: Path
    output: Path
    intended: np.ndarray  # the values FastDaT meant to write, closest-RAS (X, Y, Z)
    affine: np.ndarray  # their voxel -> RAS mm affine: the source's, by FastDaT's reader


def _source(kind: str, root: Path) -> Path:
    """``counts``: a camera export without rescale; ``rescaled``: uint16 with a Rescale Slope."""
    path = root / "in" / f"{kind}.dcm"
    if kind == "counts":
        _camera_export(path)
        return path
    path.parent.mkdir(parents=True)
    affine = np.diag([3.9, 3.9, 3.9, 1.0])
    affine[:3, 3] = (-140.0, -150.0, -120.0)
    write_nm_volume(
        np.random.default_rng(3).random((18, 20, 16)) * 27110.0,
        affine,
        path,
        patient_id="PAT-2",
        study_uid=generate_uid(),
        series_description="DaTSCAN 5min",
        duration_s=300.0,
    )
    return path


def _derived(source: Path, root: Path) -> Case:
    series = _series(source)
    vol, aff = series_volume(series)
    out = root / "out" / "derived.dcm"
    out.parent.mkdir()
    write_derived_series(_smooth(vol), aff, series, out, derivation="test: smoothed")
    return Case(source, out, _smooth(vol), aff)


def _denoised(source: Path, root: Path) -> Case:
    """``fastdat.inference.files.denoise_path`` end to end, the network replaced by _smooth."""
    from fastdat.inference import files

    vol, aff = series_volume(_series(source))

    def stand_in(volume, net, device, mode, voxel_mm, *args, **kwargs):
        info = {"mode": mode, "crop_corner": None, "warnings": []}
        return _smooth(np.asarray(volume, dtype=np.float32)), info

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "denoise_volume", stand_in)
        (result,) = files.denoise_path(source, out=root / "out", mode="slice", progress=False)
    assert result.status == "ok", result
    return Case(source, Path(result.output), _smooth(vol), aff)


@pytest.fixture(scope="module", params=["counts", "rescaled", "denoise_path"])
def case(request, tmp_path_factory) -> Case:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "denoise_path":
        return _denoised(_source("counts", root), root)
    return _derived(_source(request.param, root), root)


def _mapping(ds) -> tuple[float, float]:
    """The output's (slope, intercept) to values: its Real World Value Mapping, or identity."""
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds
    items = ds.get("RealWorldValueMappingSequence", None) or []
    if not items:
        return 1.0, 0.0
    return float(items[0].RealWorldValueSlope), float(items[0].RealWorldValueIntercept)


def _canonical(frames: np.ndarray, path: Path) -> np.ndarray:
    """Frames as stored ``(frames, rows, cols)`` of a FastDaT output -> closest-RAS (X, Y, Z)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = frames[np.argsort([int(v) for v in ds.SliceVector])]
    lps = native_geometry(_series(path)).affine
    img = nib.Nifti1Image(np.asarray(frames).transpose(2, 1, 0), LPS_TO_RAS @ lps)
    return np.asarray(nib.as_closest_canonical(img).dataobj)


def _check_values(seen: np.ndarray, case: Case) -> None:
    """``seen``, a client's values in closest-RAS axes, are the stored integers; through the
    Real World Value Mapping they are the intended values within half a step."""
    ds = pydicom.dcmread(case.output)
    slope, intercept = _mapping(ds)
    np.testing.assert_array_equal(seen, _canonical(ds.pixel_array, case.output))
    tol = slope / 2 + 1e-6 * np.abs(case.intended).max()
    np.testing.assert_allclose(seen * slope + intercept, case.intended, atol=tol)


def test_fastdat_output_has_no_rescale_and_reads_back(case):
    ds = pydicom.dcmread(case.output)
    assert (0x0028, 0x1052) not in ds and (0x0028, 0x1053) not in ds
    has_map = "RealWorldValueMappingSequence" in ds
    assert has_map == ("rescaled" in case.source.name)  # integer counts stay counts
    _, aff = series_volume(_series(case.output))
    np.testing.assert_allclose(aff, case.affine, atol=1e-4)


# --- dcm2niix


def _dcm2niix(path: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir(parents=True, exist_ok=True)
    run = _run(_tool("dcm2niix"), "-b", "n", "-z", "n", "-f", "converted", "-o", out, path)
    assert run.returncode == 0, run.stdout + run.stderr
    (nii,) = out.glob("*.nii")
    return nib.as_closest_canonical(nib.load(nii))


def test_dcm2niix_geometry_and_values(case, tmp_path):
    img = _dcm2niix(case.output, tmp_path / "nii")
    np.testing.assert_allclose(img.affine, case.affine, atol=1e-4)
    _check_values(np.asarray(img.dataobj), case)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


AXES = {  # voxel axes (columns) of write_nm_volume's affines, RAS; "lh": left-handed
    "ras": np.eye(3),
    "coronal-slices": np.eye(3)[:, [0, 2, 1]] @ np.diag([1.0, -1.0, 1.0]),
    "oblique": _rotation(0.3, -0.2, 0.5),
    "lh-z-down": np.diag([1.0, 1.0, -1.0]),
    "lh-x-reversed": np.diag([-1.0, 1.0, 1.0]),
    "lh-y-reversed": np.diag([1.0, -1.0, 1.0]),
    "lh-x-y-swapped": np.eye(3)[:, [1, 0, 2]],
    "lh-oblique": _rotation(0.3, -0.2, 0.5) @ np.diag([1.0, 1.0, -1.0]),
}


@pytest.mark.parametrize("name", list(AXES))
def test_dcm2niix_places_write_nm_volume_as_its_affine(tmp_path, name):
    """Issue 15 item 10: the NIfTI dcm2niix makes of write_nm_volume's file maps every voxel
    where the input affine does (a left-handed affine was mirrored and 245 mm off)."""
    affine = np.eye(4)
    affine[:3, :3] = AXES[name] * np.array([3.9, 3.3, 4.2])
    affine[:3, 3] = (-110.0, 95.0, -40.0)
    assert (np.linalg.det(affine) < 0) == name.startswith("lh")
    vol = np.random.default_rng(5).random((12, 10, 8)) * 1000.0
    path = tmp_path / "nm" / "v.dcm"
    path.parent.mkdir()
    write_nm_volume(
        vol, affine, path, patient_id="P1", study_uid=generate_uid(), series_description="x"
    )
    want = nib.as_closest_canonical(nib.Nifti1Image(vol, affine))
    img = _dcm2niix(path, tmp_path / "nii")
    np.testing.assert_allclose(img.affine, want.affine, atol=1e-4)
    np.testing.assert_allclose(np.asarray(img.dataobj), np.asarray(want.dataobj), atol=1000 / 65535)
    back, back_aff = series_volume(_series(path))  # and FastDaT's reader agrees
    np.testing.assert_allclose(back_aff, want.affine, atol=1e-4)
    np.testing.assert_allclose(back, np.asarray(want.dataobj), atol=1000 / 65535)


# --- GDCM


def _gdcm_read(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """What GDCM reads: voxel (column, row, frame) -> LPS affine, frames as stored, and the
    (slope, intercept) it would apply."""
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (a fastdat dependency) is missing")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    image = reader.GetImage()  # owned by the reader: read everything while it lives
    x, y = np.reshape(image.GetDirectionCosines(), (2, 3))
    spacing = np.asarray(image.GetSpacing())
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = x * spacing[0], y * spacing[1], np.cross(x, y) * spacing[2]
    lps[:3, 3] = image.GetOrigin()
    dims = [image.GetDimension(i) for i in range(3)]
    signed = image.GetPixelFormat().GetPixelRepresentation() == 1
    raw = image.GetBuffer().encode("utf-8", "surrogateescape")
    frames = np.frombuffer(raw, dtype=np.int16 if signed else np.uint16).reshape(dims[::-1])
    return lps, frames.copy(), (image.GetSlope(), image.GetIntercept())


def test_gdcm_geometry_and_values(case):
    lps, frames, rescale = _gdcm_read(case.output)
    np.testing.assert_allclose(lps, native_geometry(_series(case.output)).affine, atol=1e-4)
    assert rescale == (1.0, 0.0)  # GDCM applies nothing: it sees the stored integers
    _check_values(_canonical(frames, case.output), case)


def test_gdcm_tools_read_the_same_pixels(case, tmp_path):
    raw = tmp_path / "pixels.raw"
    run = _run(_tool("gdcmraw"), "-i", case.output, "-o", raw)
    assert run.returncode == 0, run.stderr
    assert raw.read_bytes() == pydicom.dcmread(case.output).PixelData
    run = _run(_tool("gdcmdump"), case.output)
    assert run.returncode == 0, run.stderr
    assert "(0028,1053)" not in run.stdout  # no Rescale Slope for GDCM to ignore
    has_map = "RealWorldValueMappingSequence" in pydicom.dcmread(case.output)
    assert ("(0040,9096)" in run.stdout) == has_map


def test_simpleitk_geometry_and_values(case):
    sitk = pytest.importorskip(
        "SimpleITK", reason="SimpleITK is not installed (pip install SimpleITK)"
    )
    image = sitk.ReadImage(str(case.output))
    direction = np.reshape(image.GetDirection(), (3, 3))
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(lps, native_geometry(_series(case.output)).affine, atol=1e-4)
    _check_values(_canonical(sitk.GetArrayFromImage(image), case.output), case)


# --- dcmtk


def test_dcmdump_parses(case):
    run = _run(_tool("dcmdump"), "-q", case.output)
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    assert "(0008,0060) CS [NM]" in run.stdout
    assert "(0028,1053)" not in run.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


KEYS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "ImageType",
    "DerivationDescription",
    "PixelSpacing",
    "SpacingBetweenSlices",
    "SliceVector",
    "DetectorInformationSequence",
    "CountsAccumulated",
    "PixelRepresentation",
)


def test_storescu_to_storescp_round_trip(case, tmp_path):
    """A real DICOM receiver on 127.0.0.1 (dcmtk storescp) stores what storescu sent."""
    storescp, storescu = _tool("storescp"), _tool("storescu")
    received = tmp_path / "received"
    received.mkdir()
    port = _free_port()
    log = (tmp_path / "storescp.log").open("w")
    server = subprocess.Popen(
        [storescp, "--aetitle", "FASTDAT_RECV", "--output-directory", str(received), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(40):  # until the server listens
            run = _run(
                storescu, "-aet", "FASTDAT", "-aec", "FASTDAT_RECV", "127.0.0.1", port, case.output
            )
            if run.returncode == 0 or server.poll() is not None:
                break
            time.sleep(0.25)
        assert run.returncode == 0, run.stdout + run.stderr
        for _ in range(40):
            files = list(received.iterdir())
            if files:
                break
            time.sleep(0.1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    (got,) = files
    sent, back = pydicom.dcmread(case.output), pydicom.dcmread(got)
    assert back.PixelData == sent.PixelData
    for keyword in KEYS:
        assert back.get(keyword) == sent.get(keyword), keyword
    assert back == sent  # every attribute, file meta aside


# --- dicom3tools


def _dciodvfy(path: Path) -> tuple[list[str], set[str]]:
    run = _run(_tool("dciodvfy"), path)
    lines = (run.stdout + run.stderr).splitlines()
    assert "NMImage" in lines, lines  # it recognised the IOD
    errors = [line for line in lines if line.startswith("Error")]
    return errors, {line for line in lines if line.startswith("Warning")}


def test_dciodvfy_no_errors_and_no_new_warnings(case):
    errors, warnings = _dciodvfy(case.output)
    assert errors == []
    _, before = _dciodvfy(case.source)
    assert warnings - before == set()
