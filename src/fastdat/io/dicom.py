"""Reconstructed NM (SPECT) volumes from and to DICOM, with pydicom.

Reading accepts the two ways cameras export reconstructed tomographic slices: one NM Image Storage
multi-frame object whose frames are slices (Image Type ``...\\RECON TOMO``, frame order given by
Slice Vector), and a stack of single-slice objects (each with Image Position / Orientation). Pixel
values are mapped through Rescale Slope / Intercept. Volumes are returned in FastDaT's array
convention: axes reoriented to the closest RAS (+x patient right, +y anterior, +z superior), with a
4 x 4 voxel -> RAS mm affine as in NIfTI.

Every problem is a :class:`DicomInputError` naming the file and the reason.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
SLICE_VECTOR = 0x00540080
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomInputError(ValueError):
    """A DICOM file or series FastDaT cannot use; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Series:
    """The files of one reconstructed NM series and what its headers say."""

    patient_id: str
    study_uid: str
    series_uid: str
    description: str
    files: list[Path] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    multiframe: bool = False
    duration_s: float | None = None


def read_header(path: str | Path):
    """Read a file's header (no pixels); :class:`DicomInputError` if it is not usable NM recon."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError) as err:
        raise DicomInputError(path, f"not a readable DICOM file ({type(err).__name__})") from err
    modality = str(getattr(ds, "Modality", "") or "")
    if modality != "NM":
        raise DicomInputError(path, f"modality {modality or 'missing'}, not NM")
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    if len(image_type) < 3 or image_type[2] != "RECON TOMO":
        kind = image_type[2] if len(image_type) > 2 else "unknown"
        raise DicomInputError(
            path, f"Image Type {kind}: planar or projection data, not a reconstructed tomogram"
        )
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        # stop_before_pixels hides PixelData; check the tag is in the file
        raw = pydicom.dcmread(path, specific_tags=["PixelData"])
        if "PixelData" not in raw:
            raise DicomInputError(path, "no pixel data")
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "PixelSpacing"):
        if tag not in ds:
            raise DicomInputError(path, f"missing {tag}")
    return ds


def acquisition_duration_s(ds) -> float | None:
    """Acquisition time of the study a reconstruction came from, in seconds, if recorded.

    In order: Rotation Information Sequence (Actual Frame Duration x Number of Frames in
    Rotation), top-level Actual Frame Duration x Number of Frames in Rotation, Acquisition Duration,
    then a number of minutes in the Series Description ("5min", "25 min").
    """
    rot = getattr(ds, "RotationInformationSequence", None)
    items = list(rot) if rot else []
    for src in (*items, ds):
        frame_ms = getattr(src, "ActualFrameDuration", None)
        frames = getattr(src, "NumberOfFramesInRotation", None)
        if frame_ms and frames:
            return float(frame_ms) * float(frames) / 1000.0
    if getattr(ds, "AcquisitionDuration", None):
        return float(ds.AcquisitionDuration)
    m = re.search(r"(\d+(?:\.\d+)?)\s*-?\s*min", str(getattr(ds, "SeriesDescription", "")), re.I)
    return float(m.group(1)) * 60.0 if m else None


def _geometry(ds, path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction, (row, column) spacing and position of a header."""
    det = getattr(ds, "DetectorInformationSequence", None)
    src = det[0] if det and "ImageOrientationPatient" in det[0] else ds
    if "ImageOrientationPatient" not in src or "ImagePositionPatient" not in src:
        raise DicomInputError(path, "missing Image Orientation / Position (Patient)")
    iop = np.asarray([float(v) for v in src.ImageOrientationPatient])
    ipp = np.asarray([float(v) for v in src.ImagePositionPatient])
    spacing = np.asarray([float(v) for v in ds.PixelSpacing])
    if iop.shape != (6,) or ipp.shape != (3,) or spacing.shape != (2,) or (spacing <= 0).any():
        raise DicomInputError(path, "malformed Image Orientation, Position or Pixel Spacing")
    x, y = iop[:3], iop[3:]
    if abs(np.linalg.norm(x) - 1) > 1e-3 or abs(np.linalg.norm(y) - 1) > 1e-3 or abs(x @ y) > 1e-3:
        raise DicomInputError(path, "Image Orientation (Patient) is not two orthonormal vectors")
    return x, y, spacing, ipp


def _rescale(ds, pixels: np.ndarray) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float32) * slope + intercept


