from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from fastdat.io.dicom import (
    DicomInputError,
    Series,
    acquisition_duration_s,
    read_header,
    series_volume,
)
from fastdat.io.dicom_write import write_nm_volume


def _volume(shape=(12, 10, 8), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32) * 50.0


def _ras(shape, voxel=3.5, origin=(-20.0, -15.0, -10.0)):
    aff = np.diag([voxel, voxel, voxel, 1.0])
    aff[:3, 3] = origin
    return aff


def _series_of(paths, multiframe):
    heads = [read_header(p) for p in paths]
    h = heads[0]
    return Series(
        str(h.PatientID),
        str(h.StudyInstanceUID),
        str(h.SeriesInstanceUID),
        "",
        list(paths),
        heads,
        multiframe,
        acquisition_duration_s(h),
    )


def _write(tmp_path, vol, aff, name="v.dcm", **kw):
    return write_nm_volume(
        vol,
        aff,
        tmp_path / name,
        patient_id="P1",
        study_uid=generate_uid(),
        series_description="DaTscan 25min",
        duration_s=1500.0,
        **kw,
    )


def test_multiframe_round_trip(tmp_path):
    vol, aff = _volume(), _ras((12, 10, 8))
    path = _write(tmp_path, vol, aff)
    back, back_aff = series_volume(_series_of([path], True))
    np.testing.assert_allclose(back, vol, atol=vol.max() / 65535)
    np.testing.assert_allclose(back_aff, aff, atol=1e-4)
    assert acquisition_duration_s(read_header(path)) == pytest.approx(1500.0, abs=0.1)


def test_flipped_affine_comes_back_canonical(tmp_path):
    vol = _volume(seed=1)
    aff = _ras(vol.shape)
    las = aff.copy()
    las[0, 0] = -aff[0, 0]
    las[0, 3] = aff[0, 3] + aff[0, 0] * (vol.shape[0] - 1)  # same world box, x reversed
    path = _write(tmp_path, vol[::-1].copy(), las)
    back, back_aff = series_volume(_series_of([path], True))
    np.testing.assert_allclose(back_aff, aff, atol=1e-4)
    np.testing.assert_allclose(back, vol, atol=vol.max() / 65535)


def test_shuffled_frames_follow_the_slice_vector(tmp_path):
    vol, aff = _volume(seed=2), _ras((12, 10, 8))
    path = _write(tmp_path, vol, aff)
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.copy()  # (Z, rows, cols)
    perm = np.random.default_rng(0).permutation(frames.shape[0])
    ds.PixelData = np.ascontiguousarray(frames[perm]).tobytes()
    ds.SliceVector = [int(k) + 1 for k in perm]
    ds.save_as(path)
    back, _ = series_volume(_series_of([path], True))
    np.testing.assert_allclose(back, vol, atol=vol.max() / 65535)


def _slice_files(tmp_path, vol, voxel=3.5, spacing=None, shuffle=True):
    """A stack of single-slice NM RECON TOMO files, each with its own rescale slope."""
    study, series = generate_uid(), generate_uid()
    z_positions = (
        np.arange(vol.shape[2]) * (spacing or voxel)
        if spacing is None or np.isscalar(spacing)
        else np.asarray(spacing)
    )
    paths = []
    order = np.random.default_rng(1).permutation(vol.shape[2]) if shuffle else range(vol.shape[2])
    for n, k in enumerate(order):
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "NM", "P2"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.ImageType = ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"]
        ds.SeriesDescription = "DaT 5 min"
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]  # columns R->L, rows A->P (RAS grid)
        ds.ImagePositionPatient = [20.0, 15.0, -10.0 + float(z_positions[k])]
        ds.PixelSpacing = [voxel, voxel]
        slope = 0.001 * (k + 1)
        img = vol[:, :, k].T  # rows = y, cols = x
        ds.Rows, ds.Columns = img.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.PixelData = np.round(img / slope).astype(np.uint16).tobytes()
        path = tmp_path / f"slice_{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_single_slice_stack_with_per_file_rescale(tmp_path):
    vol = _volume(seed=3)
    paths = _slice_files(tmp_path, vol)
    back, aff = series_volume(_series_of(paths, False))
    # columns run toward patient right (LPS -x): RAS x grows with the column index, as in vol
    np.testing.assert_allclose(back, vol, atol=0.001 * vol.shape[2])
    np.testing.assert_allclose(aff, _ras(vol.shape), atol=1e-6)


def test_inconsistent_slice_spacing_refused(tmp_path):
    vol = _volume(seed=4, shape=(6, 6, 5))
    paths = _slice_files(tmp_path, vol, spacing=[0.0, 3.5, 7.0, 12.0, 15.5])
    with pytest.raises(DicomInputError, match="inconsistent slice spacing"):
        series_volume(_series_of(paths, False))


def _modify(tmp_path, name, **changes):
    path = _write(tmp_path, _volume(), _ras((12, 10, 8)), name=name)
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)
    return path


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"Modality": "CT"}, "modality CT, not NM"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]}, "Image Type STATIC"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]}, "not a reconstructed"),
        ({"PixelData": None}, "no pixel data"),
        ({"PixelSpacing": None}, "missing PixelSpacing"),
    ],
)
def test_unusable_headers(tmp_path, changes, reason):
    path = _modify(tmp_path, "bad.dcm", **changes)
    with pytest.raises(DicomInputError, match=reason) as err:
        read_header(path)
    assert str(path) in str(err.value)


def test_corrupt_and_non_dicom_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DicomInputError, match="not a readable DICOM"):
        read_header(text)
    path = _write(tmp_path, _volume(), _ras((12, 10, 8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated pixel data
    with pytest.raises(DicomInputError, match="pixel data"):
        series_volume(_series_of([path], True))
