"""``fastdat.io.image.read_image``: one RAS+ array for a volume however its file stores it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from fastdat.io.dicom import DicomInputError
from fastdat.io.dicom_write import write_nm_volume
from fastdat.io.image import read_image

SHAPE = (9, 11, 7)  # unequal on purpose: a swapped axis changes the shape
VOXEL = (2.0, 2.5, 3.0)  # unequal on purpose: a swapped axis changes the voxel sizes
RAS_AFFINE = np.array(
    [
        [VOXEL[0], 0.0, 0.0, -10.0],
        [0.0, VOXEL[1], 0.0, 20.0],
        [0.0, 0.0, VOXEL[2], -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _volume() -> np.ndarray:
    """Non-negative ``(X, Y, Z)`` values with a hot spot in the left-posterior-inferior corner."""
    vol = np.random.default_rng(0).random(SHAPE).astype(np.float32) * 10.0
    vol[1, 2, 1] = 100.0
    return vol


def _flip(axes: tuple[int, ...]) -> np.ndarray:
    """Voxel -> voxel matrix of an array reversed along ``axes``."""
    m = np.eye(4)
    for a in axes:
        m[a, a], m[a, 3] = -1.0, SHAPE[a] - 1
    return m


def _stored(kind: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """The same object stored as ``kind``: (array, affine, stored index of RAS voxel (1, 2, 1))."""
    ras = _volume()
    if kind == "ras":
        return ras, RAS_AFFINE, (1, 2, 1)
    if kind == "lps":  # x and y reversed, the affine says so
        return ras[::-1, ::-1].copy(), RAS_AFFINE @ _flip((0, 1)), (SHAPE[0] - 2, SHAPE[1] - 3, 1)
    if kind == "mirrored":  # x reversed, negative x column
        return ras[::-1].copy(), RAS_AFFINE @ _flip((0,)), (SHAPE[0] - 2, 2, 1)
    if kind == "permuted":  # stored (Y, X, Z)
        return ras.transpose(1, 0, 2).copy(), RAS_AFFINE[:, [1, 0, 2, 3]], (2, 1, 1)
    raise AssertionError(kind)


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize("kind", ["ras", "lps", "mirrored", "permuted"])
def test_any_stored_orientation_gives_the_ras_array(tmp_path, kind):
    data, affine, hot = _stored(kind)
    if kind != "ras":  # the files really differ: a reader that ignores the affine would differ
        assert data.shape != SHAPE or not np.array_equal(data, _volume())
    assert data[hot] == 100.0
    image = read_image(_save(tmp_path / f"{kind}.nii.gz", data, affine))
    np.testing.assert_array_equal(image.data, _volume())
    assert image.data.dtype == np.float64 and image.shape == SHAPE
    np.testing.assert_allclose(image.affine, RAS_AFFINE, atol=1e-5)
    assert image.voxel_mm == pytest.approx(VOXEL)
    # a voxel maps to the same mm point through either array and its affine
    ras_point = image.affine @ [1, 2, 1, 1]
    np.testing.assert_allclose(ras_point, affine @ [*hot, 1], atol=1e-5)
    np.testing.assert_allclose(ras_point, RAS_AFFINE @ [1, 2, 1, 1], atol=1e-5)
    # the stored array and affine are kept, to write results back in the input's orientation
    np.testing.assert_allclose(image.native_affine, affine, atol=1e-5)
    np.testing.assert_array_equal(image.to_native(image.data), data)
    assert image.source == str(tmp_path / f"{kind}.nii.gz") and image.series is None


def test_x_is_left_to_right_as_in_the_rest_of_fastdat(tmp_path):
    """RAS+: index 0 runs from the subject's left (negative x mm) to the right."""
    data, affine, _ = _stored("mirrored")
    image = read_image(_save(tmp_path / "m.nii.gz", data, affine))
    assert image.affine[0, 0] > 0 and image.affine[1, 1] > 0 and image.affine[2, 2] > 0


def test_dicom_reads_as_the_nifti_of_the_same_volume(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    path = write_nm_volume(
        _volume(),
        RAS_AFFINE,
        folder / "nm.dcm",
        patient_id="P1",
        study_uid="1.2.3.4",
        series_description="DaT 25 min",
    )
    lps, lps_affine, _ = _stored("lps")
    nifti = read_image(_save(tmp_path / "lps.nii.gz", lps, lps_affine))
    for source in (path, folder):
        image = read_image(source)
        assert image.shape == SHAPE and image.series is not None
        assert image.source == str(source)
        np.testing.assert_allclose(image.affine, nifti.affine, atol=1e-3)
        assert image.voxel_mm == pytest.approx(VOXEL, abs=1e-4)
        # uint16 + Rescale Slope: equal to the slope's quantisation
        np.testing.assert_allclose(image.data, nifti.data, atol=100.0 / 30000)
        assert np.unravel_index(np.argmax(image.data), SHAPE) == (1, 2, 1)
        # the series' stored (column, row, slice) grid puts the hot voxel at the same mm point
        native = image.to_native(image.data)
        hot = np.unravel_index(np.argmax(native), native.shape)
        np.testing.assert_allclose(
            image.native_affine @ [*hot, 1], image.affine @ [1, 2, 1, 1], atol=1e-3
        )


def test_dicom_folder_with_no_or_several_series_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no reconstructed NM DICOM series") as err:
        read_image(empty)
    assert str(empty) in str(err.value)
    two = tmp_path / "two"
    two.mkdir()
    for n in (1, 2):
        write_nm_volume(
            _volume(),
            RAS_AFFINE,
            two / f"nm{n}.dcm",
            patient_id="P1",
            study_uid="1.2.3.4",
            series_description=f"DaT {n}",
        )
    with pytest.raises(ValueError, match="holds 2 DICOM series") as err:
        read_image(two)
    assert str(two) in str(err.value)


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(FileNotFoundError, match="not found") as err:
        read_image(missing)
    assert str(missing) in str(err.value)
    flat = _save(tmp_path / "flat.nii.gz", np.ones((8, 8), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="expected a 3D volume") as err:
        read_image(flat)
    assert str(flat) in str(err.value)
    series = _save(tmp_path / "4d.nii.gz", np.ones((8, 8, 8, 3), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"expected a 3D volume, got shape \(8, 8, 8, 3\)") as err:
        read_image(series)
    assert str(series) in str(err.value)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a nifti at all")
    with pytest.raises(ValueError, match="not a readable NIfTI") as err:
        read_image(junk, "5min image")
    assert f"5min image {junk}" in str(err.value)
    text = tmp_path / "volume.txt"
    text.write_text("neither NIfTI nor DICOM")
    with pytest.raises(DicomInputError, match=r"not a readable DICOM file.*\.nii\.gz") as err:
        read_image(text)
    assert str(text) in str(err.value)


def test_isotropic_voxel_or_an_error_naming_the_file(tmp_path):
    image = read_image(_save(tmp_path / "a.nii.gz", _volume(), RAS_AFFINE))
    with pytest.raises(ValueError, match="voxels must be isotropic for the VOI template") as err:
        image.isotropic_mm(why="for the VOI template")
    assert str(tmp_path / "a.nii.gz") in str(err.value)
    cubic = np.diag([4.0, -4.0, 4.0, 1.0])
    assert read_image(_save(tmp_path / "c.nii.gz", _volume(), cubic)).isotropic_mm() == 4.0
