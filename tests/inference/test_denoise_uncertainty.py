"""``fastdat denoise`` with a deep ensemble: the members' per-voxel SD is written beside the image
(NIfTI and DICOM), and ``--sbr`` gives each SBR the members' spread and the model's calibrated
interval; a single network or an uncalibrated ensemble gets no interval and says why.

The members are count-aware networks whose correction is a constant ``-a_k`` (in units of the
volume's maximum): member ``k`` restores ``relu(x - a_k max(x))``, known in closed form without
running a network. What ``denoise`` writes is that after the guard's spectral limit and the clamp
at zero (on the tiny cohort's 8 mm grid only the diagonal corners of each slice's spectrum are
finer than its 13 mm period, so the limit changes the members by a few 1e-5 of the maximum).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.uid import generate_uid

from fastdat.cli import main
from fastdat.inference import denoise_path
from fastdat.inference.denoise import limit_spectrum
from fastdat.io.dicom_write import write_nm_volume
from fastdat.io.image import read_image
from fastdat.models import build_model, save_model
from fastdat.models.ensemble import ensemble_from
from fastdat.quantification.intervals import SIGMA_FLOOR, calibrate_intervals
from fastdat.quantification.sbr import measure_sbr, quantify_volume

OFFSETS = (0.0005, 0.002, 0.0035)  # a_k: each member's constant correction (x max)
# (their mean stays within the output checks: slice sums of faint slices change ~70 x a)
MINUTES = 5.0
CALIBRATED = ("putamen", "caudate", "putamen_posterior", "southampton")  # the sweep's measures


@pytest.fixture(scope="module")
def volume(cohort):
    img = nib.load(cohort / "studies" / "sim0002" / "recon_5min.nii.gz")
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _member(seed: int, offset: float):
    """A count-aware network whose correction is ``-offset`` everywhere (FiLM and features
    random, the 1x1 head reading none of them)."""
    torch.manual_seed(seed)
    net = build_model("countunet", residual=True, nonneg=True, features=4, levels=2).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    torch.nn.init.zeros_(net.net.head.weight)
    torch.nn.init.constant_(net.net.head.bias, -offset)
    return net


def _raw_members(vol: np.ndarray, offsets=OFFSETS) -> np.ndarray:
    """``(K, X, Y, Z)``: what each correction ``-a`` restores, in closed form."""
    top = float(vol.max())
    return np.stack([np.maximum(vol.astype(np.float64) - a * top, 0) for a in offsets])


def _expected_members(vol: np.ndarray, offsets=OFFSETS) -> np.ndarray:
    """``(K, X, Y, Z)``: each closed-form member after the spectral limit and the clamp."""
    x = torch.from_numpy(np.asarray(vol, np.float64)).permute(2, 0, 1)[:, None]
    out = []
    for m in _raw_members(vol, offsets):
        y = limit_spectrum(x, torch.from_numpy(m).permute(2, 0, 1)[:, None], 8.0)
        out.append(y[:, 0].clamp_min(0).permute(1, 2, 0).numpy())
    return np.stack(out)


def _intervals():
    """Rules calibrated on synthetic cases: reference = value + sigma * t (t ~ N(0, 1.5^2))."""
    rng = np.random.default_rng(7)
    cases = {}
    for measure in CALIBRATED:
        value = rng.uniform(1.0, 3.0, 60)
        sigma = rng.uniform(0.01, 0.1, 60)
        cases[measure] = (value + sigma * rng.normal(0, 1.5, 60), value, sigma)
    return calibrate_intervals(cases, level=0.9)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Checkpoints: a calibrated ensemble, the same uncalibrated, and a single network."""
    folder = tmp_path_factory.mktemp("models")
    ens = ensemble_from([_member(s, a) for s, a in enumerate(OFFSETS)])
    extra = {"input_range": {"minutes": [2.0, 15.0]}}
    calibrated = _intervals()
    save_model(ens, folder / "ens", extra=extra | {"sbr_intervals": calibrated.to_dict()})
    save_model(ens, folder / "ens_uncal", extra=extra)
    save_model(_member(9, OFFSETS[0]), folder / "single", extra=extra)
    return {"ens": folder / "ens", "uncal": folder / "ens_uncal", "single": folder / "single"}, (
        calibrated
    )


def _nifti(folder, vol, affine):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    return path


def _denoise(model, src, out, *extra):
    args = ["denoise", str(src), "--model", str(model), "--out", str(out), "--device", "cpu"]
    return main([*args, "--minutes", str(MINUTES), *extra])


