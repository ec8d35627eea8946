"""The packaged default model really improves 5-min images of patients it never saw.

A fixed simulated study (FastDaT's simulator at its default settings, the ones the paper cohort
used; cohort seed 11, not the training cohort's 0; 4 studies with worse grades 0, 1, 2, 3) is cut
into 64 x 64 striatal crops exactly as the dataset builder does (5 slices per study, 20 crops),
and the 5-min crops and the default model's output are scored against the 25-min crops with
FastDaT's image-quality convention (:mod:`fastdat.metrics`), as a mean per patient.

Measured (cohort seed 11, CPU, 2 threads; the default model trained at 94a32b0)::

    method                    PSNR (dB)  SSIM    gain (dB)  gain SSIM  per-patient gain (dB)
    raw 5-min                 28.64      0.774
    default model             32.97      0.885   +4.33      +0.111     4.40 3.85 4.68 4.40
    Gaussian, sigma 1 px      30.83      0.842   +2.19      +0.068     1.73 1.68 2.58 2.79
    Gaussian, sigma 1.5 px    30.25      0.844   +1.61      +0.071
    identity                  28.64      0.774   +0.00      +0.000
    random init (unet4)        9.85     -0.033   -18.79     -0.806

Other cohort seeds (same settings, measured while writing this test, not run here) give the
same picture: default model +4.00 dB / +0.108 (seed 12) and +3.99 dB / +0.101 (seed 13), Gaussian
sigma 1 px +2.21 / +0.066 and +1.71 / +0.061; the model card reports +4.19 dB / +0.107 on the
paper cohort's test split. The margins below, a mean gain of at least +3.5 dB and +0.09 SSIM with
every patient improved, lie 0.49 dB and 0.011 under the lowest gains measured on the three seeds
and above every Gaussian post-filter measured (best SSIM gain +0.071, sigma 1.5 px), so a model
that merely smooths, passes its input through or was never trained fails; the parametrized
negative test shows it. The default model's output dips to -4.4 % of the input's maximum at most
(it is not clamped; ``fastdat denoise`` clamps at zero).

Runtime: 32-34 s on 2 shared cores when they are free (pytest; ~39 s wall with start-up, ~50 s
of CPU), of which the fixture simulating the 4 studies and cutting their crops takes 30-33 s; the
tests themselves take well under a second. (86 s once, with other jobs loading the 2 cores.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastdat.data import load_crops
from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation
from fastdat.methods import predict
from fastdat.metrics import psnr, ssim
from fastdat.models import build_model, load_model
from fastdat.models.checkpoint import read_sidecar, resolve_checkpoint
from fastdat.simulate.cohort import resolve_config, simulate_cohort

COHORT_SEED = 11  # the default model was trained on cohort seed 0 (its sidecar's training_cohort)
N_STUDIES = 4  # balanced: worse-hemisphere grades 0, 1, 2, 3
MIN_PSNR_GAIN_DB = 3.5  # mean over patients; measured +4.33 dB (Gaussian sigma 1: +2.19)
MIN_SSIM_GAIN = 0.09  # mean over patients; measured +0.111 (Gaussian sigma 1: +0.068)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """5-min and 25-min crops (float64) of the unseen cohort, and each crop's patient."""
    root = tmp_path_factory.mktemp("default-model")
    sets = [f"cohort.n_studies={N_STUDIES}", "cohort.balanced=true", f"cohort.seed={COHORT_SEED}"]
    simulate_cohort(resolve_config({}, sets), root / "sim", progress=False)
    cfg = DatasetConfig(split=(0, 0, 1))  # 5 slices, 64 x 64 crops, every patient in "test"
    sources = sources_from_simulation(root / "sim", cfg.durations)
    build_dataset(sources, root / "ds", cfg, {"kind": "test"}, progress=False)
    arrays, index = load_crops(root / "ds")
    assert index["patient_id"].nunique() == N_STUDIES
    return {
        "5min": arrays["5min"].astype(np.float64),
        "25min": arrays["25min"].astype(np.float64),
        "patient": index["patient_id"].to_numpy(),
    }


@pytest.fixture(scope="module")
def default_model():
    return load_model(resolve_checkpoint("default"))


def per_patient(images: np.ndarray, crops: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean PSNR and SSIM against the 25-min crops, one value per patient."""
    ref = torch.from_numpy(crops["25min"])
    p = psnr(torch.from_numpy(images), ref).numpy()
    s = ssim(torch.from_numpy(images), ref).numpy()
    patients = list(dict.fromkeys(crops["patient"]))
    return (
        np.array([p[crops["patient"] == q].mean() for q in patients]),
        np.array([s[crops["patient"] == q].mean() for q in patients]),
    )


def margin_failures(images: np.ndarray, crops: dict) -> list[str]:
    """Why ``images`` do not improve the 5-min crops by the stated margin (empty: they do)."""
    raw_p, raw_s = per_patient(crops["5min"], crops)
    p, s = per_patient(images, crops)
    dp, ds = p - raw_p, s - raw_s
    out = []
    if dp.mean() < MIN_PSNR_GAIN_DB:
        out.append(f"mean PSNR gain {dp.mean():+.2f} dB < {MIN_PSNR_GAIN_DB} dB")
    if ds.mean() < MIN_SSIM_GAIN:
        out.append(f"mean SSIM gain {ds.mean():+.3f} < {MIN_SSIM_GAIN}")
    if (dp <= 0).any() or (ds <= 0).any():
        out.append(f"a patient is not improved: PSNR gains {dp.round(2)}, SSIM {ds.round(3)}")
    return out


class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _random_default_architecture() -> torch.nn.Module:
    cfg = dict(read_sidecar(resolve_checkpoint("default"))["model"])
    torch.manual_seed(0)
    return build_model(cfg.pop("name"), **cfg)


def test_evaluated_on_patients_the_model_never_saw():
    seen = read_sidecar(resolve_checkpoint("default"))["training_cohort"]
    assert seen["cohort_seed"] != COHORT_SEED


def test_default_model_improves_unseen_5min_images(crops, default_model):
    out = predict(default_model, crops["5min"])
    assert margin_failures(out, crops) == []


@pytest.mark.parametrize("name", ["identity", "random_init", "gaussian_sigma1"])
def test_margin_rejects_what_does_not_denoise(crops, name):
    """The margin has power: passing the input through, an untrained network of the default
    architecture and a plain Gaussian post-filter (sigma 1 px) all fail it."""
    x = crops["5min"]
    if name == "identity":
        out = predict(_Identity(), x)
    elif name == "random_init":
        out = predict(_random_default_architecture(), x)
    else:
        out = np.stack([ndimage.gaussian_filter(im, 1.0, mode="reflect") for im in x])
    assert margin_failures(out, crops) != []


def test_zero_image_and_finite_output(crops, default_model):
    zero = predict(default_model, np.zeros((2, 64, 64)))
    assert np.array_equal(zero, np.zeros((2, 64, 64)))
    out = predict(default_model, crops["5min"])
    assert np.isfinite(out).all()
    # not clamped (nonneg=false), but never negative beyond a few % of the input's maximum
    peak = crops["5min"].max(axis=(1, 2))
    assert (out.min(axis=(1, 2)) >= -0.05 * peak).all()
