"""A restoration never adds structure: out-of-distribution inputs are flagged, and a restoration
that would add structure is refused.

"Adds no structure" is measured here independently of the guard's own checks: spectral energy
above half the Nyquist frequency (per transaxial slice, FFT), and means over the simulation's own
labels (striata) and its head (activity above 5 % of the truth's maximum), not the guard's
masks.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fastdat.inference import denoise, load_denoiser
from fastdat.inference.denoise import RestorationRefused, denoise_volume
from fastdat.inference.safety import (
    BOUNDS,
    check_input,
    check_output,
    input_features,
    output_features,
)
from fastdat.simulate.cohort import resolve_config, simulate_cohort

STRIATUM = (1, 2, 3, 4, 5, 6)
HF_BOUND = 1.0  # high-frequency energy of the output at most the input's
MEAN_BOUND = {"head": 0.10, "striatum": 0.15}  # largest relative change of a region's mean
UNLIKE = [  # anatomy unlike the training phantoms: another uptake pattern, shape and pose
    "phantom.striatum_ratio=5.0",
    "phantom.thalamus_uptake=1.8",
    "phantom.white_uptake=0.5",
    "phantom.cortex_mm=6.0",
    "phantom.head_scale_sd=0.10",
    "phantom.yaw_deg=15.0",
    "phantom.skull_mm=9.0",
]


def hf_energy(x: np.ndarray) -> float:
    """Energy above half the Nyquist frequency, summed over transaxial slices ``(X, Y, Z)``."""
    f = np.fft.fftfreq(x.shape[0])[:, None], np.fft.fftfreq(x.shape[1])[None, :]
    high = np.hypot(*f) > 0.25
    spec = np.abs(np.fft.fft2(x, axes=(0, 1))) ** 2
    return float(spec[high].sum())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 studies on the training grid, anatomy unlike the training phantoms, worse grades 0-3;
    the last has both striata at grade 3."""
    out = tmp_path_factory.mktemp("unlike")
    sets = ["cohort.n_studies=4", "cohort.balanced=true", "cohort.same_grade_prob=1.0"]
    simulate_cohort(resolve_config({}, [*sets, "cohort.seed=7", *UNLIKE]), out, 2, progress=False)
    studies = []
    for d in sorted((out / "studies").iterdir()):
        load = lambda k, d=d: np.asarray(nib.load(d / f"{k}.nii.gz").dataobj, dtype=np.float32)  # noqa: E731
        studies.append({k: load(k) for k in ("recon_5min", "recon_25min", "truth", "labels")})
    return studies


@pytest.fixture(scope="module")
def net():
    return load_denoiser("default")[0]


def _resample(x, factor, order=1):
    return ndimage.zoom(x, factor, order=order)


def _cases(cohort):
    """Inputs ``(name, volume, voxel_mm, labels, truth)``: every grade, other voxels, smooth."""
    for i, s in enumerate(cohort):
        yield f"5min study {i}", s["recon_5min"], 3.3, s["labels"], s["truth"]
    s = cohort[0]
    for vox in (3.9, 4.8, 2.4):
        f = 3.3 / vox
        yield (
            f"5min at {vox} mm",
            _resample(s["recon_5min"], f),
            vox,
            _resample(s["labels"], f, order=0),
            _resample(s["truth"], f),
        )
    blur = ndimage.gaussian_filter(s["truth"], 12.0 / 2.355 / 3.3)
    yield "noise-free truth, 12 mm blur", blur, 3.3, s["labels"], s["truth"]


def test_restoration_adds_no_structure_or_is_refused(cohort, net):
    refused, kept = [], []
    for name, x, vox, labels, truth in _cases(cohort):
        try:
            y, info = denoise_volume(x, net, "cpu", "anchored", vox)
        except RestorationRefused as err:
            assert "add structure" in str(err) or "refused" in str(err)
            refused.append(name)
            continue
        kept.append(name)
        assert hf_energy(y) <= HF_BOUND * hf_energy(x), name
        head = truth > 0.05 * truth.max()
        stri = np.isin(labels, STRIATUM)
        for region, mask in (("head", head), ("striatum", stri)):
            change = y[mask].mean() / x[mask].mean() - 1
            assert abs(change) <= MEAN_BOUND[region], (name, region, change)
        assert all(c["ok"] for c in info["output_checks"]), name
    # in distribution every grade is restored (both striata at grade 3 included); a noise-free
    # input is refused: the network would write its 5-min noise correction as texture
    assert [n for n in kept if n.startswith("5min study")] == [f"5min study {i}" for i in range(4)]
    assert "noise-free truth, 12 mm blur" in refused