def test_the_uncertainty_map_is_the_members_sd_beside_the_nifti_output(volume, models, tmp_path):
    vol, affine = volume
    paths, _ = models
    out = tmp_path / "out"
    assert _denoise(paths["ens"], _nifti(tmp_path / "in", vol, affine), out) == 0
    image = nib.load(out / "study_denoised.nii.gz")
    sd_img = nib.load(out / "study_uncertainty.nii.gz")
    assert sd_img.shape == image.shape == vol.shape
    np.testing.assert_allclose(sd_img.affine, image.affine, atol=1e-6)
    assert bytes(sd_img.header["descrip"]).startswith(b"FastDaT")
    sd = np.asarray(sd_img.dataobj, dtype=np.float64)
    each = _expected_members(vol)
    expected = each.std(axis=0, ddof=1)
    np.testing.assert_allclose(sd, expected, rtol=1e-4, atol=1e-6 * vol.max())
    raw = _raw_members(vol).std(axis=0, ddof=1)  # the SD is taken after the limit, not before
    assert np.abs(sd - raw).max() > 10 * 1e-6 * vol.max()
    np.testing.assert_allclose(sd, raw, atol=1e-4 * vol.max())
    differ = np.ptp(each, axis=0) > 1e-4 * vol.max()
    assert differ.sum() > 1000 and (sd[differ] > 0).all()
    # the image is the ensemble's output: relu of the mean correction, limited alike
    (mean,) = _expected_members(vol, [np.mean(OFFSETS)])
    np.testing.assert_allclose(np.asarray(image.dataobj), mean, rtol=1e-4, atol=1e-6 * vol.max())
    doc = json.loads((out / "study_denoised.json").read_text())
    unc = doc["uncertainty"]
    assert unc["members"] == len(OFFSETS) and unc["file"] == str(
        (out / "study_uncertainty.nii.gz").resolve()
    )
    assert unc["method"].startswith(f"deep ensemble, {len(OFFSETS)} members, per-voxel SD")
    assert "same units as the image" in unc["method"]
    assert doc["sbr"] is None and not doc["warnings"]
    assert not (out / "study_sbr.json").exists()
    # a second run never replaces the map: refused before any work
    again = tmp_path / "again"
    again.mkdir()
    (again / "study_uncertainty.nii.gz").write_bytes(b"")
    assert _denoise(paths["ens"], tmp_path / "in" / "study.nii.gz", again) == 2
    assert not (again / "study_denoised.nii.gz").exists()


def test_dicom_input_gets_an_uncertainty_series(volume, models, tmp_path):
    vol, affine = volume
    paths, _ = models
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "study.dcm"
    long = "DaTSCAN brain SPECT OSEM 4i8s AC SC reconstruction"  # 51 characters
    write_nm_volume(
        vol,
        affine,
        src,
        patient_id="P1",
        study_uid=generate_uid(),
        series_description=long,
        duration_s=60.0 * MINUTES,
        n_views=30,
    )
    out = tmp_path / "out"
    assert _denoise(paths["ens"], src, out) == 0
    image, sd_img = (
        read_image(out / "study_denoised.dcm"),
        read_image(out / "study_uncertainty.dcm"),
    )
    source = read_image(src)
    assert sd_img.shape == image.shape == source.shape
    np.testing.assert_allclose(sd_img.affine, image.affine, atol=1e-4)
    expected = _expected_members(source.data).std(axis=0, ddof=1)
    step = source.data.max() / 65535  # the source's stored units (its Rescale Slope)
    np.testing.assert_allclose(sd_img.data, expected, atol=0.51 * step)
    assert sd_img.data.max() > 100 * step
    ds_img = pydicom.dcmread(out / "study_denoised.dcm", stop_before_pixels=True)
    ds_sd = pydicom.dcmread(out / "study_uncertainty.dcm", stop_before_pixels=True)
    src_ds = pydicom.dcmread(src, stop_before_pixels=True)
    assert ds_sd.SeriesInstanceUID not in (ds_img.SeriesInstanceUID, src_ds.SeriesInstanceUID)
    assert ds_sd.StudyInstanceUID == src_ds.StudyInstanceUID
    assert ds_sd.SeriesDescription.endswith("uncertainty (ensemble SD)")
    assert len(ds_sd.SeriesDescription) <= 64
    assert "ensemble members" in ds_sd.DerivationDescription
    doc = json.loads((out / "study_denoised.json").read_text())
    assert doc["uncertainty"]["file"] == str((out / "study_uncertainty.dcm").resolve())
    assert doc["uncertainty"]["series"] == {
        "uid": ds_sd.SeriesInstanceUID,
        "description": ds_sd.SeriesDescription,
    }


