"""SPECT projections (NM Image Storage, Image Type ``...\\TOMO``) from and to DICOM.

:func:`read_projections` reads one acquisition (a file, the files of one series, or a folder)
into a :class:`~fastdat.io.projections.ProjectionSet` in the projector's frame;
:func:`fastdat.io.projection_write.write_projections` writes one in a camera vendor's
layout. Every problem with an input is a :class:`ProjectionError` naming the file and what is
wrong.

Angles (DICOM PS3.3 2024e, dicom.nema.org):
    Start Angle (0054,0200), NM Tomo Acquisition Module (C.8.4.12, Table C.8-12): "Position of
    the detector about the patient for the start of this rotation, in degrees. Zero degrees is
    referenced to the origin at the patient's back. Viewing from the patient's feet, angle
    increases in a counter-clockwise direction (detector normal rotating from the patient's back
    towards the patient's left side)." The NM Detector Module (C.8.4.11, Table C.8-11) gives each
    detector a Start Angle in the same words, "for the start of the acquisition". Rotation
    Direction (0018,1140): "Direction of rotation of the detector about the patient. See Start
    Angle (0054,0200) for further explanation of direction. Enumerated Values: CW clockwise
    (decreasing angle), CC counter-clockwise (increasing angle)." Angular Step (0018,1144),
    C.8.4.12.1.1: "the nominal frame-to-frame incremental angle ... shall be a positive number".

    So the detector at DICOM angle ``a`` lies at the patient's back for ``a = 0`` and on the
    patient's left for ``a = 90``: in RAS (x, y), direction ``(-sin a, -cos a)``. The projector's
    view ``t`` has its detector in direction ``(sin t, cos t)``, and both angles grow the same way
    (seen from the feet, counter-clockwise: back, left, front, right). Hence, for view ``k``
    (Angular View Vector value) of a rotation::

        a_k = start + (k - 1) * step * (-1 if CW else +1),     t_k = (a_k + 180) mod 360

    with ``start`` the detector's own Start Angle where its Detector Information item has one
    (shifted by the rotation's start for later rotations), else the rotation's.

Frame pixels:
    C.7.6.2.1.1: "Image Position (0020,0032) specifies the x, y, and z coordinates of the upper
    left hand corner of the image; it is the center of the first voxel transmitted. Image
    Orientation (0020,0037) specifies the direction cosines of the first row and the first column
    with respect to the patient" ("The x-axis is increasing to the left hand side of the
    patient. The y-axis is increasing to the posterior side of the patient. The z-axis is
    increasing toward the head of the patient."). An NM object holds them in each detector's
    Detector Information item, for its first frame (at its start angle); the frames turn with
    the detector. Where a detector has an Image Orientation, its row and column directions, which
    must lie in the detector face at the start angle with one along the rotation axis, say which
    pixel axis is lateral, which axial and whether either is reversed. Without one, a frame is
    what the camera sees from the detector, head up: rows from head to feet, columns towards the
    viewer's right (the anterior view shows the patient's right on the image's left; Image
    Orientation ``[1, 0, 0, 0, 0, -1]`` at ``a = 180``). The projector's lateral bins run along
    ``(cos t, -sin t)``, the viewer's left, and its axial bins upwards, so such a frame becomes
    ``bins[s, z] = frame[Z - 1 - z, S - 1 - s]``.

    Cross-check: PyTomography 3.4 (``io/SPECT/dicom.py``) takes ``start -/+ step * k`` for CW /
    CC, adds 180 "to detector angle convention", maps columns to its lateral index and reverses
    the rows; its object axes are DICOM's (LPS, ``_get_affine_spect_projections``), our RAS grid
    turned 180 degrees about z. Its view ``beta`` of a file is therefore our ``t = beta`` with
    lateral index ``S - 1 - s`` (``tests/tomo/test_pytomography_agreement.py`` states the same in
    index space: ``beta = t + 180``, lateral reversed), and a test runs its reader on our files.

Other attributes:
    * Frames are placed by their Energy Window, Detector, Rotation and Angular View Vector
      values (C.8.4.8.1.1, TOMO: "Sequencing is by Energy Window Vector (0054,0010), Detector
      Vector (0054,0020), Rotation Vector (0054,0050), Angular View Vector (0054,0090)"), not by
      their position in the file; every combination must occur exactly once.
    * Radial Position (0018,1142): "Radial distance of the detector from the center of
      rotation, in mm. It shall have a single value that is an average value for this rotation,
      or it shall have one value per angular view." Taken from the detector's Detector
      Information item, else from the Rotation Information item (PyTomography's order).
    * Frame time: the rotation's Actual Frame Duration (0018,1242), "Nominal acquisition time
      per angular position, in msec." Scan Arc is not used: the views are Number of Frames in
      Rotation steps of Angular Step.
    * Bin size: Pixel Spacing of the NM Image Pixel Module (C.8.4.7), "Physical distance in the
      patient between the center of each pixel", which includes the acquisition zoom (Zoom
      Factor (0028,0031), C.8.4.11.1.4: "the magnification factor that was used during the
      acquisition"; this and the next quotation from an earlier edition of PS3.3); the
      zoom is not applied again. Where the detector gives Field of View Dimensions, a matrix that
      times the zoom outgrows the field is logged as a warning (a spacing written without the
      zoom). Non-square bins are kept (the reconstruction refuses them).
    * Center of Rotation Offset (0018,1145) ("Positive values indicate the physical center is to
      the right of the image plane center", mm) is corrected by shifting each frame (linear
      interpolation) so that the axis lies at lateral bin ``(S - 1) / 2``. A lateral Zoom Center
      (0028,0032) offset is refused.
    * Counts: stored values through Rescale Slope / Intercept when present (the NM IOD has no
      Modality LUT, but cameras write them); negative counts are refused.
    * Energy windows (:func:`window_roles`): the window holding 159 keV is the photopeak; windows
      entirely below / above it, within half its width, are the lower / upper scatter windows.
    * Rotation axis (``axis_origin_mm``): the first detector's first frame, at its lateral
      centre (plus the center of rotation offset) and axial bin 0, from its Image Position. A
      projection pixel has no depth: the axis is taken to lie in the plane through that position
      parallel to the face, where the writer (:mod:`fastdat.io.projection_write`) puts it.
      Cameras differ (PyTomography treats GE's Image Position as the corner of the
      reconstruction cube, and a Siemens one with ``y = 0`` as lying at table height 0): check a
      reconstruction against its CT before trusting its position. Without Image Position the
      axis is the patient z axis, the detector's axial centre at z = 0.

Several files (one per head or energy window, as some cameras export):
    They must belong to one series: same Study and Series Instance UID, frame size and spacing.
    Files of two series are refused, naming the file of the second (decided: which series is
    wanted cannot be guessed). Detectors of different files with the same view angles are one
    head seen in different windows; detectors with other angles are further heads, numbered in
    order of appearance (files sorted by path). Views are sorted by angle (stable: ties in head
    order). Of a folder, the files with the DICOM preamble are read (``mu_map.nii.gz`` is not).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdat.io.dicom import LPS_TO_RAS, DicomInputError, value_mapping
from fastdat.io.projections import EnergyWindow, ProjectionSet

log = logging.getLogger(__name__)

#: 123I photopeak energy (keV): the window holding it is the photopeak.
PHOTOPEAK_KEV = 159.0
#: Vendor layouts :func:`fastdat.io.projection_write.write_projections` writes.
LAYOUTS = ("siemens", "ge")
#: Rotation directions (DICOM Rotation Direction).
ROTATIONS = ("CW", "CC")
#: Frame Increment Pointer of TOMO objects (C.8.4.8.1.1).
TOMO_FRAME_INCREMENT = (0x00540010, 0x00540020, 0x00540050, 0x00540090)
_VECTORS = (  # frame indexing vector, the count it indexes
    ("EnergyWindowVector", "NumberOfEnergyWindows"),
    ("DetectorVector", "NumberOfDetectors"),
    ("RotationVector", "NumberOfRotations"),
    ("AngularViewVector", None),
)
_REFUSED = {
    "RECON TOMO": "a reconstructed volume, not projections (fastdat.io.dicom reads it)",
    "RECON GATED TOMO": "a reconstructed gated volume, not projections",
    "GATED TOMO": "gated tomography: FastDaT reads ungated projections only",
    "STATIC": "a planar (static) image, not tomographic projections",
    "WHOLE BODY": "a planar whole-body image, not tomographic projections",
    "DYNAMIC": "a planar dynamic image, not tomographic projections",
    "GATED": "a planar gated image, not tomographic projections",
}
_PARALLEL, _PERPENDICULAR = math.cos(math.radians(2.0)), math.sin(math.radians(2.0))
RADIONUCLIDE_CODES = {  # CID 18 "Isotopes in Radiopharmaceuticals" (pydicom.sr.codedict)
    "^123^Iodine": ("21572004", "SCT"),
    "^99m^Technetium": ("72454006", "SCT"),
}


class ProjectionError(DicomInputError):
    """A projection file or set FastDaT cannot read; the message names the file and the reason."""


def projector_angle(dicom_deg: float | np.ndarray) -> np.ndarray:
    """DICOM detector angle (module docstring) -> the projector's view angle, in [0, 360)."""
    t = np.mod(np.asarray(dicom_deg, dtype=np.float64) + 180.0, 360.0)
    return np.where(np.isclose(t, 360.0, rtol=0, atol=1e-9), 0.0, t)


