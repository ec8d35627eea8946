from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject
from fastdat.cli import main
from fastdat.data import load_crops
from fastdat.data.dataset import DatasetConfig, StudySource, build_dataset

SMALL = DatasetConfig(n_slices=3, crop=24)


@pytest.fixture(scope="module")
def dataset(cohort, tmp_path_factory, build_cli):
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert build_cli("--from", cohort, out, "2,1,1") == 0
    return out


def test_crops_index_and_splits(dataset):
    crops, index = load_crops(dataset)
    assert set(crops) == {"5min", "25min", "truth"}
    assert all(a.shape == (12, 24, 24) and a.dtype == np.float32 for a in crops.values())
    assert list(index["crop_id"]) == list(range(12))
    assert index.groupby("study_id").size().tolist() == [3, 3, 3, 3]
    # one split per patient; sizes 2 / 1 / 1 patients
    assert index.groupby("patient_id")["split"].nunique().max() == 1
    per_split = index.groupby("split")["patient_id"].nunique().to_dict()
    assert per_split == {"train": 2, "val": 1, "test": 1}
    splits = json.loads((dataset / "splits.json").read_text())["patients"]
    assert {r.patient_id: r.split for r in index.itertuples()} == splits
    for name in ("config.yaml", "overview.png", "studies.csv"):
        assert (dataset / name).stat().st_size > 0


def test_crops_are_the_volumes_at_the_recorded_place(dataset, cohort):
    crops, index = load_crops(dataset)
    with open(dataset / "studies.csv") as f:
        study = next(csv.DictReader(f))
    vol = np.asarray(nib.load(cohort / f"studies/{study['study_id']}/recon_5min.nii.gz").dataobj)
    i0, j0 = int(study["corner_i"]), int(study["corner_j"])
    rows = index[index["study_id"] == study["study_id"]]
    for r in rows.itertuples():
        np.testing.assert_array_equal(
            crops["5min"][r.crop_id], vol[i0 : i0 + 24, j0 : j0 + 24, r.slice]
        )
    # the 5-min crops are about 1x the 25-min ones (same units, counts / s)
    ratio = crops["5min"].sum() / crops["25min"].sum()
    assert 0.9 < ratio < 1.1


def test_same_config_kept_different_refused(dataset, cohort, capsys):
    before = (dataset / "crops_5min.npy").stat().st_mtime_ns
    args = [
        "dataset",
        "build",
        "--from",
        str(cohort),
        "--out",
        str(dataset),
        "--slices",
        "3",
        "--crop",
        "24",
        "--split",
        "2,1,1",
    ]
    assert main(args) == 0
    assert (dataset / "crops_5min.npy").stat().st_mtime_ns == before
    assert main([*args[:-1], "1,1,2"]) == 2
    assert "different config" in capsys.readouterr().err


def test_nifti_folder_and_csv_give_the_same_crops(dataset, cohort, tmp_path):
    crops, index = load_crops(dataset)
    root = tmp_path / "nifti"
    rows = []
    with open(cohort / "manifest.csv") as f:
        for r in csv.DictReader(f):
            d = root / r["study_id"]
            d.mkdir(parents=True)
            for kind in ("5min", "25min"):
                (d / f"{kind}.nii.gz").write_bytes((cohort / r[f"recon_{kind}"]).read_bytes())
            rows.append(
                {
                    "study_id": r["study_id"],
                    "patient_id": r["patient_id"],
                    "5min": f"{r['study_id']}/5min.nii.gz",
                    "25min": f"{r['study_id']}/25min.nii.gz",
                    "grade_left": r["grade_left"],
                    "grade_right": r["grade_right"],
                }
            )
    with open(root / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # the CSV names the patients, so the simulated dataset's splits can be reused as they are;
    # a bare folder knows no patients (patient = study), so its splits are drawn anew
    reuse = ["--splits", str(dataset / "splits.json")]
    draw = ["--split", "2,1,1"]
    cases = ((root / "pairs.csv", tmp_path / "a", reuse), (root, tmp_path / "b", draw))
    for src, out, how in cases:
        args = ["--nifti", str(src), "--out", str(out), "--slices", "3", "--crop", "24", *how]
        assert main(["dataset", "build", *args]) == 0
        other, other_index = load_crops(out)
        assert set(other) == {"5min", "25min"}
        np.testing.assert_array_equal(other["5min"], crops["5min"])
        np.testing.assert_array_equal(other["25min"], crops["25min"])
        if how is reuse:
            assert list(other_index["split"]) == list(index["split"])


def test_unusable_studies_are_skipped_with_reasons(tmp_path, capsys, build_cli):
    root = tmp_path / "nifti"
    good = np.zeros((32, 32, 20), np.float32)
    for name, files in {
        "ok_a": ("5min", "25min"),
        "ok_b": ("5min", "25min"),
        "only_long": ("25min",),
        "corrupt": ("5min", "25min"),
    }.items():
        d = root / name
        d.mkdir(parents=True)
        for kind in files:
            nib.save(nib.Nifti1Image(good, np.diag([8.0, 8, 8, 1])), d / f"{kind}.nii.gz")
    (root / "corrupt" / "5min.nii.gz").write_bytes(b"not a nifti")
    # give the good studies a head to find
    head = _scan(1)
    for name in ("ok_a", "ok_b"):
        for kind in ("5min", "25min"):
            nib.save(nib.Nifti1Image(head, np.diag([8.0, 8, 8, 1])), root / name / f"{kind}.nii.gz")
    out = tmp_path / "ds"
    assert build_cli("--nifti", root, out, "1,0,1") == 0
    text = capsys.readouterr().out
    assert "skipped only_long" in text and "no 5min image" in text
    assert "skipped corrupt" in text and "not a readable NIfTI" in text
    assert "2 studies used, 2 skipped" in text
    # nothing usable: non-zero exit, no dataset left behind
    bad = tmp_path / "bad"
    (bad / "s1").mkdir(parents=True)
    (bad / "s1" / "25min.nii.gz").write_bytes((root / "ok_a" / "25min.nii.gz").read_bytes())
    assert main(["dataset", "build", "--nifti", str(bad), "--out", str(tmp_path / "ds2")]) == 2
    assert "no usable study" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()


def _scan(seed, left=0, right=0, shape=(32, 32, 20), voxel=8.0):
    rng = np.random.default_rng(seed)
    subject = sample_subject(rng, PhantomConfig(), left, right, 65.0, "F")
    act = make_phantom(subject, shape, voxel, PhantomConfig(supersample=1)).activity
    return ndimage.gaussian_filter(act.astype(np.float32), 12.0 / 2.355 / voxel)


def test_paper_sized_cohort_gives_600_185_250_crops(tmp_path):
    """207 patients with the paper's grade mix -> exactly 600 / 185 / 250 crops."""
    vol = _scan(2)
    rng = np.random.default_rng(0)
    grades = rng.choice(4, size=207, p=[0.4, 0.15, 0.3, 0.15])
    sources = [
        StudySource(
            study_id=f"s{i:03d}",
            patient_id=f"p{i:03d}",
            loaders={"5min": lambda: (vol, 8.0), "25min": lambda: (vol, 8.0)},
            grade_left=int(g),
            grade_right=int(g),
        )
        for i, g in enumerate(grades)
    ]
    out = build_dataset(
        sources, tmp_path / "ds", DatasetConfig(crop=24), {"kind": "test"}, progress=False
    )
    _, index = load_crops(out)
    assert index.groupby("split").size().to_dict() == {"test": 250, "train": 600, "val": 185}
    assert index.groupby("patient_id")["split"].nunique().max() == 1
