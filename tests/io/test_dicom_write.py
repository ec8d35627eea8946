from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nm_support import add_i123_acquisition, code
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import fastdat.io.dicom
from fastdat.io.dicom import (
    LPS_TO_RAS,
    NM_IMAGE_STORAGE,
    native_geometry,
    series_volume,
)
from fastdat.io.dicom_write import write_derived_series, write_nm_volume
from fastdat.io.image import scan_folder

SHAPE = (9, 11, 7)  # (slices, rows, cols) as stored: odd and unequal on purpose


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
    ds.PatientOrientationCodeSequence = [code("F-10450", "recumbent", "SRT")]
    ds.PatientGantryRelationshipCodeSequence = [code("F-10470", "headfirst", "SRT")]
    add_i123_acquisition(ds, frame_ms=2500)
    # what describes the acquisition and stays true of an image derived from it
    ds.AcquisitionDate, ds.AcquisitionTime = "20240102", "101700"
    ds.CountsAccumulated, ds.AcquisitionTerminationCondition = 3456789, "TIME"
    ds.CorrectedImage = ["UNIF", "COR", "ATTN"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    return ds


def _letters(v) -> str:
    """Patient Orientation of one direction (LPS): its dominant axis' letter."""
    k = int(np.argmax(np.abs(v)))
    return "LPH"[k] if v[k] > 0 else "RAF"[k]


def _pixels(ds, img: np.ndarray, slope: float | None) -> None:
    """Stored pixels of ``img``: uint16 with a Rescale Slope, or (``slope`` None) integers as is."""
    ds.Rows, ds.Columns = img.shape[-2:]
    if slope is None:
        ds.PixelData = np.round(img).astype(np.uint16).tobytes()
        return
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
    # integer counts without any rescale (GE Xeleris, Siemens and others export NM so)
    "counts": (True, [-1, 0, 0, 0, -1, 0], (3.9, 3.9, 3.9), "forward"),
}
SLOPE = {"ge": 0.01, "siemens": 0.01, "coronal": 0.01, "stack": 0.005, "counts": None}
"""Rescale Slope of each vendor's source (the stack's first file; the others' are multiples)."""


def _source(tmp_path, vendor: str) -> tuple:
    """Write a vendor-style series into its own folder; returns (Series, stored volume)."""
    multiframe, iop, (dr, dc, dz), order = VENDORS[vendor]
    folder = tmp_path / vendor
    folder.mkdir()
    vol = np.random.default_rng(len(vendor)).random(SHAPE).astype(np.float32) * 80.0
    if SLOPE[vendor] is None:
        vol = np.round(vol * 10.0)  # counts up to 800
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
        ds.PatientOrientation = [_letters(x), _letters(y)]
        if vendor != "siemens":
            ds.SpacingBetweenSlices = dz
        det = pydicom.Dataset()
        det.ImageOrientationPatient, det.ImagePositionPatient = iop, list(origin)
        det.CollimatorType, det.CollimatorGridName = "PARA", "LEHR"
        ds.DetectorInformationSequence = [det]
        ds.NumberOfDetectors = ds.NumberOfEnergyWindows = ds.NumberOfRotations = 1
        if vendor == "siemens":
            ds.ImageOrientationPatient, ds.ImagePositionPatient = iop, list(origin)
        _pixels(ds, vol[perm], SLOPE[vendor])
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
            ds.PatientOrientation = [_letters(x), _letters(y)]
            _pixels(ds, vol[k], SLOPE[vendor] * (k + 1))
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
        vol * scale,
        aff,
        source,
        tmp_path / "out" / "derived.dcm",
        derivation="test: halved",
    )
    return source, vol, aff, out


def _mapping(ds) -> tuple[float, float]:
    """(slope, intercept) of a derived object's one Real World Value Mapping item, or identity."""
    items = ds.get("RealWorldValueMappingSequence", None) or []
    if not items:
        return 1.0, 0.0
    assert len(items) == 1
    return float(items[0].RealWorldValueSlope), float(items[0].RealWorldValueIntercept)