# ------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class _Orientation:
    """How a stored frame ``(rows, cols)`` maps to bins ``(S lateral, Z axial)``."""

    transpose: bool  # rows run laterally
    flip_s: bool
    flip_z: bool

    def to_bins(self, frames: np.ndarray) -> np.ndarray:
        """``(n, rows, cols)`` -> ``(n, S, Z)``."""
        a = frames if self.transpose else frames.transpose(0, 2, 1)
        return a[:, :: -1 if self.flip_s else 1, :: -1 if self.flip_z else 1]


_NATURAL = _Orientation(transpose=False, flip_s=True, flip_z=True)


@dataclass
class _Head:
    """One detector's views in acquisition order (counts per window key ``(lower, upper)``)."""

    file: Path
    angles: np.ndarray
    radii: np.ndarray
    frame_s: np.ndarray
    counts: dict[tuple[float, float], np.ndarray] = field(default_factory=dict)
    files: set[Path] = field(default_factory=set)


@dataclass
class _File:
    path: Path
    header: Any
    windows: list[EnergyWindow]
    heads: list[_Head]
    shape: tuple[int, int]
    bin_mm: tuple[float, float]
    axis_origin: tuple[float, float, float] | None
    collimator: str | None
    radionuclide: str | None


def _values(src, keyword: str) -> np.ndarray | None:
    """A numeric attribute as a float array (``None`` when absent or empty)."""
    value = src.get(keyword)
    if value is None or value == "":
        return None
    many = hasattr(value, "__len__") and not isinstance(value, str | bytes)
    out = np.asarray([float(v) for v in (value if many else [value])], dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{keyword} is not finite ({value!r})")
    return out


def _number(src, keyword: str, path: Path, where: str = "") -> float:
    value = _values(src, keyword)
    if value is None or len(value) != 1:
        raise ProjectionError(path, f"{where}{keyword} is missing or not one number")
    return float(value[0])


def _count(ds, keyword: str, path: Path) -> int:
    n = int(_number(ds, keyword, path))
    if n < 1:
        raise ProjectionError(path, f"{keyword} is {n}")
    return n


def read_projection_header(path: Path):
    """The header of ``path`` (no pixels), checked to be an NM TOMO acquisition with pixels."""
    from pydicom.errors import InvalidDicomError

    from fastdat.io.dicom import raw_header

    try:
        ds, rest = raw_header(path)
    except InvalidDicomError as err:
        raise ProjectionError(path, "not a DICOM file (no preamble / File Meta)") from err
    except OSError as err:
        raise ProjectionError(path, f"cannot be read ({err.strerror or err})") from err
    except Exception as err:  # noqa: BLE001 - EOFError and parser errors of a corrupt file
        raise ProjectionError(path, f"truncated or corrupt ({type(err).__name__}: {err})") from err
    if rest == "truncated":
        raise ProjectionError(path, "truncated file: it ends inside its header")
    modality = str(ds.get("Modality", "") or "")
    if modality != "NM":
        raise ProjectionError(path, f"modality {modality or 'missing'}, not NM")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    kind = image_type[2] if len(image_type) > 2 else "missing"
    if kind != "TOMO":
        why = _REFUSED.get(kind, "not tomographic projections")
        raise ProjectionError(path, f"Image Type value 3 is {kind}: {why}")
    if rest != "pixels":
        raise ProjectionError(path, "no pixel data (truncated file?)")
    return ds


def _frame_index(ds, path: Path, n_frames: int) -> np.ndarray:
    """``(frames, 4)`` 1-based (window, detector, rotation, view) of every frame."""
    fip = ds.get("FrameIncrementPointer")
    fip = [] if fip is None else [int(t) for t in (fip if hasattr(fip, "__len__") else [fip])]
    others = [f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in fip if t not in TOMO_FRAME_INCREMENT]
    if others:
        raise ProjectionError(
            path,
            f"Frame Increment Pointer also indexes {', '.join(others)}: gated or dynamic "
            "tomography; FastDaT reads one static acquisition",
        )
    columns = []
    for keyword, count in _VECTORS:
        n_max = _count(ds, count, path) if count else None
        vec = _values(ds, keyword)
        if vec is None:
            if n_max != 1:
                raise ProjectionError(path, f"missing {keyword}: the frames cannot be placed")
            vec = np.ones(n_frames)
        if len(vec) != n_frames:
            raise ProjectionError(
                path, f"{keyword} has {len(vec)} values for {n_frames} frames (Number of Frames)"
            )
        if (vec != np.round(vec)).any() or vec.min() < 1 or (n_max and vec.max() > n_max):
            raise ProjectionError(
                path,
                f"{keyword} values {vec.min():g}..{vec.max():g} are not frame numbers "
                f"1..{n_max or 'n'} ({count or 'Number of Frames in Rotation'})",
            )
        columns.append(vec.astype(np.int64))
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class _Rotation:
    start: float
    step: float
    sign: int
    frames: int
    frame_s: float
    radii: np.ndarray | None


def _rotations(ds, path: Path) -> list[_Rotation]:
    items = list(ds.get("RotationInformationSequence") or [])
    if not items:
        raise ProjectionError(path, "no Rotation Information Sequence: the view angles are unknown")
    n = _count(ds, "NumberOfRotations", path)
    if len(items) != n:
        raise ProjectionError(path, f"{len(items)} Rotation Information items, {n} rotations")
    out = []
    for i, item in enumerate(items, 1):
        where = f"Rotation Information item {i}: "
        direction = str(item.get("RotationDirection", "")).upper()
        if direction not in ("CW", "CC", "CCW"):
            raise ProjectionError(path, f"{where}Rotation Direction {direction!r} is not CW or CC")
        step = _number(item, "AngularStep", path, where)
        frames = int(_number(item, "NumberOfFramesInRotation", path, where))
        frame_ms = _number(item, "ActualFrameDuration", path, where)
        if step <= 0 or frames < 1 or frame_ms <= 0:
            raise ProjectionError(
                path, f"{where}Angular Step {step}, {frames} frames of {frame_ms} ms"
            )
        start = _number(item, "StartAngle", path, where)
        sign = -1 if direction == "CW" else 1
        out.append(_Rotation(start, step, sign, frames, frame_ms / 1000.0, _radii(item, path)))
    return out


def _radii(item, path: Path) -> np.ndarray | None:
    radii = _values(item, "RadialPosition")
    if radii is not None and (radii <= 0).any():
        raise ProjectionError(path, f"Radial Position must be > 0 mm, got {radii.min():g}")
    return radii


@dataclass(frozen=True)
class _Detector:
    start: float | None
    radii: np.ndarray | None
    iop: np.ndarray | None
    ipp: np.ndarray | None
    cor_mm: float
    collimator: str | None


def _detectors(ds, path: Path) -> list[_Detector]:
    items = list(ds.get("DetectorInformationSequence") or [])
    if not items:
        raise ProjectionError(path, "no Detector Information Sequence: the detectors are unknown")
    n = _count(ds, "NumberOfDetectors", path)
    if len(items) != n:
        raise ProjectionError(path, f"{len(items)} Detector Information items, {n} detectors")
    out = []
    for item in items:
        start = _values(item, "StartAngle")
        zoom_centre = _values(item, "ZoomCenter")
        if zoom_centre is not None and len(zoom_centre) == 2 and abs(zoom_centre[1]) > 1e-3:
            raise ProjectionError(
                path,
                f"Zoom Center {zoom_centre.tolist()} mm: a lateral offset of the zoomed "
                "field moves the rotation axis off the frame centre",
            )
        name = str(item.get("CollimatorGridName", "") or "").strip()
        cor = item.get("CenterOfRotationOffset") not in (None, "")
        out.append(
            _Detector(
                None if start is None else float(start[0]),
                _radii(item, path),
                _values(item, "ImageOrientationPatient"),
                _values(item, "ImagePositionPatient"),
                _number(item, "CenterOfRotationOffset", path, "") if cor else 0.0,
                name or None,
            )
        )
    return out


def window_roles(limits: Sequence[tuple[float, float]]) -> list[str]:
    """Roles (:data:`~fastdat.io.projections.WINDOW_ROLES`) of windows ``(lower, upper)`` keV.

    The window holding :data:`PHOTOPEAK_KEV` (the one centred closest, if several) is the
    photopeak; a window entirely below (above) it whose gap to it is at most half the photopeak's
    width is ``"scatter-lower"`` (``"scatter-upper"``); the rest are ``"other"``.
    """
    roles = ["other"] * len(limits)
    peaks = [i for i, (lo, hi) in enumerate(limits) if lo <= PHOTOPEAK_KEV <= hi]
    if not peaks:
        return roles
    p = min(peaks, key=lambda i: abs(sum(limits[i]) / 2 - PHOTOPEAK_KEV))
    roles[p] = "photopeak"
    lo_p, hi_p = limits[p]
    reach, tol = (hi_p - lo_p) / 2, 0.5
    for i, (lo, hi) in enumerate(limits):
        if i != p and lo_p - reach <= hi <= lo_p + tol:
            roles[i] = "scatter-lower"
        elif i != p and hi_p - tol <= lo <= hi_p + reach:
            roles[i] = "scatter-upper"
    return roles


def _windows(ds, path: Path) -> list[EnergyWindow]:
    items = list(ds.get("EnergyWindowInformationSequence") or [])
    n = _count(ds, "NumberOfEnergyWindows", path)
    if len(items) != n:
        raise ProjectionError(path, f"{len(items)} Energy Window Information items, {n} windows")
    limits, names = [], []
    for i, item in enumerate(items, 1):
        ranges = list(item.get("EnergyWindowRangeSequence") or [])
        if len(ranges) != 1:
            raise ProjectionError(path, f"energy window {i} has {len(ranges)} ranges, not one")
        where = f"energy window {i}: "
        limits.append(
            (
                _number(ranges[0], "EnergyWindowLowerLimit", path, where),
                _number(ranges[0], "EnergyWindowUpperLimit", path, where),
            )
        )
        names.append(str(item.get("EnergyWindowName", "") or ""))
    try:
        return [
            EnergyWindow(name, lo, hi, role)
            for name, (lo, hi), role in zip(names, limits, window_roles(limits), strict=True)
        ]
    except ValueError as err:
        raise ProjectionError(path, str(err)) from err


def radionuclide_name(ds) -> str | None:
    for item in ds.get("RadiopharmaceuticalInformationSequence") or []:
        for code in item.get("RadionuclideCodeSequence") or []:
            meaning = str(code.get("CodeMeaning", "") or "").strip()
            if meaning:
                return meaning
    return None


def lps_to_ras(lps: np.ndarray) -> np.ndarray:
    return LPS_TO_RAS[:3, :3] @ lps


def _orientation(det: _Detector, theta0: float, path: Path, number: int):
    """Bin mapping of a detector's frames and its row / column directions (RAS)."""
    t = math.radians(theta0)
    normal = np.array([math.sin(t), math.cos(t), 0.0])
    lateral = np.array([math.cos(t), -math.sin(t), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    if det.iop is None:
        return _NATURAL, -lateral, -up
    where = f"detector {number}: Image Orientation (Patient) {det.iop.tolist()}"
    if len(det.iop) != 6:
        raise ProjectionError(path, f"{where} is not six direction cosines")
    row, col = lps_to_ras(det.iop[:3]), lps_to_ras(det.iop[3:])
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3:
        raise ProjectionError(path, f"{where} is not two unit vectors")
    if max(abs(row @ normal), abs(col @ normal)) > _PERPENDICULAR:
        raise ProjectionError(
            path,
            f"{where} does not lie in the detector face at its start angle "
            f"({(theta0 - 180) % 360:g} degrees DICOM): orientation and angle contradict",
        )
    if abs(row @ lateral) > _PARALLEL and abs(col @ up) > _PARALLEL:
        orient = _Orientation(False, bool(row @ lateral < 0), bool(col @ up < 0))
    elif abs(row @ up) > _PARALLEL and abs(col @ lateral) > _PARALLEL:
        orient = _Orientation(True, bool(col @ lateral < 0), bool(row @ up < 0))
    else:
        raise ProjectionError(path, f"{where}: neither rows nor columns run along the axis")
    return orient, row, col


def _shift_lateral(bins: np.ndarray, shift: float) -> np.ndarray:
    """``out[:, s] = bins[:, s + shift]`` by linear interpolation (zero outside)."""
    if abs(shift) < 1e-6:
        return bins
    n = bins.shape[1]
    x = np.arange(n) + shift
    i0 = np.floor(x).astype(np.int64)
    f = (x - i0)[None, :, None]
    pad = np.concatenate([np.zeros_like(bins[:, :1]), bins, np.zeros_like(bins[:, :1])], axis=1)
    lo, hi = np.clip(i0 + 1, 0, n + 1), np.clip(i0 + 2, 0, n + 1)
    return ((1 - f) * pad[:, lo] + f * pad[:, hi]).astype(bins.dtype)


def _view_radii(det: _Detector, rot: _Rotation, r_index: int, k: np.ndarray, path, number):
    """Radius (mm) of views ``k`` (0-based) of rotation ``r_index`` of a detector."""
    for radii, where in ((det.radii, "Detector"), (rot.radii, "Rotation")):
        if radii is None:
            continue
        if len(radii) == 1:
            return np.full(len(k), radii[0])
        if len(radii) == rot.frames:
            return radii[k]
        raise ProjectionError(
            path,
            f"detector {number}: {len(radii)} Radial Position values in the {where} Information "
            f"Sequence for {rot.frames} views of rotation {r_index + 1} (one, or one per view)",
        )
    raise ProjectionError(
        path, f"detector {number}: no Radial Position (Detector or Rotation Information Sequence)"
    )


def _check_zoom(ds, path: Path, spacing: np.ndarray, rows: int, cols: int) -> None:
    """Warn when Pixel Spacing does not seem to include the Zoom Factor (module docstring)."""
    det = (ds.get("DetectorInformationSequence") or [None])[0]
    zoom = None if det is None else _values(det, "ZoomFactor")
    fov = None if det is None else _values(det, "FieldOfViewDimensions")
    if zoom is None or fov is None or len(zoom) != 2:
        return
    extent = np.array([rows * spacing[0], cols * spacing[1]]) * zoom
    if extent.max() > 1.1 * fov.max():
        log.warning(
            "%s: %d x %d pixels of %s mm times Zoom Factor %s exceed the field of view (%s mm): "
            "Pixel Spacing may not include the zoom",
            path, rows, cols, spacing.tolist(), zoom.tolist(), fov.tolist(),
        )  # fmt: skip


def _read_file(path: Path) -> _File:
    """One projection file: its windows and its detectors' views (in acquisition order)."""
    ds = read_projection_header(path)
    try:
        return _parse(path, ds)
    except ProjectionError:
        raise
    except DicomInputError as err:  # from fastdat.io.dicom's pixel and size checks
        raise ProjectionError(path, err.reason) from err
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as err:
        raise ProjectionError(path, f"malformed header ({type(err).__name__}: {err})") from err


def _frame_lookup(index: np.ndarray, rotations: list[_Rotation], path: Path) -> dict:
    """``(window, detector, rotation, view) -> frame``, every key once, views in range."""
    where: dict[tuple[int, ...], int] = {}
    for f, key in enumerate(map(tuple, index.tolist())):
        if key[3] > rotations[key[2] - 1].frames:
            raise ProjectionError(
                path,
                f"frame {f + 1}: Angular View Vector {key[3]} exceeds the Number of Frames in "
                f"Rotation of rotation {key[2]}: the frames disagree with the vectors",
            )
        if key in where:
            raise ProjectionError(
                path,
                f"frames {where[key] + 1} and {f + 1} have the same window, detector, rotation "
                f"and view {key}: the frames disagree with the vectors",
            )
        where[key] = f
    return where


def _counts(path: Path, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """Counts ``(frames, rows, cols)`` float32: stored values through Rescale Slope / Intercept."""
    from fastdat.io.dicom import read_pixels

    full, px = read_pixels(path)
    px = np.asarray(px)
    if px.size != n_frames * rows * cols:
        raise ProjectionError(path, f"pixel data {px.shape} for {n_frames} x {rows} x {cols}")
    slope, intercept = value_mapping(full)
    px = px.reshape(n_frames, rows, cols).astype(np.float32) * slope + intercept
    if not np.isfinite(px).all() or (px < 0).any():
        raise ProjectionError(path, "negative or non-finite counts (Rescale Slope / Intercept?)")
    return px


def _views(d: int, index: np.ndarray, rotations, detectors, path: Path):
    """Detector ``d``'s views in acquisition order: a :class:`_Head` without counts and the
    ``(rotation, view)`` of each."""
    det = detectors[d - 1]
    rots = sorted(set(index[index[:, 1] == d, 2].tolist()))
    others = set(index[np.isin(index[:, 2], rots), 1].tolist()) - {d}
    if det.start is None and others:
        raise ProjectionError(
            path,
            f"detector {d} shares a rotation with detector {min(others)} and its Detector "
            "Information item has no Start Angle: its position is unknown",
        )
    offset = 0.0 if det.start is None else det.start - rotations[0].start
    angles, radii, frame_s, keys = [], [], [], []
    for r in rots:
        rot = rotations[r - 1]
        k = np.arange(rot.frames)
        angles.append(projector_angle(rot.start + offset + rot.sign * rot.step * k))
        radii.append(_view_radii(det, rot, r - 1, k, path, d))
        frame_s.append(np.full(rot.frames, rot.frame_s))
        keys += [(r, int(v) + 1) for v in k]
    head = _Head(path, np.concatenate(angles), np.concatenate(radii), np.concatenate(frame_s))
    return head, keys


def _axis_point(det: _Detector, orient: _Orientation, row, col, spacing, rows, cols):
    """RAS mm of the rotation axis at axial bin 0, from the detector's Image Position (module
    docstring), or ``None``."""
    if det.ipp is None or len(det.ipp) != 3:
        return None
    if orient.transpose:  # rows lateral: centre row, axial bin 0 column
        i, j, lateral = (rows - 1) / 2, (cols - 1) * orient.flip_z, col
    else:
        i, j, lateral = (rows - 1) * orient.flip_z, (cols - 1) / 2, row
    q = lps_to_ras(det.ipp) + j * spacing[1] * row + i * spacing[0] * col + det.cor_mm * lateral
    return tuple(round(float(v), 9) for v in q)  # no float noise from the cosines


def _parse(path: Path, ds) -> _File:
    from fastdat.io.dicom import frame_matrix

    n_frames, rows, cols = frame_matrix(ds, path)
    index = _frame_index(ds, path, n_frames)
    windows, rotations, detectors = _windows(ds, path), _rotations(ds, path), _detectors(ds, path)
    spacing = _values(ds, "PixelSpacing")
    if spacing is None or len(spacing) != 2 or (spacing <= 0).any():
        raise ProjectionError(path, f"Pixel Spacing {ds.get('PixelSpacing')!r} is not two sizes")
    _check_zoom(ds, path, spacing, rows, cols)
    where = _frame_lookup(index, rotations, path)
    px = _counts(path, n_frames, rows, cols)
    heads, orients, origin = [], [], None
    for d in sorted(set(index[:, 1].tolist())):
        head, keys = _views(d, index, rotations, detectors, path)
        det = detectors[d - 1]
        orient, row, col = _orientation(det, float(head.angles[0]), path, d)
        if orients and orient.transpose != orients[0].transpose:
            raise ProjectionError(path, f"detector {d}: rows and columns swapped against the first")
        orients.append(orient)
        lateral_mm = spacing[0] if orient.transpose else spacing[1]
        shift = det.cor_mm / lateral_mm * (-1.0 if orient.flip_s else 1.0)
        for w, window in enumerate(windows, 1):
            missing = [key for key in keys if (w, d, *key) not in where]
            if missing:
                raise ProjectionError(
                    path,
                    f"no frame for window {w}, detector {d}, rotation / view {missing[0]}: "
                    "the frames disagree with the vectors",
                )
            frames = orient.to_bins(px[[where[(w, d, *key)] for key in keys]])
            head.counts[(window.lower_kev, window.upper_kev)] = _shift_lateral(frames, shift)
        heads.append(head)
        origin = origin or _axis_point(det, orient, row, col, spacing, rows, cols)
    transpose = orients[0].transpose
    return _File(
        path=path,
        header=ds,
        windows=windows,
        heads=heads,
        shape=(rows, cols) if transpose else (cols, rows),
        bin_mm=tuple(float(v) for v in (spacing if transpose else spacing[::-1])),
        axis_origin=origin,
        collimator=detectors[0].collimator,
        radionuclide=radionuclide_name(ds),
    )


def _paths(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    """The files to read: a file, several files, or a folder's DICOM files (sorted)."""
    given = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not given:
        raise ProjectionError("(no files)", "no projection files given")
    out: list[Path] = []
    for p in given:
        if p.is_dir():
            found = [f for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")]
            dicom = [f for f in found if _has_preamble(f)]
            for f in sorted(set(found) - set(dicom)):
                log.debug("%s: not a DICOM file, skipped", f)
            if not dicom:
                raise ProjectionError(p, "no DICOM files in the folder")
            out += dicom
        elif p.exists():
            out.append(p)
        else:
            raise ProjectionError(p, "not found")
    return sorted(set(out))


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _same_acquisition(first: _File, other: _File) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        a, b = first.header.get(keyword), other.header.get(keyword)
        if a != b:
            raise ProjectionError(
                other.path,
                f"{keyword} {b} differs from {first.path.name}'s {a}: files of two acquisitions "
                "(give the files of one series)",
            )
    if other.shape != first.shape or not np.allclose(other.bin_mm, first.bin_mm, rtol=1e-6):
        raise ProjectionError(
            other.path,
            f"{other.shape} bins of {other.bin_mm} mm, {first.path.name} has {first.shape} of "
            f"{first.bin_mm} mm",
        )


def _merge(files: list[_File]) -> tuple[list[_Head], list[EnergyWindow]]:
    """Heads over all files (one head's windows may come from several files) and the windows."""
    windows: dict[tuple[float, float], EnergyWindow] = {}
    heads: list[_Head] = []
    for f in files:
        for w in f.windows:
            windows.setdefault((w.lower_kev, w.upper_kev), w)
        for h in f.heads:
            same = next(
                (
                    m
                    for m in heads
                    if f.path not in m.files
                    and len(m.angles) == len(h.angles)
                    and np.allclose(m.angles, h.angles, rtol=0, atol=1e-6)
                ),
                None,
            )
            if same is None:
                heads.append(_Head(h.file, h.angles, h.radii, h.frame_s, dict(h.counts), {f.path}))
                continue
            twice = set(same.counts) & set(h.counts)
            if twice:
                raise ProjectionError(
                    f.path,
                    f"energy window {sorted(twice)[0]} keV at the views of a head in "
                    f"{same.file.name} again: the same frames twice",
                )
            if not (np.allclose(same.radii, h.radii) and np.allclose(same.frame_s, h.frame_s)):
                raise ProjectionError(
                    f.path,
                    f"a head with {same.file.name}'s view angles has other radii or "
                    "frame durations",
                )
            same.counts.update(h.counts)
            same.files.add(f.path)
    for h in heads:
        missing = [w for key, w in windows.items() if key not in h.counts]
        if missing:
            w = missing[0]
            raise ProjectionError(
                h.file,
                f"a head has no frames in energy window {w.name!r} "
                f"({w.lower_kev:g}-{w.upper_kev:g} keV), which other files hold",
            )
    return heads, list(windows.values())


def read_projections(paths: Path | str | Sequence[Path | str]) -> ProjectionSet:
    """Read one SPECT acquisition's projections (module docstring for the conventions).

    Args:
        paths: An NM TOMO file, the files of one series (one per head or energy window), or a
            folder holding them.

    Returns:
        The projections in the projector's frame: counts ``(W, V, S, Z)`` float32, views sorted
        by angle, ``header`` the first file's dataset without pixel data.

    Raises:
        ProjectionError: A file that is not usable NM TOMO projections, or files that are not
            one acquisition; the message names the file.
    """
    files = [_read_file(p) for p in _paths(paths)]
    for f in files[1:]:
        _same_acquisition(files[0], f)
    heads, windows = _merge(files)
    limits = [(w.lower_kev, w.upper_kev) for w in windows]  # roles among all files' windows
    windows = [
        dataclasses.replace(w, role=r) for w, r in zip(windows, window_roles(limits), strict=True)
    ]
    first = files[0]
    keys = [(w.lower_kev, w.upper_kev) for w in windows]
    counts = np.concatenate([np.stack([h.counts[k] for k in keys]) for h in heads], axis=1)
    angles = np.concatenate([h.angles for h in heads])
    detectors = np.concatenate([np.full(len(h.angles), i + 1) for i, h in enumerate(heads)])
    order = np.argsort(np.round(angles, 6), kind="stable")
    s, z = first.shape
    origin = first.axis_origin or (0.0, 0.0, -(z - 1) / 2 * first.bin_mm[1])
    return ProjectionSet(
        counts=torch.from_numpy(np.ascontiguousarray(counts[:, order])),
        windows=tuple(windows),
        angles_deg=torch.from_numpy(angles[order].copy()),
        radii_mm=torch.from_numpy(np.concatenate([h.radii for h in heads])[order].copy()),
        frame_s=torch.from_numpy(np.concatenate([h.frame_s for h in heads])[order].copy()),
        detectors=torch.from_numpy(detectors[order].astype(np.int64)),
        bin_mm=first.bin_mm,
        axis_origin_mm=origin,
        collimator=first.collimator,
        radionuclide=first.radionuclide,
        header=first.header,
        source=tuple(f.path for f in files),
    )
