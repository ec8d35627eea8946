from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import data_element_generator
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless, generate_uid

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


# --- compressed transfer syntaxes, read with the declared dependencies only

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PLUGIN_DISTRIBUTION = {  # pydicom's decoding plugins and the distribution each needs
    "pydicom": "pydicom",
    "gdcm": "python-gdcm",
    "pylibjpeg": "pylibjpeg",
    "pillow": "pillow",
}


def _declared() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}


@pytest.fixture
def declared_decoders(monkeypatch):
    """pydicom decodes with only the plugins of fastdat's declared dependencies (not with a
    package that happens to be installed here, such as Pillow through matplotlib)."""
    declared = _declared()
    keep = {k for k, dist in PLUGIN_DISTRIBUTION.items() if dist in declared}
    for uid in (RLELossless, JPEG2000Lossless, JPEGLosslessSV1):
        dec = get_decoder(uid)
        monkeypatch.setattr(
            dec, "_available", {k: v for k, v in dec._available.items() if k in keep}
        )
    return keep


def _gdcm_compress(src: Path, dst: Path, syntax: str) -> Path:
    """Re-encode ``src`` with GDCM (an encoder independent of the decoders under test)."""
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return dst


def _compressed(tmp_path: Path, syntax: str) -> tuple[Path, Path]:
    """An uncompressed NM volume (64 x 64 x 6, 16-bit) and its copy in ``syntax``."""
    vol = (np.random.default_rng(7).random((64, 64, 6)) ** 3 * 900).astype(np.float32)
    src = _write(tmp_path, vol, _ras(vol.shape, voxel=3.9), name="raw.dcm")
    dst = tmp_path / "compressed.dcm"
    if syntax == RLELossless:
        ds = pydicom.dcmread(src)
        ds.compress(RLELossless, encoding_plugin="pydicom")
        ds.save_as(dst)
    else:
        name = {JPEG2000Lossless: "JPEG2000Lossless", JPEGLosslessSV1: "JPEGLosslessProcess14_1"}
        import gdcm

        _gdcm_compress(src, dst, getattr(gdcm.TransferSyntax, name[syntax]))
    assert pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    return src, dst


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, JPEGLosslessSV1], ids=["RLE", "J2K", "JPEG-LL-SV1"]
)
def test_compressed_series_read_identical_with_declared_decoders(
    tmp_path, syntax, declared_decoders
):
    if syntax != RLELossless:
        pytest.importorskip("gdcm")
    raw, packed = _compressed(tmp_path, syntax)
    want, want_aff = series_volume(_series_of([raw], True))
    got, got_aff = series_volume(_series_of([packed], True))
    np.testing.assert_array_equal(got, want)  # lossless: the very same values
    np.testing.assert_array_equal(got_aff, want_aff)


def test_undecodable_syntax_names_file_syntax_and_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("gdcm")
    _, packed = _compressed(tmp_path, JPEGLosslessSV1)
    monkeypatch.setattr(get_decoder(JPEGLosslessSV1), "_available", {})  # as without a decoder
    with pytest.raises(DicomInputError) as err:
        series_volume(_series_of([packed], True))
    text = str(err.value)
    assert str(packed) in text and "1.2.840.10008.1.2.4.70" in text and "JPEG Lossless" in text
    assert "pip install python-gdcm" in text


def test_syntax_no_decoder_exists_for_is_named(tmp_path):
    path = _write(tmp_path, _volume(), _ras((12, 10, 8)))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder in pydicom
    ds.PixelData = pydicom.encaps.encapsulate([b"\0" * 16])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    with pytest.raises(DicomInputError, match="MPEG2.*1.2.840.10008.1.2.4.100.*uncompressed"):
        series_volume(_series_of([path], True))


# --- messages


def test_number_of_frames_zero_is_named(tmp_path):
    path = _modify(tmp_path, "nf0.dcm", NumberOfFrames=0)
    with pytest.raises(DicomInputError, match="Number of Frames is 0") as err:
        read_header(path)
    assert "single slice" not in str(err.value) and str(path) in str(err.value)


def _boundaries(data: bytes) -> tuple[int, int, set[int]]:
    """Start of the data set, offset of the Pixel Data tag, and every element's end before it."""
    ds = pydicom.dcmread(io.BytesIO(data))
    start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    fp = io.BytesIO(data)
    fp.seek(start)
    ends = {start}
    for el in data_element_generator(fp, False, True):
        if el.tag == 0x7FE00010:
            return start, el.value_tell - 12, ends
        ends.add(el.value_tell + el.length)
    raise AssertionError("no pixel data")


def test_file_cut_inside_its_header_is_reported_truncated(tmp_path):
    good = _write(tmp_path, _volume(), _ras((12, 10, 8)))
    data = good.read_bytes()
    start, pixels, ends = _boundaries(data)
    cut = tmp_path / "cut.dcm"
    reasons = {}
    for n in range(start + 1, pixels + 1):  # every cut inside the header, up to the pixel tag
        cut.write_bytes(data[:n])
        with pytest.raises(DicomInputError) as err:
            read_header(cut)
        reasons[n] = err.value.reason
    inside = {n: r for n, r in reasons.items() if n not in ends}
    assert len(inside) > 500
    assert all("truncated" in r for r in inside.values()), {
        n: r for n, r in inside.items() if "truncated" not in r
    }
    # cut exactly between two attributes, after the image's own ones: no pixel data, perhaps cut
    assert "no pixel data" in reasons[pixels] and "truncated?" in reasons[pixels]


def test_pydicom_warnings_do_not_reach_the_user(caplog):
    # pydicom warns "Expected explicit VR, but found implicit VR" on this file
    path = get_testdata_file("SC_rgb_jpeg.dcm")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING), pytest.raises(DicomInputError, match="modality OT"):
            read_header(path)
    assert [str(w.message) for w in seen] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
