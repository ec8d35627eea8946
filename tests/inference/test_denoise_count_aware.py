"""``fastdat denoise`` with a count-aware (volume) network: the scan time comes from ``--minutes``
or the DICOM header, reaches the network, is checked against the model's training scan times,
and a missing one is a clear error; the whole volume is restored without a localizer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom.uid import generate_uid

from fastdat.cli import main
from fastdat.inference.denoise import denoise_volume
from fastdat.io.dicom_write import write_nm_volume
from fastdat.methods import predict_volume
from fastdat.models import build_model, save_model


@pytest.fixture(scope="module")
def volume(cohort):
    img = nib.load(cohort / "studies" / "sim0002" / "recon_5min.nii.gz")
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _net(identity: bool):
    torch.manual_seed(0)
    model = build_model("countunet", residual=True, nonneg=True, features=4, levels=2).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    if identity:  # the correction is zero: the output is the input (the guard passes it)
        for p in model.net.head.parameters():
            torch.nn.init.zeros_(p)
    return model


def test_the_scan_time_reaches_the_network(volume):
    vol, affine = volume
    net = _net(identity=False)
    got = {}
    for minutes in (2.0, 15.0):
        got[minutes], info = denoise_volume(
            vol, net, "cpu", "anchored", 8.0, guard=False, minutes=minutes
        )
        assert info["mode"] == "volume" and info["crop_corner"] is None
        assert info["minutes"] == minutes
        expected = np.clip(predict_volume(net, vol, minutes), 0, None)
        np.testing.assert_allclose(got[minutes], expected, rtol=1e-5, atol=1e-6 * vol.max())
    assert not np.allclose(got[2.0], got[15.0])
    with pytest.raises(ValueError, match="count-aware and the scan time is unknown"):
        denoise_volume(vol, net, "cpu", "anchored", 8.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "countnet"
    save_model(_net(identity=True), path, extra={"input_range": {"minutes": [2.0, 15.0]}})
    return path


def _dicom(folder, vol, affine, minutes):
    folder.mkdir(parents=True)
    write_nm_volume(
        vol,
        affine,
        folder / "study.dcm",
        patient_id="P1",
        study_uid=generate_uid(),
        series_description="DaT",
        duration_s=60.0 * minutes,
        n_views=30,
    )
    return folder


def _provenance(out):
    return json.loads(next(out.glob("*_denoised.json")).read_text())


def test_scan_time_from_the_dicom_header_and_its_range(volume, model_path, tmp_path, capsys):
    vol, affine = volume
    src = _dicom(tmp_path / "in5", vol, affine, 5.0)
    out = tmp_path / "out5"
    assert (
        main(
            ["denoise", str(src), "--model", str(model_path), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    doc = _provenance(out)
    assert doc["minutes"] == pytest.approx(5.0) and doc["minutes_from"] == "DICOM header"
    assert doc["mode"] == "volume" and not doc["warnings"]
    checks = {c["name"]: c for c in doc["input_checks"]}
    assert checks["minutes"]["ok"] and checks["minutes"]["high"] == 15.0
    # a 25-min scan is outside the scan times the model knows: flagged, or refused on request
    src25 = _dicom(tmp_path / "in25", vol, affine, 25.0)
    out25 = tmp_path / "out25"
    assert (
        main(
            [
                "denoise",
                str(src25),
                "--model",
                str(model_path),
                "--out",
                str(out25),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "minutes 25 outside the accepted range [2, 15]" in _provenance(out25)["warnings"][0]
    refused = tmp_path / "refused"
    args = ["denoise", str(src25), "--model", str(model_path), "--device", "cpu"]
    assert main([*args, "--out", str(refused), "--refuse-ood"]) == 2
    assert "minutes 25 outside" in capsys.readouterr().err
    assert not list(refused.glob("*_denoised*"))  # only the folder's summary
    # --minutes overrides the header
    over = tmp_path / "over"
    assert main([*args, "--out", str(over), "--minutes", "10"]) == 0
    doc = _provenance(over)
    assert doc["minutes"] == 10.0 and doc["minutes_from"] == "--minutes" and not doc["warnings"]


def test_a_nifti_input_needs_the_scan_time(volume, model_path, tmp_path, capsys):
    vol, affine = volume
    src = tmp_path / "study.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), src)
    args = ["denoise", str(src), "--model", str(model_path), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "scan time is unknown: give it (--minutes)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--minutes", "3"]) == 0
    doc = _provenance(tmp_path / "b")
    assert doc["minutes"] == 3.0 and doc["output_checks"]
    restored = np.asarray(nib.load(tmp_path / "b" / "study_denoised.nii.gz").dataobj)
    np.testing.assert_allclose(restored, vol, rtol=1e-4, atol=1e-5 * vol.max())
