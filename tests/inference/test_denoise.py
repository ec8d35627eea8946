from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from fastdat.cli import main
from fastdat.data.localize import locate_striata
from fastdat.inference import denoise, denoise_path, load_denoiser
from fastdat.io.dicom import series_volume
from fastdat.io.dicom_write import write_nm_volume
from fastdat.io.image import scan_folder
from fastdat.methods import predict
from fastdat.models import build_model
from fastdat.models.checkpoint import PACKAGED
from fastdat.simulate.cohort import resolve_config, simulate_cohort

STRIATUM = (1, 2, 3, 4, 5, 6)
# Whole-volume ("anchored") inference reproduces the crop-based result in the striatal region to
# within this fraction of the crop's maximum (float32 round-off; measured ~1e-7).
CROP_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One simulated study as the default model was trained on (80 x 80 x 48, 3.3 mm, 120 views,
    OSEM 8 x 8): fewer views or iterations give a smoother 5-min image than the model knows, and
    the guard rightly refuses to restore it (``test_safety.py``)."""
    out = tmp_path_factory.mktemp("sim")
    cfg = resolve_config({}, ["cohort.n_studies=1", "cohort.seed=3"])
    simulate_cohort(cfg, out, progress=False)
    d = out / "studies" / "sim0001"
    img = nib.load(d / "recon_5min.nii.gz")
    vol = np.asarray(img.dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(d / "labels.nii.gz").dataobj)
    return {"dir": d, "volume": vol, "affine": img.affine, "labels": labels}


@pytest.fixture(scope="module")
def net():
    return load_denoiser("default")[0]


def _hashes(path):
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _nm_file(folder, vol, affine, name="study.dcm", **kw):
    folder.mkdir(parents=True, exist_ok=True)
    args = {"patient_id": "P1", "study_uid": generate_uid(), "series_description": "DaT 5min"}
    return write_nm_volume(vol, affine, folder / name, **{**args, **kw})


def _stack(folder, vol, affine, positions=None):
    """Single-slice NM files (LPS orientation habit), shuffled, each with its own slope."""
    src = _nm_file(folder.parent / f".{folder.name}-mf", vol, affine)
    mf = pydicom.dcmread(src)
    frames = mf.pixel_array.astype(np.float64) * float(mf.RescaleSlope)
    det = mf.DetectorInformationSequence[0]
    x, y = np.array(det.ImageOrientationPatient[:3]), np.array(det.ImageOrientationPatient[3:])
    normal = np.cross(x, y) * float(mf.SpacingBetweenSlices)
    folder.mkdir(parents=True)
    for n, k in enumerate(np.random.default_rng(0).permutation(len(frames))):
        ds = pydicom.dcmread(src)
        del ds.DetectorInformationSequence, ds.SliceVector, ds.NumberOfSlices
        del ds.FrameIncrementPointer, ds.NumberOfFrames
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        ds.ImageOrientationPatient = det.ImageOrientationPatient
        z = k if positions is None else positions[k]
        ds.ImagePositionPatient = [
            float(v) for v in np.array(det.ImagePositionPatient) + z * normal
        ]
        slope = frames[k].max() / 60000 + 1e-6
        ds.RescaleSlope = f"{slope:.8g}"
        ds.PixelData = np.round(frames[k] / slope).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{n:04d}", enforce_file_format=True)
    shutil.rmtree(src.parent)
    return folder


def test_default_model_is_small_documented_and_marked_simulated():
    weights = PACKAGED["default"].with_name("default.safetensors")
    assert weights.stat().st_size <= 5 * 1024**2
    meta = json.loads(PACKAGED["default"].with_name("default.json").read_text())
    assert meta["training_voxel_mm"] == pytest.approx(3.3)
    assert "simulated" in meta["trained_on"] and "research" in meta["intended_use"]
    card = PACKAGED["default"].with_name("MODEL_CARD.md").read_text()
    for needle in ("fastdat train", "fastdat evaluate", "simulated", "PSNR", "SSIM"):
        assert needle in card


def test_whole_volume_matches_the_crop_based_result_in_the_striata(study, net):
    vol, labels = study["volume"], study["labels"]
    loc = locate_striata(vol, 3.3)  # where the dataset builder cuts this study's crops
    (i0, j0), sl = loc.corner, list(loc.slices)

    def cut(v):
        return np.moveaxis(v[i0 : i0 + 64, j0 : j0 + 64, sl], -1, 0)

    crops = cut(vol)
    reference = np.clip(predict(net, crops), 0, None)
    mask = np.isin(cut(labels), STRIATUM)
    scale = crops.max(axis=(1, 2), keepdims=True)
    assert mask.sum() > 100

    def deviation(mode, guard=False):
        out = denoise(vol, net, voxel_mm=3.3, mode=mode, guard=guard)
        assert out.shape == vol.shape and out.dtype == np.float32
        return float((np.abs(cut(out) - reference) / scale)[mask].max())

    assert deviation("anchored") <= CROP_TOLERANCE
    # whole slices alone see other context and another down-sampling phase: a real difference
    assert deviation("slice") > 100 * CROP_TOLERANCE
    # and the denoised striata are not the raw ones
    assert float((np.abs(crops - reference) / scale)[mask].max()) > 100 * CROP_TOLERANCE
    # the guard's spectral limit removes what the network added above the input's magnitude at
    # periods < 13 mm: a bounded change (measured up to 14 % of the crop maximum, mean 4 %)
    assert deviation("anchored", guard=True) < 0.25


@pytest.mark.parametrize("mode", ["slice", "tiles", "anchored"])
def test_every_slice_any_size(mode, caplog):
    net = build_model("unet2", residual=True).eval()  # an untrained network: shapes only
    vol = np.random.default_rng(0).random((37, 70, 9)).astype(np.float32) * 5
    vol[:, :, 4] = 0
    out = denoise(torch.from_numpy(vol), net, voxel_mm=3.3, mode=mode, guard=False)
    assert out.shape == vol.shape and out.dtype == np.float32
    assert (out >= 0).all() and np.isfinite(out).all()
    assert (out[:, :, 4] == 0).all()  # an empty slice stays empty
    assert (out[:, :, 3] != vol[:, :, 3]).any()
    if mode == "anchored":  # 37 voxels cannot hold the 64 x 64 crop: whole slices, with a warning
        assert "striata not located" in caplog.text


def test_scale_follows_the_input(study, net):
    vol = study["volume"][:, :, 15:25]
    a = denoise(vol, net, mode="slice")
    b = denoise(vol * 7.0, net, mode="slice")
    np.testing.assert_allclose(b, 7.0 * a, rtol=1e-4, atol=1e-4 * b.max())


@pytest.mark.parametrize(
    "volume, kw, match",
    [
        (np.ones((8, 8)), {}, "expected a volume"),
        (np.full((8, 8, 2), np.nan), {}, "NaN"),
        (np.ones((8, 8, 2)), {"mode": "bicubic"}, "mode must be one of"),
    ],
)
def test_bad_volumes_refused(volume, kw, match):
    net = build_model("unet1")
    with pytest.raises(ValueError, match=match):
        denoise(volume, net, **{"voxel_mm": 3.3, "mode": "slice", **kw})


def test_without_voxel_size(study, net, caplog):
    vol = study["volume"]
    default = denoise(vol, "default")  # fastdat.denoise(volume, model, device) as the issue asks
    assert "assuming the training voxel, 3.3 mm" in caplog.text
    np.testing.assert_array_equal(default, denoise(vol, net, voxel_mm=3.3))
    untrained = build_model("unet2", residual=True).eval()  # records no training voxel
    np.testing.assert_array_equal(
        denoise(vol, untrained, guard=False), denoise(vol, untrained, mode="slice", guard=False)
    )
    assert "whole slices used" in caplog.text


def test_fastdat_denoise_is_lazy():
    code = (
        "import sys, fastdat; assert 'torch' not in sys.modules; "
        "from fastdat.inference import denoise; assert fastdat.denoise is denoise"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _dciodvfy_errors(path):
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_cli_dicom_in_dicom_out(study, net, tmp_path, capsys):
    src = _nm_file(tmp_path / "in", study["volume"], study["affine"], duration_s=300.0)
    before = _hashes(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["denoise", str(src), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "trained on simulated data" in err and "research use only" in err
    assert _hashes(tmp_path / "in") == before
    (series,), _ = scan_folder(out)
    got, aff = series_volume(series)
    (source,), _ = scan_folder(tmp_path / "in")
    vol, src_aff = series_volume(source)
    np.testing.assert_allclose(aff, src_aff, atol=1e-4)
    expected = denoise(vol, net, voxel_mm=3.3)
    np.testing.assert_allclose(got, expected, atol=expected.max() / 65535)
    ds = pydicom.dcmread(series.files[0])
    assert ds.StudyInstanceUID == source.study_uid and ds.SeriesInstanceUID != source.series_uid
    assert "FastDaT 0.1.0" in ds.DerivationDescription and "unet4" in ds.DerivationDescription
    assert ds.SeriesDescription == "DaT 5min FastDaT denoised"
    prov = json.loads((out / "study_denoised.json").read_text())
    assert prov["mode"] == "anchored" and prov["git_commit"] and prov["model"]["weights_sha256"]
    assert prov["crop_corner"] == list(locate_striata(vol, 3.3).corner)
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(series.files[0]) == []
    # a second run never replaces the first output
    mtime = series.files[0].stat().st_mtime_ns
    assert main(["denoise", str(src), "--out", str(out), "--device", "cpu"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert series.files[0].stat().st_mtime_ns == mtime


def test_cli_single_slice_stack_and_nifti(study, tmp_path):
    vol, affine = study["volume"], study["affine"]
    stack = _stack(tmp_path / "stack", vol, affine)
    before = _hashes(stack)
    assert main(["denoise", str(stack), "--out", str(tmp_path / "o1"), "--mode", "slice"]) == 0
    assert _hashes(stack) == before
    (out_series,), _ = scan_folder(tmp_path / "o1")
    (src_series,), _ = scan_folder(stack)
    got, aff = series_volume(out_series)
    np.testing.assert_allclose(aff, series_volume(src_series)[1], atol=1e-4)
    assert got.shape == vol.shape
    # NIfTI, stored with x reversed (LAS): the output keeps the input's affine and layout
    las = affine.copy()
    las[:, 0] = -affine[:, 0]
    las[:3, 3] = affine[:3, 3] + affine[:3, 0] * (vol.shape[0] - 1)
    nii = tmp_path / "study.nii.gz"
    nib.save(nib.Nifti1Image(vol[::-1].copy(), las), nii)
    assert main(["denoise", str(nii), "--out", str(tmp_path / "d.nii.gz")]) == 0
    out = nib.load(tmp_path / "d.nii.gz")
    np.testing.assert_allclose(out.affine, las, atol=1e-5)
    expected = denoise(vol, "default", voxel_mm=3.3)
    np.testing.assert_allclose(np.asarray(out.dataobj)[::-1], expected, rtol=1e-5, atol=1e-6)


def test_cli_batch_with_progress_and_summary(study, tmp_path, capsys):
    root = tmp_path / "studies"
    vol, affine = study["volume"], study["affine"]
    _nm_file(root / "a", vol, affine)
    _stack(root / "b" / "dat", vol[:, :, 10:40], affine)
    nib.save(nib.Nifti1Image(vol, affine), root / "c.nii.gz")
    bad = _nm_file(root / "d", vol, affine, name="broken.dcm")
    bad.write_bytes(bad.read_bytes()[:-5000])  # corrupt pixel data
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    before = _hashes(root)
    out = tmp_path / "out"
    assert main(["denoise", str(root), "--out", str(out), "--mode", "slice"]) == 2
    assert _hashes(root) == before
    text = capsys.readouterr()
    assert "3 denoised, 1 failed, 1 skipped" in text.out
    assert "broken.dcm" in text.err and "corrupt pixel data" in text.err
    with open(out / "denoise_summary.csv") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert rows[str(bad)]["status"] == "failed"
    assert rows[str(root / "ct.dcm")]["status"] == "skipped"
    assert "modality CT" in rows[str(root / "ct.dcm")]["reason"]
    for name in ("a/study_denoised.dcm", "b/dat_denoised.dcm", "c_denoised.nii.gz"):
        assert (out / name).exists(), name


def _edit(path, fn):
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)
    return path


def _pydicom_file(name):
    def make(tmp_path):
        dst = tmp_path / "in" / name
        dst.parent.mkdir()
        shutil.copy(get_testdata_file(name), dst)
        return dst

    return make


def _small(tmp_path, fn=None):
    vol = np.random.default_rng(0).random((20, 20, 10)) * 100
    path = _nm_file(tmp_path / "in", vol, np.diag([3.3, 3.3, 3.3, 1.0]))
    return _edit(path, fn) if fn else path


def _truncated(tmp_path):
    path = _small(tmp_path)
    path.write_bytes(path.read_bytes()[:-300])
    return path


def _text_file(tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "x.dcm"
    path.write_text("hello")
    return path


def _top_level_ipp(ds):
    ds.ImagePositionPatient = [10.0, 0.0, 0.0]  # the detector's says (0, 0, 0)


def _no_orientation(ds):
    del ds.DetectorInformationSequence[0].ImageOrientationPatient


BAD_INPUTS = {
    "CT": (_pydicom_file("CT_small.dcm"), "modality CT, not NM"),
    "MR": (_pydicom_file("MR_small.dcm"), "modality MR, not NM"),
    "RT dose": (_pydicom_file("rtdose.dcm"), "modality RTDOSE, not NM"),
    "RT structures": (_pydicom_file("rtstruct.dcm"), "no 'DICM' preamble"),
    "ultrasound": (_pydicom_file("examples_ybr_color.dcm"), "modality US, not NM"),
    "NM whole body": (_pydicom_file("JPEG2000.dcm"), "Image Type WHOLE BODY: planar"),
    "PET": (lambda t: _small(t, lambda ds: setattr(ds, "Modality", "PT")), "modality PT"),
    "planar": (
        lambda t: _small(t, lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "STATIC"])),
        "Image Type STATIC: planar",
    ),
    "slice spacing": (
        lambda t: _stack(t / "in", np.ones((8, 8, 5)), np.eye(4), [0, 1, 2, 3.5, 4.5]),
        "inconsistent slice spacing",
    ),
    "no orientation": (lambda t: _small(t, _no_orientation), "missing Image Orientation"),
    "slices vs frames": (
        lambda t: _small(t, lambda ds: setattr(ds, "NumberOfSlices", 9)),
        "contradictory Number of Slices",
    ),
    "two positions": (lambda t: _small(t, _top_level_ipp), "contradictory ImagePositionPatient"),
    "corrupt pixels": (_truncated, "corrupt pixel data"),
    "not DICOM": (_text_file, "not a readable DICOM"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_refused_clearly_and_left_untouched(case, tmp_path, capsys):
    make, reason = BAD_INPUTS[case]
    src = make(tmp_path)
    before = _hashes(tmp_path / "in")
    assert main(["denoise", str(src), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert reason in err and "fastdat denoise: error" in err
    assert str(src) in err or str(tmp_path / "in") in err
    assert _hashes(tmp_path / "in") == before
    assert not list((tmp_path / "out").rglob("*.dcm")) if (tmp_path / "out").exists() else True


def test_output_may_not_be_or_lie_in_the_input(tmp_path, capsys):
    src = _small(tmp_path)
    before = _hashes(tmp_path / "in")
    assert main(["denoise", str(src), "--out", str(src)]) == 2
    assert "the output path is the input" in capsys.readouterr().err
    folder = src.parent
    assert main(["denoise", str(folder), "--out", str(folder / "denoised")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert _hashes(tmp_path / "in") == before
    assert not (folder / "denoised").exists()


def test_library_denoise_path_reports_warnings(tmp_path):
    vol = np.random.default_rng(1).random((24, 24, 12)).astype(np.float32) * 10
    src = _nm_file(tmp_path / "in", vol, np.diag([8.0, 8.0, 8.0, 1.0]))
    (result,) = denoise_path(src, "default", tmp_path / "out", "cpu", progress=False)
    assert result.status == "ok"
    assert any("voxel_mm 8 outside the accepted range" in w for w in result.warnings)
    assert any("striata not located" in w for w in result.warnings)
