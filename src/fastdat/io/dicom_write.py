"""Reconstructed NM (SPECT) volumes to DICOM, with pydicom.

Writing produces one NM multi-frame RECON TOMO object (16-bit frames, the geometry in the
Detector Information Sequence): :func:`write_nm_volume` for a new study from arrays,
:func:`write_derived_series` for a new series of an existing study (a denoised volume) that keeps
the source's patient, study, frame of reference and voxel grid. Reading is :mod:`fastdat.io.dicom`.

Pixel values of a derived series (what every reader sees):
    The NM Image IOD has no Modality LUT module, so Rescale Slope / Intercept in an NM object are
    non-standard: ``dciodvfy`` warns, GDCM-based readers ignore them while pydicom, ITK, dcm2niix
    and Orthanc apply them, and one file reads differently in different tools. A derived series
    therefore never carries them. Its stored integers are in the **source's own stored units**:

    - source without rescale (or slope 1, intercept 0): the restored values rounded to integers,
      uint16 (int16 if some are negative). Stored value = value, in every reader.
    - source with one rescale ``(slope, intercept)`` (Rescale Slope / Intercept, or a linear Real
      World Value Mapping): stored = ``round((value - intercept) / slope)``, the quantisation the
      source itself had, and the map back to the source's rescaled units is recorded where the
      standard puts it for any image: one Real World Value Mapping Sequence (0040,9096) item
      (slope, intercept, units ``{counts}``), which highdicom and FastDaT's reader apply and a
      pydicom user reads from the item. Readers that ignore it (GDCM, dcm2niix, ITK, pydicom's
      Modality LUT) all see the same stored integers, in the units GDCM saw the source in; those
      that applied the source's Rescale see source and derived series a constant factor (the
      slope) apart, which leaves ratios such as the specific binding ratio unchanged.
    - fallback, where the source has no single rescale (a stack with one slope per file) or the
      values do not fit 16 bits in the source's units: a new linear mapping that spans the values
      over 0..65535 (step ``(max - min(min, 0)) / 65535``), recorded in the same Real World Value
      Mapping Sequence.

    :func:`write_nm_volume` (simulated studies, test and benchmark inputs) instead mimics the
    camera exports that store float values as uint16 with a Rescale Slope in the NM object, a
    vendor habit FastDaT's reader must handle.

What a derived series keeps of its source:
    Patient, study, frame of reference, voxel grid (Image Orientation, Pixel Spacing, slice
    spacing, first-slice position, slice order), isotope, energy windows, patient orientation and
    gantry relationship, Patient Orientation, and the attributes that describe the acquisition the
    image still comes from: Counts Accumulated (in a reconstruction, what the camera counted, not
    a sum of its pixels), acquisition date / time and termination condition, rotation (with its
    frame duration), corrections applied, collimator and detector settings. The Derivation
    Description says that these are the source acquisition's. Attributes the source lacks stay
    absent (Counts Accumulated, Type 2, empty).

Slice order (what dcm2niix needs):
    Every object written has its slices advancing along the slice normal (row x column direction
    cosines), the order DICOM implies. An NM multi-frame object has one Image Position, so dcm2niix
    cannot see the stacking direction and guesses it from the normal: along it when its components
    sum to >= 0, against it otherwise. :func:`write_nm_volume`, free to choose the storage order,
    therefore stores slices along the direction of the affine's third axis whose components sum to
    >= 0 and reverses the columns where needed for the normal to point the same way; every reader
    then places the voxels where the affine says. A derived series keeps its source's layout, to be
    displayed as its source is: dcm2niix guesses for it as for its source (it misplaces both
    alike when the source's normal has components summing below zero).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.io.dicom import (
    LPS_TO_RAS,
    NM_IMAGE_STORAGE,
    SLICE_VECTOR,
    Series,
    native_geometry,
    read_header,
)

_PATIENT_STUDY = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientComments",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "BodyPartExamined",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "PatientOrientationCodeSequence",
    "PatientGantryRelationshipCodeSequence",
    "EnergyWindowInformationSequence",
    "RadiopharmaceuticalInformationSequence",
    "NumberOfEnergyWindows",
    "TypeOfDetectorMotion",
    "ReconstructionDiameter",
    "ConvolutionKernel",
)
_ACQUISITION = (  # still true of a derived image on the same grid from the same acquisition
    "PatientOrientation",
    "PatientPosition",
    "ProtocolName",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "CountsAccumulated",
    "AcquisitionTerminationCondition",
    "CorrectedImage",
    "SliceProgressionDirection",
)
_ACQUISITION_NOTE = (
    " [Counts Accumulated and the acquisition attributes are the source acquisition's.]"
)
_TYPE2 = (  # NM Image IOD attributes that must be present, empty when unknown
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Manufacturer",
    "CountsAccumulated",
)
_TYPE2_SEQUENCES = (
    "PatientOrientationCodeSequence",
    "PatientGantryRelationshipCodeSequence",
    "EnergyWindowInformationSequence",
    "RadiopharmaceuticalInformationSequence",
    "RotationInformationSequence",
)
_ROTATION_TYPE1 = ("StartAngle", "AngularStep", "RotationDirection", "ScanArc")
_DETECTOR_KEEP = (
    "CollimatorGridName",
    "CollimatorType",
    "FieldOfViewShape",
    "FieldOfViewDimensions",
    "FocalDistance",
    "ZoomFactor",
    "ZoomCenter",
    "CenterOfRotationOffset",
    "GantryDetectorTilt",
)
_RWV_FIRST, _RWV_LAST = 0x00409216, 0x00409211  # Real World Value First / Last Value Mapped
UINT16, INT16 = (0, 65535), (-32768, 32767)


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


@dataclass(frozen=True)
class _Pixels:
    """Stored integers and the linear map back to values: ``value = stored * slope + intercept``.

    ``rescale``: write the map as Rescale Slope / Intercept (:func:`write_nm_volume`'s vendor
    habit); otherwise as a Real World Value Mapping item, and not at all when it is the identity.
    """

    stored: np.ndarray
    slope: float
    intercept: float
    rescale: bool = False

    @property
    def identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0


def _quantise(frames: np.ndarray, slope: float, intercept: float) -> _Pixels | None:
    """``frames`` as uint16 (or int16) in the units ``(slope, intercept)``; None if out of range."""
    q = np.round((frames - intercept) / slope)
    for (lo, hi), dtype in ((UINT16, np.uint16), (INT16, np.int16)):
        if q.min() >= lo and q.max() <= hi:
            return _Pixels(q.astype(dtype), slope, intercept)
    return None


def _spanning(frames: np.ndarray, rescale: bool = False) -> _Pixels:
    """``frames`` over the whole uint16 range: step ``(max - min(min, 0)) / 65535``."""
    lo, hi = float(frames.min()), float(frames.max())
    intercept = min(lo, 0.0)
    slope = (hi - intercept) / 65535.0 if hi > intercept else 1.0
    if rescale:  # the DS strings written are what readers use: quantise with those
        slope, intercept = float(_ds(slope)), float(_ds(intercept))
    stored = np.round((frames - intercept) / slope).clip(*UINT16).astype(np.uint16)
    return _Pixels(stored, slope, intercept, rescale)


def _source_pixels(frames: np.ndarray, headers: list) -> _Pixels:
    """``frames`` in the source's stored units, or the spanning fallback (module docstring)."""
    from fastdat.io.dicom import value_mapping

    maps = {value_mapping(h) for h in headers}
    if len(maps) == 1:
        slope, intercept = maps.pop()
        if np.isfinite([slope, intercept]).all() and slope > 0:
            pixels = _quantise(frames, slope, intercept)
            if pixels is not None:
                return pixels
    return _spanning(frames)


