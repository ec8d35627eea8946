"""Reconstructed NM (SPECT) volumes from and to DICOM, with pydicom.

Reading accepts the two ways cameras export reconstructed tomographic slices: one NM Image Storage
multi-frame object whose frames are slices (Image Type ``...\\RECON TOMO``, frame order given by
Slice Vector), and a stack of single-slice objects (each with Image Position / Orientation). Pixel
values are mapped through Rescale Slope / Intercept, or without them through a linear Real World
Value Mapping (how :mod:`fastdat.io.dicom_write` writes a derived series). Volumes are returned in
FastDaT's array convention: axes reoriented to the closest RAS (+x patient right, +y anterior, +z
superior), with a 4 x 4 voxel -> RAS mm affine as in NIfTI.

Every problem is a :class:`DicomInputError` naming the file and the reason, whatever pydicom or
numpy raised underneath (malformed values, contradictory geometry, a file cut short, corrupt pixel
data, a transfer syntax no installed decoder reads). pydicom's own warnings about a file go to the
debug log of this module, not to the user's terminal.

Writing is :mod:`fastdat.io.dicom_write`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
SLICE_VECTOR = 0x00540080
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates (LPS) to RAS, as a 4 x 4 affine."""
_PIXEL_TAGS = ((0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009))
_DECODERS_HINT = (
    "pip install python-gdcm (a dependency of fastdat: reinstall it), or pylibjpeg with "
    "pylibjpeg-libjpeg / pylibjpeg-openjpeg"
)

log = logging.getLogger(__name__)


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


class _Drop(logging.Filter):
    """Moves pydicom's log records below ERROR to this module's debug log."""

    def __init__(self, path) -> None:
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        log.debug("%s: pydicom: %s", self.path, record.getMessage())
        return False


@contextlib.contextmanager
def quiet_pydicom(path: str | Path):
    """pydicom's warnings while reading or writing ``path``: logged at debug level, not shown.

    Yields a list that holds the messages of the warnings seen once the block has ended.
    """
    logger = logging.getLogger("pydicom")
    drop = _Drop(path)
    logger.addFilter(drop)
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield messages
            finally:
                for w in caught:
                    messages.append(str(w.message))
                    log.debug("%s: %s: %s", path, w.category.__name__, w.message)
    finally:
        logger.removeFilter(drop)


