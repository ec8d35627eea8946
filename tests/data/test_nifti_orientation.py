"""``fastdat dataset build --nifti``: files stored in any orientation give the RAS+ files' crops.

The issue: the NIfTI dataset reader used the stored array as it was, so a file with an LPS or a
mirrored affine was cropped in another orientation than ``fastdat denoise`` and ``fastdat
quantify`` (which reorient to RAS+) see it: a right-sided deficit landed on the crop's left.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject
from fastdat.data import load_crops
from fastdat.data.dataset import (
    DatasetConfig,
    StudySource,
    build_dataset,
    sources_from_nifti,
)
from fastdat.io.nifti import read_volume

CFG = DatasetConfig(n_slices=3, crop=24)
SHAPE, VOXEL = (32, 32, 20), 8.0
KINDS = ("5min", "25min", "labels")
# study -> (grade_left, grade_right): one right-sided and one left-sided deficit
STUDIES = {"s_right_loss": (0, 3), "s_left_loss": (3, 0)}
SPLITS = {"s_right_loss": "train", "s_left_loss": "test"}


def _study(seed: int, left: int, right: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RAS+ volumes of one phantom study (25 min smooth, 5 min noisy, labels) and its affine."""
    rng = np.random.default_rng(seed)
    subject = sample_subject(rng, PhantomConfig(), left, right, 65.0, "F")
    ph = make_phantom(subject, SHAPE, VOXEL, PhantomConfig(supersample=1))
    long = ndimage.gaussian_filter(ph.activity.astype(np.float32), 12.0 / 2.355 / VOXEL)
    noise = rng.normal(0.0, 0.1 * long.max(), SHAPE).astype(np.float32)
    short = np.clip(long + noise, 0.0, None)
    vols = {"25min": long, "5min": short, "labels": ph.labels.astype(np.int16)}
    return vols, np.asarray(ph.affine, dtype=np.float64)


def _flip(axes: tuple[int, ...]) -> np.ndarray:
    """Voxel -> voxel matrix of an array reversed along ``axes``."""
    m = np.eye(4)
    for a in axes:
        m[a, a], m[a, 3] = -1.0, SHAPE[a] - 1
    return m


# how each variant stores the RAS+ array: the axes it reverses (the affine says so)
STORAGE = {"ras": (), "lps": (0, 1), "mirrored": (0,)}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, object]:
    """The same studies written as ``ROOT/<study>/<kind>.nii.gz`` in each storage order."""
    base = tmp_path_factory.mktemp("orient")
    studies = {
        sid: _study(seed, *grades) for seed, (sid, grades) in enumerate(STUDIES.items(), start=1)
    }
    out = {}
    for variant, axes in STORAGE.items():
        root = base / variant
        for sid, (vols, affine) in studies.items():
            (root / sid).mkdir(parents=True)
            for kind, vol in vols.items():
                idx = tuple(slice(None, None, -1) if a in axes else slice(None) for a in range(3))
                img = nib.Nifti1Image(np.ascontiguousarray(vol[idx]), affine @ _flip(axes))
                nib.save(img, root / sid / f"{kind}.nii.gz")
        out[variant] = root
    return out


def _build(sources, out):
    return build_dataset(sources, out, CFG, {"kind": "test"}, splits=SPLITS, progress=False)


def _left_over_right(crops: np.ndarray) -> float:
    """Uptake in the crops' low-x half over the high-x half (axis 1 is x: left -> right)."""
    half = crops.shape[1] // 2
    return float(crops[:, :half].sum() / crops[:, half:].sum())


@pytest.fixture(scope="module")
def built(roots, tmp_path_factory) -> dict[str, tuple[dict, object]]:
    out = {}
    for variant, root in roots.items():
        ds = _build(
            sources_from_nifti(root, ("5min", "25min")), tmp_path_factory.mktemp(variant) / "ds"
        )
        out[variant] = load_crops(ds)
    return out


def test_stored_arrays_really_differ(roots):
    """Not vacuous: the LPS and mirrored files hold other arrays than the RAS ones."""
    ras = np.asarray(nib.load(roots["ras"] / "s_right_loss" / "25min.nii.gz").dataobj)
    for variant in ("lps", "mirrored"):
        stored = np.asarray(nib.load(roots[variant] / "s_right_loss" / "25min.nii.gz").dataobj)
        assert stored.shape == ras.shape and not np.allclose(stored, ras)


@pytest.mark.parametrize("variant", ["lps", "mirrored"])
def test_flipped_affines_give_the_ras_crops(built, variant):
    crops, index = built["ras"]
    other, other_index = built[variant]
    assert set(other) == set(crops) == {"5min", "25min"}
    for kind in crops:
        np.testing.assert_allclose(
            other[kind], crops[kind], rtol=1e-6, atol=1e-6 * crops[kind].max()
        )
    assert list(other_index["slice"]) == list(index["slice"])
    assert list(other_index["study_id"]) == list(index["study_id"])


def test_the_deficit_is_on_its_side(built):
    """The right-sided deficit is in the crops' right (high x) half, the left-sided in the left."""
    for variant in STORAGE:
        crops, index = built[variant]
        for sid, side in (("s_right_loss", "right"), ("s_left_loss", "left")):
            rows = (index["study_id"] == sid).to_numpy()
            ratio = _left_over_right(crops["25min"][rows])
            assert ratio > 1.15 if side == "right" else ratio < 1 / 1.15, (variant, sid, ratio)


def test_truth_labels_are_located_alike(roots, tmp_path):
    """The label volumes are reoriented too: the recorded truth centres agree."""
    import csv

    centres = {}
    for variant, root in roots.items():
        if variant == "lps":
            continue
        ds = _build(sources_from_nifti(root, ("5min", "25min")), tmp_path / variant)
        with open(ds / "studies.csv") as f:
            centres[variant] = [
                (r["study_id"], r["truth_centre_i"], r["truth_centre_j"], r["corner_i"])
                for r in csv.DictReader(f)
            ]
    assert centres["mirrored"] == centres["ras"]


def _raw(path):
    """The old reader: the stored array as it is (no reorientation)."""

    def load():
        data, affine = read_volume(path)
        return data.astype(np.float32), float(abs(affine[0, 0]))

    return load


def test_without_reorientation_the_crops_would_be_mirrored(roots, built, tmp_path):
    """What the fix changes: read as stored, the mirrored files give mirrored crops, the deficit
    on the wrong side; read by the dataset builder, they give the RAS crops."""
    root = roots["mirrored"]
    sources = [
        StudySource(
            study_id=sid,
            patient_id=sid,
            loaders={k: _raw(root / sid / f"{k}.nii.gz") for k in ("5min", "25min")},
        )
        for sid in STUDIES
    ]
    raw, raw_index = load_crops(_build(sources, tmp_path / "raw"))
    crops, _ = built["ras"]
    assert not np.allclose(raw["25min"], crops["25min"], atol=1e-3 * crops["25min"].max())
    rows = (raw_index["study_id"] == "s_right_loss").to_numpy()
    assert _left_over_right(raw["25min"][rows]) < 1 / 1.15  # the right deficit shows on the left
