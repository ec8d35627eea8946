"""The whole study in one call: simulate -> dataset -> train every model -> evaluate -> quantify.

``DIR`` holds ``sim/`` (the cohort), ``dataset/``, ``runs/<model>/``, ``eval/`` (with
``report.html``; ``eval/quant/`` holds the SBR and grading analysis, a section of the report) and
``timings.json``. Every stage is skipped when its output is complete and
resumed when it was interrupted, so rerunning the same command after a kill continues the study.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fastdat.config import apply_overrides, from_dict, load_preset

log = logging.getLogger(__name__)


def run_study(
    preset: str,
    out_dir: str | Path,
    device: str = "cpu",
    workers: int = 1,
    sets: list[str] | None = None,
) -> Path:
    """Run (or continue) the study of ``preset`` in ``out_dir``; returns ``report.html``.

    Args:
        preset: ``quick`` or ``paper`` (``fastdat/presets/study``).
        out_dir: Study directory.
        device: Torch device for the physics, training and inference.
        workers: Simulation processes on CPU.
        sets: Overrides of the study preset (``train.max_epochs=5``, ``models=[unet4]``).
    """
    from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation
    from fastdat.evaluation.evaluate import evaluate
    from fastdat.evaluation.quant_study import quantify_study
    from fastdat.evaluation.report import add_section, timings_section
    from fastdat.simulate.cohort import resolve_config, simulate_cohort
    from fastdat.training.config import TrainConfig
    from fastdat.training.loop import is_finished, train

    spec = apply_overrides(load_preset("study", preset), sets)
    unknown = set(spec) - {"simulate", "dataset", "train", "models", "note"}
    if unknown:
        raise ValueError(f"unknown study key(s) {sorted(unknown)} in preset {preset!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def stage(name: str, fn, done_before: bool = False, earlier: float = 0.0) -> Any:
        """Run ``fn`` and record its wall time plus ``earlier`` (seconds spent before a kill),
        unless its output was already complete (a skip check is not the stage's time)."""
        t0 = time.perf_counter()
        result = fn()
        if done_before:
            log.info("stage %s: already complete", name)
            return result
        timings[name] = round(time.perf_counter() - t0 + earlier, 1)
        tmp = out / ".timings.json.tmp"
        tmp.write_text(json.dumps(timings, indent=1))
        os.replace(tmp, timings_path)
        log.info("stage %s: %.1f s", name, timings[name])
        return result

    sim = spec.get("simulate", {})
    sim_cfg = resolve_config(load_preset("simulate", sim.get("preset", preset)), sim.get("set"))
    stage(
        "simulate",
        lambda: simulate_cohort(sim_cfg, out / "sim", workers, device),
        done_before=(out / "sim" / "manifest.csv").exists(),
    )
    ds_cfg = from_dict(DatasetConfig, spec.get("dataset", {}), "dataset")
    stage(
        "dataset",
        lambda: build_dataset(
            sources_from_simulation(out / "sim", ds_cfg.durations),
            out / "dataset",
            ds_cfg,
            {"kind": "simulation", "path": str((out / "sim").resolve())},
        ),
        done_before=(out / "dataset" / "config.yaml").exists(),
    )
    runs = []
    for model in spec.get("models", []):
        cfg = from_dict(TrainConfig, {**spec.get("train", {}), "model": model}, "train")
        run = out / "runs" / model
        runs.append(run)
        if is_finished(run):
            continue
        resume = (run / "config.yaml").exists()
        stage(
            f"train:{model}",
            lambda c=cfg, r=run, res=resume: train(out / "dataset", r, c, device, resume=res),
            earlier=_epoch_seconds(run),  # the epochs of runs killed before this one
        )
    report = stage(
        "evaluate",
        lambda: evaluate(out / "dataset", runs, out / "eval", device, note=spec.get("note")),
    )
    stage(
        "quantify",
        lambda: quantify_study(out / "sim", out / "dataset", out / "eval", runs, device=device),
    )
    return add_section(report, "timings", timings_section(timings))


def _epoch_seconds(run: Path) -> float:
    """Wall time of a run's saved epochs (training + validation); 0 before its first epoch."""
    if not (run / "state.json").exists():
        return 0.0
    state = json.loads((run / "state.json").read_text())
    return float(sum(h.get("seconds", 0.0) for h in state.get("history", [])))
