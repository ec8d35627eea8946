from __future__ import annotations

import copy
import csv

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid
from scipy import ndimage

from fastdat.cli import main
from fastdat.data import load_crops
from fastdat.io.dicom_write import write_nm_volume

ARGS = ["--slices", "3", "--crop", "24", "--split", "2,1,1"]


def _export(cohort, root, rows, kinds=("5min", "25min")):
    """Write the cohort's reconstructions as NM multi-frame DICOM, one folder per study."""
    for r in rows:
        study_uid = generate_uid()
        for kind in kinds:
            img = nib.load(cohort / r[f"recon_{kind}"])
            d = root / r["patient_id"]
            d.mkdir(parents=True, exist_ok=True)
            write_nm_volume(
                np.asarray(img.dataobj),
                img.affine,
                d / f"{kind}.dcm",
                patient_id=r["patient_id"],
                study_uid=study_uid,
                series_description=f"DaTscan {kind}",
                duration_s=60.0 * float(kind[:-3]),
            )


def _manifest(cohort):
    with open(cohort / "manifest.csv") as f:
        return list(csv.DictReader(f))


def test_round_trip_simulated_study_through_dicom(cohort, tmp_path):
    rows = _manifest(cohort)
    _export(cohort, tmp_path / "dicom", rows)
    assert (
        main(["dataset", "build", "--from", str(cohort), "--out", str(tmp_path / "sim"), *ARGS])
        == 0
    )
    assert (
        main(
            [
                "dataset",
                "build",
                "--dicom",
                str(tmp_path / "dicom"),
                "--out",
                str(tmp_path / "dcm"),
                *ARGS,
            ]
        )
        == 0
    )
    a, ia = load_crops(tmp_path / "sim")
    b, ib = load_crops(tmp_path / "dcm")
    assert len(ia) == len(ib) == 12
    for patient in ia["patient_id"].unique():
        ra = ia[ia["patient_id"] == patient]["crop_id"].to_numpy()
        rb = ib[ib["patient_id"] == patient]["crop_id"].to_numpy()
        for kind in ("5min", "25min"):
            tol = 1.5 * a[kind][ra].max() / 65535  # uint16 storage with a rescale slope
            np.testing.assert_allclose(b[kind][rb], a[kind][ra], atol=tol)