def _real_world_value_mapping(
    pixels: _Pixels,
    explanation: str = "Values in the rescaled units of the source series",
    label: str = "SOURCE_UNITS",
    units: tuple[str, str] = ("{counts}", "Counts"),
):
    """The Real World Value Mapping item that takes ``pixels.stored`` to values.

    Args:
        pixels: Stored integers and their linear map.
        explanation, label: LUT Explanation and LUT Label of the item.
        units: UCUM code and meaning of the values' units.
    """
    import pydicom

    signed = pixels.stored.dtype == np.int16
    lo, hi = INT16 if signed else UINT16
    item = pydicom.Dataset()
    item.add_new(_RWV_FIRST, "SS" if signed else "US", lo)
    item.add_new(_RWV_LAST, "SS" if signed else "US", hi)
    item.RealWorldValueIntercept = float(pixels.intercept)
    item.RealWorldValueSlope = float(pixels.slope)
    item.LUTExplanation = explanation
    item.LUTLabel = label
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator = units[0], "UCUM"
    code.CodeMeaning = units[1]
    item.MeasurementUnitsCodeSequence = [code]
    return item


def _nm_object(
    pixels: _Pixels,
    x: np.ndarray,
    y: np.ndarray,
    spacing,
    dz: float,
    ipp,
    attrs: dict,
    rwv: dict | None = None,
):
    """One NM multi-frame RECON TOMO dataset from stored frames ``(slices, rows, cols)``.

    ``x``, ``y``: unit row / column directions (LPS); ``spacing``: (row, column) mm; ``ipp``: the
    first frame's position (LPS mm); ``attrs``: keyword -> value, applied last (patient, study...);
    ``rwv``: keyword arguments of the Real World Value Mapping item.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    px = pixels.stored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    for keyword in _TYPE2:
        setattr(ds, keyword, "")
    for keyword in _TYPE2_SEQUENCES:
        setattr(ds, keyword, [])
    now = datetime.datetime.now()
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Rows, ds.Columns = int(px.shape[1]), int(px.shape[2])
    ds.NumberOfFrames = ds.NumberOfSlices = int(px.shape[0])
    ds.FrameIncrementPointer = SLICE_VECTOR
    ds.SliceVector = list(range(1, px.shape[0] + 1))
    ds.NumberOfEnergyWindows = ds.NumberOfDetectors = ds.NumberOfRotations = 1
    ds.PixelSpacing = [_ds(float(s)) for s in spacing]
    ds.SpacingBetweenSlices = ds.SliceThickness = _ds(dz)
    det = pydicom.Dataset()
    det.ImageOrientationPatient = [_ds(float(v)) for v in (*x, *y)]
    det.ImagePositionPatient = [_ds(float(v)) for v in ipp]
    det.CollimatorType = ""
    ds.DetectorInformationSequence = [det]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if px.dtype == np.int16 else 0
    if pixels.rescale:
        ds.RescaleSlope = _ds(pixels.slope)
        ds.RescaleIntercept = _ds(pixels.intercept)
    elif not pixels.identity:
        ds.RealWorldValueMappingSequence = [_real_world_value_mapping(pixels, **(rwv or {}))]
    ds.PixelData = np.ascontiguousarray(px).astype(px.dtype.newbyteorder("<")).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _storage_order(lps_aff: np.ndarray, shape) -> tuple[np.ndarray, tuple[bool, bool]]:
    """The voxel -> LPS affine of the order :func:`write_nm_volume` stores ``(X, Y, Z)`` in.

    Slices advance along the third axis' direction whose components sum to >= 0 (what dcm2niix
    assumes of a multi-frame object without per-frame positions) and the normal, row x column
    direction, points the same way (what DICOM says), reversing the columns if needed.
    Returns the affine and whether (columns, slices) are reversed.
    """

    def flip(aff: np.ndarray, axis: int) -> np.ndarray:
        f = np.eye(4)
        f[axis, axis], f[axis, 3] = -1.0, shape[axis] - 1
        return aff @ f

    aff = lps_aff
    rev_z = float(aff[:3, 2].sum()) < 0
    if rev_z:
        aff = flip(aff, 2)
    rev_x = float(np.cross(aff[:3, 0], aff[:3, 1]) @ aff[:3, 2]) < 0
    if rev_x:
        aff = flip(aff, 0)
    return aff, (rev_x, rev_z)


def _stored(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A non-negative RAS volume ``(X, Y, Z)`` in :func:`_storage_order` and its LPS affine."""
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or (vol < 0).any() or not np.isfinite(vol).all():
        raise ValueError("volume must be 3D, finite and non-negative")
    lps_aff, (rev_x, rev_z) = _storage_order(
        LPS_TO_RAS @ np.asarray(affine, dtype=np.float64), vol.shape
    )
    return vol[:: -1 if rev_x else 1, :, :: -1 if rev_z else 1], lps_aff