def _pydicom_volume(path) -> tuple[np.ndarray, np.ndarray, float]:
    """What a pydicom user reads, independent of FastDaT's reader: stored values through the
    Real World Value Mapping, frames in Slice Vector order, in closest-RAS axes, and the step."""
    ds = pydicom.dcmread(path)
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds  # not in an NM object
    slope, intercept = _mapping(ds)
    frames = ds.pixel_array.astype(np.float64) * slope + intercept
    frames = frames[np.argsort([int(v) for v in ds.SliceVector])]
    img = nib.Nifti1Image(
        frames.transpose(2, 1, 0), LPS_TO_RAS @ native_geometry(_read(path)).affine
    )
    img = nib.as_closest_canonical(img)
    return np.asarray(img.dataobj), img.affine, slope


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_derived_series_keeps_geometry_and_values(tmp_path, vendor):
    source, vol, aff, out = _derive(tmp_path, vendor)
    series = _read(out)
    _, back_aff = series_volume(series)
    np.testing.assert_allclose(back_aff, aff, atol=1e-4)
    back, pd_aff, step = _pydicom_volume(out)
    np.testing.assert_allclose(pd_aff, aff, atol=1e-4)
    np.testing.assert_allclose(back, 0.5 * vol, atol=step / 2 + 1e-6 * vol.max())
    # stored as the source: same orientation, spacing, first-slice position, slice spacing
    geo_src, geo_out = native_geometry(source), native_geometry(series)
    np.testing.assert_allclose(geo_out.affine, geo_src.affine, atol=1e-4)
    assert geo_out.shape == geo_src.shape


@pytest.mark.skipif(
    not hasattr(fastdat.io.dicom, "value_mapping"),
    reason="FastDaT's reader does not apply a Real World Value Mapping yet "
    "(fastdat.io.dicom.value_mapping, the change issue 15 item 2 asks of the reader)",
)
@pytest.mark.parametrize("vendor", list(VENDORS))
def test_our_reader_reads_the_derived_values(tmp_path, vendor):
    _, vol, _, out = _derive(tmp_path, vendor)
    back, _ = series_volume(_read(out))
    step = _mapping(pydicom.dcmread(out, stop_before_pixels=True))[0]
    np.testing.assert_allclose(back, 0.5 * vol, atol=step / 2 + 1e-6 * vol.max())


# --- issue 15 item 2: values every reader reads the same way


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_no_rescale_in_the_nm_object(tmp_path, vendor):
    """The NM IOD has no Modality LUT: Rescale Slope / Intercept are not written (dciodvfy
    warned, GDCM ignored them while pydicom, ITK and dcm2niix applied them)."""
    _, _, _, out = _derive(tmp_path, vendor)
    ds = pydicom.dcmread(out)
    assert (0x0028, 0x1052) not in ds and (0x0028, 0x1053) not in ds
    assert (0x0028, 0x3000) not in ds  # nor a Modality LUT Sequence


def test_source_without_rescale_is_written_in_its_own_units(tmp_path):
    """Integer counts in, integer counts out: every reader sees the values themselves."""
    source, vol, _, out = _derive(tmp_path, "counts")
    ds = pydicom.dcmread(out)
    assert "RealWorldValueMappingSequence" not in ds
    assert ds.PixelRepresentation == 0 and ds.BitsStored == 16
    src = pydicom.dcmread(source.files[0])
    np.testing.assert_array_equal(ds.pixel_array, np.round(src.pixel_array * 0.5))


def test_rescaled_source_is_stored_in_its_own_units_with_a_real_world_value_map(tmp_path):
    source, _, _, out = _derive(tmp_path, "ge")
    ds, src = pydicom.dcmread(out), pydicom.dcmread(source.files[0])
    (item,) = ds.RealWorldValueMappingSequence
    assert item.RealWorldValueSlope == pytest.approx(0.01) and item.RealWorldValueIntercept == 0
    assert item[0x00409216].VR == "US" and item.RealWorldValueFirstValueMapped == 0
    assert item.RealWorldValueLastValueMapped == 65535
    units = item.MeasurementUnitsCodeSequence[0]
    assert (units.CodeValue, units.CodingSchemeDesignator) == ("{counts}", "UCUM")
    assert item.LUTLabel and item.LUTExplanation
    # the source's stored units: half the source's stored integers, rounded
    assert np.abs(ds.pixel_array - src.pixel_array * 0.5).max() <= 0.5


