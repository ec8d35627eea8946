"""The ``fastdat`` command line: thin wrappers over library functions.

Each command parses its arguments, calls the library, and prints the result; configs are built by
:func:`fastdat.config.resolve` (defaults < preset < ``--config FILE`` < ``--set KEY=VALUE``), and
known errors become one line on stderr with exit status 2 (:func:`main`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fastdat import __version__


def _cmd_collimators(args: argparse.Namespace) -> int:
    from fastdat.tomo.collimator import COLLIMATORS

    print(f"{'name':<14} {'D (mm)':>7} {'L (mm)':>7} {'FWHM@100mm':>11}")
    for c in COLLIMATORS.values():
        print(
            f"{c.name:<14} {c.hole_diameter_mm:7.2f} {c.hole_length_mm:7.2f} "
            f"{c.fwhm_mm(100.0):11.2f}"
        )
    return 0


def _resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; resolved only here, at the CLI edge."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def _cmd_simulate(args: argparse.Namespace) -> int:
    from fastdat.config import resolve
    from fastdat.simulate.cohort import (
        SimulationConfig,
        merge_cohort,
        parse_shard,
        simulate_cohort,
    )
    from fastdat.simulate.user_maps import user_map_config, user_phantom

    if args.projection_dicom:
        from fastdat.io.projection_dicom import LAYOUTS

        if args.projection_dicom not in LAYOUTS:
            raise ValueError(
                f"--projection-dicom {args.projection_dicom}: layouts are {', '.join(LAYOUTS)}"
            )
    if args.merge:
        keys = ("shard", "preset", "config", "set", "seed", "activity", "mu_map", "labels")
        given = [f"--{k.replace('_', '-')}" for k in keys if getattr(args, k)]
        if given:
            raise ValueError(
                f"--merge reads the config from OUT/config.yaml; drop {', '.join(given)}"
            )
        manifest = merge_cohort(args.out)
        print(f"merged {manifest}")
        return _after_simulate(args, manifest)
    shard = parse_shard(args.shard) if args.shard else None
    if shard and args.projection_dicom:
        raise ValueError("--projection-dicom with --shard: pass it to --merge instead")
    sets = list(args.set or [])
    if args.seed is not None:
        sets.append(f"cohort.seed={args.seed}")
    phantom = user_phantom(args.activity, args.mu_map, args.labels)
    cfg = resolve(
        SimulationConfig,
        preset=("simulate", args.preset or "quick"),
        base=user_map_config(phantom),
        file=args.config,
        sets=sets,
    )
    device = _resolve_device(args.device)
    manifest = simulate_cohort(cfg, args.out, args.workers, device, phantom=phantom, shard=shard)
    print(f"wrote {manifest}")
    if shard:
        print(f"shard {args.shard} done; when all are: fastdat simulate --out {args.out} --merge")
        return 0
    return _after_simulate(args, manifest)


def _after_simulate(args: argparse.Namespace, manifest: Path) -> int:
    if args.projection_dicom:
        from fastdat.simulate.export import export_projections

        folder = export_projections(args.out, Path(args.out) / "projections", args.projection_dicom)
        print(f"wrote projection DICOM ({args.projection_dicom} layout) under {folder}")
    from fastdat.simulate.report import realism_line

    line = realism_line(manifest.parent)
    if line:
        print(line)
    return 0


def _cmd_dataset_build(args: argparse.Namespace) -> int:
    from fastdat.config import resolve
    from fastdat.data.dataset import DatasetConfig
    from fastdat.data.overview import summarize_dataset
    from fastdat.data.sources import build_from_source, pick_source

    kind, path = pick_source(args.sim, args.nifti, args.dicom, args.projections)
    sets = list(args.set or [])
    for key, value in (
        ("n_slices", args.slices),
        ("crop", args.crop),
        ("seed", args.seed),
        ("split", f"[{args.split}]" if args.split else None),
        ("durations", f"[{args.durations}]" if args.durations else None),
    ):
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = resolve(DatasetConfig, file=args.config, sets=sets, section="dataset")
    projections = kind == "projections"  # the reconstruction options apply to it only
    out = build_from_source(
        kind,
        path,
        args.out,
        cfg,
        pairs=args.pairs,
        recon_dir=args.recon_dir,
        settings=_recon_settings(args) if projections else None,
        attenuation=args.attenuation,
        device=_resolve_device(args.device) if projections else "cpu",
        splits_from=args.splits,
    )
    summary = summarize_dataset(out, cfg.n_slices)
    print(f"wrote {out}")
    print(summary.counts.to_string())
    for r in summary.skipped:
        print(f"skipped {r['study_id'] or r['origin']} ({r['origin']}): {r['reason']}")
    print(f"{summary.n_used} studies used, {len(summary.skipped)} skipped")
    return 0


def _add_recon_args(p: argparse.ArgumentParser, seed_flag: str) -> None:
    """The reconstruction options shared by ``recon`` and ``dataset build --projections``."""
    p.add_argument(
        "--attenuation",
        default="auto",
        help="auto (default: the acquisition folder's mu_map.nii.gz, else its CT/ folder, else "
        "chang), chang, uniform, none, a CT series folder or a mu map NIfTI (1/cm at 159 keV)",
    )
    p.add_argument("--mu", type=float, help="uniform mu for chang / uniform (1/cm)")
    p.add_argument("--scatter", default="none", choices=("none", "tew", "dew"))
    p.add_argument("--collimator", help="collimator name (default: the file's); none for off")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--subsets", type=int, default=8)
    p.add_argument(
        "--postfilter-mm", type=float, default=6.0, help="3D Gaussian FWHM (mm; 6, the simulator's)"
    )
    p.add_argument(seed_flag, dest="recon_seed", type=int, default=0, help="seed of the thinning")
    p.add_argument("--grid", help="SIZE,SLICES of the grid (default: the object's extent)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def _recon_settings(args: argparse.Namespace, fraction: float = 1.0, complement: bool = False):
    """:class:`ReconSettings` from the options of :func:`_add_recon_args`."""
    from fastdat.tomo.reconstruct import ReconSettings

    grid = None
    if args.grid:
        try:
            size, slices = (int(v) for v in args.grid.split(","))
        except ValueError:
            raise ValueError(f"--grid {args.grid}: give SIZE,SLICES (e.g. 80,48)") from None
        grid = (size, slices)
    return ReconSettings(
        iterations=args.iterations,
        subsets=args.subsets,
        mu_per_cm=args.mu,
        scatter=args.scatter,
        collimator=args.collimator,
        postfilter_mm=args.postfilter_mm,
        fraction=fraction,
        seed=args.recon_seed,
        complement=complement,
        grid=grid,
    )


def _cmd_recon(args: argparse.Namespace) -> int:
    from fastdat.tomo.files import recon_path

    settings = _recon_settings(args, args.fraction, args.complement)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    result = recon_path(
        args.projections,
        args.out,
        settings,
        args.attenuation,
        formats,
        _resolve_device(args.device),
    )
    info = result.recon.info
    print(
        f"reconstructed {info['views']} views, {info['counts_photopeak']} photopeak counts over "
        f"{info['acquisition_s']:.0f} s on a {' x '.join(map(str, info['grid']))} grid "
        f"({info['collimator']}) in {info['seconds']:.1f} s"
    )
    for path in result.outputs:
        print(f"wrote {path}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from fastdat.models.throughput import model_table

    print(f"{'name':<16}{'params':>11}  {'train img/s':>11}  reference")
    for row in model_table(speed=not args.no_speed, steps=args.steps):
        speed = "-" if row["train_img_s"] is None else f"{row['train_img_s']:.1f}"
        print(f"{row['name']:<16}{row['params']:>11,}  {speed:>11}  {row['reference']}")
    if not args.no_speed:
        print(f"(CPU, {torch.get_num_threads()} threads, batch 16, 64 x 64, Adam + L1)")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from fastdat.models.ensemble import save_ensemble

    print(f"wrote {save_ensemble(args.runs, args.out)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fastdat.config import resolve
    from fastdat.training.config import TrainConfig
    from fastdat.training.loop import train

    sets = list(args.set or [])
    if args.model:
        sets.append(f"model={args.model}")
    preset = ("train", args.preset) if args.preset else None
    cfg = resolve(TrainConfig, preset=preset, file=args.config, sets=sets, section="train")
    device = _resolve_device(args.device)
    best = train(args.dataset, args.out, cfg, device, resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from fastdat.evaluation.evaluate import evaluate

    report = evaluate(args.dataset, args.runs, args.out, _resolve_device(args.device))
    print(f"wrote {report}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from fastdat.study import run_study

    sim_device = _resolve_device(args.sim_device) if args.sim_device else None
    report = run_study(
        args.preset,
        args.out,
        _resolve_device(args.device),
        args.workers,
        args.set,
        args.seed,
        sim_device=sim_device,
    )
    print(f"wrote {report}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from fastdat.sweep.run import run_sweep_study

    report = run_sweep_study(
        args.out,
        preset=None if args.config and args.preset is None else (args.preset or "quick"),
        file=args.config,
        sets=args.set,
        sim=args.sim,
        precision_sim=args.precision,
        device=_resolve_device(args.device),
        workers=args.workers,
    )
    print(f"wrote {report}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    from fastdat.stats.tables import format_result, run_stats

    options = {"weights": args.weights, "p_adjust": args.p_adjust}
    result = run_stats(args.kind, args.file, **{k: v for k, v in options.items() if v})
    print(json.dumps(result, indent=1, allow_nan=False) if args.json else format_result(result))
    return 0


def _cmd_quantify(args: argparse.Namespace) -> int:
    from fastdat.config import resolve
    from fastdat.quantification.quantify import quantify_images
    from fastdat.quantification.sbr import QuantConfig

    cfg = resolve(QuantConfig, file=args.config, sets=args.set, section="quantify")
    path, rows = quantify_images(args.input, args.out, cfg, args.normals)
    failed = [r for r in rows if r["status"] == "error"]
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        print(
            f"{r['image']}: putamen L/R {r['putamen_left']:.2f} / {r['putamen_right']:.2f}, "
            f"caudate L/R {r['caudate_left']:.2f} / {r['caudate_right']:.2f}, "
            f"Southampton L/R {r['southampton_left']:.2f} / {r['southampton_right']:.2f}"
            + (f", grades L/R {r['grade_left']} / {r['grade_right']}" if "grade_left" in r else "")
        )
    for r in failed:
        print(f"fastdat quantify: error: {r['image']}: {r['reason']}", file=sys.stderr)
    print(f"wrote {path} ({len(ok)} quantified, {len(failed)} failed)")
    return 2 if failed else 0


def _cmd_denoise(args: argparse.Namespace) -> int:
    from fastdat.inference import denoise_path
    from fastdat.inference.denoise import SIMULATED_NOTICE

    device = _resolve_device(args.device)
    results = denoise_path(
        args.input,
        args.model,
        args.out,
        device,
        mode=args.mode,
        force=args.force,
        refuse_ood=args.refuse_ood,
        minutes=args.minutes,
        sbr=args.sbr,
    )
    for r in results:
        if r.status == "ok":
            print(f"{r.source} -> {r.output}" + "".join(f" (warning: {w})" for w in r.warnings))
            for extra in r.extras:
                print(f"  and {extra}")
        else:
            print(f"fastdat denoise: {r.status}: {r.source}: {r.reason}", file=sys.stderr)
    failed = sum(r.status == "failed" for r in results)
    ok = sum(r.status == "ok" for r in results)
    skipped = len(results) - ok - failed
    if ok and args.model == "default":  # about what was written, so only when something was
        print(f"fastdat denoise: note: {SIMULATED_NOTICE}", file=sys.stderr)
    print(f"{ok} denoised, {failed} failed, {skipped} skipped")
    return 2 if failed else 0


def _cmd_reader_study(args: argparse.Namespace) -> int:
    from fastdat import readerstudy as rs

    if args.rs_command == "create":
        from fastdat.config import resolve

        readers = args.readers.split(",")
        if len(readers) == 1 and readers[0].isdigit():
            readers = [f"reader{i + 1}" for i in range(int(readers[0]))]
        given = {
            "cases": args.cases,
            "methods": [m.strip() for m in args.methods.split(",") if m.strip()],
            "readers": readers,
            "repeat_share": args.repeat_share,
            "seed": args.seed,
            "cmap": args.cmap,
        }
        cfg = resolve(rs.StudyConfig, base=given)
        out = rs.create_study(args.eval, args.out, cfg, _resolve_device(args.device))
        n = f"{cfg.cases} cases x {len(cfg.methods)} methods, {len(readers)} readers"
        print(f"wrote {out}: {n}")
        print(f"personal tokens: {out / 'tokens.txt'} (give each reader only their own line)")
        return 0
    if args.rs_command == "serve":
        try:
            serve = rs.serve
        except ImportError as err:
            need = "pip install 'fastdat[reader]'"
            raise RuntimeError(f"serve needs the reader extra: {need} ({err})") from err
        print(f"reader study on http://{args.host}:{args.port}/ (Ctrl-C stops it)")
        serve(args.study, args.host, args.port)
        return 0
    report = rs.analyze_study(args.study, args.out)
    print(f"wrote {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fastdat`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="fastdat", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastdat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collimators", help="list the named collimators and their resolution")
    p.set_defaults(func=_cmd_collimators)

    p = sub.add_parser(
        "simulate",
        help="simulate a cohort of paired 5-min / 25-min DaT SPECT studies",
        description="Simulate paired short / long DaT SPECT studies with known truth.",
    )
    p.add_argument("--preset", help="config preset: quick (4 studies, the default) or paper")
    p.add_argument("--out", required=True, help="cohort directory (resumed if it exists)")
    p.add_argument("--seed", type=int, help="base seed (same seed, same cohort)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes on CPU")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--config", help="YAML file of simulation settings (over the preset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--activity", help="user activity map (NIfTI) instead of drawn phantoms")
    p.add_argument("--mu-map", help="user attenuation map (NIfTI, 1/cm at 159 keV)")
    p.add_argument("--labels", help="optional label map (NIfTI) for the user maps")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="simulate only shard I of N (a cluster job array: I = task id); then --merge",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="join the shards in OUT into one cohort (manifest, realism report, montage)",
    )
    p.add_argument(
        "--projection-dicom",
        metavar="LAYOUT",
        help="also write each study's longest acquisition as projection DICOM in this vendor "
        "layout under OUT/projections (what dataset build --projections and recon read)",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "recon",
        help="reconstruct SPECT projection DICOM (optionally thinned to a shorter scan)",
        description="OSEM reconstruction of an NM TOMO acquisition on its own geometry, with "
        "attenuation, scatter and collimator-response correction; --fraction thins the counts "
        "first (binomial), so --fraction 0.2 turns a 25-min acquisition into its 5-min version.",
    )
    p.add_argument("projections", help="projection DICOM file, or a folder of one acquisition")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    _add_recon_args(p, "--seed")
    p.add_argument("--fraction", type=float, default=1.0, help="share of counts kept (thinning)")
    p.add_argument(
        "--complement",
        action="store_true",
        help="reconstruct the counts --fraction/--seed did not keep: the independent rest of "
        "the acquisition (a self-supervised target)",
    )
    p.add_argument("--format", default="nifti,dicom", help="nifti, dicom or both")
    p.set_defaults(func=_cmd_recon)

    p = sub.add_parser("dataset", help="build striatal crop datasets")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser(
        "build",
        help="cut 64 x 64 striatal crops of paired acquisitions and split them by patient",
        description="Build a crop dataset from a simulated cohort, NIfTI pairs or DICOM exports.",
    )
    b.add_argument("--from", dest="sim", metavar="SIMDIR", help="a simulated cohort directory")
    b.add_argument("--nifti", metavar="ROOT_OR_CSV", help="NIfTI study folders or a CSV of pairs")
    b.add_argument("--dicom", metavar="ROOT", help="a folder of DICOM exports")
    b.add_argument(
        "--projections",
        metavar="ROOT",
        help="archived acquisitions ROOT/<study>/ (projection DICOM), each reconstructed at "
        "full counts and thinned to every shorter duration",
    )
    b.add_argument(
        "--recon-dir",
        help="--projections: where the reconstructions are kept (default: OUT.recon beside OUT)",
    )
    b.add_argument("--pairs", metavar="CSV", help="DICOM: series pairing (study, series, kind)")
    b.add_argument("--out", required=True, help="dataset directory")
    b.add_argument("--slices", type=int, help="slices per study (default 5)")
    b.add_argument("--crop", type=int, help="crop side in voxels (default 64)")
    b.add_argument("--split", help="train,val,test patient proportions (default 120,37,50)")
    b.add_argument("--seed", type=int, help="split seed (default 0)")
    b.add_argument("--durations", help="image kinds to pair (default 5min,25min)")
    b.add_argument("--splits", help="reuse the splits.json of another dataset")
    b.add_argument(
        "--config", help="YAML file of dataset settings (its 'dataset' section if it has one)"
    )
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    _add_recon_args(b, "--recon-seed")
    b.set_defaults(func=_cmd_dataset_build)

    p = sub.add_parser("models", help="list the registered networks with size and CPU speed")
    p.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per model")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "ensemble",
        help="join runs of one recipe trained from different seeds into one deep-ensemble model",
    )
    p.add_argument("runs", nargs="+", help="run folders or checkpoints (two or more)")
    p.add_argument("--out", required=True, help="checkpoint to write (OUT.safetensors + OUT.json)")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("train", help="train a model on a crop dataset")
    p.add_argument("--dataset", required=True, help="dataset directory (fastdat dataset build)")
    p.add_argument("--model", help="registry name (fastdat models); default unet4")
    p.add_argument(
        "--preset",
        help="training preset: countaware (one count-aware 2.5D network for 2-15 min)",
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--config", help="YAML file of training settings (its 'train' section if it has one)"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--resume", action="store_true", help="continue a killed run")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score 5-min, filters and models on the test split")
    p.add_argument("--dataset", required=True, help="dataset directory")
    p.add_argument(
        "--runs", nargs="*", default=[], help="networks: run folders, checkpoints or 'default'"
    )
    p.add_argument("--out", required=True, help="evaluation directory")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "study", help="the whole study: simulate, dataset, train networks, evaluate, report"
    )
    p.add_argument("--preset", default="quick", help="quick (minutes) or paper (the reproduction)")
    p.add_argument("--out", required=True, help="study directory (resumed if it exists)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--workers", type=int, default=2, help="simulation processes on CPU")
    p.add_argument(
        "--sim-device", help="device of the simulation only (default --device; cpu: --workers)"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the preset")
    p.add_argument("--seed", type=int, help="cohort seed (another simulated cohort per seed)")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser(
        "sweep",
        help="how short can the scan be: every method at every scan time, task-based figures",
        description="Simulate a cohort with every scan time (or take --sim), restore each with "
        "raw OSEM, tuned filters and networks, and measure image quality against the "
        "noise-free reconstruction, SBR accuracy and precision, early-loss detection (CHO and "
        "SBR AUC), the inconclusive share and grading kappa; then the shortest scan that "
        "matches 25-min OSEM for each. Resumable.",
    )
    p.add_argument("--preset", help="quick (the test suite's) or paper (the full sweep)")
    p.add_argument("--config", help="YAML file with simulate / precision / sweep sections")
    p.add_argument("--out", required=True, help="sweep directory (resumed if it exists)")
    p.add_argument("--sim", help="a cohort already simulated with every duration")
    p.add_argument("--precision", help="a cohort with noise realizations (replicates)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--workers", type=int, default=2, help="simulation processes on CPU")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override sweep settings")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "stats",
        help="agreement and rank statistics of your own ratings (CSV)",
        description="Kappa, ICC, Friedman, Dunn or Bland-Altman of a CSV: wide (one row per "
        "target or block, one column per rater or method, optional id column 'target' / 'id') "
        "or long (columns target, rater, rating). Dunn ranks all values together as independent "
        "groups (as Aoki et al. and scikit-posthocs' posthoc_dunn); when every row is the same "
        "image scored by each method, the rows' pairing is not used (fastdat evaluate's stats.json "
        "adds the paired Wilcoxon-Holm).",
    )
    p.add_argument("kind", choices=["kappa", "icc", "friedman", "dunn", "bland-altman"])
    p.add_argument("file", help="CSV file (kappa, bland-altman: exactly two rating columns)")
    p.add_argument("--weights", choices=["none", "linear", "quadratic"], help="kappa weights")
    p.add_argument("--p-adjust", choices=["holm", "bonferroni", "none"], help="dunn (default holm)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser(
        "quantify",
        help="striatal binding ratios of your own images (template VOIs and Southampton)",
    )
    p.add_argument("input", help="NIfTI file, DICOM file or series folder, or a folder of them")
    p.add_argument("--out", required=True, help="output folder (sbr.csv, VOI pictures)")
    p.add_argument("--normals", help="normal database JSON (a study's eval/quant/normals.json)")
    p.add_argument(
        "--config", help="YAML file of VOI settings (its 'quantify' section if it has one)"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override VOI settings")
    p.set_defaults(func=_cmd_quantify)

    p = sub.add_parser(
        "denoise",
        help="denoise your own studies: DICOM in, DICOM out (or NIfTI in, NIfTI out)",
        description="Denoise a DICOM series folder, an NM multi-frame file, a NIfTI file or a "
        "folder of studies with a trained model; DICOM outputs are new series of the same "
        "studies, written beside a provenance JSON.",
    )
    p.add_argument("input", help="DICOM series folder, NM multi-frame file, NIfTI file, or folder")
    p.add_argument("--model", default="default", help="checkpoint (RUN/best) or 'default'")
    p.add_argument("--out", required=True, help="output folder (or a .nii.gz for one NIfTI)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--mode",
        default="anchored",
        choices=["anchored", "slice", "tiles"],
        help="anchored: whole slices plus the located striatal crop (default, matches training)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="denoise even series FastDaT itself wrote (skipped as already denoised otherwise)",
    )
    p.add_argument(
        "--refuse-ood",
        action="store_true",
        help="refuse inputs unlike the model's training data (voxel size, noise level, contrast, "
        "scan time) instead of denoising them with a recorded warning",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="scan time of the inputs (default: from the DICOM header, Actual Frame Duration x "
        "views); a count-aware model needs it",
    )
    p.add_argument(
        "--sbr",
        action="store_true",
        help="also measure SBRs on the restored image (<name>_sbr.json); an ensemble model adds "
        "its members' spread and, if calibrated, an interval on each SBR",
    )
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser(
        "reader-study",
        help="blinded reader study: create it, grade in the browser, analyse the grades",
    )
    rsub = p.add_subparsers(dest="rs_command", required=True)
    c = rsub.add_parser("create", help="a randomized, blinded case list with anonymous images")
    c.add_argument("--eval", required=True, help="evaluation folder (fastdat evaluate)")
    c.add_argument("--cases", type=int, default=50, help="test studies to read (default 50)")
    c.add_argument(
        "--methods", default="5min,unet4,25min", help="5min, 25min, model or filter names"
    )
    c.add_argument("--readers", default="3", help="number of readers, or their names (a,b,c)")
    c.add_argument("--repeat-share", type=float, default=0.2, help="share read twice (<= 1/3)")
    c.add_argument("--seed", type=int, default=0, help="seed of cases, orders and repeats")
    c.add_argument("--cmap", default="gray", help="gray or a matplotlib colour map")
    c.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (models)")
    c.add_argument("--out", required=True, help="study folder (must not exist)")
    c.set_defaults(func=_cmd_reader_study)
    s = rsub.add_parser("serve", help="the grading web app (FastAPI; pip install fastdat[reader])")
    s.add_argument("study", help="study folder")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.set_defaults(func=_cmd_reader_study)
    a = rsub.add_parser("analyze", help="unblind: kappa vs 25-min consensus, ICCs, report")
    a.add_argument("study", help="study folder")
    a.add_argument("--out", required=True, help="output folder")
    a.set_defaults(func=_cmd_reader_study)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastdat`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:  # OSError: FileNotFoundError, disk full...
        print(f"fastdat {args.command}: error: {_describe(err)}", file=sys.stderr)
        return 2


def _describe(err: BaseException) -> str:
    """An error as one line naming its path (``PATH: why`` for an OS error that has one)."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        two = f" -> {err.filename2}" if getattr(err, "filename2", None) else ""
        return f"{err.filename}{two}: {err.strerror}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
