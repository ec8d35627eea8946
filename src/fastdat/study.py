"""The whole study in one call: simulate -> dataset -> train -> evaluate -> report.

A study preset (``fastdat/presets/study/<name>.yaml``) has the keys:

- ``simulate``: ``{preset, set}``, the simulation preset and its overrides;
- ``dataset``: :class:`fastdat.data.dataset.DatasetConfig` fields;
- ``models`` and ``train``: registry names trained from scratch here with the
  :class:`fastdat.training.config.TrainConfig` fields of ``train``;
- ``pretrained``: networks evaluated as they are (``default`` = the packaged network, or a run
  folder / checkpoint), labelled by :func:`fastdat.models.checkpoint.network_labels`;
- ``finetune``: ``{label: TrainConfig fields}`` with ``init`` naming the starting weights; the
  architecture is taken from that checkpoint;
- ``note``: shown on top of the report.

Everything is resolved and validated before any work (:func:`resolve_study`) and written to
``DIR/study.yaml``; rerunning a study with a different resolved config is refused, naming the
keys that differ. ``DIR`` holds ``sim/`` (the cohort), ``dataset/``, ``runs/<label>/``,
``eval/`` (image quality and, in ``eval/quant/``, the SBR and grading analysis of the same
restored images; ``report.html``, written once at the end) and ``timings.json``. Every stage is
skipped when its output is complete and resumed when it was interrupted, and says which it did.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fastdat.config import apply_overrides, config_diff, load_preset, provenance, to_dict
from fastdat.io.atomic import write_json, write_yaml

log = logging.getLogger(__name__)

STUDY_KEYS = ("note", "simulate", "dataset", "train", "models", "pretrained", "finetune")
ARCH_KEYS = ("name", "in_channels", "out_channels", "spatial_dims", "residual", "nonneg")


@dataclass(frozen=True)
class StudyPlan:
    """A resolved, validated study.

    Attributes:
        simulation: The cohort's :class:`~fastdat.simulate.cohort.SimulationConfig`.
        dataset: The :class:`~fastdat.data.dataset.DatasetConfig`.
        pretrained: label -> checkpoint stem of networks evaluated as they are.
        trained: label -> :class:`~fastdat.training.config.TrainConfig` of networks trained here.
        note: Shown on top of the report.
        resolved: The plan as a plain dict (``study.yaml``).
    """

    simulation: Any
    dataset: Any
    pretrained: dict[str, Path]
    trained: dict[str, Any]
    note: str | None
    resolved: dict[str, Any]


def resolve_study(preset: str, sets: list[str] | None = None, seed: int | None = None) -> StudyPlan:
    """Resolve and validate every stage's config of a study preset (no work is done).

    Args:
        preset: Study preset name.
        sets: ``--set`` overrides of the study preset (``train.max_epochs=5``).
        seed: Cohort seed (``simulate`` ``cohort.seed``), when given.

    Raises:
        ValueError: An unknown key or invalid value (named), clashing network labels, or a
            cohort seed equal to the one a pretrained network was trained on.
    """
    from fastdat.config import resolve
    from fastdat.data.dataset import DatasetConfig
    from fastdat.models.checkpoint import network_labels, read_sidecar, resolve_checkpoint
    from fastdat.simulate.cohort import SimulationConfig
    from fastdat.training.config import TrainConfig

    spec = apply_overrides(load_preset("study", preset), sets)
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise ValueError(
            f"unknown study key(s) {unknown} in preset {preset!r} (known: {', '.join(STUDY_KEYS)})"
        )
    sim = spec.get("simulate") or {}
    bad = sorted(set(sim) - {"preset", "set"})
    if bad:
        raise ValueError(f"unknown key(s) simulate.{bad[0]} (known: simulate.preset, simulate.set)")
    sim_sets = list(sim.get("set") or []) + ([f"cohort.seed={seed}"] if seed is not None else [])
    simulation = resolve(
        SimulationConfig, preset=("simulate", sim.get("preset", preset)), sets=sim_sets
    )
    dataset = resolve(DatasetConfig, base=spec.get("dataset") or {}, section="dataset")
    train_spec = spec.get("train") or {}
    resolve(TrainConfig, base=train_spec, section="train")  # checked even when unused
    trained = {
        m: resolve(TrainConfig, base={**train_spec, "model": m}, section="train")
        for m in spec.get("models") or []
    }
    pretrained = network_labels(list(spec.get("pretrained") or []))
    for label, overrides in (spec.get("finetune") or {}).items():
        if not isinstance(overrides, dict) or not overrides.get("init"):
            raise ValueError(f"finetune.{label} needs an 'init' checkpoint to start from")
        arch = dict(read_sidecar(resolve_checkpoint(overrides["init"]))["model"])
        start = {
            "model": arch["name"],
            "residual": arch["residual"],
            "nonneg": arch["nonneg"],
            "model_kwargs": {k: v for k, v in arch.items() if k not in ARCH_KEYS},
        }
        trained[label] = resolve(
            TrainConfig, base={**start, **overrides}, section=f"finetune.{label}"
        )
    clash = set(pretrained) & set(trained)
    if clash:
        raise ValueError(f"network label(s) {sorted(clash)} are both pretrained and trained")
    starts = {**pretrained, **{k: c.init for k, c in trained.items() if c.init}}
    for label, ref in starts.items():
        cohort = read_sidecar(resolve_checkpoint(ref)).get("training_cohort") or {}
        if cohort.get("cohort_seed") == simulation.cohort.seed:
            raise ValueError(
                f"cohort seed {simulation.cohort.seed} is the seed of the cohort {label} "
                f"({ref}) was trained on: its test patients would be its training patients; "
                "choose another --seed"
            )
    resolved = {
        "note": spec.get("note"),
        "simulate": to_dict(simulation),
        "dataset": to_dict(dataset),
        "networks": {
            **{
                k: {"pretrained": str(v), "weights_sha256": read_sidecar(v).get("weights_sha256")}
                for k, v in pretrained.items()
            },
            **{k: {"train": to_dict(c)} for k, c in trained.items()},
        },
    }
    return StudyPlan(simulation, dataset, pretrained, trained, spec.get("note"), resolved)


def _check_or_record(out: Path, plan: StudyPlan) -> None:
    """Write ``study.yaml``; refuse a study folder made with a different resolved config."""
    path = out / "study.yaml"
    if path.exists():
        old = (yaml.safe_load(path.read_text()) or {}).get("study") or {}
        diffs = config_diff(old, plan.resolved)
        if diffs:
            raise FileExistsError(
                f"{out} holds a study made with a different config ({'; '.join(diffs[:5])}"
                f"{'; ...' if len(diffs) > 5 else ''}); choose a new --out to keep both"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a FastDaT study (no study.yaml)")
    out.mkdir(parents=True, exist_ok=True)
    doc = {"study": plan.resolved, "provenance": provenance()}
    write_yaml(path, doc)


def run_study(
    preset: str,
    out_dir: str | Path,
    device: str = "cpu",
    workers: int = 1,
    sets: list[str] | None = None,
    seed: int | None = None,
    sim_device: str | None = None,
) -> Path:
    """Run (or continue) the study of ``preset`` in ``out_dir``; returns ``report.html``.

    Args:
        preset: ``quick`` or ``paper`` (``fastdat/presets/study``).
        out_dir: Study directory.
        device: Torch device for the physics, training and inference.
        workers: Simulation processes on CPU.
        sets: Overrides of the study preset (``train.max_epochs=5``, ``models=[unet4]``).
        seed: Cohort seed (a different simulated cohort per seed).
        sim_device: Device of the simulate stage (default ``device``). ``"cpu"`` with
            ``workers`` simulates in parallel CPU processes while the networks train on a GPU
            (on CUDA the simulation runs in one process); the cohort is the same either way.
    """
    from fastdat.data.dataset import build_dataset, sources_from_simulation
    from fastdat.evaluation.evaluate import evaluate
    from fastdat.evaluation.report import write_report
    from fastdat.simulate.cohort import simulate_cohort
    from fastdat.training.loop import is_finished, train

    plan = resolve_study(preset, sets, seed)
    out = Path(out_dir)
    _check_or_record(out, plan)
    timings_path = out / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def stage(name: str, fn, done_before: bool = False, earlier: float = 0.0) -> Any:
        """Run ``fn`` and record its wall time plus ``earlier`` (seconds spent before a kill),
        unless its output was already complete (a skip check is not the stage's time)."""
        if done_before:
            log.info("stage %s: already complete, skipped (took %s s)", name, timings.get(name))
            return fn()
        log.info("stage %s: running", name)
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0 + earlier, 1)
        write_json(timings_path, timings)
        log.info("stage %s: done in %.1f s", name, timings[name])
        return result

    stage(
        "simulate",
        lambda: simulate_cohort(plan.simulation, out / "sim", workers, sim_device or device),
        done_before=(out / "sim" / "manifest.csv").exists(),
    )
    stage(
        "dataset",
        lambda: build_dataset(
            sources_from_simulation(out / "sim", plan.dataset.durations),
            out / "dataset",
            plan.dataset,
            {"kind": "simulation", "path": str((out / "sim").resolve())},
        ),
        done_before=(out / "dataset" / "config.yaml").exists(),
    )
    networks: dict[str, Path] = dict(plan.pretrained)
    for label, cfg in plan.trained.items():
        run = out / "runs" / label
        networks[label] = run
        resume = (run / "config.yaml").exists()
        stage(
            f"train:{label}",
            lambda c=cfg, r=run, res=resume: train(out / "dataset", r, c, device, resume=res),
            done_before=is_finished(run),
            earlier=_epoch_seconds(run),  # the epochs of runs killed before this one
        )
    ev = out / "eval"
    stage(
        "evaluate",
        lambda: evaluate(out / "dataset", networks, ev, device, write_report=False),
        done_before="evaluate" in timings and (ev / "quant" / "section.html").exists(),
    )
    quant = ev / "quant" if (ev / "quant" / "section.html").exists() else None
    report = write_report(ev, plan.note, quant, timings)
    log.info("report: %s", report)
    return report


def _epoch_seconds(run: Path) -> float:
    """Wall time of a run's saved epochs (training + validation); 0 before its first epoch."""
    if not (run / "state.json").exists():
        return 0.0
    state = json.loads((run / "state.json").read_text())
    return float(sum(h.get("seconds", 0.0) for h in state.get("history", [])))
