"""The scan-time sweep end to end on the quick preset: every method at every duration restored
once, every figure of merit with its interval, iso-performance, the report, resume and refusal;
and SBR precision of raw OSEM falling as 1 / sqrt(scan time)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from fastdat.stats.iso import scaling_exponent
from fastdat.sweep.analysis import ISO_FOMS, fom_names
from fastdat.sweep.run import run_sweep_study

DURATIONS = [2.0, 5.0, 10.0, 25.0]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    report = run_sweep_study(out, preset="quick", workers=2, progress=False)
    return out, report


def test_every_method_duration_and_figure_of_merit(sweep):
    out, report = sweep
    rows = _csv(out / "fom.csv")
    methods = ["osem", "gaussian", "gaussian3d", "default", "unet4-per-duration"]
    got = {(r["method"], float(r["duration_min"]), r["fom"]) for r in rows}
    for m in methods:
        for d in DURATIONS:
            for f in fom_names():
                if not (m == "osem" and d == 25.0 and f.endswith("_25")):
                    assert (m, d, f) in got, (m, d, f)
            for f in ("sbr_sd_putamen", "sbr_sd_putamen_posterior"):
                assert (m, d, f) in got, (m, d, f)
    for r in rows:
        v = float(r["value"])
        assert math.isfinite(v), r
        if r["low"] and r["high"] and r["fom"] != "inconclusive_share":
            assert float(r["low"]) <= v <= float(r["high"]), r
    # raw OSEM gets closer to the noise-free image as the scan gets longer
    psnr = {
        float(r["duration_min"]): float(r["value"])
        for r in rows
        if r["method"] == "osem" and r["fom"] == "psnr_nf"
    }
    assert psnr[25.0] > psnr[10.0] > psnr[5.0] > psnr[2.0]
    iso = _csv(out / "iso.csv")
    assert {(r["method"], r["fom"]) for r in iso} >= {(m, f) for m in methods for f in ISO_FOMS}
    # OSEM matches itself at the reference duration
    own = {r["fom"]: r for r in iso if r["method"] == "osem"}
    assert float(own["psnr_nf"]["time_min"]) == pytest.approx(25.0)
    assert report.exists() and "iso" in report.read_text().lower()


def test_each_study_is_restored_once_per_duration_and_method(sweep):
    out, _ = sweep
    from fastdat.sweep.measure import load

    meta = json.loads((out / "sweep.json").read_text())
    n_methods = len(meta["methods"]["5min"])
    test = [load(p) for p in sorted((out / "measure").glob("*.npz"))]
    test = [r for r in test if r["rows"] and r["rows"][0]["split"] == "test"]
    assert len(test) == meta["n_test_patients"] == 8
    for r in test:
        restored = [
            (row["method"], row["duration_min"]) for row in r["rows"] if row["kind"] != "reference"
        ]
        assert len(restored) == len(set(restored)) == n_methods * len(DURATIONS)
        assert r["patches"].shape[0] == len(r["rows"])


def test_rerun_resumes_without_work_and_other_config_is_refused(sweep):
    out, _ = sweep
    before = {p.name: p.stat().st_mtime_ns for p in (out / "measure").glob("*.npz")}
    fom = (out / "fom.csv").read_text()
    run_sweep_study(out, preset="quick", workers=2, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "measure").glob("*.npz")} == before
    assert (out / "fom.csv").read_text() == fom  # same seed, same numbers
    with pytest.raises(FileExistsError, match="n_boot"):
        run_sweep_study(out, preset="quick", sets=["n_boot=300"], progress=False)


def test_raw_osem_sbr_precision_scales_as_one_over_sqrt_time(sweep):
    """SD of putamen SBR across noise realizations of the same patients, raw OSEM: the
    log-log slope against scan time is -1/2 for Poisson data (measured -0.5 +/- its SE here)."""
    out, _ = sweep
    rows = [
        r for r in _csv(out / "fom.csv") if r["method"] == "osem" and r["fom"] == "sbr_sd_putamen"
    ]
    t = np.array([float(r["duration_min"]) for r in rows])
    sd = np.array([float(r["value"]) for r in rows])
    fit = scaling_exponent(t, sd)
    assert fit.slope == pytest.approx(-0.5, abs=max(0.15, 3 * fit.se))


def test_a_count_aware_network_is_told_each_duration(tmp_path):
    """A network trained at 5 min is applied at every duration; a count-aware one must be told
    the duration it restores (not its training scan time), and its restorations differ."""
    import torch

    from fastdat.models import build_model, save_model
    from fastdat.sweep.config import SweepConfig
    from fastdat.sweep.run import methods_per_duration

    torch.manual_seed(0)
    net = build_model("countunet", residual=True, features=4, levels=2, in_channels=3).eval()
    for p in net.parameters():  # non-zero FiLM maps: the scan time matters
        p.data.add_(0.05 * torch.randn_like(p))
    save_model(net, tmp_path / "ca")
    cfg = SweepConfig(
        durations=(2.0, 5.0, 10.0), reference_duration=10.0, networks=(str(tmp_path / "ca"),)
    )
    per = methods_per_duration(cfg, {f"{d:g}min": {} for d in (2, 5, 10)}, {}, "cpu")
    nets = {d: [m for m in ms if m.kind == "network"] for d, ms in per.items()}
    assert {d: [m.scan_minutes for m in ms] for d, ms in nets.items()} == {
        2.0: [2.0],
        5.0: [5.0],
        10.0: [10.0],
    }
    vol = np.random.default_rng(0).gamma(2.0, 1.0, (16, 16, 5))
    y2, y10 = (nets[d][0].apply_volume(vol) for d in (2.0, 10.0))
    assert np.abs(y2 - y10).max() > 1e-3 * vol.max()


def _random_countunet(seed: int):
    import torch

    from fastdat.models import build_model

    torch.manual_seed(seed)
    net = build_model(
        "countunet", residual=True, nonneg=True, features=4, levels=2, in_channels=3
    ).eval()
    for p in net.parameters():  # non-zero FiLM maps and a visible correction
        p.data.add_(0.05 * torch.randn_like(p))
    return net


def test_ensemble_sbr_rows_use_the_sweep_vois_and_the_members_spread(sweep):
    """The intervals stage's reference is the sweep's noise-free SBR in the same fixed VOIs, its
    value the ensemble image's SBR, and sigma the SD of SBRs measured on each member alone."""
    from fastdat.data import read_dataset
    from fastdat.data.dataset import sources_from_simulation
    from fastdat.evaluation.evaluate import crop_column, default_quant
    from fastdat.methods import Method, predict_volume
    from fastdat.models.ensemble import ensemble_from
    from fastdat.quantification.sbr import measure_sbr, place_vois
    from fastdat.sweep import intervals
    from fastdat.sweep.measure import load

    out, _ = sweep
    ds = read_dataset(out / "dataset")
    singles = [_random_countunet(s) for s in (1, 2)]
    ens = Method("ens", "network", input_kind="5min", model=ensemble_from(singles))
    kinds = (*(f"{d:g}min" for d in DURATIONS), "noisefree")
    split = ds.split_of_study
    test_id = next(s for s, sp in split.items() if sp == "test")
    src = next(s for s in sources_from_simulation(out / "sim", kinds) if s.study_id == test_id)
    st = ds.studies.loc[test_id]
    corner = (int(st["corner_i"]), int(st["corner_j"]))
    qcfg = default_quant(ds)
    res = intervals.study_rows(src, "test", corner, (2.0, 10.0), [ens], ds.crop, qcfg)
    assert res["failure"] is None
    rows = res["rows"]
    assert len(rows) == 2 * len(intervals.MEASURES) * 2  # durations x measures x sides
    swept = {r["method"]: r for r in load(out / "measure" / f"{test_id}.npz")["rows"]}
    for r in rows:
        assert r["reference"] == pytest.approx(swept["noisefree"][f"{r['measure']}_{r['side']}"])
    nf, vox = src.loaders["noisefree"]()
    vois = place_vois(crop_column(nf, *corner, ds.crop), float(vox), qcfg)
    x = crop_column(src.loaders["2min"]()[0], *corner, ds.crop)
    alone = [measure_sbr(predict_volume(n, x, 2.0), vois, float(vox), qcfg) for n in singles]
    mean = measure_sbr(predict_volume(ens.model, x, 2.0), vois, float(vox), qcfg)
    for r in (r for r in rows if r["duration_min"] == 2.0):
        key = f"{r['measure']}_{r['side']}"
        assert r["value"] == pytest.approx(mean[key], rel=1e-9)
        expected = max(float(np.std([a[key] for a in alone], ddof=1)), 1e-3)
        assert r["sigma"] == pytest.approx(expected, rel=1e-4)