def test_per_file_slopes_fall_back_to_a_map_over_16_bits(tmp_path):
    _, vol, _, out = _derive(tmp_path, "stack")
    ds = pydicom.dcmread(out)
    slope, intercept = _mapping(ds)
    assert intercept == 0 and slope == pytest.approx(0.5 * vol.max() / 65535, rel=1e-6)
    assert ds.pixel_array.max() == 65535


def test_values_beyond_16_bits_fall_back_to_a_map(tmp_path):
    _, vol, _, out = _derive(tmp_path, "counts", scale=200.0)  # up to 160000 counts
    ds = pydicom.dcmread(out)
    slope, intercept = _mapping(ds)
    assert intercept == 0 and slope == pytest.approx(200 * vol.max() / 65535, rel=1e-6)
    back, _, _ = _pydicom_volume(out)
    np.testing.assert_allclose(back, 200 * vol, atol=slope / 2 + 1e-6 * slope)


@pytest.mark.parametrize("vendor", ["ge", "counts"])
def test_negative_values_are_signed_integers(tmp_path, vendor):
    source, _ = _source(tmp_path, vendor)
    vol, aff = series_volume(source)
    signed = vol - 0.25 * vol.max()
    (tmp_path / "out").mkdir()
    out = write_derived_series(signed, aff, source, tmp_path / "out" / "s.dcm", derivation="x")
    ds = pydicom.dcmread(out)
    assert ds.PixelRepresentation == 1 and ds.pixel_array.dtype == np.int16
    slope, intercept = _mapping(ds)
    assert slope == (SLOPE[vendor] or 1.0) and intercept == 0  # still the source's units
    if vendor == "ge":
        item = ds.RealWorldValueMappingSequence[0]
        assert item[0x00409216].VR == "SS" and item.RealWorldValueFirstValueMapped == -32768
    back, _, _ = _pydicom_volume(out)
    np.testing.assert_allclose(back, signed, atol=slope / 2 + 1e-6 * vol.max())


def _gdcm_stored(path) -> tuple[np.ndarray, float, float]:
    """GDCM's pixel values of a file (as GDCM-based viewers and toolkits see them)."""
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (a fastdat dependency) is missing")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    image = reader.GetImage()
    dtype = np.int16 if image.GetPixelFormat().GetPixelRepresentation() else np.uint16
    raw = image.GetBuffer().encode("utf-8", "surrogateescape")
    return np.frombuffer(raw, dtype=dtype), image.GetSlope(), image.GetIntercept()


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_pydicom_and_gdcm_read_the_same_values(tmp_path, vendor):
    """What a reader applies by itself (pydicom's Modality LUT, GDCM's rescale for the SOP
    class) gives the same numbers: the stored integers, in the source's stored units."""
    from pydicom.pixels import apply_modality_lut

    _, _, _, out = _derive(tmp_path, vendor)
    ds = pydicom.dcmread(out)
    seen_by_pydicom = apply_modality_lut(ds.pixel_array, ds).ravel()
    stored, slope, intercept = _gdcm_stored(out)
    seen_by_gdcm = stored * slope + intercept
    np.testing.assert_array_equal(seen_by_pydicom, seen_by_gdcm)
    np.testing.assert_array_equal(stored, ds.pixel_array.ravel())


# --- issue 15 item 9: what stays true of the source


@pytest.mark.parametrize("vendor", ["ge", "stack", "counts"])
def test_derived_series_keeps_what_stays_true(tmp_path, vendor):
    source, _, _, out = _derive(tmp_path, vendor)
    src, ds = source.headers[0], pydicom.dcmread(out)
    for keyword in (
        "PatientOrientation",
        "CountsAccumulated",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionTerminationCondition",
        "CorrectedImage",
    ):
        assert keyword in ds and ds[keyword].value == src[keyword].value, keyword
    assert int(ds.CountsAccumulated) == 3456789  # the acquisition's counts, not blanked
    assert ds.DerivationDescription.startswith("test: halved")
    assert "Counts Accumulated" in ds.DerivationDescription  # says whose counts they are
    assert "source acquisition" in ds.DerivationDescription


