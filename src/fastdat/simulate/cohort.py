"""Simulated cohorts: draw subjects, simulate each study, write NIfTI volumes and a manifest.

Layout of a cohort directory ``DIR``::

    config.yaml              resolved config + provenance (version, git commit, seeds)
    manifest.csv             one row per study (demographics, grades, counts, relative paths)
    studies/<study_id>/      truth, mu_map, labels, recon_<d>min, proj_<d>min (.nii.gz), study.json;
                             with acquisition.replicates R also recon_<d>min_r1 .. _rR (further
                             noise realizations), with recon.noise_free recon_noisefree
    montage.png              truth / 25-min / 5-min, one study per grade
    realism.csv, realism.json  per-study and summary image-quality and SBR checks
    shards/shard-I-of-N.csv  the rows of shard I of N (a sharded run; see below)

Every study is written to a hidden temporary folder and renamed when complete, so a killed run
leaves no half-written study that looks complete, and a rerun with the same config resumes. Study
``i`` is fully determined by ``(cohort.seed, i)``: its subject, phantom texture and count noise.

A cluster builds one cohort in N pieces (a job array): shard ``I`` of ``N`` simulates the
contiguous block of study indices :func:`shard_indices` gives into the shared ``DIR`` and writes
``shards/shard-I-of-N.csv``; :func:`merge_cohort` then checks that every study is there, made
with the cohort's config, and writes the manifest, realism report and montage. Because study
``i`` depends only on ``(cohort.seed, i)``, the merged cohort is the unsharded one, file for file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from fastdat.anatomy.labels import true_sbr
from fastdat.anatomy.phantom import (
    Phantom,
    PhantomConfig,
    make_phantom,
    sample_subject,
)
from fastdat.config import config_diff, provenance, resolve, to_dict
from fastdat.io.atomic import write_csv, write_new
from fastdat.simulate.acquisition import (
    AcquisitionConfig,
    ReconConfig,
    draw_total_counts,
    simulate_acquisition,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortConfig:
    """Who is in the cohort.

    Attributes:
        n_studies: Number of studies (one per patient).
        seed: Base seed; study ``i`` uses ``SeedSequence([seed, i])``.
        grade_mix: Probabilities of the worse hemisphere's grade 0, 1, 2, 3.
        balanced: Cycle the worse grade 0, 1, 2, 3, ... instead of drawing it (small demo cohorts).
        same_grade_prob: Probability that the other hemisphere has the same grade (else one lower).
        age_mean, age_sd, age_min, age_max: Age distribution (years), a clipped normal.
        female_fraction: Share of women.
    """

    n_studies: int = 207
    seed: int = 0
    grade_mix: tuple[float, float, float, float] = (0.40, 0.15, 0.30, 0.15)
    balanced: bool = False
    same_grade_prob: float = 0.4
    age_mean: float = 65.0
    age_sd: float = 10.0
    age_min: float = 40.0
    age_max: float = 85.0
    female_fraction: float = 0.45

    def __post_init__(self) -> None:
        if self.n_studies < 1:
            raise ValueError(f"cohort.n_studies must be >= 1, got {self.n_studies}")
        mix = np.asarray(self.grade_mix, float)
        if mix.shape != (4,) or (mix < 0).any() or abs(mix.sum() - 1) > 1e-6:
            raise ValueError(
                f"cohort.grade_mix must be 4 non-negative probabilities summing to 1, "
                f"got {self.grade_mix}"
            )
        if not 0 <= self.same_grade_prob <= 1 or not 0 <= self.female_fraction <= 1:
            raise ValueError("cohort.same_grade_prob and cohort.female_fraction must be in [0, 1]")
        if not 0 < self.age_min <= self.age_max:
            raise ValueError(f"cohort ages need 0 < age_min <= age_max, got {self.age_min}")


@dataclass(frozen=True)
class GridConfig:
    """Reconstruction / phantom grid: ``(size, size, n_slices)`` voxels of ``voxel_mm``.

    The grid is centred on the rotation axis (near the head's centre). The default 80 x 80 at
    3.3 mm (264 mm) holds the whole head inside the inscribed field of view and lets a 64 x 64
    crop (211 mm) be centred on the striata, which lie ~24 mm anterior of the head's centre.
    """

    voxel_mm: float = 3.3
    size: int = 80
    n_slices: int = 48

    def __post_init__(self) -> None:
        if self.voxel_mm <= 0:
            raise ValueError(f"grid.voxel_mm must be > 0, got {self.voxel_mm}")
        if self.size < 8 or self.n_slices < 8:
            raise ValueError(f"grid.size and grid.n_slices must be >= 8, got {self.size}")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated cohort."""

    cohort: CohortConfig = field(default_factory=CohortConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)

    def __post_init__(self) -> None:
        d = self.acquisition.detector_size
        if self.grid.size > d or self.grid.n_slices > d:
            raise ValueError(f"grid {self.grid.size} x {self.grid.n_slices} exceeds detector {d}")
        if self.acquisition.orbit_radius_mm <= self.grid.size * self.grid.voxel_mm / 2:
            raise ValueError(
                f"acquisition.orbit_radius_mm={self.acquisition.orbit_radius_mm} must exceed the "
                f"grid half-width {self.grid.size * self.grid.voxel_mm / 2:.1f} mm"
            )


def study_name(index: int, user: bool = False) -> str:
    """Study id of index ``index``: ``0`` -> ``"sim0001"`` (``"user0001"`` for user maps)."""
    return f"{'user' if user else 'sim'}{index + 1:04d}"


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` -> ``(3, 8)``: shard 3 of 8 (1-based, as a job array's task id)."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text}: expected I/N, e.g. 3/8") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text}: I must be 1..N and N >= 1")
    return i, n


def shard_indices(n_studies: int, shard: tuple[int, int]) -> range:
    """Study indices of shard ``(I, N)``: the ``I``-th of ``N`` contiguous, near-equal blocks.

    Every index of ``range(n_studies)`` is in exactly one shard; a shard may be empty when
    ``N > n_studies``.
    """
    i, n = shard
    return range((i - 1) * n_studies // n, i * n_studies // n)


def duration_name(minutes: float) -> str:
    """``25.0`` -> ``"25min"``."""
    return f"{minutes:g}min"


def draw_demographics(cfg: CohortConfig, index: int, rng: np.random.Generator) -> dict[str, Any]:
    """Age, sex and per-hemisphere grades of study ``index``."""
    if cfg.balanced:
        worse = index % 4
    else:
        worse = int(rng.choice(4, p=np.asarray(cfg.grade_mix) / sum(cfg.grade_mix)))
    other = worse if (worse == 0 or rng.random() < cfg.same_grade_prob) else worse - 1
    left_worse = rng.random() < 0.5
    age = float(np.clip(rng.normal(cfg.age_mean, cfg.age_sd), cfg.age_min, cfg.age_max))
    return {
        "age": round(age, 1),
        "sex": "F" if rng.random() < cfg.female_fraction else "M",
        "grade_left": worse if left_worse else other,
        "grade_right": other if left_worse else worse,
    }


def _save(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def simulate_study(
    cfg: SimulationConfig,
    index: int,
    out_dir: Path,
    device: str = "cpu",
    phantom: Phantom | None = None,
) -> dict[str, Any]:
    """Simulate study ``index`` of the cohort into ``out_dir / studies / <id>`` (atomically).

    Args:
        cfg: Resolved config.
        index: Study index; with ``cfg.cohort.seed`` it determines the subject and the noise.
        out_dir: Cohort directory.
        device: Torch device of the physics.
        phantom: A user's phantom (see :mod:`fastdat.simulate.user_maps`) instead of a drawn one.

    Returns:
        The study's manifest row.
    """
    study_id = study_name(index, user=phantom is not None)
    final = out_dir / "studies" / study_id
    digest = study_config_digest(cfg)
    if (final / "study.json").exists():
        meta = json.loads((final / "study.json").read_text())
        if meta.get("config_sha256") != digest:
            raise FileExistsError(
                f"{final} was made with a different config than {out_dir / 'config.yaml'}; "
                "remove it to simulate it again"
            )
        return meta["manifest"]
    seq = np.random.SeedSequence([cfg.cohort.seed, index])
    rng_subject, rng_counts = (np.random.default_rng(s) for s in seq.spawn(2))
    g = cfg.grid
    if phantom is None:
        demo = draw_demographics(cfg.cohort, index, rng_subject)
        drawn = sample_subject(rng_subject, cfg.phantom, **demo)
        phantom = make_phantom(drawn, (g.size, g.size, g.n_slices), g.voxel_mm, cfg.phantom)
        subject = to_dict(drawn)
        voxel_mm = g.voxel_mm
    else:
        demo = {"age": "", "sex": "", "grade_left": "", "grade_right": ""}
        subject = None
        voxel_mm = float(abs(phantom.affine[0, 0]))
    gen = torch.Generator(device=device).manual_seed(int(rng_counts.integers(2**62)))
    total = draw_total_counts(gen, cfg.acquisition)
    sim = simulate_acquisition(
        torch.from_numpy(phantom.activity),
        torch.from_numpy(phantom.mu),
        voxel_mm,
        total,
        cfg.acquisition,
        cfg.recon,
        gen,
        device=device,
    )
    tmp = out_dir / "studies" / f".{study_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {"truth": "truth.nii.gz", "mu_map": "mu_map.nii.gz", "labels": "labels.nii.gz"}
    _save(tmp / files["truth"], phantom.activity, phantom.affine)
    _save(tmp / files["mu_map"], phantom.mu, phantom.affine)
    _save(tmp / files["labels"], phantom.labels, phantom.affine)
    proj_affine = np.diag([voxel_mm, voxel_mm, 360.0 / cfg.acquisition.n_views, 1.0])
    row: dict[str, Any] = {"study_id": study_id, "patient_id": f"P{index + 1:04d}", **demo}
    for d, y in sim["projections"].items():
        row[f"counts_{duration_name(d)}"] = int(y.sum())
    images = {duration_name(d): img for d, img in sim["images"].items()}
    for d, reps in sim["replicates"].items():
        images.update({f"{duration_name(d)}_r{k + 1}": img for k, img in enumerate(reps)})
    if sim["noise_free"] is not None:
        images["noisefree"] = sim["noise_free"]
    for kind, img in images.items():
        name = f"recon_{kind}"
        files[name] = f"{name}.nii.gz"
        _save(tmp / files[name], img.cpu().numpy(), phantom.affine)
    save = cfg.acquisition.save_projections
    longest = max(sim["projections"])
    for d, y in sim["projections"].items():
        if save == "none" or (save == "longest" and d != longest):
            continue
        name = f"proj_{duration_name(d)}"
        files[name] = f"{name}.nii.gz"
        # (lateral, axial, view) int32 counts; "voxel" size: bin (mm), bin (mm), step (deg)
        _save(tmp / files[name], y.permute(1, 2, 0).cpu().numpy().astype(np.int32), proj_affine)
    row.update({k: f"studies/{study_id}/{v}" for k, v in files.items()})
    if np.isin(phantom.labels, [1, 2, 3, 4, 5, 6]).any() and (phantom.labels == 7).any():
        truth_sbr = true_sbr(phantom.activity, phantom.labels)
        row.update({f"true_sbr_{k}": round(v, 4) for k, v in truth_sbr.items()})
    meta = {
        "manifest": row,
        "subject": subject,
        "expected_total_counts": total,
        "motion": {duration_name(d): m for d, m in sim["motion"].items()},
        "seed_entropy": [cfg.cohort.seed, index],
        "config_sha256": digest,
    }
    (tmp / "study.json").write_text(json.dumps(meta, indent=1))
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        # the run that started this worker is gone: do not commit into its directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError("cohort run ended; worker exits without writing")
    os.replace(tmp, final)
    return row


def study_config_digest(cfg: SimulationConfig) -> str:
    """SHA-256 of everything that determines one study (the config minus the cohort size)."""
    d = to_dict(cfg)
    d["cohort"].pop("n_studies")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


_PARENT_PID: int | None = None


def _worker_init(threads: int, parent_pid: int) -> None:
    global _PARENT_PID
    _PARENT_PID = parent_pid
    torch.set_num_threads(threads)


def _run_one(args: tuple) -> dict[str, Any]:
    cfg, index, out_dir, device = args
    return simulate_study(cfg, index, Path(out_dir), device)


def _terminate(signum, frame) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def _check_existing(out_dir: Path, resolved: dict[str, Any]) -> None:
    path = out_dir / "config.yaml"
    if not path.exists():
        if out_dir.exists() and any(p.name != "studies" for p in out_dir.iterdir()):
            raise FileExistsError(
                f"{out_dir} exists and is not a FastDaT cohort (no config.yaml); "
                "choose a new --out or empty it"
            )
        return
    old = (yaml.safe_load(path.read_text()) or {}).get("config")
    if old != resolved:
        diffs = config_diff(old or {}, resolved)
        raise FileExistsError(
            f"{out_dir} holds a cohort made with a different config ({', '.join(diffs[:5])}); "
            "choose a new --out to keep both"
        )


def _write_config(out_dir: Path, resolved: dict[str, Any], **prov: Any) -> None:
    doc = {"config": resolved, "provenance": provenance(**prov)}
    text = yaml.safe_dump(doc, sort_keys=False)
    try:  # never replaces: two shards starting at once both check the one that won
        write_new(out_dir / "config.yaml", lambda tmp: tmp.write_text(text))
    except FileExistsError:
        _check_existing(out_dir, resolved)


def simulate_cohort(
    cfg: SimulationConfig,
    out_dir: str | Path,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    phantom: Phantom | None = None,
    shard: tuple[int, int] | None = None,
) -> Path:
    """Simulate (or resume) a cohort into ``out_dir``; returns the manifest path.

    Args:
        cfg: Resolved simulation config.
        out_dir: Cohort directory (created; a different existing config is refused).
        workers: Parallel processes on CPU (each single-threaded); CUDA runs in-process.
        device: ``"cpu"`` or a CUDA device.
        progress: Show a progress bar.
        phantom: Simulate ``cfg.cohort.n_studies`` noise realizations of this user phantom
            instead of drawn subjects (in-process).
        shard: ``(I, N)``: simulate only shard ``I`` of ``N`` (:func:`shard_indices`) and
            return ``shards/shard-I-of-N.csv``; :func:`merge_cohort` writes the manifest once
            every shard is done. Shards may run at once, on any machines sharing ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` holds another config's cohort.
        ValueError: ``shard`` with a user phantom.
    """
    out_dir = Path(out_dir)
    resolved = to_dict(cfg)
    _check_existing(out_dir, resolved)
    if shard is not None and phantom is not None:
        raise ValueError("--shard: user maps are simulated in one process; run them unsharded")
    n = cfg.cohort.n_studies
    indices = shard_indices(n, shard) if shard is not None else range(n)
    (out_dir / "studies").mkdir(parents=True, exist_ok=True)
    for i in indices:  # only this run's own: other shards may be writing theirs right now
        shutil.rmtree(out_dir / "studies" / f".{study_name(i, phantom is not None)}.tmp", True)
    if not (out_dir / "config.yaml").exists():
        _write_config(out_dir, resolved, device=device, workers=workers)
    jobs = [(cfg, i, str(out_dir), device) for i in indices]
    bar = tqdm(total=len(jobs), desc="simulate", unit="study", disable=not progress)
    rows: list[dict[str, Any]] = []
    if phantom is not None:
        for i in indices:
            rows.append(simulate_study(cfg, i, out_dir, device, phantom))
            bar.update()
    elif workers > 1 and not str(device).startswith("cuda"):
        ctx = mp.get_context("spawn")
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            # leaving the block (also on SIGTERM / Ctrl-C) terminates the workers
            with ctx.Pool(workers, initializer=_worker_init, initargs=(1, os.getpid())) as pool:
                for row in pool.imap_unordered(_run_one, jobs):
                    rows.append(row)
                    bar.update()
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        for job in jobs:
            rows.append(_run_one(job))
            bar.update()
    bar.close()
    order = {study_name(i, phantom is not None): i for i in indices}
    rows.sort(key=lambda r: order[r["study_id"]])  # index order (the merge's, too)
    if shard is not None:
        part = out_dir / "shards" / f"shard-{shard[0]}-of-{shard[1]}.csv"
        part.parent.mkdir(exist_ok=True)
        write_csv(part, rows)
        return part
    return _finish(out_dir, rows)


def merge_cohort(out_dir: str | Path) -> Path:
    """Join a sharded cohort: check every study and write its manifest and reports.

    Reads the studies themselves (not the shard lists), so any split into shards, or a mix of
    sharded and unsharded runs into the same folder, merges to the same cohort.

    Args:
        out_dir: The cohort directory every shard wrote into.

    Returns:
        The manifest path.

    Raises:
        FileNotFoundError: No cohort config, or studies missing (named, with the shards that
            should have made them).
        FileExistsError: A study made with another config.
    """
    out_dir = Path(out_dir)
    path = out_dir / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{out_dir}: no config.yaml; not a cohort (run the shards first)")
    cfg = resolve_config((yaml.safe_load(path.read_text()) or {}).get("config"))
    digest = study_config_digest(cfg)
    rows, missing = [], []
    for i in range(cfg.cohort.n_studies):
        meta_path = out_dir / "studies" / study_name(i) / "study.json"
        if not meta_path.exists():
            missing.append(i)
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("config_sha256") != digest:
            raise FileExistsError(
                f"{meta_path.parent} was made with a different config than {path}"
            )
        rows.append(meta["manifest"])
    if missing:
        names = ", ".join(study_name(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        shards = sorted(p.stem for p in (out_dir / "shards").glob("shard-*.csv"))
        raise FileNotFoundError(
            f"{out_dir}: {len(missing)} of {cfg.cohort.n_studies} studies are missing ({names}); "
            f"finished shards: {', '.join(shards) or 'none'}. Run the missing shards (a rerun "
            "resumes), then merge again"
        )
    return _finish(out_dir, rows)


def _finish(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write the manifest, realism report and montage of a complete cohort."""
    manifest = out_dir / "manifest.csv"
    write_csv(manifest, rows)
    from fastdat.simulate.report import montage, realism_report

    graded = [r for r in rows if r["grade_left"] != ""]
    if graded and not {"recon_5min", "recon_25min"} <= set(rows[0]):
        log.info("no realism report or montage: they compare 5- and 25-min images")
    elif graded:
        summary = realism_report(out_dir, graded)
        log.info(
            "realism: 5-min vs 25-min crops PSNR %.2f dB, SSIM %.3f over %d studies (%s)",
            summary["psnr_5_vs_25"]["mean"],
            summary["ssim_5_vs_25"]["mean"],
            summary["n_studies"],
            out_dir / "realism.json",
        )
        montage(out_dir, graded, out_dir / "montage.png")
    return manifest


def resolve_config(
    preset: dict[str, Any] | None = None, sets: list[str] | None = None
) -> SimulationConfig:
    """Build a :class:`SimulationConfig` from a preset dict and ``--set`` overrides.

    A thin call of :func:`fastdat.config.resolve` with ``preset`` as its base layer.

    Args:
        preset: Partial config (a loaded preset, or a cohort's resolved ``config``).
        sets: ``key.sub=value`` overrides.

    Raises:
        ValueError: An unknown key or invalid value, named.
    """
    return resolve(SimulationConfig, base=preset, sets=sets)
