"""SPECT projection DICOM (NM TOMO): conventions from the standard, vendor layouts, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch
from proj_support import (
    TEW,
    dciodvfy_errors,
    detector_direction,
    make_set,
    nm_header,
    save,
    standard_tomo,
)

from fastdat.io.projection_dicom import (
    LAYOUTS,
    ProjectionError,
    projector_angle,
    read_projections,
    window_roles,
)
from fastdat.io.projection_write import write_projections
from fastdat.tomo.projector import SPECTProjector


def _same_set(back, ps) -> None:
    """``back`` (read) holds exactly ``ps`` (written), views in the same (angle) order."""
    assert torch.equal(back.counts, ps.counts)
    torch.testing.assert_close(back.angles_deg, ps.angles_deg, rtol=0, atol=1e-9)
    torch.testing.assert_close(back.radii_mm, ps.radii_mm, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(back.frame_s, ps.frame_s, rtol=0, atol=1e-9)
    assert back.bin_mm == pytest.approx(ps.bin_mm, rel=1e-12)
    assert back.axis_origin_mm == pytest.approx(ps.axis_origin_mm, abs=1e-6)
    assert back.windows == ps.windows
    assert (back.collimator, back.radionuclide) == (ps.collimator, ps.radionuclide)
    # the same views make up each head (the numbers follow the file's detector order)
    pairs = set(zip(ps.detectors.tolist(), back.detectors.tolist(), strict=True))
    assert len(pairs) == len(set(ps.detectors.tolist())) == len({b for _, b in pairs})


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rotation", ["CW", "CC"])
@pytest.mark.parametrize("head_order", [(1, 2), (2, 1)])
def test_round_trip(tmp_path, layout, rotation, head_order):
    """Counts per bin, angles, body-contour radii, durations, bins, windows and axis survive
    every layout, rotation direction and head order."""
    ps = make_set()
    files = write_projections(ps, tmp_path, layout, rotation=rotation, head_order=head_order)
    assert len(files) == (2 if layout == "ge" else 1)
    back = read_projections(files)
    _same_set(back, ps)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert first.RotationInformationSequence[0].RotationDirection == rotation
    # detector 1 of the (first) file is the head asked for first
    head1 = ps.angles_deg[ps.detectors == head_order[0]].numpy()
    assert float(projector_angle(first.RotationInformationSequence[0].StartAngle)) in head1


def test_layouts_store_the_geometry_where_their_vendors_do(tmp_path):
    ps = make_set(contour=True)
    (siemens,) = write_projections(ps, tmp_path / "s", "siemens")
    ge = write_projections(ps, tmp_path / "g", "ge")
    s = pydicom.dcmread(siemens, stop_before_pixels=True)
    assert s.NumberOfDetectors == 2 and s.NumberOfEnergyWindows == 3
    d1, d2 = s.DetectorInformationSequence
    assert (float(d1.StartAngle) - float(d2.StartAngle)) % 360 == pytest.approx(180)
    assert len(d1.RadialPosition) == 30 and "RadialPosition" not in s.RotationInformationSequence[0]
    assert s.RotationInformationSequence[0].RotationDirection == "CW"
    for path in ge:
        g = pydicom.dcmread(path, stop_before_pixels=True)
        assert g.NumberOfDetectors == 1 and "StartAngle" not in g.DetectorInformationSequence[0]
        assert "RadialPosition" not in g.DetectorInformationSequence[0]
        assert len(g.RotationInformationSequence[0].RadialPosition) == 30
        assert g.RotationInformationSequence[0].RotationDirection == "CC"
    circular = make_set(contour=False, bin_mm=(4.0, 4.8))  # non-square bins are kept
    (one,) = write_projections(circular, tmp_path / "c", "siemens")
    assert pydicom.dcmread(one).DetectorInformationSequence[0].RadialPosition == 180.0
    _same_set(read_projections(one), circular)


def test_folder_of_one_file_per_head_and_window_reassembles(tmp_path):
    ps = make_set(views_per_head=16, shape=(17, 11))
    files = write_projections(ps, tmp_path, "ge", per_window=True)
    assert len(files) == 6
    (tmp_path / "mu_map.nii.gz").write_bytes(b"not DICOM")  # skipped in a folder
    back = read_projections(tmp_path)
    _same_set(back, ps)
    assert [w.role for w in back.windows] == ["photopeak", "scatter-lower", "scatter-upper"]
    assert back.header.SOPInstanceUID == pydicom.dcmread(files[0]).SOPInstanceUID
    assert "PixelData" not in back.header
    # written again from what was read: same patient, study and frame, a new series
    (again,) = write_projections(back, tmp_path / "again", "siemens")
    ds = pydicom.dcmread(again, stop_before_pixels=True)
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert ds[keyword].value == back.header[keyword].value
    assert ds.SeriesInstanceUID != back.header.SeriesInstanceUID
    _same_set(read_projections(again), ps)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dciodvfy_finds_no_errors(tmp_path, layout):
    ps = make_set(views_per_head=8, shape=(16, 8))
    header = pydicom.Dataset()
    header.PatientID, header.PatientName, header.StudyInstanceUID = "P7", "Doe^J", "1.2.3.9"
    files = write_projections(ps.replace(header=header), tmp_path, layout)
    for path in files:
        assert dciodvfy_errors(path) == []
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
        assert ds.PatientID == "P7" and ds.StudyInstanceUID == "1.2.3.9"
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in files}) == 1


# --- the geometry, from the standard's definitions (proj_support.standard_tomo) ----------------

POINT = (10.0, 12.0, -8.0)  # RAS mm: right of, anterior to and above the axis at (6, -8, -20)


def _centroids(frames: torch.Tensor) -> np.ndarray:
    """``(V, 2)`` centroid (lateral bin, axial bin) of each view ``(V, S, Z)``."""
    f = frames.double()
    s = torch.arange(f.shape[1], dtype=torch.float64)[None, :, None]
    z = torch.arange(f.shape[2], dtype=torch.float64)[None, None, :]
    total = f.sum((1, 2))
    return torch.stack([(f * s).sum((1, 2)) / total, (f * z).sum((1, 2)) / total], 1).numpy()


def test_one_hot_pixel_in_the_standards_words(tmp_path):
    """One view from the patient's left (Start Angle 90), no Image Orientation: the camera's
    image seen from there, head up, has the patient's front on its left. Its top-left pixel is
    the most superior, most anterior bin: in the projector's frame view t = 270 (detector at
    -x), whose lateral axis (cos t, -sin t) = (0, 1) points anterior."""
    ds = nm_header("TOMO", 1, 5, 7, 4.0)
    det, rot = pydicom.Dataset(), pydicom.Dataset()
    det.RadialPosition = "150"
    rot.StartAngle, rot.AngularStep, rot.RotationDirection, rot.ScanArc = "90", "6", "CW", "6"
    rot.ActualFrameDuration, rot.NumberOfFramesInRotation = 10000, 1
    ds.DetectorInformationSequence, ds.RotationInformationSequence = [det], [rot]
    ds.NumberOfDetectors = 1
    ds.EnergyWindowVector = ds.DetectorVector = ds.RotationVector = ds.AngularViewVector = [1]
    frame = np.zeros((5, 7), dtype="<u2")
    frame[0, 0] = 7
    ds.PixelData = frame.tobytes()
    ps = read_projections(save(ds, tmp_path / "left.dcm"))
    assert ps.angles_deg.tolist() == [270.0] and ps.radii_mm.tolist() == [150.0]
    assert ps.frame_s.tolist() == [10.0] and ps.shape == (7, 5)
    assert torch.nonzero(ps.counts[0, 0]).tolist() == [[6, 4]]  # S - 1, Z - 1


@pytest.mark.parametrize("orientation", ["camera", "mirrored", "feet-up", "transposed", "none"])
@pytest.mark.parametrize("direction", ["CW", "CC"])
def test_point_source_lands_where_the_standard_puts_it(tmp_path, orientation, direction):
    """A point source in a file built from PS3.3 alone is read into the projector's frame: each
    view's angle is the detector's position, the point's bin is where the projector puts it."""
    ds = standard_tomo(POINT, direction=direction, orientation=orientation)
    ps = read_projections(save(ds, tmp_path / "p.dcm"))
    starts, sign = (100.0, 280.0), -1 if direction == "CW" else 1
    dicom = [a0 + sign * 30.0 * k for a0 in starts for k in range(6)]
    assert sorted(ps.angles_deg.tolist()) == pytest.approx(sorted(projector_angle(dicom)))
    for t, a in zip(projector_angle(dicom), dicom, strict=True):  # t is where the detector is
        assert [math.sin(math.radians(t)), math.cos(math.radians(t))] == pytest.approx(
            detector_direction(a)[:2], abs=1e-12
        )
    axis = (6.0, -8.0, -20.0) if orientation != "none" else (0.0, 0.0, -16.0)
    assert ps.axis_origin_mm == pytest.approx(axis, abs=1e-6)
    # where the projector's convention puts the point: s along (cos t, -sin t), z up
    t = torch.deg2rad(ps.angles_deg).numpy()
    rel = np.asarray(POINT) - np.array([6.0, -8.0, -20.0])
    s = (ps.shape[0] - 1) / 2 + (rel[0] * np.cos(t) - rel[1] * np.sin(t)) / 4.0
    got = _centroids(ps.counts[0])
    np.testing.assert_allclose(got[:, 0], s, atol=1e-4)  # counts are whole numbers
    np.testing.assert_allclose(got[:, 1], rel[2] / 4.0, atol=1e-4)
    # and the projector agrees: the same point in a grid centred on the axis
    n = ps.shape[0]
    obj = torch.zeros(n, n, ps.shape[1], dtype=torch.float64)
    c = (n - 1) / 2
    obj[round(c + rel[0] / 4), round(c + rel[1] / 4), round(rel[2] / 4)] = 1.0
    proj = SPECTProjector(
        n, ps.shape[1], 4.0, angles_deg=ps.angles_deg, collimator=None, dtype=torch.float64
    ).A(obj)
    np.testing.assert_allclose(_centroids(proj), got, atol=0.05)  # bilinear resampling


