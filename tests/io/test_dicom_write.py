from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastdat.data.dicom import scan_folder
from fastdat.io.dicom import (
    NM_IMAGE_STORAGE,
    native_geometry,
    series_volume,
)
from fastdat.io.dicom_write import write_derived_series, write_nm_volume

SHAPE = (9, 11, 7)  # (slices, rows, cols) as stored: odd and unequal on purpose


def _code(value, meaning, scheme="SCT"):
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _base(vendor: str, study: str, series: str) -> pydicom.Dataset:
    """An NM RECON TOMO header with the patient, study and acquisition tags cameras write."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.PatientName, ds.PatientID = "Müller^Anna", "PAT-7"
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "19500102", "F", "074Y"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "S42"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC9", "Doe^John"
    ds.StudyDescription, ds.SeriesDescription = "DaTSCAN brain", f"{vendor} DaT 5 min"
    ds.SeriesNumber, ds.InstanceNumber = 3, 1
    ds.Manufacturer, ds.BodyPartExamined = vendor.upper(), "BRAIN"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    ds.PatientOrientationCodeSequence = [_code("F-10450", "recumbent", "SRT")]
    ds.PatientGantryRelationshipCodeSequence = [_code("F-10470", "headfirst", "SRT")]
    window = pydicom.Dataset()
    rng = pydicom.Dataset()
    rng.EnergyWindowLowerLimit, rng.EnergyWindowUpperLimit = "143.1", "174.9"
    window.EnergyWindowRangeSequence = [rng]
    window.EnergyWindowName = "I123"
    ds.EnergyWindowInformationSequence = [window]
    pharm = pydicom.Dataset()
    pharm.RadionuclideCodeSequence = [_code("C-114B7", "^123^Iodine", "SRT")]
    ds.RadiopharmaceuticalInformationSequence = [pharm]
    rot = pydicom.Dataset()
    rot.StartAngle, rot.AngularStep, rot.RotationDirection, rot.ScanArc = "0", "3", "CW", "360"
    rot.ActualFrameDuration, rot.NumberOfFramesInRotation = 2500, 120
    ds.RotationInformationSequence = [rot]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    return ds


def _pixels(ds, img: np.ndarray, slope: float) -> None:
    ds.Rows, ds.Columns = img.shape[-2:]
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
    ds.PixelData = np.round(img / slope).astype(np.uint16).tobytes()


# Each vendor habit: (multi-frame?, Image Orientation, spacing (row, col, slice), frame order)
VENDORS = {
    # geometry only in the Detector Information Sequence, Spacing Between Slices, frames in order
    "ge": (True, [-1, 0, 0, 0, -1, 0], (3.3, 3.3, 3.3), "forward"),
    # geometry also at the top level, only Slice Thickness, frames stored in reverse slice order
    "siemens": (True, [1, 0, 0, 0, 1, 0], (4.8, 4.8, 4.8), "reverse"),
    # coronal reconstruction with non-square pixels
    "coronal": (True, [1, 0, 0, 0, 0, -1], (3.9, 4.2, 3.9), "forward"),
    # one file per slice, shuffled, each with its own Rescale Slope
    "stack": (False, [1, 0, 0, 0, 1, 0], (3.45, 3.45, 3.45), "shuffled"),
}


def _source(tmp_path, vendor: str) -> tuple:
    """Write a vendor-style series into its own folder; returns (Series, stored volume)."""
    multiframe, iop, (dr, dc, dz), order = VENDORS[vendor]
    folder = tmp_path / vendor
    folder.mkdir()
    vol = np.random.default_rng(len(vendor)).random(SHAPE).astype(np.float32) * 80.0
    x, y = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(x, y)
    origin = np.array([100.0, -120.0, -40.0])
    study, series = generate_uid(), generate_uid()
    if multiframe:
        ds = _base(vendor, study, series)
        ds.NumberOfFrames = ds.NumberOfSlices = SHAPE[0]
        ds.FrameIncrementPointer = 0x00540080
        perm = np.arange(SHAPE[0])[::-1] if order == "reverse" else np.arange(SHAPE[0])
        ds.SliceVector = [int(k) + 1 for k in perm]  # frame f holds slice perm[f]
        ds.PixelSpacing = [dr, dc]
        ds.SliceThickness = dz
        if vendor != "siemens":
            ds.SpacingBetweenSlices = dz
        det = pydicom.Dataset()
        det.ImageOrientationPatient, det.ImagePositionPatient = iop, list(origin)
        det.CollimatorType, det.CollimatorGridName = "PARA", "LEHR"
        ds.DetectorInformationSequence = [det]
        ds.NumberOfDetectors = ds.NumberOfEnergyWindows = ds.NumberOfRotations = 1
        if vendor == "siemens":
            ds.ImageOrientationPatient, ds.ImagePositionPatient = iop, list(origin)
        _pixels(ds, vol[perm], 0.01)
        ds.save_as(folder / f"{vendor}.dcm", enforce_file_format=True)
    else:
        for n, k in enumerate(np.random.default_rng(3).permutation(SHAPE[0])):
            ds = _base(vendor, study, series)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = int(n) + 1
            ds.ImageOrientationPatient = iop
            ds.ImagePositionPatient = list(origin + k * dz * normal)
            ds.PixelSpacing = [dr, dc]
            ds.SliceThickness = dz
            _pixels(ds, vol[k], 0.005 * (k + 1))
            ds.save_as(folder / f"IM{n:04d}.dcm", enforce_file_format=True)
    found, skipped = scan_folder(folder)
    assert len(found) == 1 and not skipped
    return found[0], vol


def _read(path):
    """The one series of a file (in its own folder)."""
    (series,), skipped = scan_folder(path.parent)
    assert not skipped
    return series


def _derive(tmp_path, vendor: str, scale: float = 0.5):
    source, _ = _source(tmp_path, vendor)
    vol, aff = series_volume(source)
    (tmp_path / "out").mkdir()
    out = write_derived_series(
        vol * scale, aff, source, tmp_path / "out" / "derived.dcm", derivation="test: halved"
    )
    return source, vol, aff, out


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_derived_series_keeps_geometry_and_values(tmp_path, vendor):
    source, vol, aff, out = _derive(tmp_path, vendor)
    series = _read(out)
    back, back_aff = series_volume(series)
    np.testing.assert_allclose(back_aff, aff, atol=1e-4)
    step = 0.5 * vol.max() / 65535
    np.testing.assert_allclose(back, 0.5 * vol, atol=step)
    # stored as the source: same orientation, spacing, first-slice position, slice spacing
    geo_src, geo_out = native_geometry(source), native_geometry(series)
    np.testing.assert_allclose(geo_out.affine, geo_src.affine, atol=1e-4)
    assert geo_out.shape == geo_src.shape


@pytest.mark.parametrize("vendor", ["ge", "stack"])
def test_derived_series_is_a_new_series_of_the_same_study(tmp_path, vendor):
    source, _, _, out = _derive(tmp_path, vendor)
    src, ds = source.headers[0], pydicom.dcmread(out)
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "AccessionNumber",
        "StudyDate",
        "FrameOfReferenceUID",
        "SpecificCharacterSet",
    ):
        assert ds[keyword].value == src[keyword].value, keyword
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID not in {h.SOPInstanceUID for h in source.headers}
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert list(ds.ImageType)[:3] == ["DERIVED", "PRIMARY", "RECON TOMO"]
    assert ds.DerivationDescription == "test: halved"
    assert ds.SeriesDescription == src.SeriesDescription + " FastDaT denoised"
    assert int(ds.SeriesNumber) == 1003
    refs = {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}
    assert refs == {h.SOPInstanceUID for h in source.headers}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.series_uid
    assert ds.RotationInformationSequence[0].NumberOfFramesInRotation == 120
    assert ds.EnergyWindowInformationSequence[0].EnergyWindowName == "I123"


def test_negative_values_use_the_intercept(tmp_path):
    source, _ = _source(tmp_path, "ge")
    vol, aff = series_volume(source)
    signed = vol - 0.25 * vol.max()
    (tmp_path / "out").mkdir()
    out = write_derived_series(signed, aff, source, tmp_path / "out" / "s.dcm", derivation="x")
    back, _ = series_volume(_read(out))
    np.testing.assert_allclose(back, signed, atol=np.ptp(signed) / 65535)
    assert float(pydicom.dcmread(out).RescaleIntercept) < 0


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda v, a: (v[:-1], a), "not on the voxel grid"),
        (lambda v, a: (v, a @ np.diag([1.0, 1.0, 1.1, 1.0])), "not on the voxel grid"),
        (lambda v, a: (np.where(v > v.mean(), np.nan, v), a), "finite"),
    ],
)
def test_derived_series_refuses_another_grid(tmp_path, change, match):
    source, _ = _source(tmp_path, "ge")
    vol, aff = change(*series_volume(source))
    with pytest.raises(ValueError, match=match):
        write_derived_series(vol, aff, source, tmp_path / "x.dcm", derivation="x")
    assert not (tmp_path / "x.dcm").exists()


def _dciodvfy_errors(path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    text = run.stdout + run.stderr
    assert "NMImage" in text, text  # it recognised the IOD
    return [line for line in text.splitlines() if line.startswith("Error")]


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it",
)
@pytest.mark.parametrize("vendor", [*VENDORS, "fastdat-simulated"])
def test_dciodvfy_finds_no_errors(tmp_path, vendor):
    if vendor == "fastdat-simulated":  # write_nm_volume's own studies, then their derived series
        aff = np.diag([3.3, 3.3, 3.3, 1.0])
        src = tmp_path / "sim"
        src.mkdir()
        write_nm_volume(
            np.random.default_rng(0).random((12, 10, 8)),
            aff,
            src / "sim.dcm",
            patient_id="P1",
            study_uid=generate_uid(),
            series_description="DaTscan 25min",
            duration_s=1500.0,
        )
        assert _dciodvfy_errors(src / "sim.dcm") == []
        source = _read(src / "sim.dcm")
        vol, aff = series_volume(source)
        out = write_derived_series(vol, aff, source, tmp_path / "d.dcm", derivation="x")
    else:
        _, _, _, out = _derive(tmp_path, vendor)
    assert _dciodvfy_errors(out) == []
