"""Reconstructed NM (SPECT) volumes to DICOM, with pydicom.

Writing produces one NM multi-frame RECON TOMO object (uint16 frames with a Rescale Slope, the
geometry in the Detector Information Sequence): :func:`write_nm_volume` for a new study from
arrays, :func:`write_derived_series` for a new series of an existing study (a denoised volume) that
keeps the source's patient, study, frame of reference and voxel grid. Reading is
:mod:`fastdat.io.dicom`.
"""

from __future__ import annotations

import copy
import datetime
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
_DETECTOR_KEEP = ("CollimatorGridName", "CollimatorType", "FieldOfViewShape", "ZoomFactor")


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def _nm_object(
    frames: np.ndarray, x: np.ndarray, y: np.ndarray, spacing, dz: float, ipp, attrs: dict
):
    """One NM multi-frame RECON TOMO dataset from float frames ``(slices, rows, cols)``.

    ``x``, ``y``: unit row / column directions (LPS); ``spacing``: (row, column) mm; ``ipp``: the
    first frame's position (LPS mm); ``attrs``: keyword -> value, applied last (patient, study...).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    lo, hi = float(frames.min()), float(frames.max())
    intercept = min(lo, 0.0)
    slope = (hi - intercept) / 65535.0 if hi > intercept else 1.0
    px = np.round((frames - intercept) / slope).clip(0, 65535).astype(np.uint16)
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
    ds.PixelRepresentation = 0
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    ds.PixelData = px.tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


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
    left, rows anterior -> posterior, slices inferior -> superior, the usual display). With
    ``duration_s`` the Rotation Information Sequence records ``n_views`` views over 360 degrees.
    """
    import pydicom

    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or (vol < 0).any() or not np.isfinite(vol).all():
        raise ValueError("volume must be 3D, finite and non-negative")
    lps_aff = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)  # voxel -> LPS mm
    if np.cross(lps_aff[:3, 0], lps_aff[:3, 1]) @ lps_aff[:3, 2] < 0:
        # slices must advance along row x column direction: store them in the other order
        vol = vol[:, :, ::-1]
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1.0, vol.shape[2] - 1
        lps_aff = lps_aff @ flip
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
        frames, lps_aff[:3, 0] / sx, lps_aff[:3, 1] / sy, (sy, sx), sz, lps_aff[:3, 3], attrs
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
        derivation: Derivation Description (what was done, by which model and version).
        description_suffix: Appended to the source's Series Description.
        manufacturer, software_version: General Equipment of the new series (the software).

    The new object keeps the source's patient, study and frame of reference attributes, its
    Image Orientation, Pixel Spacing, slice spacing and first-slice position (slices in the
    source's order along the normal), its isotope, energy windows, patient orientation and
    rotation information; it gets new Series and SOP Instance UIDs, Image Type
    ``DERIVED\\PRIMARY\\RECON TOMO\\EMISSION`` (the NM Image module allows only PRIMARY as
    value 2, so not SECONDARY), a Source Image Sequence and a Referenced Series Sequence naming
    every source instance, and uint16 pixels with a Rescale Slope / Intercept that keep the
    values to within half a step of ``(max - min(min, 0)) / 65535``.
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
    head = source.headers[0] if source.headers else read_header(source.files[0])
    det0 = (getattr(head, "DetectorInformationSequence", None) or [head])[0]
    attrs: dict[str, Any] = {k: copy.deepcopy(head[k].value) for k in _PATIENT_STUDY if k in head}
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
    for h in source.headers or [head]:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID = h.SOPClassUID
        item.ReferencedSOPInstanceUID = h.SOPInstanceUID
        refs.append(item)
    attrs.update(
        ImageType=["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"],
        SeriesDescription=(description + description_suffix)[:64],
        SeriesNumber=int(number) + 1000 if number.isdigit() else 1000,
        DerivationDescription=derivation[:1024],
        SourceImageSequence=refs,
        Manufacturer=manufacturer,
        SoftwareVersions=software_version or "unknown",
    )
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = source.series_uid
    ref_series.ReferencedInstanceSequence = copy.deepcopy(refs)
    attrs["ReferencedSeriesSequence"] = [ref_series]
    frames = np.ascontiguousarray(native.transpose(2, 1, 0))  # (slices, rows, cols)
    ds = _nm_object(frames, x / sx, y / sy, (sy, sx), sz, geo.affine[:3, 3], attrs)
    det = ds.DetectorInformationSequence[0]
    for keyword in _DETECTOR_KEEP:
        if keyword in det0:
            setattr(det, keyword, copy.deepcopy(det0[keyword].value))
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