def test_intervals_calibrate_on_validation_and_cover_the_test_split():
    """Gaussian errors of known SD: q near the normal quantile, test coverage near the level;
    a duration whose errors are twice the stated SD is under-covered, and shows it."""
    from scipy import stats

    from fastdat.sweep.intervals import analyse

    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("val", 3000), ("test", 3000)):
        for i in range(n):
            d = (2.0, 10.0)[i % 2]
            sigma = rng.uniform(0.05, 0.2)
            ref = rng.normal(2.0, 0.5)
            err = sigma * rng.normal() * (2.0 if (split == "test" and d == 2.0) else 1.0)
            rows.append(
                {
                    "method": "ens",
                    "split": split,
                    "duration_min": d,
                    "measure": "putamen",
                    "side": "left",
                    "reference": ref,
                    "value": ref + err,
                    "sigma": sigma,
                }
            )
    table, rules = analyse(rows, 0.9)
    q = rules["ens"]["rules"]["putamen"]["q"]
    assert q == pytest.approx(stats.norm.ppf(0.95), abs=0.08)
    by = {r["duration_min"]: r for r in table}
    assert by["10"]["coverage_low"] < 0.9 < by["10"]["coverage_high"]
    expected_2 = 2 * stats.norm.cdf(q / 2) - 1  # errors of twice the SD
    assert by["2"]["coverage_low"] < expected_2 < by["2"]["coverage_high"]
    assert by["2"]["coverage_high"] < 0.8
    assert by["all"]["n_test"] == 3000
    sig = np.mean([r["sigma"] for r in rows if r["split"] == "test"])
    assert by["all"]["half_width_mean"] == pytest.approx(q * sig, rel=1e-9)


