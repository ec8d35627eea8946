"""Reconstructed NM (SPECT) volumes from and to DICOM, with pydicom.

Reading accepts the two ways cameras export reconstructed tomographic slices: one NM Image Storage
multi-frame object whose frames are slices (Image Type ``...\\RECON TOMO``, frame order given by
Slice Vector), and a stack of single-slice objects (each with Image Position / Orientation). Pixel
values are mapped through Rescale Slope / Intercept. Volumes are returned in FastDaT's array
convention: axes reoriented to the closest RAS (+x patient right, +y anterior, +z superior), with a
4 x 4 voxel -> RAS mm affine as in NIfTI.

Every problem is a :class:`DicomInputError` naming the file and the reason, whatever pydicom or
numpy raised underneath (malformed values, contradictory geometry, corrupt pixel data).

Writing produces one NM multi-frame RECON TOMO object (uint16 frames with a Rescale Slope, the
geometry in the Detector Information Sequence): :func:`write_nm_volume` for a new study from
arrays, :func:`write_derived_series` for a new series of an existing study (a denoised volume) that
keeps the source's patient, study, frame of reference and voxel grid.
"""

from __future__ import annotations

import contextlib
import copy
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


@dataclass(frozen=True)
class NativeGeometry:
    """A series' voxel grid as stored: ``(columns, rows, slices)``, slices sorted along the normal.

    Attributes:
        affine: Voxel ``(column, row, slice)`` -> LPS mm (DICOM patient coordinates).
        shape: ``(columns, rows, slices)``.
        order: Frame indices (multi-frame) or file indices (stack) in slice order.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    order: tuple[int, ...]


@contextlib.contextmanager
def _reading(path: str | Path):
    """Report whatever a malformed header makes pydicom or numpy raise as a DicomInputError."""
    try:
        yield
    except DicomInputError:
        raise
    except Exception as err:  # malformed values surface as many exception types
        raise DicomInputError(
            path, f"malformed or contradictory header ({type(err).__name__}: {err})"
        ) from err


def read_header(path: str | Path):
    """Read a file's header (no pixels); :class:`DicomInputError` if it is not usable NM recon."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as err:
        raise DicomInputError(
            path, "not a readable DICOM file (no 'DICM' preamble or File Meta Information)"
        ) from err
    except Exception as err:  # OSError, EOFError and parser errors
        raise DicomInputError(path, f"not a readable DICOM file ({type(err).__name__})") from err
    with _reading(path):
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
        _matrix(ds, path)
    return ds


MAX_SIDE, MAX_VOXELS = 4096, 2**28
"""Largest rows, columns or frames, and pixel count, FastDaT accepts (a 512^3 volume is 2^27)."""


def _matrix(ds, path) -> tuple[int, int, int]:
    """``(frames, rows, columns)`` of a header, checked to be positive and plausible."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    n = frames * rows * cols * samples
    if min(frames, rows, cols, samples) < 1 or max(frames, rows, cols) > MAX_SIDE or n > MAX_VOXELS:
        raise DicomInputError(path, f"implausible image size {frames} x {rows} x {cols}")
    return frames, rows, cols


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


def _vector(src, keyword: str, n: int, path) -> np.ndarray:
    value = src.get(keyword)
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != n:
        raise DicomInputError(path, f"{keyword} must hold {n} numbers, got {value!r}")
    out = np.asarray([float(v) for v in value])
    if not np.isfinite(out).all():
        raise DicomInputError(path, f"{keyword} is not finite ({value!r})")
    return out


def _geometry(ds, path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction, (row, column) spacing and position of a header."""
    det = getattr(ds, "DetectorInformationSequence", None)
    src = det[0] if det and "ImageOrientationPatient" in det[0] else ds
    if "ImageOrientationPatient" not in src or "ImagePositionPatient" not in src:
        raise DicomInputError(path, "missing Image Orientation / Position (Patient)")
    iop = _vector(src, "ImageOrientationPatient", 6, path)
    ipp = _vector(src, "ImagePositionPatient", 3, path)
    spacing = _vector(ds, "PixelSpacing", 2, path)
    if (spacing <= 0).any():
        raise DicomInputError(path, f"Pixel Spacing must be positive, got {spacing.tolist()}")
    if src is not ds:  # the same tags at the top level must agree with the detector's
        for keyword, mine, n in (
            ("ImageOrientationPatient", iop, 6),
            ("ImagePositionPatient", ipp, 3),
        ):
            if keyword in ds and not np.allclose(_vector(ds, keyword, n, path), mine, atol=1e-3):
                raise DicomInputError(
                    path, f"contradictory {keyword}: top level and Detector Information differ"
                )
    x, y = iop[:3], iop[3:]
    if abs(np.linalg.norm(x) - 1) > 1e-3 or abs(np.linalg.norm(y) - 1) > 1e-3 or abs(x @ y) > 1e-3:
        raise DicomInputError(path, "Image Orientation (Patient) is not two orthonormal vectors")
    return x, y, spacing, ipp