def _settle(ds) -> None:
    """Convert every element of ``ds`` (and of its sequences) now, inside
    :func:`quiet_pydicom`, so that pydicom warns about bad values there and not at a later
    access. A value that cannot be converted is left raw, to fail where it is used."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            items = list(elem.value) if elem.VR == "SQ" else []
        except Exception:  # noqa: BLE001 - reported where the reader uses it, if it does
            continue
        for item in items:
            _settle(item)


def raw_header(path: Path):
    """The header (no pixels) and what follows it in the file: ``"pixels"``, ``"end"`` (the file
    ends cleanly after its last attribute) or ``"truncated"`` (it ends inside an attribute)."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with open(path, "rb") as fp, quiet_pydicom(path) as seen:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        stop, size = fp.tell(), os.fstat(fp.fileno()).st_size
        head = fp.read(8)
        last = ds.get_item(list(ds.keys())[-1], keep_deferred=True) if len(ds) else None
        _settle(ds)
    if any("end of file" in m.lower() for m in seen):
        return ds, "truncated"
    syntax = (getattr(ds, "file_meta", None) or {}).get("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:  # read through zlib: offsets are not the file's
        with quiet_pydicom(path):
            raw = pydicom.dcmread(path, specific_tags=["PixelData", "FloatPixelData"])
        found = "PixelData" in raw or "FloatPixelData" in raw
        return ds, "pixels" if found else "end"
    if len(head) >= 4:
        little = syntax is None or not syntax.is_transfer_syntax or syntax.is_little_endian
        if struct.unpack("<HH" if little else ">HH", head[:4]) in _PIXEL_TAGS:
            return ds, "pixels"
    if last is None:  # nothing after the File Meta Information: was it complete?
        meta_len = (getattr(ds, "file_meta", None) or {}).get("FileMetaInformationGroupLength")
        if meta_len is None:  # "DICM" and too little after it
            return ds, "truncated"
        return ds, "end" if size == 132 + 12 + int(meta_len) and not head else "truncated"
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF:
        return ds, "end" if last.value_tell + last.length == size and not head else "truncated"
    return ds, "end" if stop >= size and not head else "truncated"


def read_header(path: str | Path):
    """Read a file's header (no pixels); :class:`DicomInputError` if it is not usable NM recon."""
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds, rest = raw_header(path)
    except InvalidDicomError as err:
        raise DicomInputError(
            path, "not a readable DICOM file (no 'DICM' preamble or File Meta Information)"
        ) from err
    except OSError as err:
        raise DicomInputError(path, f"cannot be read ({err.strerror or err})") from err
    except Exception as err:  # EOFError and parser errors
        raise DicomInputError(
            path, f"not a readable DICOM file: truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    if rest == "truncated":
        raise DicomInputError(path, "truncated file: it ends inside its header, before the pixels")
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
        if rest != "pixels":
            raise DicomInputError(
                path, "no pixel data (the file ends after its header attributes: truncated?)"
            )
        for tag in ("StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "PixelSpacing"):
            if tag not in ds:
                raise DicomInputError(path, f"missing {tag}")
        frame_matrix(ds, path)
    return ds


MAX_SIDE, MAX_VOXELS = 4096, 2**28
"""Largest rows, columns or frames, and pixel count, FastDaT accepts (a 512^3 volume is 2^27)."""


def frame_count(ds) -> int:
    """Number of Frames of a header; 1 when absent or empty (a single-frame object)."""
    value = ds.get("NumberOfFrames")
    return 1 if value is None or value == "" else int(value)


def frame_matrix(ds, path) -> tuple[int, int, int]:
    """``(frames, rows, columns)`` of a header, checked to be positive and plausible."""
    frames = frame_count(ds)
    if frames < 1:
        raise DicomInputError(path, f"Number of Frames is {frames}: the object holds no image")
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
    frames, rows, cols = frame_matrix(ds, path)
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
            items.append((path, frame_matrix(ds, path)[1:], *_geometry(ds, path)))
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


def value_mapping(ds) -> tuple[float, float]:
    """The ``(slope, intercept)`` that maps a header's stored pixel values to values.

    Rescale Slope / Intercept when either has a value; else the first Real World Value Mapping
    item with a linear map (how :mod:`fastdat.io.dicom_write` records the units of a derived NM
    series, whose IOD has no Modality LUT); else the identity ``(1, 0)``.
    """
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope in (None, "") and intercept in (None, ""):
        for item in ds.get("RealWorldValueMappingSequence", None) or []:
            rws, rwi = item.get("RealWorldValueSlope"), item.get("RealWorldValueIntercept")
            if rws is not None and rwi is not None:
                slope, intercept = rws, rwi
                break
    return float(slope or 1.0), float(intercept or 0.0)


def _rescale(ds, pixels: np.ndarray) -> np.ndarray:
    slope, intercept = value_mapping(ds)
    return pixels.astype(np.float32) * slope + intercept


def _check_decoder(ds, path) -> None:
    """:class:`DicomInputError` naming the transfer syntax when no installed plugin decodes it."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_transfer_syntax:
        raise DicomInputError(path, f"unknown transfer syntax {syntax}")
    if not syntax.is_compressed:
        return
    name = f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomInputError(
            path,
            f"pixel data compressed as {name}, which no DICOM decoder FastDaT uses can read; "
            "convert the series to an uncompressed transfer syntax first "
            "(gdcmconv --raw, or dcmtk's dcmdjpeg / dcmdrle)",
        ) from None
    if not decoder.is_available:
        raise DicomInputError(
            path,
            f"pixel data compressed as {name} and no decoder for it is installed: {_DECODERS_HINT}",
        )


def read_pixels(path: Path):
    """The dataset and its decoded pixel array (any supported transfer syntax), or a
    :class:`DicomInputError` naming the file (missing decoder, truncated or corrupt data)."""
    import pydicom

    try:
        with quiet_pydicom(path):
            ds = pydicom.dcmread(path)
            _settle(ds)
    except Exception as err:  # a file truncated or corrupt after its header
        raise DicomInputError(path, f"unreadable pixel data ({type(err).__name__}: {err})") from err
    with _reading(path):
        _check_decoder(ds, path)
        frames, rows, cols = frame_matrix(ds, path)
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
        with quiet_pydicom(path):
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
        ds, px = read_pixels(path)
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
            ds, px = read_pixels(path)
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