def test_cross_conformal_covers_every_case_once_near_the_level():
    """Exchangeable Gaussian errors of known SD over 200 patients (4 correlated cases each):
    cross-conformal coverage near the level and the normal prediction; every validation and
    test case is a test case once (training rows are not used); a shared patient offset makes
    cases of one patient correlated, and folds keep a patient's cases together."""
    from scipy import stats

    from fastdat.sweep.intervals import cross_conformal

    rng = np.random.default_rng(1)
    rows = []
    for p in range(200):
        split = ("train", "val", "test")[p % 3]
        offset = 0.05 * rng.normal()
        for d in (2.0, 10.0):
            for side in ("left", "right"):
                sigma = rng.uniform(0.05, 0.2)
                ref = rng.normal(2.0, 0.5)
                rows.append(
                    {
                        "method": "ens",
                        "patient_id": f"P{p}",
                        "split": split,
                        "duration_min": d,
                        "measure": "putamen",
                        "side": side,
                        "reference": ref,
                        "value": ref + sigma * rng.normal() + offset * sigma / 0.1,
                        "sigma": sigma,
                    }
                )
    table = cross_conformal(rows, 0.9, folds=10, seed=0)
    by = {r["duration_min"]: r for r in table}
    n_eval = sum(r["split"] != "train" for r in rows)
    assert by["all"]["n_test"] == n_eval and by["all"]["scheme"] == "cross"
    assert by["2"]["n_test"] + by["10"]["n_test"] == n_eval
    assert by["all"]["coverage_low"] < 0.9 < by["all"]["coverage_high"]
    assert by["all"]["n_calibration"] == pytest.approx(0.9 * n_eval, rel=0.05)
    # the scores are |N(0, 1 + 0.25)|: the half-width is about that quantile times sigma
    sig = np.mean([r["sigma"] for r in rows if r["split"] != "train"])
    q = stats.norm.ppf(0.95) * np.sqrt(1.25)
    assert by["all"]["half_width_mean"] == pytest.approx(q * sig, rel=0.1)


def test_a_volume_network_is_scored_on_its_head_box_restoration(sweep):
    """As ``fastdat denoise`` restores it: a volume network restores the head's box of the whole
    volume and the sweep scores the crop column cut from that (not a restoration of the column
    alone, whose smaller field of view changes a GroupNorm network's output)."""
    import torch

    from fastdat.data import read_dataset
    from fastdat.data.dataset import sources_from_simulation
    from fastdat.evaluation.evaluate import crop_column, default_quant
    from fastdat.methods import Method, head_box, predict_in_box, predict_volume
    from fastdat.metrics import psnr
    from fastdat.sweep.config import ObserverConfig
    from fastdat.sweep.measure import measure_study

    out, _ = sweep
    ds = read_dataset(out / "dataset")
    net = Method("vol", "network", input_kind="5min", model=_random_countunet(3))
    kinds = (*(f"{d:g}min" for d in DURATIONS), "noisefree")
    test_id = next(s for s, sp in ds.split_of_study.items() if sp == "test")
    src = next(s for s in sources_from_simulation(out / "sim", kinds) if s.study_id == test_id)
    st = ds.studies.loc[test_id]
    corner = (int(st["corner_i"]), int(st["corner_j"]))
    slices = np.array(json.loads(st["slices"]))
    qcfg = default_quant(ds)
    res = measure_study(
        src, "test", corner, slices, {5.0: [net]}, 25.0, ds.crop, qcfg, ObserverConfig()
    )
    row = next(r for r in res["rows"] if r["method"] == "vol")
    full, _ = src.loaders["5min"]()
    nf = crop_column(src.loaders["noisefree"]()[0], *corner, ds.crop)

    def column_psnr(y):  # as the sweep scores it: mean over the dataset's crop slices
        p = torch.from_numpy(np.moveaxis(y[:, :, slices], -1, 0)).double()
        return float(psnr(p, torch.from_numpy(np.moveaxis(nf[:, :, slices], -1, 0))).mean())

    boxed, _ = predict_in_box(net.model, full, head_box(full), 5.0)
    assert row["psnr_nf"] == pytest.approx(column_psnr(crop_column(boxed, *corner, ds.crop)))
    alone = predict_volume(net.model, crop_column(full, *corner, ds.crop), 5.0)
    assert row["psnr_nf"] != pytest.approx(column_psnr(alone), abs=1e-3)
