"""``fastdat quantify`` on NIfTI and DICOM images, with a normal database, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from fastdat.cli import main


def _nifti(path, volume, voxel_mm, flip_x=False):
    import nibabel as nib

    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    if flip_x:  # stored left-to-right: the reader must reorient it to RAS
        volume, aff[0, 0] = volume[::-1], -voxel_mm
    nib.save(nib.Nifti1Image(volume.astype(np.float32), aff), path)
    return path


def _rows(path):
    with open(path) as f:
        return {r["image"]: r for r in csv.DictReader(f)}


def test_quantify_nifti_and_dicom_with_grades(tmp_path, striatal_phantom, capsys):
    from fastdat.io.dicom_write import write_nm_volume

    ph = striatal_phantom
    blurred = ndimage.gaussian_filter(ph.activity, 12 / 2.3548 / ph.voxel_mm) * 100
    lesion = blurred.copy()  # the right putamen emptied: an abnormal striatum
    put_r = ndimage.binary_dilation(np.isin(ph.labels, (4, 6)), iterations=2)
    lesion[put_r] = blurred[~put_r & (ph.activity > 0.9)].mean()
    src = tmp_path / "in"
    (src / "dicom").mkdir(parents=True)
    _nifti(src / "normal.nii.gz", blurred, ph.voxel_mm)
    _nifti(src / "lesion_flipped.nii.gz", lesion, ph.voxel_mm, flip_x=True)
    aff = np.diag([ph.voxel_mm] * 3 + [1.0])
    write_nm_volume(
        blurred,
        aff,
        src / "dicom" / "nm.dcm",
        patient_id="P1",
        study_uid="1.2.3.4",
        series_description="DaTscan",
    )
    normals = tmp_path / "normals.json"
    normals.write_text(
        json.dumps(
            {
                "mean": {"putamen": 2.0, "caudate": 3.0},
                "sd": {"putamen": 0.3, "caudate": 0.4},
                "n": 30,
                "rule": {"normal_z": -2.0, "absent_z": -4.0, "caudate_z": -4.0},
            }
        )
    )
    out = tmp_path / "q"
    assert main(["quantify", str(src), "--out", str(out), "--normals", str(normals)]) == 0
    rows = _rows(out / "sbr.csv")
    assert set(rows) == {"normal.nii.gz", "lesion_flipped.nii.gz", "dicom"}
    n, les, dcm = rows["normal.nii.gz"], rows["lesion_flipped.nii.gz"], rows["dicom"]
    assert all(r["status"] == "ok" for r in rows.values())
    # blur lowers the VOI SBR below the true 3 (putamen); DICOM (uint16) matches NIfTI closely
    assert 0.5 < float(n["putamen_left"]) < 3.0
    assert float(dcm["putamen_left"]) == pytest.approx(float(n["putamen_left"]), rel=0.01)
    # the lesion is on the subject's right even though the file was stored flipped
    assert float(les["putamen_right"]) < 0.3 * float(les["putamen_left"])
    assert float(les["asymmetry_putamen"]) > 100
    assert int(les["grade_right"]) >= 2 and int(les["grade_left"]) <= 1
    assert (out / "vois" / "normal.nii.gz.png").stat().st_size > 10_000
    assert "putamen L/R" in capsys.readouterr().out
    # never overwritten
    assert main(["quantify", str(src), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_quantify_reports_an_image_without_striatum(tmp_path, capsys):
    rng = np.random.default_rng(0)
    bad = _nifti(tmp_path / "noise.nii", rng.random((40, 40, 30)), 4.0)
    assert main(["quantify", str(bad), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "noise.nii" in err and "no recognisable striatum" in err
    rows = _rows(tmp_path / "q" / "sbr.csv")
    assert rows["noise.nii"]["status"] == "error"


def test_quantify_bad_paths_and_normals(tmp_path, capsys):
    assert main(["quantify", str(tmp_path / "missing.nii"), "--out", str(tmp_path / "q")]) == 2
    assert "missing.nii" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["quantify", str(tmp_path / "empty"), "--out", str(tmp_path / "q2")]) == 2
    assert "no NIfTI image or NM DICOM series" in capsys.readouterr().err
    img = _nifti(tmp_path / "x.nii", np.ones((20, 20, 20)), 4.0)
    bad = tmp_path / "normals.json"
    bad.write_text(json.dumps({"mean": {"putamen": 2.0}, "sd": {"putamen": 0.0}, "n": 3}))
    assert main(["quantify", str(img), "--out", str(tmp_path / "q3"), "--normals", str(bad)]) == 2
    assert "normals.json" in capsys.readouterr().err
