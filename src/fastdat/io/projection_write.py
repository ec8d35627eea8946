"""SPECT projections to DICOM: a :class:`~fastdat.io.projections.ProjectionSet` as NM TOMO
objects (NM Image Storage, Image Type ``ORIGINAL\\PRIMARY\\TOMO\\EMISSION``) in a camera vendor's
layout, read back by :func:`fastdat.io.projection_dicom.read_projections` (whose docstring holds
the angle and pixel conventions, quoted from the standard).

Layouts written (:data:`LAYOUTS`), all valid NM TOMO objects (``dciodvfy``: no errors):
    * ``"siemens"``: one file with every head and window, one Rotation Information item, each
      head's Start Angle (head 2 180 degrees from head 1), Radial Position (one per view, or one
      for a circular orbit) and Image Position / Orientation in its Detector Information item;
      CW by default. This is what PyTomography's reader was written for first (radii per detector
      in the Detector Information Sequence, both heads in one object) and what STIR's
      ``SPECT_dicom_to_interfile`` reads (its issue #1184: two heads, two windows, one object).
    * ``"ge"``: one file per head (Number of Detectors 1), its Start Angle and Radial Position in
      the Rotation Information item only, none in the Detector Information item (GE's NM/CT
      files keep Radial Position there: PyTomography PR #113); CC by default.

    ``rotation`` sets the direction the views are stored in, ``head_order`` which head becomes
    detector 1 (first frames, or first file) and ``per_window`` writes one file per window too.
    Frame times are written in whole ms (Actual Frame Duration is an integer).
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.io.dicom import NM_IMAGE_STORAGE
from fastdat.io.projection_dicom import (
    LAYOUTS,
    RADIONUCLIDE_CODES,
    ROTATIONS,
    TOMO_FRAME_INCREMENT,
    lps_to_ras,
    projector_angle,
    radionuclide_name,
)
from fastdat.io.projections import EnergyWindow, ProjectionSet

log = logging.getLogger(__name__)
# ------------------------------------------------------------------------------------------------
# writing


@dataclass(frozen=True)
class _Layout:
    """How one camera vendor lays an acquisition out in NM TOMO objects (module docstring)."""

    file_per_head: bool
    rotation: str
    radii_in_detector: bool  # else in the Rotation Information item
    start_in_detector: bool  # per-detector Start Angle in the Detector Information items


_LAYOUTS = {  # file per head, default rotation, radii / start angle in the detector items
    "siemens": _Layout(False, "CW", radii_in_detector=True, start_in_detector=True),
    "ge": _Layout(True, "CC", radii_in_detector=False, start_in_detector=False),
}
_STUDY_KEEP = (  # patient, study and frame of reference of the source, kept in a written series
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved",
    "DeidentificationMethod", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "BodyPartExamined", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence", "PatientPosition",
    "SeriesDescription", "Manufacturer", "ManufacturerModelName", "AcquisitionDate",
    "AcquisitionTime",
)  # fmt: skip
_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer",
    "PositionReferenceIndicator",
)  # fmt: skip


@dataclass(frozen=True)
class _Orbit:
    """One head's views in acquisition order and the rotation that describes them."""

    views: np.ndarray  # indices into the set's views
    start: float  # DICOM degrees
    step: float
    frame_s: float