def write_nm_volume(
    volume: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    *,
    patient_id: str,
    study_uid: str,
    series_description: str,
    duration_s: float | None = None,
    n_views: int = 120,
    series_uid: str | None = None,
) -> Path:
    """Write an RAS volume ``(X, Y, Z)`` as one NM multi-frame RECON TOMO file (uint16 + slope).

    Frames are the volume's z slices, rows its y index and columns its x index, with the Image
    Orientation / Position that map them back to ``affine`` (for a RAS grid: columns run right ->
    left, rows anterior -> posterior, slices inferior -> superior, the usual display). An affine
    whose third axis points down (components summing below zero) has its slices stored in reverse;
    a left-handed one has its columns reversed too, so that slices advance along row x column
    direction (module docstring). With ``duration_s`` the Rotation Information Sequence records
    ``n_views`` views over 360 degrees.
    """
    import pydicom

    vol, lps_aff = _stored(volume, affine)
    sx, sy, sz = (float(np.linalg.norm(lps_aff[:3, i])) for i in range(3))
    attrs: dict[str, Any] = {
        "StudyInstanceUID": study_uid,
        "PatientID": patient_id,
        "PatientName": patient_id,
        "SeriesDescription": series_description,
        "BodyPartExamined": "HEAD",
    }
    if series_uid:
        attrs["SeriesInstanceUID"] = series_uid
    if duration_s is not None:
        rot = pydicom.Dataset()
        rot.StartAngle, rot.AngularStep = "0", _ds(360.0 / n_views)
        rot.RotationDirection, rot.ScanArc = "CW", "360"
        rot.NumberOfFramesInRotation = int(n_views)
        rot.ActualFrameDuration = int(round(1000.0 * duration_s / n_views))
        attrs["RotationInformationSequence"] = [rot]
    frames = np.ascontiguousarray(vol.transpose(2, 1, 0))  # (Z, rows=Y, cols=X)
    ds = _nm_object(
        _spanning(frames, rescale=True),
        lps_aff[:3, 0] / sx,
        lps_aff[:3, 1] / sy,
        (sy, sx),
        sz,
        lps_aff[:3, 3],
        attrs,
    )
    ds.StudyDate, ds.StudyTime = ds.SeriesDate, ds.SeriesTime
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_derived_series(
    volume: np.ndarray,
    affine: np.ndarray,
    source: Series,
    path: str | Path,
    *,
    derivation: str,
    description_suffix: str = " FastDaT denoised",
    manufacturer: str = "FastDaT",
    software_version: str = "",
) -> Path:
    """Write ``volume`` as a new NM series of ``source``'s study, on ``source``'s voxel grid.

    Args:
        volume: ``(X, Y, Z)`` in FastDaT's closest-RAS convention, as :func:`series_volume`
            returned for ``source`` (same units: the source's rescaled pixel values).
        affine: Its voxel -> RAS mm affine; must be ``source``'s (``ValueError`` otherwise).
        source: The series the volume was derived from.
        path: The file to write (one multi-frame object).
        derivation: Derivation Description (what was done, by which model and version); a note
            that the acquisition attributes are the source's is appended.
        description_suffix: Appended to the source's Series Description.
        manufacturer, software_version: General Equipment of the new series (the software).

    The new object keeps the source's patient, study and frame of reference attributes, its
    Image Orientation, Pixel Spacing, slice spacing and first-slice position (slices in the
    source's order along the normal), its isotope, energy windows, patient orientation, rotation
    information and the acquisition attributes that stay true (Patient Orientation, Counts
    Accumulated, acquisition date / time...); it gets new Series and SOP Instance UIDs, Image
    Type ``DERIVED\\PRIMARY\\RECON TOMO\\EMISSION`` (the NM Image module allows only PRIMARY as
    value 2, so not SECONDARY), a Source Image Sequence and a Referenced Series Sequence naming
    every source instance. Pixels are 16-bit integers in the source's stored units, without
    Rescale Slope / Intercept (see the module docstring for the mapping and its fallback).
    """
    import nibabel as nib
    import pydicom

    geo = native_geometry(source)
    vol = np.asarray(volume, dtype=np.float64)
    native_ras = LPS_TO_RAS @ geo.affine
    ornt = nib.orientations.io_orientation(native_ras)
    canon_aff = native_ras @ nib.orientations.inv_ornt_aff(ornt, geo.shape)
    canon_shape = tuple(int(geo.shape[int(a)]) for a in ornt[:, 0].argsort())
    if vol.shape != canon_shape or not np.allclose(affine, canon_aff, atol=1e-3):
        raise ValueError(
            f"volume {vol.shape} with this affine is not on the voxel grid of series "
            f"{source.series_uid} ({canon_shape})"
        )
    if not np.isfinite(vol).all():
        raise ValueError("volume must be finite")
    back = nib.orientations.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]]), ornt)
    native = nib.orientations.apply_orientation(vol, back)  # (cols, rows, slices)
    x, y = geo.affine[:3, 0], geo.affine[:3, 1]
    sx, sy, sz = (float(np.linalg.norm(geo.affine[:3, i])) for i in range(3))
    headers = list(source.headers) or [read_header(p) for p in source.files]
    head = headers[0]
    det0 = (getattr(head, "DetectorInformationSequence", None) or [head])[0]
    attrs: dict[str, Any] = {
        k: copy.deepcopy(head[k].value) for k in (*_PATIENT_STUDY, *_ACQUISITION) if k in head
    }
    if "FrameOfReferenceUID" in attrs:
        attrs.setdefault("PositionReferenceIndicator", "")
    if "BodyPartExamined" not in attrs:  # Laterality may only be absent for an unpaired part
        attrs["Laterality"] = ""
    rotation = list(getattr(head, "RotationInformationSequence", None) or [])
    if rotation and all(all(k in item for k in _ROTATION_TYPE1) for item in rotation):
        attrs["RotationInformationSequence"] = copy.deepcopy(rotation)
        attrs["NumberOfRotations"] = len(rotation)
    number = str(getattr(head, "SeriesNumber", "") or "0")
    description = str(getattr(head, "SeriesDescription", "") or "")
    refs = []
    for h in headers:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID = h.SOPClassUID
        item.ReferencedSOPInstanceUID = h.SOPInstanceUID
        refs.append(item)
    attrs.update(
        ImageType=["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"],
        SeriesDescription=(description + description_suffix)[:64],
        SeriesNumber=int(number) + 1000 if number.isdigit() else 1000,
        DerivationDescription=derivation[: 1024 - len(_ACQUISITION_NOTE)] + _ACQUISITION_NOTE,
        SourceImageSequence=refs,
        Manufacturer=manufacturer,
        SoftwareVersions=software_version or "unknown",
    )
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = source.series_uid
    ref_series.ReferencedInstanceSequence = copy.deepcopy(refs)
    attrs["ReferencedSeriesSequence"] = [ref_series]
    frames = np.ascontiguousarray(native.transpose(2, 1, 0))  # (slices, rows, cols)
    pixels = _source_pixels(frames, headers)
    ds = _nm_object(pixels, x / sx, y / sy, (sy, sx), sz, geo.affine[:3, 3], attrs)
    det = ds.DetectorInformationSequence[0]
    for keyword in _DETECTOR_KEEP:
        if keyword in det0:
            setattr(det, keyword, copy.deepcopy(det0[keyword].value))
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_recon_series(
    volume: np.ndarray,
    affine: np.ndarray,
    header: Any,
    path: str | Path,
    *,
    derivation: str,
    software_version: str = "",
) -> Path:
    """Write a reconstruction of a projection series as a new NM RECON TOMO series of its study.

    Args:
        volume: ``(X, Y, Z)`` RAS volume, counts / s per voxel, non-negative.
        affine: Its voxel -> RAS mm affine, in the projections' patient frame.
        header: The projection series' DICOM header (patient, study, frame of reference,
            isotope, energy windows, rotation and acquisition attributes are kept).
        path: The file to write (one multi-frame object).
        derivation: Derivation Description (how it was reconstructed, by which version).
        software_version: Software Versions of the new series.

    Slices are stored as :func:`write_nm_volume` stores them (along the affine's upward axis,
    normal agreeing); values are uint16 over their range with the map to counts / s in a Real
    World Value Mapping item (units ``{counts}/s``), no Rescale (module docstring).
    """
    import pydicom

    vol, lps_aff = _stored(volume, affine)
    sx, sy, sz = (float(np.linalg.norm(lps_aff[:3, i])) for i in range(3))
    keep = (*_PATIENT_STUDY, "PatientPosition", "ProtocolName", "AcquisitionDate")
    attrs: dict[str, Any] = {k: copy.deepcopy(header[k].value) for k in keep if k in header}
    if "FrameOfReferenceUID" in attrs:
        attrs.setdefault("PositionReferenceIndicator", "")
    if "BodyPartExamined" not in attrs:
        attrs["Laterality"] = ""
    rotation = list(getattr(header, "RotationInformationSequence", None) or [])
    if rotation and all(all(k in item for k in _ROTATION_TYPE1) for item in rotation):
        attrs["RotationInformationSequence"] = copy.deepcopy(rotation)
        attrs["NumberOfRotations"] = len(rotation)
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = header.SOPClassUID
    ref.ReferencedSOPInstanceUID = header.SOPInstanceUID
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = header.SeriesInstanceUID
    ref_series.ReferencedInstanceSequence = [copy.deepcopy(ref)]
    number = str(getattr(header, "SeriesNumber", "") or "0")
    description = str(getattr(header, "SeriesDescription", "") or "")
    attrs.update(
        ImageType=["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"],
        SeriesDescription=(description + " FastDaT OSEM")[:64],
        SeriesNumber=int(number) + 2000 if number.isdigit() else 2000,
        DerivationDescription=derivation[:1024],
        SourceImageSequence=[ref],
        ReferencedSeriesSequence=[ref_series],
        Manufacturer="FastDaT",
        SoftwareVersions=software_version or "unknown",
        CountsAccumulated=copy.deepcopy(header.get("CountsAccumulated", "")),
    )
    frames = np.ascontiguousarray(vol.transpose(2, 1, 0))  # (Z, rows=Y, cols=X)
    rwv = {
        "explanation": "Activity concentration as counts per second per voxel",
        "label": "COUNTS_PER_S",
        "units": ("{counts}/s", "Counts per second"),
    }
    ds = _nm_object(
        _spanning(frames),
        lps_aff[:3, 0] / sx,
        lps_aff[:3, 1] / sy,
        (sy, sx),
        sz,
        lps_aff[:3, 3],
        attrs,
        rwv,
    )
    det0 = (getattr(header, "DetectorInformationSequence", None) or [header])[0]
    det = ds.DetectorInformationSequence[0]
    for keyword in ("CollimatorGridName", "CollimatorType", "ZoomFactor"):
        if keyword in det0:
            setattr(det, keyword, copy.deepcopy(det0[keyword].value))
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