def test_attributes_a_source_lacks_stay_absent_or_empty(tmp_path):
    source, _ = _source(tmp_path, "ge")
    path = source.files[0]
    ds = pydicom.dcmread(path)
    del ds.PatientOrientation, ds.CountsAccumulated, ds.AcquisitionDate, ds.CorrectedImage
    ds.save_as(path)
    source = _read(path)
    vol, aff = series_volume(source)
    out = write_derived_series(vol, aff, source, tmp_path / "d.dcm", derivation="x")
    ds = pydicom.dcmread(out)
    assert "PatientOrientation" not in ds and "AcquisitionDate" not in ds
    assert "CorrectedImage" not in ds
    assert "CountsAccumulated" in ds and ds.CountsAccumulated in (None, "")  # Type 2


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
    assert ds.DerivationDescription.startswith("test: halved")
    assert ds.SeriesDescription == src.SeriesDescription + " FastDaT denoised"
    assert int(ds.SeriesNumber) == 1003
    refs = {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}
    assert refs == {h.SOPInstanceUID for h in source.headers}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.series_uid
    assert ds.RotationInformationSequence[0].NumberOfFramesInRotation == 120
    assert ds.EnergyWindowInformationSequence[0].EnergyWindowName == "I123"


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


# --- issue 15 item 10: any affine, right- or left-handed


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(columns: np.ndarray, spacing=(3.9, 3.3, 4.2)) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = columns * np.asarray(spacing)
    aff[:3, 3] = (-110.0, 95.0, -40.0)
    return aff


AFFINES = {  # voxel -> RAS mm; "lh" are left-handed (determinant < 0)
    "ras": _affine(np.eye(3)),
    "lh-z-down": _affine(np.diag([1.0, 1.0, -1.0])),
    "lh-x-reversed": _affine(np.diag([-1.0, 1.0, 1.0])),
    "lh-y-reversed": _affine(np.diag([1.0, -1.0, 1.0])),
    "lh-all-reversed": _affine(-np.eye(3)),
    "lh-x-y-swapped": _affine(np.eye(3)[:, [1, 0, 2]]),
    "coronal-slices": _affine(np.eye(3)[:, [0, 2, 1]] @ np.diag([1.0, -1.0, 1.0])),
    "oblique": _affine(_rotation(0.3, -0.2, 0.5)),
    "lh-oblique": _affine(_rotation(0.3, -0.2, 0.5) @ np.diag([1.0, 1.0, -1.0])),
}


def _nm_volume(tmp_path, affine) -> tuple[np.ndarray, object]:
    vol = np.random.default_rng(5).random((12, 10, 8)) * 1000.0
    (tmp_path / "nm").mkdir()
    path = write_nm_volume(
        vol,
        affine,
        tmp_path / "nm" / "v.dcm",
        patient_id="P1",
        study_uid=generate_uid(),
        series_description="DaT",
    )
    return vol, path


@pytest.mark.parametrize("name", list(AFFINES))
def test_write_nm_volume_round_trip_any_affine(tmp_path, name):
    assert (np.linalg.det(AFFINES[name][:3, :3]) < 0) == name.startswith("lh")
    vol, path = _nm_volume(tmp_path, AFFINES[name])
    want = nib.as_closest_canonical(nib.Nifti1Image(vol, AFFINES[name]))
    back, aff = series_volume(_read(path))
    np.testing.assert_allclose(aff, want.affine, atol=1e-4)
    np.testing.assert_allclose(back, np.asarray(want.dataobj), atol=1000.0 / 65535)


@pytest.mark.parametrize("name", list(AFFINES))
def test_write_nm_volume_stacks_slices_along_the_normal_dcm2niix_assumes(tmp_path, name):
    """One Image Position for all frames: slices must advance along row x column direction
    (DICOM), and dcm2niix, which cannot see the direction, assumes the way of that normal whose
    components sum to >= 0."""
    _, path = _nm_volume(tmp_path, AFFINES[name])
    geo = native_geometry(_read(path))
    normal = np.cross(geo.affine[:3, 0], geo.affine[:3, 1])
    assert normal.sum() > 1e-3
    # and the stored grid is the input's: the first frame is one of its corner slices
    corners = [AFFINES[name] @ [i, j, k, 1] for i in (0, 11) for j in (0, 9) for k in (0, 7)]
    first = LPS_TO_RAS @ geo.affine @ [0, 0, 0, 1]
    assert min(np.linalg.norm(first - c) for c in corners) < 1e-4


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