def test_center_of_rotation_offset_is_corrected(tmp_path):
    """The axis projects ``cor_mm`` right of the frame centre; the reader shifts it back."""
    plain = read_projections(save(standard_tomo(POINT), tmp_path / "a.dcm"))
    offset = read_projections(save(standard_tomo(POINT, cor_mm=4.0), tmp_path / "b.dcm"))
    raw = pydicom.dcmread(tmp_path / "b.dcm").pixel_array
    assert not np.array_equal(raw, pydicom.dcmread(tmp_path / "a.dcm").pixel_array)
    torch.testing.assert_close(offset.counts, plain.counts, atol=1e-3, rtol=0)
    assert offset.axis_origin_mm == pytest.approx(plain.axis_origin_mm, abs=1e-6)


def test_pytomography_reads_our_files_the_same_way(tmp_path):
    """PyTomography 3.4's reader (run apart: importing it silences warnings process-wide) sees
    view beta = our t and lateral bin S - 1 - s, radii in cm."""
    pytest.importorskip("pytomography")
    ps = make_set(views_per_head=8, shape=(12, 7))
    (path,) = write_projections(ps, tmp_path, "siemens", rotation="CC")
    script = (
        "import json, sys, pydicom, numpy as np\n"
        "from pytomography.io.SPECT.dicom import parse_projection_dataset\n"
        "p, a, r, _ = parse_projection_dataset(pydicom.dcmread(sys.argv[1]))\n"
        "np.save(sys.argv[2], p.cpu().numpy())\n"
        "print(json.dumps([a.tolist(), r.tolist()]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "p.npy")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    angles, radii_cm = json.loads(run.stdout.strip().splitlines()[-1])
    proj = np.load(tmp_path / "p.npy")[:, 0]  # (W, V, Lr, Lz)
    np.testing.assert_allclose(angles, ps.angles_deg.numpy(), atol=1e-9)
    np.testing.assert_allclose(np.asarray(radii_cm) * 10, ps.radii_mm.numpy(), rtol=1e-9)
    np.testing.assert_array_equal(proj, ps.counts.numpy()[:, :, ::-1, :])


# --- reading details --------------------------------------------------------------------------


def test_rescale_slope_is_applied(tmp_path):
    ds = standard_tomo(POINT)
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "0"
    half = read_projections(save(ds, tmp_path / "r.dcm"))
    full = read_projections(save(standard_tomo(POINT), tmp_path / "f.dcm"))
    torch.testing.assert_close(half.counts * 2, full.counts)


def test_pixel_spacing_without_the_zoom_is_reported(tmp_path, caplog):
    ds = standard_tomo(POINT)  # 17 x 9 pixels of 4 mm
    ds.DetectorInformationSequence[0].ZoomFactor = ["1.5", "1.5"]
    ds.DetectorInformationSequence[0].FieldOfViewDimensions = [100, 80]
    read_projections(save(ds, tmp_path / "fits.dcm"))
    assert "Zoom Factor" not in caplog.text  # 68 mm x 1.5 = 102 mm: within the field
    ds.DetectorInformationSequence[0].ZoomFactor = ["2", "2"]
    read_projections(save(ds, tmp_path / "zoom.dcm"))
    assert "may not include the zoom" in caplog.text


def test_compressed_pixel_data_is_decoded(tmp_path):
    from pydicom.uid import RLELossless

    ps = make_set(views_per_head=6, shape=(10, 7), contour=False)
    (path,) = write_projections(ps, tmp_path / "raw", "siemens")
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    _same_set(read_projections(save(ds, tmp_path / "rle.dcm")), ps)


def test_window_roles():
    limits = [(w.lower_kev, w.upper_kev) for w in TEW]
    assert window_roles(limits) == ["photopeak", "scatter-lower", "scatter-upper"]
    # the 28 keV x-ray window and a far window are not scatter windows; no photopeak: all other
    assert window_roles([(25.0, 31.0), (143.0, 175.0), (230.0, 250.0)]) == [
        "other",
        "photopeak",
        "other",
    ]
    assert window_roles([(126.0, 154.0), (110.0, 126.0)]) == ["other", "other"]


# --- errors -----------------------------------------------------------------------------------


def _refused(path, *fragments, named=None):
    """Reading ``path`` raises a ProjectionError naming ``named`` (default ``path``)."""
    with pytest.raises(ProjectionError) as caught:
        read_projections(path)
    message = str(caught.value)
    assert str(named or path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("STATIC", "planar"),
        ("WHOLE BODY", "whole-body"),
        ("DYNAMIC", "dynamic"),
        ("GATED", "gated"),
        ("GATED TOMO", "gated"),
        ("RECON TOMO", "reconstructed"),
    ],
)
def test_other_image_types_are_refused(tmp_path, kind, why):
    ds = nm_header(kind, 2, 4, 4, 4.0)
    ds.PixelData = bytes(2 * 4 * 4 * 2)
    _refused(save(ds, tmp_path / "x.dcm"), kind, why)


