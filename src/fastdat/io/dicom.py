"""Reconstructed NM (SPECT) volumes from and to DICOM, with pydicom.

Reading accepts the two ways cameras export reconstructed tomographic slices: one NM Image Storage
multi-frame object whose frames are slices (Image Type ``...\\RECON TOMO``, frame order given by
Slice Vector), and a stack of single-slice objects (each with Image Position / Orientation). Pixel
values are mapped through Rescale Slope / Intercept. Volumes are returned in FastDaT's array
convention: axes reoriented to the closest RAS (+x patient right, +y anterior, +z superior), with a
4 x 4 voxel -> RAS mm affine as in NIfTI.

Every problem is a :class:`DicomInputError` naming the file and the reason, whatever pydicom or
numpy raised underneath (malformed values, contradictory geometry, corrupt pixel data).

Writing is :mod:`fastdat.io.dicom_write`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
SLICE_VECTOR = 0x00540080
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates (LPS) to RAS, as a 4 x 4 affine."""


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
    img = nib.as_closest_canonical(nib.Nifti1Image(arr, LPS_TO_RAS @ lps_affine))
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
