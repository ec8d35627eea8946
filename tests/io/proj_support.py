"""Projection sets and NM TOMO objects built for the tests of :mod:`fastdat.io.projection_dicom`.

:func:`standard_tomo` writes projections of a point source from the definitions of DICOM PS3.3
alone, not with the module under test: the detector at DICOM angle ``a`` lies in direction
``(-sin a, -cos a, 0)`` (RAS) of the rotation axis (Start Angle (0054,0200): "Zero degrees is
referenced to the origin at the patient's back. Viewing from the patient's feet, angle increases
in a counter-clockwise direction (detector normal rotating from the patient's back towards the
patient's left side)": ``a = 0`` at RAS -y, ``a = 90`` at RAS -x); views step by Angular Step,
decreasing for CW, increasing for CC; pixel ``(i, j)`` of a frame lies at ``IPP + j dx r + i dy c``
(Image Position / Orientation (Patient), C.7.6.2.1.1) with ``r``, ``c`` and ``IPP`` given for
the detector's first frame and turning with the detector about the axis.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fastdat.io.projections import EnergyWindow, ProjectionSet

NM = "1.2.840.10008.5.1.4.1.1.20"
TEW = (  # 123I triple energy window: photopeak 159 keV +/- 10 %, scatter windows beside it
    EnergyWindow("EM", 143.1, 174.9, "photopeak"),
    EnergyWindow("SC_LOW", 127.2, 143.1, "scatter-lower"),
    EnergyWindow("SC_UP", 174.9, 190.8, "scatter-upper"),
)


def make_set(
    views_per_head: int = 30,
    shape: tuple[int, int] = (32, 21),
    bin_mm: tuple[float, float] = (4.42, 4.42),
    contour: bool = True,
    seed: int = 0,
) -> ProjectionSet:
    """Two opposed heads (H mode), 360 degrees in all, TEW windows, Poisson counts.

    ``contour``: a body-contour orbit (per-view radii) instead of a circular one.
    """
    v = 2 * views_per_head
    s, z = shape
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.rand((len(TEW), v, s, z), generator=g) * 40.0, generator=g)
    angles = torch.arange(v, dtype=torch.float64) * 360.0 / v
    radii = 180.0 + 25.0 * torch.cos(2 * torch.deg2rad(angles)) * float(contour)
    return ProjectionSet(
        counts=counts,
        windows=TEW,
        angles_deg=angles,
        radii_mm=radii.to(torch.float64),
        frame_s=torch.full((v,), 12.5, dtype=torch.float64),
        detectors=(angles >= 180.0).long() + 1,  # head 2 starts 180 degrees from head 1
        bin_mm=bin_mm,
        axis_origin_mm=(3.5, -12.25, -41.0),
        collimator="LEHR",
        radionuclide="^123^Iodine",
    )


def detector_direction(a_deg: float) -> np.ndarray:
    """RAS direction of the detector at DICOM angle ``a`` (module docstring)."""
    a = math.radians(a_deg)
    return np.array([-math.sin(a), -math.cos(a), 0.0])


def viewer_right(a_deg: float) -> np.ndarray:
    """The image's row direction (RAS) of a camera at ``a`` seeing the patient head up: the
    right hand of a viewer at the detector facing the axis."""
    return np.cross(-detector_direction(a_deg), [0.0, 0.0, 1.0])


def _turn(v: np.ndarray, a0: float, a1: float) -> np.ndarray:
    """``v`` turned about z as the detector turns from ``a0`` to ``a1``."""
    d0, d1 = detector_direction(a0), detector_direction(a1)
    phi = math.atan2(d1[1], d1[0]) - math.atan2(d0[1], d0[0])
    c, s = math.cos(phi), math.sin(phi)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


def _splat(frame: np.ndarray, i: float, j: float, value: float) -> None:
    """Add ``value`` at fractional pixel ``(i, j)`` (linear along j; i must be whole)."""
    assert abs(i - round(i)) < 1e-9, i
    j0 = math.floor(j)
    f = j - j0
    frame[round(i), j0] += value * (1 - f)
    if f > 0:
        frame[round(i), j0 + 1] += value * f


def _ds(values) -> list[str]:
    return [f"{float(v):.10g}" for v in values]


def standard_tomo(
    point_ras: tuple[float, float, float],
    starts: tuple[float, ...] = (100.0, 280.0),
    step: float = 30.0,
    views: int = 6,
    direction: str = "CW",
    rows_cols: tuple[int, int] = (9, 17),
    spacing: float = 4.0,
    axis: tuple[float, float, float] = (6.0, -8.0, -20.0),
    orientation: str = "camera",
    cor_mm: float = 0.0,
) -> pydicom.Dataset:
    """An NM TOMO object of a point source of 60000 counts (module docstring), one window.

    Args:
        point_ras: The point (RAS mm).
        starts: Start Angle of each detector (DICOM degrees); the first is the rotation's.
        step, views, direction: Angular Step, views per detector, Rotation Direction.
        rows_cols: Frame size (axial, lateral); swapped for ``"transposed"``.
        spacing: Pixel size (mm).
        axis: RAS position of the rotation axis at the bottom row (mm).
        orientation: ``"camera"`` (head up, as seen from the detector), ``"mirrored"`` (columns
            reversed), ``"feet-up"`` (rows reversed) or ``"transposed"`` (rows run laterally,
            columns from head to feet), written in Image Orientation (Patient); ``"none"``: as
            ``"camera"`` without Image Orientation / Position.
        cor_mm: Center of Rotation Offset: the axis projects this far right of the frame centre.
    """
    rows, cols = rows_cols[::-1] if orientation == "transposed" else rows_cols
    sign = -1.0 if direction == "CW" else 1.0
    up = np.array([0.0, 0.0, 1.0])
    frames, items = [], []
    for a0 in starts:
        r, c = viewer_right(a0), -up
        if orientation == "mirrored":
            r = -r
        elif orientation == "feet-up":
            c = up
        elif orientation == "transposed":
            r, c = -up, viewer_right(a0)
        lateral, axial = (c, r) if orientation == "transposed" else (r, c)
        n_lat, n_ax = (rows, cols) if orientation == "transposed" else (cols, rows)
        first_z = axis[2] + (n_ax - 1) * spacing * (axial @ up < 0)
        centre = (n_lat - 1) / 2 * spacing + cor_mm  # the axis projects cor_mm right of it
        ipp0 = np.array([axis[0], axis[1], first_z]) - centre * lateral
        for k in range(views):
            a = a0 + sign * step * k
            rk, ck = _turn(r, a0, a), _turn(c, a0, a)
            ipp = np.asarray(axis) + _turn(ipp0 - np.asarray(axis), a0, a)
            d = np.asarray(point_ras) - ipp
            frame = np.zeros((rows, cols))
            i, j = d @ ck / spacing, d @ rk / spacing
            if orientation == "transposed":
                frame = frame.T
                _splat(frame, j, i, 60000.0)
                frame = frame.T
            else:
                _splat(frame, i, j, 60000.0)
            frames.append(frame)
        det = pydicom.Dataset()
        det.StartAngle = f"{a0:g}"
        det.RadialPosition = "200"
        det.CollimatorGridName = "LEHR"
        det.CollimatorType = "PARA"
        det.CenterOfRotationOffset = f"{cor_mm:g}"
        if orientation != "none":
            det.ImageOrientationPatient = _ds((*(r * [-1, -1, 1]), *(c * [-1, -1, 1])))
            det.ImagePositionPatient = _ds(ipp0 * [-1, -1, 1])
        items.append(det)
    ds = nm_header("TOMO", len(frames), rows, cols, spacing)
    ds.DetectorInformationSequence = items
    ds.NumberOfDetectors = len(starts)
    ds.EnergyWindowVector = [1] * len(frames)
    ds.DetectorVector = np.repeat(np.arange(1, len(starts) + 1), views).tolist()
    ds.RotationVector = [1] * len(frames)
    ds.AngularViewVector = np.tile(np.arange(1, views + 1), len(starts)).tolist()
    rot = pydicom.Dataset()
    rot.StartAngle, rot.AngularStep = f"{starts[0]:g}", f"{step:g}"
    rot.RotationDirection = direction
    rot.ScanArc, rot.ActualFrameDuration = f"{views * step:g}", 20000
    rot.NumberOfFramesInRotation = views
    ds.RotationInformationSequence = [rot]
    ds.PixelData = np.round(np.stack(frames)).astype("<u2").tobytes()
    return ds


def nm_header(kind: str, frames: int, rows: int, cols: int, spacing: float) -> pydicom.Dataset:
    """An NM multi-frame object of Image Type ``kind`` without detectors, rotations or pixels."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = NM
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.Modality = NM, "NM"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.4.5"
    ds.PatientID = "P1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "EMISSION"]
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, rows, cols
    ds.FrameIncrementPointer = [0x00540010, 0x00540020, 0x00540050, 0x00540090]
    ds.NumberOfEnergyWindows, ds.NumberOfRotations = 1, 1
    window, limits = pydicom.Dataset(), pydicom.Dataset()
    limits.EnergyWindowLowerLimit, limits.EnergyWindowUpperLimit = "143.1", "174.9"
    window.EnergyWindowRangeSequence, window.EnergyWindowName = [limits], "EM"
    ds.EnergyWindowInformationSequence = [window]
    ds.PixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    return ds


def save(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """``dciodvfy``'s error lines for ``path`` (it must recognise an NM image)."""
    assert shutil.which("dciodvfy"), "dciodvfy (dicom3tools) is not installed"
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    text = run.stdout + run.stderr
    assert "NMImage" in text, text
    return [line for line in text.splitlines() if line.startswith("Error")]