def _affine(x, y, spacing, normal, ipp) -> np.ndarray:
    """Voxel ``(column, row, slice)`` -> LPS mm."""
    aff = np.eye(4)
    aff[:3, 0] = x * spacing[1]
    aff[:3, 1] = y * spacing[0]
    aff[:3, 2] = normal
    aff[:3, 3] = ipp
    return aff


def _multiframe_geometry(ds, path) -> NativeGeometry:
    frames, rows, cols = _matrix(ds, path)
    if frames < 2:
        raise DicomInputError(path, "a single slice is not a volume")
    slices = getattr(ds, "NumberOfSlices", None)
    if slices not in (None, "") and int(slices) != frames:
        raise DicomInputError(
            path, f"contradictory Number of Slices ({slices}) and Number of Frames ({frames})"
        )
    order = np.arange(frames)
    if SLICE_VECTOR in ds:
        value = ds[SLICE_VECTOR].value
        many = hasattr(value, "__len__") and not isinstance(value, str | bytes)
        vec = np.asarray([int(v) for v in (value if many else [value])])
        if len(vec) != frames or sorted(vec.tolist()) != list(range(1, frames + 1)):
            raise DicomInputError(path, "Slice Vector is not a permutation of 1..frames")
        order = np.argsort(vec)
    x, y, spacing, ipp = _geometry(ds, path)
    dz = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None)
    if not dz or not np.isfinite(float(dz)) or float(dz) <= 0:
        raise DicomInputError(path, "missing Spacing Between Slices for a multi-frame volume")
    aff = _affine(x, y, spacing, np.cross(x, y) * float(dz), ipp)
    return NativeGeometry(aff, (cols, rows, frames), tuple(order.tolist()))


def _stack_geometry(series: Series) -> NativeGeometry:
    heads = series.headers
    if len(heads) != len(series.files):
        heads = [read_header(p) for p in series.files]
    items = []
    for path, ds in zip(series.files, heads, strict=True):
        with _reading(path):
            items.append((path, _matrix(ds, path)[1:], *_geometry(ds, path)))
    if len(items) < 2:
        raise DicomInputError(series.files[0], "a single slice is not a volume")
    _, matrix, x, y, spacing, _ = items[0]
    n = np.cross(x, y)
    for path, mi, xi, yi, si, _ in items:
        if not (np.allclose(xi, x, atol=1e-3) and np.allclose(yi, y, atol=1e-3)):
            raise DicomInputError(path, "orientation differs from the rest of the series")
        if not np.allclose(si, spacing, rtol=1e-3) or mi != matrix:
            raise DicomInputError(path, "pixel spacing or matrix differs within the series")
    order = sorted(range(len(items)), key=lambda i: float(items[i][5] @ n))
    pos = np.asarray([float(items[i][5] @ n) for i in order])
    steps = np.diff(pos)
    first = items[order[0]]
    if (steps <= 1e-3).any() or np.ptp(steps) > 0.01 * np.median(steps) + 1e-3:
        raise DicomInputError(
            first[0], f"inconsistent slice spacing ({steps.min():.3g}-{steps.max():.3g} mm)"
        )
    for i in order:  # every position on the line through the first along the normal
        d = items[i][5] - first[5]
        if np.linalg.norm(d - (d @ n) * n) > 0.01 * float(np.min(spacing)) + 1e-3:
            raise DicomInputError(
                items[i][0], "Image Position (Patient) is off the slice normal (sheared series)"
            )
    aff = _affine(x, y, spacing, n * float(np.median(steps)), first[5])
    return NativeGeometry(aff, (matrix[1], matrix[0], len(items)), tuple(order))