def test_unguarded_network_does_add_structure_to_a_smooth_input(cohort, net):
    """Why the guard exists: without it the default model raises a smooth input's high-frequency
    energy many times over (measured 7-80x on smooth simulated inputs)."""
    s = cohort[0]
    x = ndimage.gaussian_filter(s["truth"], 12.0 / 2.355 / 3.3)
    y, _ = denoise_volume(x, net, "cpu", "anchored", 3.3, guard=False)
    assert hf_energy(y) > 2 * hf_energy(x)
    feats = output_features(x, y)
    assert not all(c.ok for c in check_output(feats))


def test_input_checks_flag_noise_voxel_and_can_refuse(cohort, net):
    s = cohort[0]
    rng = net.input_range
    assert rng and rng["noise"][0] < rng["noise"][1]
    noisy = input_features(s["recon_5min"], 3.3)
    smooth = input_features(ndimage.gaussian_filter(s["recon_25min"], 1.0), 3.3)
    assert smooth["noise"] < 0.5 * noisy["noise"]
    flags = {c.name: c.ok for c in check_input(smooth, rng)}
    assert flags["noise"] is False and flags["voxel_mm"] is True
    far = {c.name: c.ok for c in check_input({**noisy, "voxel_mm": 4.8}, rng)}
    assert far["voxel_mm"] is False
    with pytest.raises(RestorationRefused, match="noise"):
        denoise(
            ndimage.gaussian_filter(s["recon_25min"], 1.0), "default", voxel_mm=3.3, refuse_ood=True
        )


def test_output_checks_catch_each_kind_of_change():
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.poisson(50, (48, 48, 12)).astype(float), 1.0) + 1
    assert all(c.ok for c in check_output(output_features(x, ndimage.gaussian_filter(x, 1.0))))
    grid = x * (1 + 0.3 * (np.indices(x.shape).sum(0) % 2))  # a checkerboard texture
    bad = {c.name for c in check_output(output_features(x, grid)) if not c.ok}
    assert "hf_ratio" in bad
    assert "head_change" in {c.name for c in check_output(output_features(x, 1.3 * x)) if not c.ok}
    assert set(BOUNDS) == {c.name for c in check_output(output_features(x, x))}


def test_cli_records_checks_refuses_structure_and_out_of_distribution(cohort, tmp_path, capsys):
    """``fastdat denoise``: an in-distribution study is written with every check in its
    provenance; a smooth one (the noise-free truth at the reconstruction's 12 mm resolution) is
    refused (exit 2, nothing written, the reason in the summary);
    ``--refuse-ood`` refuses it before the network, naming the input check."""
    import json

    from fastdat.cli import main

    affine = np.diag([3.3, 3.3, 3.3, 1.0])
    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image(cohort[1]["recon_5min"], affine), src / "a.nii.gz")
    smooth = ndimage.gaussian_filter(cohort[1]["truth"], 12.0 / 2.355 / 3.3)
    nib.save(nib.Nifti1Image(smooth, affine), src / "b.nii.gz")
    out = tmp_path / "out"
    assert main(["denoise", str(src), "--out", str(out), "--device", "cpu"]) == 2
    prov = json.loads((out / "a_denoised.json").read_text())
    assert prov["input_checks"] and all(c["ok"] for c in prov["input_checks"])
    assert {c["name"] for c in prov["output_checks"]} == set(BOUNDS)
    assert not (out / "b_denoised.nii.gz").exists() and not (out / "b_denoised.json").exists()
    summary = (out / "denoise_summary.csv").read_text()
    assert "add structure" in summary and "noise" in summary
    capsys.readouterr()
    out2 = tmp_path / "out2"
    argv = ["denoise", str(src / "b.nii.gz"), "--out", str(out2), "--device", "cpu"]
    assert main([*argv, "--refuse-ood"]) == 2
    err = capsys.readouterr().err
    assert "unlike the model's training data" in err and "noise" in err and "Traceback" not in err
    assert not list(out2.glob("*.nii.gz"))
