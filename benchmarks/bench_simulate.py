"""Benchmark one simulated study end to end, beside PyTomography's projector on the same grid.

Times each stage of one study of the default config (phantom, projector setup, forward projection,
background and counts for both durations, OSEM subset setup, both reconstructions, NIfTI writing),
then PyTomography's forward and back projection of the same phantom and mu map on the same grid
with the same collimator response, and prints the ratios. The first study in a process pays for
building the geometry's rotation matrices; later studies reuse them, so both are shown.

Usage::

    python benchmarks/bench_simulate.py [--threads 1] [--device cpu] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_projector import bench_pytomography, timed  # same folder

from fastdat.anatomy.phantom import make_phantom, sample_subject
from fastdat.simulate import acquisition as acq
from fastdat.simulate.cohort import resolve_config, simulate_study
from fastdat.tomo.osem import OSEMConfig, osem, subset_views
from fastdat.tomo.projector import SPECTProjector, _rotation_operators


def stages(cfg, device) -> dict[str, float]:
    """Wall time (s) of each stage of one study."""
    g, a, r = cfg.grid, cfg.acquisition, cfg.recon
    times = {}
    rng = np.random.default_rng(0)
    subject = sample_subject(rng, cfg.phantom, 0, 2, 65.0, "F")
    times["phantom"], ph = timed(
        lambda: make_phantom(subject, (g.size, g.size, g.n_slices), g.voxel_mm, cfg.phantom),
        device,
    )
    act = torch.from_numpy(ph.activity).to(device)
    mu = torch.from_numpy(ph.mu).to(device)
    kw = dict(
        orbit_radius_mm=a.orbit_radius_mm,
        collimator=a.collimator,
        intrinsic_fwhm_mm=a.intrinsic_fwhm_mm,
        device=device,
    )
    n, nz = g.size, g.n_slices
    times["projector setup"], proj = timed(
        lambda: SPECTProjector(n, nz, g.voxel_mm, a.n_views, mu_map=mu, **kw), device
    )
    times["forward projection"], primary = timed(
        lambda: acq.embed(proj.A(act), a.detector_size), device
    )
    gen = torch.Generator(device=device).manual_seed(0)

    def counts():
        b = acq.add_background(primary, g.voxel_mm, a)
        exp = (primary + b) * (2e6 / float((primary + b).sum()))
        y = acq.poisson_counts(exp, gen)
        return acq.thin_counts(y, [60.0 * d for d in a.durations_min], gen)

    times["background + counts (all durations)"], y = timed(counts, device)
    times["OSEM subset setup"], subsets = timed(
        lambda: [proj.subset(v) for v in subset_views(a.n_views, r.subsets)],
        device,
    )
    cfg_osem = OSEMConfig(r.iterations, r.subsets)
    for d in a.durations_min:
        times[f"OSEM {r.iterations}x{r.subsets} {d:g} min"], _ = timed(
            lambda d=d: osem(acq.crop(y[60.0 * d], n, nz).float(), subsets, None, cfg_osem), device
        )
    return times


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (cohorts use 1/worker)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--skip-pytomography", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = resolve_config({}, args.set)
    g, a = cfg.grid, cfg.acquisition
    print(
        f"grid {g.size} x {g.size} x {g.n_slices} at {g.voxel_mm:g} mm, {a.n_views} views, "
        f"detector {a.detector_size}^2, {a.collimator} + attenuation, OSEM "
        f"{cfg.recon.iterations}x{cfg.recon.subsets}, device {device}, {args.threads} thread(s)"
    )
    _rotation_operators.cache_clear()
    cold = stages(cfg, device)
    warm = stages(cfg, device)
    with tempfile.TemporaryDirectory() as tmp:
        total_cold, _ = timed(lambda: simulate_study(cfg, 0, Path(tmp), str(device)), device)
        (Path(tmp) / "studies" / "sim0001" / "study.json").unlink()
        total_warm, _ = timed(lambda: simulate_study(cfg, 1, Path(tmp), str(device)), device)
    print(f"\n{'stage':40s}{'first study':>13s}{'later':>10s}")
    for k in cold:
        print(f"{k:40s}{cold[k]:12.2f}s{warm[k]:9.2f}s")
    print(f"{'whole study incl. NIfTI writing':40s}{total_cold:12.2f}s{total_warm:9.2f}s")
    workers = os.cpu_count() or 1
    print(
        f"-> paper cohort (207 studies, {workers} workers x {args.threads} thread): "
        f"~{207 * total_warm / workers / 60:.1f} min"
    )
    if args.skip_pytomography:
        return
    ns = argparse.Namespace(
        n=g.size,
        nz=g.n_slices,
        pixel_mm=g.voxel_mm,
        views=a.n_views,
        radius=a.orbit_radius_mm,
        pyt_repeats=1,
    )
    rng = np.random.default_rng(0)
    subject = sample_subject(rng, cfg.phantom, 0, 2, 65.0, "F")
    ph = make_phantom(subject, (g.size, g.size, g.n_slices), g.voxel_mm, cfg.phantom)
    theirs, _ = bench_pytomography(
        ns, torch.from_numpy(ph.activity), torch.from_numpy(ph.mu), device
    )
    fwd = warm["forward projection"]
    print(
        f"\nPyTomography on the same grid: forward {theirs['forward']:.2f}s, "
        f"back {theirs['back']:.2f}s"
    )
    print(f"ratio PyTomography / fastdat forward projection: {theirs['forward'] / fwd:.1f}x")
    osem_pyt = 2 * cfg.recon.iterations * (theirs["forward"] + theirs["back"])
    osem_ours = sum(v for k, v in warm.items() if k.startswith("OSEM ") and "setup" not in k)
    print(
        f"OSEM for both durations with PyTomography's projector (estimated from one forward + back "
        f"per subset over {cfg.recon.iterations} iterations): ~{osem_pyt:.0f}s vs ours "
        f"{osem_ours:.1f}s ({osem_pyt / osem_ours:.0f}x)"
    )


if __name__ == "__main__":
    main()