def _broken(name):
    """A valid point-source file with one defect."""
    ds = standard_tomo(POINT)
    if name == "rotation":
        del ds.RotationInformationSequence
    elif name == "detector":
        del ds.DetectorInformationSequence
    elif name == "vector-length":
        ds.AngularViewVector = ds.AngularViewVector[:-1]
    elif name == "vector-duplicate":
        ds.AngularViewVector = [1, 1, *list(ds.AngularViewVector)[2:]]
    elif name == "vector-range":
        ds.DetectorVector = [3] + list(ds.DetectorVector)[1:]
    elif name == "gated":
        ds.FrameIncrementPointer = [*ds.FrameIncrementPointer, 0x00540070]
    elif name == "no-start":
        del ds.DetectorInformationSequence[1].StartAngle
    elif name == "tilted":
        ds.DetectorInformationSequence[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    return ds


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("rotation", "Rotation Information Sequence"),
        ("detector", "Detector Information Sequence"),
        ("vector-length", "AngularViewVector has 11 values for 12 frames"),
        ("vector-duplicate", "disagree with the vectors"),
        ("vector-range", "DetectorVector values"),
        ("gated", "gated or dynamic"),
        ("no-start", "no Start Angle"),
        ("tilted", "contradict"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path, name, fragment):
    _refused(save(_broken(name), tmp_path / f"{name}.dcm"), fragment)


def test_truncated_files_are_refused(tmp_path):
    full = save(standard_tomo(POINT), tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(full[: len(full) - 100])  # inside the pixel data
    _refused(cut, "truncated")
    head = tmp_path / "head.dcm"
    head.write_bytes(full[:600])  # inside the header
    _refused(head, "truncated")


def test_files_of_two_acquisitions_are_refused(tmp_path):
    """Two series of one study in one folder: refused, naming the file of the second."""
    study = pydicom.Dataset()
    study.StudyInstanceUID = "1.2.3.10"
    ps = make_set(views_per_head=6, shape=(10, 7)).replace(header=study)
    write_projections(ps, tmp_path / "a", "ge")
    (other,) = write_projections(ps, tmp_path / "b", "ge", head_order=(2, 1))[:1]
    intruder = other.rename(tmp_path / "a" / "projections_head9.dcm")
    _refused(tmp_path / "a", "SeriesInstanceUID", "two acquisitions", named=intruder)


def test_a_head_missing_a_window_is_refused(tmp_path):
    ps = make_set(views_per_head=6, shape=(10, 7))
    files = write_projections(ps, tmp_path, "ge", per_window=True)
    files[4].unlink()  # head 2, window 2
    _refused(tmp_path, "SC_LOW", named=files[3])


# --- writing ----------------------------------------------------------------------------------


def test_writer_never_overwrites(tmp_path):
    ps = make_set(views_per_head=6, shape=(10, 7))
    (tmp_path / "projections_head2.dcm").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="projections_head2.dcm"):
        write_projections(ps, tmp_path, "ge")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["projections_head2.dcm"]
    assert (tmp_path / "projections_head2.dcm").read_bytes() == b"keep"


def test_writer_refuses_what_dicom_cannot_hold(tmp_path):
    ps = make_set(views_per_head=6, shape=(10, 7))
    with pytest.raises(ValueError, match="integers"):
        write_projections(ps.replace(counts=ps.counts + 0.5), tmp_path)
    uneven = ps.angles_deg.clone()
    uneven[1] += 1.0
    with pytest.raises(ValueError, match="not equally spaced"):
        write_projections(ps.replace(angles_deg=uneven), tmp_path)
    with pytest.raises(ValueError, match="layout"):
        write_projections(ps, tmp_path, "philips")
    with pytest.raises(ValueError, match="head_order"):
        write_projections(ps, tmp_path, head_order=(1, 3))
    assert not any(tmp_path.iterdir())