def _ds(value: float) -> str:
    """The most precise DS string (at most 16 characters) of ``value``."""
    for digits in range(15, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DS value")


def _orbit(ps: ProjectionSet, head: int, rotation: str) -> _Orbit:
    """The views of ``head`` as one rotation (equal steps, one frame time), or ValueError."""
    views = np.flatnonzero(ps.detectors.numpy() == head)
    if len(views) < 2:
        raise ValueError(f"head {head} has {len(views)} view; a rotation needs at least two")
    a = np.mod(ps.angles_deg.numpy()[views] - 180.0, 360.0)  # DICOM angles
    up = np.argsort(a, kind="stable")
    gaps = np.diff(np.append(a[up], a[up[0]] + 360.0))
    # the rotation starts after the largest gap (the uncovered arc; the wrap-around on ties)
    cut = len(gaps) - 1 - int(np.argmax(gaps[::-1] > gaps.max() - 1e-6))
    up = np.roll(up, -(cut + 1))
    steps = np.mod(np.diff(a[up]), 360.0)
    step = float(steps.mean())
    if step <= 0 or np.abs(steps - step).max() > 1e-4:
        raise ValueError(
            f"head {head}: view angles are not equally spaced (steps {steps.min():g}-"
            f"{steps.max():g} degrees); an NM TOMO rotation has one Angular Step"
        )
    frame_s = ps.frame_s.numpy()[views]
    if np.ptp(frame_s) > 1e-9 * frame_s.max():
        raise ValueError(f"head {head}: views of different durations in one rotation")
    order = up if rotation == "CC" else up[::-1]
    return _Orbit(views[order], float(a[order[0]]), step, float(frame_s[0]))


def _pixel_frames(ps: ProjectionSet) -> np.ndarray:
    """Counts as stored frames ``(W, V, rows = Z, cols = S)`` uint16 (module docstring)."""
    c = ps.counts.detach().cpu().numpy()
    if (c < 0).any() or (c > 65535).any() or (c != np.round(c)).any():
        raise ValueError(
            "projection counts must be integers in 0..65535 (NM Image Pixel Module: 8 or 16 bits)"
        )
    return np.ascontiguousarray(c[:, :, ::-1, ::-1].transpose(0, 1, 3, 2)).astype(np.uint16)


def _position(ps: ProjectionSet, theta0: float) -> list[str]:
    """Image Position (Patient) (LPS) of a head's first frame at projector angle ``theta0``."""
    s, z = ps.shape
    t = math.radians(theta0)
    lateral = np.array([math.cos(t), -math.sin(t), 0.0])
    first = np.asarray(ps.axis_origin_mm) + (s - 1) / 2 * ps.bin_mm[0] * lateral
    first[2] += (z - 1) * ps.bin_mm[1]  # row 0 is the top (superior) row
    return [_ds(float(v)) for v in lps_to_ras(first)]


def _orientation_cosines(theta0: float) -> list[str]:
    t = math.radians(theta0)
    row, col = lps_to_ras(np.array([-math.cos(t), math.sin(t), 0.0])), np.array([0.0, 0.0, -1.0])
    return [_ds(float(v) + 0.0) for v in np.round(np.concatenate([row, col]), 12)]


def _radial(values: np.ndarray) -> list[str] | str:
    """Radial Position: one value for a circular orbit, else one per view."""
    if np.ptp(values) <= 1e-9 * values.max():
        return _ds(float(values[0]))
    return [_ds(float(v)) for v in values]


def _energy_windows(windows: Sequence[EnergyWindow]) -> list:
    import pydicom

    items = []
    for w in windows:
        limits, item = pydicom.Dataset(), pydicom.Dataset()
        limits.EnergyWindowLowerLimit = _ds(w.lower_kev)
        limits.EnergyWindowUpperLimit = _ds(w.upper_kev)
        item.EnergyWindowRangeSequence = [limits]
        item.EnergyWindowName = w.name[:16]
        items.append(item)
    return items


def _radiopharmaceutical(ps: ProjectionSet) -> list:
    import pydicom

    if ps.header is not None and radionuclide_name(ps.header) == ps.radionuclide:
        kept = ps.header.get("RadiopharmaceuticalInformationSequence")
        if kept:
            return copy.deepcopy(list(kept))
    item = pydicom.Dataset()
    item.RadionuclideCodeSequence = []
    if ps.radionuclide in RADIONUCLIDE_CODES:
        code = pydicom.Dataset()
        code.CodeValue, code.CodingSchemeDesignator = RADIONUCLIDE_CODES[ps.radionuclide]
        code.CodeMeaning = ps.radionuclide
        item.RadionuclideCodeSequence = [code]
    elif ps.radionuclide:
        log.warning("radionuclide %r has no code here; written without one", ps.radionuclide)
    return [item]


def _series(ps: ProjectionSet) -> dict[str, Any]:
    """Patient, study and frame of reference (the source's, else new) and a new series."""
    from pydicom.uid import generate_uid

    attrs: dict[str, Any] = dict.fromkeys(_TYPE2, "")
    if ps.header is not None:
        attrs.update({k: copy.deepcopy(ps.header[k].value) for k in _STUDY_KEEP if k in ps.header})
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        attrs[keyword] = attrs.get(keyword) or generate_uid()
    attrs["Manufacturer"] = attrs.get("Manufacturer") or "FastDaT"
    attrs.setdefault("SeriesDescription", "SPECT projections")
    attrs.setdefault("BodyPartExamined", "HEAD")  # DaTscan; an unpaired part needs no Laterality
    for keyword in ("PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence"):
        attrs.setdefault(keyword, [])
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    attrs.update(
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=1,
        SeriesDate=date,
        SeriesTime=time,
        ContentDate=date,
        ContentTime=time,
    )
    return attrs


def _rotation_item(ps: ProjectionSet, orbit: _Orbit, rotation: str, radii: bool):
    import pydicom

    rot = pydicom.Dataset()
    rot.StartAngle = _ds(orbit.start)
    rot.AngularStep = _ds(orbit.step)
    rot.RotationDirection = rotation
    rot.ScanArc = _ds(len(orbit.views) * orbit.step)
    rot.ActualFrameDuration = round(orbit.frame_s * 1000.0)
    rot.NumberOfFramesInRotation = len(orbit.views)
    if radii:
        rot.RadialPosition = _radial(ps.radii_mm.numpy()[orbit.views])
    return rot


def _detector_item(ps: ProjectionSet, orbit: _Orbit, spec: _Layout):
    import pydicom

    theta0 = float(projector_angle(orbit.start))
    det = pydicom.Dataset()
    det.ImagePositionPatient = _position(ps, theta0)
    det.ImageOrientationPatient = _orientation_cosines(theta0)
    det.CollimatorGridName = (ps.collimator or "")[:16]
    det.CollimatorType = "PARA"
    det.FocalDistance = 0
    det.CenterOfRotationOffset = "0"
    if spec.start_in_detector:
        det.StartAngle = _ds(orbit.start)
    if spec.radii_in_detector:
        det.RadialPosition = _radial(ps.radii_mm.numpy()[orbit.views])
    return det


def _dataset(ps, frames, orbits: list[_Orbit], windows: list[int], spec, rotation, attrs):
    """One NM TOMO object: the heads of ``orbits`` (DICOM detectors 1, 2, ...) x ``windows``.

    ``frames``: all stored frames ``(W, V, rows, cols)``; ``attrs``: patient, study, series.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    first = orbits[0]
    n = len(first.views)
    for o in orbits[1:]:
        if (len(o.views), o.step, o.frame_s) != (n, first.step, first.frame_s):
            raise ValueError(
                "heads differ in views, step or frame time, which one NM TOMO rotation cannot "
                "hold; use the 'ge' layout (one file per head)"
            )
    px = np.concatenate([frames[w, o.views] for w in windows for o in orbits])
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = NM_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword, value in attrs.items():
        setattr(ds, keyword, copy.deepcopy(value))
    ds.SOPClassUID = NM_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.NumberOfFrames = len(px)
    ds.FrameIncrementPointer = list(TOMO_FRAME_INCREMENT)
    heads, per_window = len(orbits), len(orbits) * n
    ds.EnergyWindowVector = np.repeat(np.arange(1, len(windows) + 1), per_window).tolist()
    ds.NumberOfEnergyWindows = len(windows)
    ds.DetectorVector = np.tile(np.repeat(np.arange(1, heads + 1), n), len(windows)).tolist()
    ds.NumberOfDetectors = heads
    ds.RotationVector = [1] * len(px)
    ds.NumberOfRotations = 1
    ds.AngularViewVector = np.tile(np.arange(1, n + 1), len(windows) * heads).tolist()
    ds.EnergyWindowInformationSequence = _energy_windows([ps.windows[w] for w in windows])
    ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(ps)
    ds.RotationInformationSequence = [
        _rotation_item(ps, first, rotation, radii=not spec.radii_in_detector)
    ]
    ds.TypeOfDetectorMotion = "STEP AND SHOOT"
    ds.DetectorInformationSequence = [_detector_item(ps, o, spec) for o in orbits]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = int(px.shape[1]), int(px.shape[2])
    ds.PixelSpacing = [_ds(ps.bin_mm[1]), _ds(ps.bin_mm[0])]  # row (axial) \ column (lateral)
    ds.CountsAccumulated = int(px.sum(dtype=np.int64))
    ds.PixelData = px.astype("<u2").tobytes()
    return ds


def write_projections(
    ps: ProjectionSet,
    out: str | Path,
    layout: str = "siemens",
    *,
    rotation: str | None = None,
    head_order: Sequence[int] | None = None,
    per_window: bool = False,
) -> list[Path]:
    """Write an acquisition as NM TOMO projection DICOM in a vendor's layout (module docstring).

    Every file goes through a temporary name (:func:`fastdat.io.atomic.write_new`); none is
    written if one of the names exists.

    Args:
        ps: The acquisition; each head's views must be equally spaced in angle with one frame
            time (whole ms are written), counts integers in 0..65535.
        out: The folder to write into (created if needed).
        layout: One of :data:`LAYOUTS`.
        rotation: ``"CW"`` or ``"CC"``, the order the views are acquired (stored) in; the
            layout's by default.
        head_order: The set's head numbers in the order they become DICOM detectors 1, 2, ...
            (``"ge"``: the order of the files); ascending by default.
        per_window: One file per energy window as well.

    Returns:
        The files written, in order: ``projections[_headN][_winM].dcm``.

    Raises:
        ValueError: An unknown layout, rotation or head order, or a set that NM TOMO objects
            cannot hold (see ``ps``). FileExistsError: one of the files exists.
        OutputError: The folder or a file cannot be written.
    """
    from fastdat.io.atomic import write_new

    if layout not in _LAYOUTS:
        raise ValueError(f"layout {layout!r}: known layouts are {', '.join(LAYOUTS)}")
    spec = _LAYOUTS[layout]
    rotation = rotation or spec.rotation
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r}: use one of {', '.join(ROTATIONS)}")
    present = sorted(int(d) for d in ps.detectors.unique())
    heads = present if head_order is None else [int(h) for h in head_order]
    if sorted(heads) != present:
        raise ValueError(f"head_order {heads} is not an order of the heads {present}")
    orbits = [_orbit(ps, h, rotation) for h in heads]
    frames = _pixel_frames(ps)
    attrs = _series(ps)
    groups = [[o] for o in orbits] if spec.file_per_head else [orbits]
    all_windows = list(range(len(ps.windows)))
    window_sets = [[w] for w in all_windows] if per_window else [all_windows]
    jobs = []
    for g, group in enumerate(groups, 1):
        for windows in window_sets:
            name = "projections" + (f"_head{g}" if spec.file_per_head else "")
            name += f"_win{windows[0] + 1}" if per_window else ""
            attrs["InstanceNumber"] = len(jobs) + 1
            ds = _dataset(ps, frames, group, windows, spec, rotation, attrs)
            jobs.append((Path(out) / f"{name}.dcm", ds))
    for path, _ in jobs:
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path}: already exists; not overwritten")
    for path, ds in jobs:
        write_new(path, lambda tmp, ds=ds: ds.save_as(tmp, enforce_file_format=True))
    return [path for path, _ in jobs]
