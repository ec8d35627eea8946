"""Run the scan-time sweep end to end, resumably (``fastdat sweep``).

A sweep preset (``fastdat/presets/sweep/<name>.yaml``) has the keys ``simulate`` and
``precision`` (``{preset, set}``: the cohort and the precision cohort, simulated into
``OUT/sim`` and ``OUT/precision-sim`` unless given) and ``sweep``
(:class:`~fastdat.sweep.config.SweepConfig` fields). ``OUT`` receives::

    config.yaml          resolved sweep config, the cohorts it read, provenance
    dataset/             the crops and the patient split of the sweep cohort (every duration and
                         the noise-free reconstruction)
    tuned.json           filters tuned per duration on the validation split (vs noise-free)
    train/<d>min/        the per-duration networks (``per_duration``)
    measure/<id>.npz     each study's measurements (:mod:`fastdat.sweep.measure`)
    intervals/, intervals.csv, intervals.json
                         SBR intervals of ensemble networks, calibrated on the validation
                         split, coverage on the test split (:mod:`fastdat.sweep.intervals`)
    precision/           the precision cohort's dataset and measurements (``--precision``)
    fom.csv, iso.csv     figures of merit and iso-performance times (:mod:`fastdat.sweep.analysis`)
    sweep.json           durations, patients, timings and notes
    report.html, figures/

Every stage skips what a previous run of the same config finished (a killed sweep resumes);
a different config in ``OUT`` is refused. Nothing is restored twice: each study is restored once
per (duration, method) and every figure of merit reads that one restoration.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from fastdat.config import config_diff, provenance, resolve, to_dict
from fastdat.evaluation.evaluate import crop_column as slab
from fastdat.io.atomic import write_csv, write_json, write_yaml
from fastdat.methods import Method
from fastdat.methods.filters import FILTERS, VOLUME_FILTERS, tune, tune_volume
from fastdat.quantification.sbr import QuantConfig
from fastdat.sweep import analysis, intervals
from fastdat.sweep.config import SweepConfig, kind
from fastdat.sweep.measure import (
    NOISE_FREE,
    load,
    measure_precision_study,
    measure_study,
    save,
)

log = logging.getLogger(__name__)


def _check_config(out: Path, doc: dict[str, Any]) -> None:
    path = out / "config.yaml"
    if path.exists():
        old = yaml.safe_load(path.read_text()) or {}
        old = {k: old.get(k) for k in doc}
        if old != doc:
            diffs = config_diff(old, doc)
            raise FileExistsError(
                f"{out} holds a sweep of another config ({', '.join(diffs[:5])}); "
                "choose a new --out to keep both"
            )
    elif out.exists() and any(p.name not in ("sim", "precision-sim") for p in out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a FastDaT sweep (no config.yaml)")


def _dataset(sim: Path, out: Path, cfg: SweepConfig, split, kinds: tuple[str, ...]):
    from fastdat.data import read_dataset
    from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation

    sources = sources_from_simulation(sim, kinds)
    ds_cfg = DatasetConfig(
        split=split, seed=cfg.split_seed, durations=kinds, reference=kind(cfg.reference_duration)
    )
    build_dataset(
        sources, out, ds_cfg, {"kind": "simulation", "path": str(sim.resolve())}, progress=False
    )
    return read_dataset(out)


def _slices(ds, study_id: str) -> np.ndarray:
    return np.array(json.loads(ds.studies.loc[study_id, "slices"]), int)


def tune_per_duration(ds, sources, cfg: SweepConfig) -> dict[str, dict[str, Any]]:
    """Each filter of ``cfg.filters`` tuned per duration on the validation split, by mean PSNR
    against the noise-free reconstruction: 2D filters on the validation crops, volume filters
    on the validation crop columns (scored on their crop slices)."""
    val = ds.rows("val")
    if len(val) == 0:
        raise ValueError(f"{ds.path}: no validation patients to tune the filters on")
    ref = ds.crops[NOISE_FREE][val].astype(np.float64)
    val_ids = [s for s, sp in ds.split_of_study.items() if sp == "val"]
    by_id = {s.study_id: s for s in sources}
    out: dict[str, dict[str, Any]] = {}
    volume_filters = [n for n in cfg.filters if n in VOLUME_FILTERS]
    corners, slices, refs = {}, [], []
    if volume_filters:  # the noise-free references of the validation slabs, read once
        for sid in val_ids:
            st = ds.studies.loc[sid]
            corners[sid] = (int(st["corner_i"]), int(st["corner_j"]))
            s = _slices(ds, sid)
            nf = slab(by_id[sid].loaders[NOISE_FREE]()[0], *corners[sid], ds.crop)
            slices.append(s)
            refs.append(np.moveaxis(nf[:, :, s], -1, 0))
    for d in cfg.durations:
        k = kind(d)
        x = ds.crops[k][val].astype(np.float64)
        out[k] = {n: tune(n, x, ref) for n in cfg.filters if n in FILTERS}
        if volume_filters:
            vols = [slab(by_id[sid].loaders[k]()[0], *corners[sid], ds.crop) for sid in val_ids]
            for n in volume_filters:
                out[k][n] = tune_volume(n, vols, slices, np.concatenate(refs))
        for doc in out[k].values():
            doc.pop("grid", None)
    return out


def _per_duration_networks(ds_dir: Path, out: Path, cfg: SweepConfig, device) -> dict[str, Path]:
    from fastdat.training.config import TrainConfig
    from fastdat.training.loop import is_finished, train

    runs = {}
    for d in cfg.durations:
        k = kind(d)
        tcfg = resolve(
            TrainConfig,
            sets=[f"model={cfg.per_duration_model}", *cfg.per_duration_sets, f"input_kind={k}"],
        )
        run = out / "train" / k
        if not is_finished(run):
            log.info("training %s on %s images", cfg.per_duration_model, k)
            train(ds_dir, run, tcfg, device, resume=run.exists(), progress=False)
        runs[k] = run
    return runs


def methods_per_duration(
    cfg: SweepConfig, tuned: dict, per_duration: dict[str, Path], device
) -> dict[float, list[Method]]:
    """Raw OSEM (``osem``), the tuned filters, the networks trained at 5 min and the
    per-duration network, for every duration; a count-aware network is told each duration."""
    from fastdat.methods import load_methods
    from fastdat.methods.load import network_method

    loaded = load_methods(list(cfg.networks), None, device, ())
    networks = [m for m in loaded if m.kind == "network"]
    out = {}
    for d in cfg.durations:
        k = kind(d)
        ms = [Method("osem", "raw", input_kind=k)]
        ms += [
            Method(n, "filter", input_kind=k, params=dict(doc["params"]))
            for n, doc in tuned[k].items()
        ]
        ms += [replace(m, minutes=float(d)) for m in networks]
        if k in per_duration:
            net = network_method(f"{cfg.per_duration_model}-per-duration", per_duration[k], device)
            ms.append(net)
        out[float(d)] = ms
    return out


def _measure_all(ds, sources, methods, cfg, folder: Path, qcfg: QuantConfig, progress: bool):
    folder.mkdir(parents=True, exist_ok=True)
    results, failures = [], []
    split = ds.split_of_study
    for src in tqdm(sources, desc="sweep", unit="study", disable=not progress):
        if src.study_id not in ds.studies.index:
            continue
        path = folder / f"{src.study_id}.npz"
        if not path.exists():
            st = ds.studies.loc[src.study_id]
            res = measure_study(
                src,
                split.get(src.study_id, ""),
                (int(st["corner_i"]), int(st["corner_j"])),
                _slices(ds, src.study_id),
                methods,
                cfg.reference_duration,
                ds.crop,
                qcfg,
                cfg.observer,
            )
            save(path, res)
        res = load(path)
        if res["failure"]:
            failures.append({"study_id": src.study_id, "reason": res["failure"]})
        results.append(res)
    return results, failures


def _precision(precision_sim: Path, out: Path, cfg, methods, qcfg, progress):
    """Measurements of the precision cohort (every realization of every duration)."""
    from fastdat.data.dataset import sources_from_simulation

    sim_cfg = yaml.safe_load((precision_sim / "config.yaml").read_text())["config"]
    reps = range(1, int(sim_cfg["acquisition"].get("replicates", 0)) + 1)
    if not reps:
        raise ValueError(f"{precision_sim}: no noise realizations (acquisition.replicates = 0)")
    ds = _dataset(
        precision_sim,
        out / "dataset",
        cfg,
        (0.0, 0.0, 1.0),
        (kind(cfg.reference_duration), NOISE_FREE),
    )
    kinds = [kind(d) for d in cfg.durations]
    kinds += [f"{k}_r{r}" for k in kinds for r in reps] + [NOISE_FREE]
    rows = []
    folder = out / "measure"
    folder.mkdir(parents=True, exist_ok=True)
    for src in tqdm(
        sources_from_simulation(precision_sim, tuple(kinds)),
        desc="precision",
        unit="study",
        disable=not progress,
    ):
        if src.study_id not in ds.studies.index:
            continue
        path = folder / f"{src.study_id}.npz"
        if not path.exists():
            st = ds.studies.loc[src.study_id]
            corner = (int(st["corner_i"]), int(st["corner_j"]))
            save(path, measure_precision_study(src, corner, methods, len(reps), ds.crop, qcfg))
        rows += load(path)["rows"]
    return rows


def run_sweep(
    sim: str | Path,
    out: str | Path,
    cfg: SweepConfig | None = None,
    precision_sim: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> Path:
    """Run the sweep on cohort ``sim`` into ``out``; returns ``out / "report.html"``.

    Args:
        sim: A cohort simulated with every duration of ``cfg.durations`` and the noise-free
            reconstruction (``fastdat simulate --preset sweep``).
        out: Output folder (see the module).
        cfg: Settings (defaults if ``None``).
        precision_sim: A cohort with noise realizations (``acquisition.replicates``) for the
            SBR precision, or ``None`` (no ``sbr_sd_*`` figures).
        device: Torch device of the networks.
        progress: Progress bars.
        timings: Stage wall times of the caller (the simulations), shown with the sweep's.
    """
    from fastdat.data.dataset import sources_from_simulation
    from fastdat.evaluation.evaluate import default_quant

    cfg = cfg or SweepConfig()
    sim, out = Path(sim), Path(out)
    doc = {
        "sweep": to_dict(cfg),
        "cohort": str(sim.resolve()),
        "precision_cohort": str(Path(precision_sim).resolve()) if precision_sim else None,
    }
    _check_config(out, doc)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.yaml").exists():
        write_yaml(out / "config.yaml", {**doc, "provenance": provenance(device=str(device))})
    timings = dict(timings or {})
    t0 = time.perf_counter()
    kinds = (*(kind(d) for d in cfg.durations), NOISE_FREE)
    ds = _dataset(sim, out / "dataset", cfg, cfg.split, kinds)
    sources = sources_from_simulation(sim, kinds)
    timings["dataset"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tuned_path = out / "tuned.json"
    if tuned_path.exists():
        tuned = json.loads(tuned_path.read_text())
    else:
        tuned = tune_per_duration(ds, sources, cfg)
        write_json(tuned_path, tuned)
    timings["tune filters"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    per_duration = _per_duration_networks(ds.path, out, cfg, device) if cfg.per_duration else {}
    timings["train per duration"] = time.perf_counter() - t0

    methods = methods_per_duration(cfg, tuned, per_duration, device)
    qcfg = default_quant(ds)
    t0 = time.perf_counter()
    results, failures = _measure_all(ds, sources, methods, cfg, out / "measure", qcfg, progress)
    timings["measure"] = time.perf_counter() - t0

    ens = intervals.ensembles(methods[min(methods)])
    if ens:
        t0 = time.perf_counter()
        rows, more_failures = intervals.measure_all(
            ds, sources, cfg.durations, ens, out / "intervals", qcfg, progress
        )
        table, rules = intervals.analyse(rows, cfg.interval_level)
        table += intervals.cross_conformal(rows, cfg.interval_level, seed=cfg.seed)
        write_csv(out / "intervals.csv", table)
        write_json(out / "intervals.json", rules)
        failures += [f for f in more_failures if f not in failures]
        timings["intervals"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vox = float(ds.studies["voxel_mm"].iloc[0])
    foms, iso, problems = analysis.analyse(analysis.table(results), cfg, vox)
    timings["analyse"] = time.perf_counter() - t0
    if precision_sim is not None:
        t0 = time.perf_counter()
        rows = _precision(Path(precision_sim), out / "precision", cfg, methods, qcfg, progress)
        more, more_iso = analysis.precision(rows, cfg)
        foms, iso = foms + more, iso + more_iso
        timings["precision"] = time.perf_counter() - t0
    write_csv(out / "fom.csv", foms)
    write_csv(out / "iso.csv", iso)
    n_test = sum(1 for r in results if r["rows"] and r["rows"][0]["split"] == "test")
    cost: dict[str, dict[str, float]] = {}
    for r in results:
        for row in r["rows"]:
            if "restore_s" in row:
                per = cost.setdefault(row["method"], {})
                d = kind(row["duration_min"])
                per[d] = per.get(d, 0.0) + row["restore_s"] / max(n_test, 1)
    sim_cfg = yaml.safe_load((sim / "config.yaml").read_text())["config"]
    notes = [
        "SBR in fixed VOIs: placed once per patient on its noise-free reconstruction",
        "filters tuned per duration on the validation split against the noise-free image",
    ]
    notes += problems
    if failures:
        notes.append(f"{len(failures)} studies without a quantifiable noise-free image: {failures}")
    write_json(
        out / "sweep.json",
        {
            "n_test_patients": n_test,
            "durations": list(cfg.durations),
            "mode": sim_cfg["acquisition"].get("mode", "nested"),
            "reference_method": analysis.REFERENCE_METHOD,
            "reference_duration": cfg.reference_duration,
            "methods": {kind(d): [m.describe() for m in ms] for d, ms in methods.items()},
            "notes": notes,
            "timings": timings,
            "restore_seconds_per_patient": cost,
        },
    )
    from fastdat.sweep.report import write_sweep_report

    return write_sweep_report(out)


def run_sweep_study(
    out: str | Path,
    preset: str | None = "quick",
    file: str | Path | None = None,
    sets: list[str] | None = None,
    sim: str | Path | None = None,
    precision_sim: str | Path | None = None,
    device: str = "cpu",
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Simulate the preset's cohorts (unless given) and run the sweep; returns the report.

    Args:
        out: Output folder.
        preset: Sweep preset name, or ``None`` (``file`` alone).
        file: A YAML file of the same keys, layered over the preset.
        sets: ``--set`` overrides of the :class:`SweepConfig` (``n_boot=500``).
        sim, precision_sim: Cohorts already simulated (skip those simulations).
        device: Torch device. workers: Simulation processes.
        progress: Progress bars.
    """
    from fastdat.config import load_preset
    from fastdat.simulate.cohort import SimulationConfig, simulate_cohort

    doc: dict[str, Any] = load_preset("sweep", preset) if preset else {}
    if file:
        doc = {**doc, **(yaml.safe_load(Path(file).read_text()) or {})}
    unknown = sorted(set(doc) - {"simulate", "precision", "sweep"})
    if unknown:
        raise ValueError(f"sweep preset keys {unknown} unknown (simulate, precision, sweep)")
    cfg = resolve(SweepConfig, base=doc.get("sweep") or {}, sets=sets)
    out = Path(out)

    def cohort(section: str, folder: Path) -> Path:
        spec = doc.get(section) or {}
        scfg = resolve(
            SimulationConfig,
            preset=("simulate", spec["preset"]) if spec.get("preset") else None,
            sets=list(spec.get("set") or []),
        )
        durations = {float(d) for d in scfg.acquisition.durations_min}
        if not {float(d) for d in cfg.durations} <= durations or not scfg.recon.noise_free:
            raise ValueError(
                f"sweep preset's {section}: the cohort must hold every sweep duration "
                f"{list(cfg.durations)} and the noise-free reconstruction"
            )
        simulate_cohort(scfg, folder, workers, device)
        return folder

    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    sim = Path(sim) if sim else cohort("simulate", out / "sim")
    timings["simulate"] = time.perf_counter() - t0
    if precision_sim is None and doc.get("precision"):
        t0 = time.perf_counter()
        precision_sim = cohort("precision", out / "precision-sim")
        timings["simulate precision"] = time.perf_counter() - t0
    return run_sweep(sim, out, cfg, precision_sim, device, progress, timings)