def native_geometry(series: Series) -> NativeGeometry:
    """The stored voxel grid of a series, from its headers alone (no pixel data read)."""
    path = series.files[0]
    if series.multiframe:
        ds = series.headers[0] if series.headers else read_header(path)
        with _reading(path):
            return _multiframe_geometry(ds, path)
    return _stack_geometry(series)


def _rescale(ds, pixels: np.ndarray) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float32) * slope + intercept


def _pixels(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # a file truncated or corrupt after its header
        raise DicomInputError(path, f"unreadable pixel data ({type(err).__name__}: {err})") from err
    with _reading(path):
        frames, rows, cols = _matrix(ds, path)
        n = frames * rows * cols * int(getattr(ds, "SamplesPerPixel", 1) or 1)
        bits = int(getattr(ds, "BitsAllocated", 16) or 16)
        if bits not in (1, 8, 16, 32, 64):
            raise DicomInputError(path, f"Bits Allocated {bits} is not a pixel size")
        if not ds.file_meta.TransferSyntaxUID.is_compressed and "PixelData" in ds:
            if len(ds.PixelData) < n * bits // 8:
                raise DicomInputError(
                    path,
                    f"corrupt pixel data: {len(ds.PixelData)} bytes, the header needs "
                    f"{n * bits // 8} (truncated file?)",
                )
    try:
        return ds, ds.pixel_array
    except Exception as err:  # pixel decoders raise many exception types
        raise DicomInputError(path, f"unreadable pixel data ({type(err).__name__}: {err})") from err


def _canonical(vol: np.ndarray, lps_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(slices, rows, cols)`` + its LPS affine -> closest-RAS ``(X, Y, Z)`` + RAS affine."""
    import nibabel as nib

    arr = np.ascontiguousarray(vol.transpose(2, 1, 0))
    img = nib.as_closest_canonical(nib.Nifti1Image(arr, _LPS_TO_RAS @ lps_affine))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def series_volume(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """Volume ``(X, Y, Z)`` float32 (closest RAS axes) and its voxel -> RAS mm affine."""
    geo = native_geometry(series)
    cols, rows, n = geo.shape
    if series.multiframe:
        path = series.files[0]
        ds, px = _pixels(path)
        if px.size != n * rows * cols:
            raise DicomInputError(
                path, f"pixel data holds {px.shape}, the header says {n} x {rows} x {cols}"
            )
        with _reading(path):
            vol = _rescale(ds, px.reshape(n, rows, cols)[list(geo.order)])
    else:
        slices = []
        for i in geo.order:
            path = series.files[i]
            ds, px = _pixels(path)
            if px.ndim != 2:
                raise DicomInputError(path, f"expected one slice per file, got shape {px.shape}")
            if px.shape != (rows, cols):
                raise DicomInputError(path, "pixel spacing or matrix differs within the series")
            with _reading(path):
                slices.append(_rescale(ds, px))
        vol = np.stack(slices)
    if not np.isfinite(vol).all():
        raise DicomInputError(series.files[0], "pixel values are not finite (Rescale Slope?)")
    with _reading(series.files[0]):
        return _canonical(vol, geo.affine)


# --- writing ---------------------------------------------------------------------------------

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
    lps_aff = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)  # voxel -> LPS mm
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
    native_ras = _LPS_TO_RAS @ geo.affine
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