def _pixels(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        return ds, ds.pixel_array
    except Exception as err:  # pixel decoders raise many exception types
        raise DicomInputError(path, f"unreadable pixel data ({type(err).__name__}: {err})") from err


def series_volume(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """Volume ``(X, Y, Z)`` float32 (closest RAS axes) and its voxel -> RAS mm affine."""
    import nibabel as nib

    if series.multiframe:
        path = series.files[0]
        ds, px = _pixels(path)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        px = px.reshape(frames, int(ds.Rows), int(ds.Columns))
        order = np.arange(frames)
        if SLICE_VECTOR in ds:
            vec = np.asarray([int(v) for v in ds[SLICE_VECTOR].value])
            if sorted(vec.tolist()) != list(range(1, frames + 1)):
                raise DicomInputError(path, "Slice Vector is not a permutation of 1..frames")
            order = np.argsort(vec)
        x, y, spacing, ipp = _geometry(ds, path)
        dz = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None)
        if not dz or float(dz) <= 0:
            raise DicomInputError(path, "missing Spacing Between Slices for a multi-frame volume")
        normal = np.cross(x, y) * float(dz)
        vol = _rescale(ds, px[order])  # (slices, rows, cols)
    else:
        items = []
        for path in series.files:
            ds, px = _pixels(path)
            if px.ndim != 2:
                raise DicomInputError(path, f"expected one slice per file, got shape {px.shape}")
            items.append((path, ds, _rescale(ds, px), *_geometry(ds, path)))
        x, y, spacing, ipp = items[0][3:]
        n = np.cross(x, y)
        for path, _ds, img, xi, yi, si, _ in items:
            if not (np.allclose(xi, x, atol=1e-3) and np.allclose(yi, y, atol=1e-3)):
                raise DicomInputError(path, "orientation differs from the rest of the series")
            if not np.allclose(si, spacing, rtol=1e-3) or img.shape != items[0][2].shape:
                raise DicomInputError(path, "pixel spacing or matrix differs within the series")
        items.sort(key=lambda it: float(it[6] @ n))
        pos = np.asarray([float(it[6] @ n) for it in items])
        if len(items) < 2:
            raise DicomInputError(series.files[0], "a single slice is not a volume")
        steps = np.diff(pos)
        if (steps <= 1e-3).any() or np.ptp(steps) > 0.01 * np.median(steps) + 1e-3:
            raise DicomInputError(
                items[0][0], f"inconsistent slice spacing ({steps.min():.3g}-{steps.max():.3g} mm)"
            )
        ipp = items[0][6]
        normal = n * float(np.median(steps))
        vol = np.stack([it[2] for it in items])
    # array (slice, row, col) -> (col, row, slice); affine columns: col, row, slice steps (LPS)
    arr = np.ascontiguousarray(vol.transpose(2, 1, 0))
    aff = np.eye(4)
    aff[:3, 0] = x * spacing[1]
    aff[:3, 1] = y * spacing[0]
    aff[:3, 2] = normal
    aff[:3, 3] = ipp
    img = nib.as_closest_canonical(nib.Nifti1Image(arr, _LPS_TO_RAS @ aff))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


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
    left, rows anterior -> posterior, slices inferior -> superior, the usual display).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or (vol < 0).any() or not np.isfinite(vol).all():
        raise ValueError("volume must be 3D, finite and non-negative")
    lps_aff = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)  # voxel -> LPS mm
    if np.cross(lps_aff[:3, 0], lps_aff[:3, 1]) @ lps_aff[:3, 2] < 0:
        # slices must advance along row x column direction: store them in the other order
        vol = vol[:, :, ::-1]
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1.0, vol.shape[2] - 1
        lps_aff = lps_aff @ flip
    x_dir, y_dir, z_dir = (lps_aff[:3, i] for i in range(3))
    sx, sy, sz = (float(np.linalg.norm(v)) for v in (x_dir, y_dir, z_dir))
    slope = float(vol.max()) / 65535.0 if vol.max() > 0 else 1.0
    px = np.round(vol / slope).astype(np.uint16)  # (X, Y, Z)
    frames = np.ascontiguousarray(px.transpose(2, 1, 0))  # (Z, rows=Y, cols=X)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now()
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.SeriesDescription = series_description
    ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.NumberOfFrames = int(frames.shape[0])
    ds.NumberOfSlices = int(frames.shape[0])
    ds.FrameIncrementPointer = SLICE_VECTOR
    ds.SliceVector = list(range(1, frames.shape[0] + 1))
    ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]
    ds.SpacingBetweenSlices = f"{sz:.6g}"
    ds.SliceThickness = f"{sz:.6g}"
    det = pydicom.Dataset()
    det.ImageOrientationPatient = [f"{v:.6g}" for v in (*(x_dir / sx), *(y_dir / sy))]
    det.ImagePositionPatient = [f"{v:.6g}" for v in lps_aff[:3, 3]]
    ds.DetectorInformationSequence = [det]
    if duration_s is not None:
        rot = pydicom.Dataset()
        rot.NumberOfFramesInRotation = int(n_views)
        rot.ActualFrameDuration = int(round(1000.0 * duration_s / n_views))
        ds.RotationInformationSequence = [rot]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = "0"
    ds.PixelData = frames.tobytes()
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