def test_sbr_intervals_of_a_calibrated_ensemble(volume, models, tmp_path, capsys):
    vol, affine = volume
    paths, calibrated = models
    out = tmp_path / "out"
    assert _denoise(paths["ens"], _nifti(tmp_path / "in", vol, affine), out, "--sbr") == 0
    assert "study_sbr.json" in capsys.readouterr().out
    doc = json.loads((out / "study_sbr.json").read_text())
    assert doc["status"] == "ok" and doc["members"] == len(OFFSETS)
    assert doc["level"] == pytest.approx(0.9) and "noise-free reconstruction" in doc["covers"]
    # independently: VOIs on the restored image, each closed-form member measured in them
    restored = np.asarray(nib.load(out / "study_denoised.nii.gz").dataobj, dtype=np.float64)
    values, vois = quantify_volume(restored, 8.0)
    each = [measure_sbr(m, vois, 8.0) for m in _expected_members(vol)]
    checked = 0
    for key, row in doc["sbr"].items():
        assert row["value"] == pytest.approx(values[key], rel=1e-6)
        sigma = max(np.std([e[key] for e in each], ddof=1), SIGMA_FLOOR)
        assert row["sigma"] == pytest.approx(sigma, rel=1e-3)
        if row["measure"] not in CALIBRATED:
            assert row["lower"] is None and row["upper"] is None
            continue
        q = calibrated.rules[row["measure"]].q
        assert np.isfinite(row["value"]) and row["sigma"] > SIGMA_FLOOR
        assert row["lower"] < row["value"] < row["upper"]
        assert row["upper"] - row["lower"] == pytest.approx(2 * q * row["sigma"], rel=1e-9)
        assert row["upper"] + row["lower"] == pytest.approx(2 * row["value"], rel=1e-9)
        checked += 1
    assert checked == 2 * len(CALIBRATED)
    assert any(
        "no calibrated interval for putamen_anterior, striatum" in w for w in doc["warnings"]
    )
    prov = json.loads((out / "study_denoised.json").read_text())
    assert prov["sbr"] == {
        "file": str((out / "study_sbr.json").resolve()),
        "status": "ok",
        "calibrated": True,
    }


def test_single_network_and_uncalibrated_ensemble_give_no_interval(volume, models, tmp_path):
    vol, affine = volume
    paths, _ = models
    src = _nifti(tmp_path / "in", vol, affine)
    single = tmp_path / "single"
    assert _denoise(paths["single"], src, single, "--sbr") == 0
    assert not list(single.glob("*uncertainty*"))
    prov = json.loads((single / "study_denoised.json").read_text())
    assert prov["uncertainty"] is None and "single network" in prov["uncertainty_reason"]
    doc = json.loads((single / "study_sbr.json").read_text())
    assert doc["members"] == 1 and doc["level"] is None and doc["covers"] is None
    rows = doc["sbr"].values()
    assert all(np.isfinite(r["value"]) for r in rows)
    assert all(r["sigma"] is None and r["lower"] is None and r["upper"] is None for r in rows)
    assert any("single network" in w for w in doc["warnings"])
    assert any(w.startswith("SBR: single network") for w in prov["warnings"])

    uncal = tmp_path / "uncal"
    assert _denoise(paths["uncal"], src, uncal, "--sbr") == 0
    assert (uncal / "study_uncertainty.nii.gz").exists()
    doc = json.loads((uncal / "study_sbr.json").read_text())
    rows = doc["sbr"].values()
    assert all(
        r["sigma"] >= SIGMA_FLOOR and r["lower"] is None and r["upper"] is None for r in rows
    )
    assert doc["level"] is None and any("uncalibrated" in w for w in doc["warnings"])


def test_no_striatum_is_a_warning_and_the_image_is_still_written(models, tmp_path):
    """A noisy cube holds nothing striatum-like: no SBR, a warning, the image and map written."""
    paths, _ = models
    rng = np.random.default_rng(3)
    vol = np.zeros((32, 32, 20), np.float32)
    vol[6:26, 6:26, 4:16] = 100 + 10 * rng.standard_normal((20, 20, 12))
    src = _nifti(tmp_path / "in", vol, np.diag([8.0, 8.0, 8.0, 1.0]))
    results = denoise_path(src, paths["ens"], tmp_path / "out", minutes=MINUTES, sbr=True)
    (r,) = results
    assert r.status == "ok" and (tmp_path / "out" / "study_denoised.nii.gz").exists()
    assert any("SBRs not measured" in w for w in r.warnings)
    assert {p.rsplit("/", 1)[-1] for p in r.extras} == {
        "study_uncertainty.nii.gz",
        "study_sbr.json",
    }
    doc = json.loads((tmp_path / "out" / "study_sbr.json").read_text())
    assert doc["status"] == "failed" and "no recognisable striatum" in doc["reason"]
    prov = json.loads((tmp_path / "out" / "study_denoised.json").read_text())
    assert prov["sbr"]["status"] == "failed" and prov["uncertainty"]["members"] == len(OFFSETS)