def test_mixed_folder_reports_every_left_out_file(cohort, tmp_path, capsys, build_cli):
    rows = _manifest(cohort)
    root = tmp_path / "dicom"
    _export(cohort, root, rows[:1])  # a good study
    _export(cohort, root, rows[1:2], kinds=("25min",))  # only one duration
    # a good study whose 5-min series has other voxels (10 mm instead of 8 mm): resampled
    r = rows[2]
    uid = generate_uid()
    for kind, voxel in (("25min", 8.0), ("5min", 10.0)):
        img = nib.load(cohort / r[f"recon_{kind}"])
        vol = np.asarray(img.dataobj)
        aff = img.affine.copy()
        if voxel != 8.0:
            vol = ndimage.zoom(vol, 8.0 / voxel, order=1)
            aff[:3, :3] *= voxel / 8.0
        d = root / "resampled"
        d.mkdir(exist_ok=True)
        write_nm_volume(
            vol,
            aff,
            d / f"{kind}.dcm",
            patient_id=r["patient_id"],
            study_uid=uid,
            series_description=kind,
            duration_s=60.0 * float(kind[:-3]),
        )
    # a study whose 5-min series is oblique (rotated 20 degrees about z): refused
    r = rows[3]
    uid = generate_uid()
    for kind in ("25min", "5min"):
        img = nib.load(cohort / r[f"recon_{kind}"])
        aff = img.affine.copy()
        if kind == "5min":
            c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
            aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ aff[:3, :3]
        d = root / "oblique"
        d.mkdir(exist_ok=True)
        write_nm_volume(
            np.asarray(img.dataobj),
            aff,
            d / f"{kind}.dcm",
            patient_id=r["patient_id"],
            study_uid=uid,
            series_description=kind,
            duration_s=60.0 * float(kind[:-3]),
        )
    # files that are not reconstructed NM tomograms
    good = pydicom.dcmread(root / rows[0]["patient_id"] / "25min.dcm")
    other = root / "other"
    other.mkdir()
    ct = copy.deepcopy(good)
    ct.Modality = "CT"
    ct.save_as(other / "ct.dcm")
    planar = copy.deepcopy(good)
    planar.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    planar.SeriesInstanceUID = generate_uid()
    planar.save_as(other / "planar.dcm")
    nopix = copy.deepcopy(good)
    del nopix.PixelData
    nopix.SeriesInstanceUID = generate_uid()
    nopix.save_as(other / "nopixels.dcm")
    (other / "corrupt.dcm").write_bytes(b"DICM" + bytes(200))
    out = tmp_path / "ds"
    assert build_cli("--dicom", root, out, "1,0,1") == 0
    text = capsys.readouterr().out
    for needle in (
        "ct.dcm",
        "modality CT",
        "planar.dcm",
        "Image Type STATIC",
        "nopixels.dcm",
        "no pixel data",
        "corrupt.dcm",
        "not a readable DICOM",
        "no 5min image",
        "orientation differs",
        "2 studies used",
    ):
        assert needle in text, needle
    crops, index = load_crops(out)
    assert sorted(index["patient_id"].unique()) == sorted(
        [rows[0]["patient_id"], rows[2]["patient_id"]]
    )
    # the resampled 5-min crops still look like the 25-min ones of the same study
    sel = index[index["patient_id"] == rows[2]["patient_id"]]["crop_id"].to_numpy()
    corr = np.corrcoef(crops["5min"][sel].ravel(), crops["25min"][sel].ravel())[0, 1]
    assert corr > 0.8


def test_nothing_usable_is_an_error(tmp_path, capsys):
    root = tmp_path / "dicom"
    root.mkdir()
    (root / "a.dcm").write_bytes(b"junk")
    assert main(["dataset", "build", "--dicom", str(root), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "no studies found" in err and "a.dcm" in err
    assert not (tmp_path / "ds").exists()


def _strip_durations(path, description):
    ds = pydicom.dcmread(path)
    del ds.RotationInformationSequence
    ds.SeriesDescription = description
    ds.save_as(path)
    return str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)


def test_pairing_by_description_or_user_csv(cohort, tmp_path):
    rows = _manifest(cohort)[:2]
    root = tmp_path / "dicom"
    _export(cohort, root, rows)
    # study 1: no duration tags, the minutes are in the Series Description
    d1 = root / rows[0]["patient_id"]
    _strip_durations(d1 / "5min.dcm", "DaTSCAN SPECT 5 min")
    _strip_durations(d1 / "25min.dcm", "DaTSCAN SPECT 25-min")
    # study 2: nothing says which is which: without --pairs it cannot be used
    d2 = root / rows[1]["patient_id"]
    uids = {k: _strip_durations(d2 / f"{k}.dcm", "DaTSCAN") for k in ("5min", "25min")}
    common = ["--slices", "3", "--crop", "24", "--split", "1,0,1"]
    assert (
        main(["dataset", "build", "--dicom", str(root), "--out", str(tmp_path / "a"), *common]) == 0
    )
    _, index = load_crops(tmp_path / "a")
    assert set(index["patient_id"]) == {rows[0]["patient_id"]}
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "study_uid,series_uid,kind\n"
        + "".join(f"{study},{series},{k}\n" for k, (series, study) in uids.items())
    )
    assert (
        main(
            [
                "dataset",
                "build",
                "--dicom",
                str(root),
                "--pairs",
                str(pairs),
                "--out",
                str(tmp_path / "b"),
                *common,
            ]
        )
        == 0
    )
    _, index = load_crops(tmp_path / "b")
    assert set(index["patient_id"]) == {r["patient_id"] for r in rows}
