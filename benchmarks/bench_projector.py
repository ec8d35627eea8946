"""Benchmark our SPECT projector against PyTomography's SPECT system matrix.

Both projectors get the same phantom (an off-centre head, mu 0.15/cm, with three hot ellipsoids),
the same grid and the same Siemens LEHR collimator response with 3.6 mm intrinsic resolution.
For each we time the setup (building the operator, including the attenuation and PSF parts),
one forward projection and one back projection, and report the median over a few repeats.
PyTomography runs on the same device as ours (``--device``).

Usage::

    python benchmarks/bench_projector.py [--n 128 --nz 64 --views 120 --threads 2]

Conventions (see ``tests/simulate/test_pytomography_agreement.py``): our view ``theta`` is
PyTomography's view ``theta + 180`` degrees with the lateral projection axis reversed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator
from fastdat.tomo.projector import SPECTProjector

COLLIMATOR = "siemens-lehr"
INTRINSIC_FWHM_MM = 3.6


def make_phantom(n: int, nz: int, pixel_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Head phantom on an ``(n, n, nz)`` grid, sizes in mm so it is the same on any grid.

    Args:
        n: In-plane grid size.
        nz: Number of slices.
        pixel_mm: Voxel size (mm).

    Returns:
        ``(activity, mu)``: float32 activity and attenuation (1/cm) maps.
    """
    xy = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * pixel_mm
    zz = (torch.arange(nz, dtype=torch.float64) - (nz - 1) / 2) * pixel_mm
    x, y, z = torch.meshgrid(xy, xy, zz, indexing="ij")

    def ellipsoid(centre, axes):
        return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + (
            (z - centre[2]) / axes[2]
        ) ** 2 <= 1

    head = ellipsoid((0, 5, 0), (75, 95, 55))
    activity = head.float()
    activity[ellipsoid((-25, 20, 5), (10, 18, 8))] = 8.0
    activity[ellipsoid((22, 12, -3), (8, 14, 8))] = 5.0
    activity[ellipsoid((10, -50, 15), (12, 6, 10))] = 3.0
    return activity, 0.15 * head.float()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Run ``fn`` once and return ``(seconds, result)``, synchronising CUDA if needed."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    return statistics.median(timed(fn, device)[0] for _ in range(repeats))


def bench_ours(args, activity, mu, device) -> tuple[dict[str, float], torch.Tensor]:
    """Time setup, forward and back projection of :class:`SPECTProjector`.

    The setup is timed once (the first construction in the process: rotation operators may be
    cached by the projector module afterwards).
    """
    activity, mu = activity.to(device), mu.to(device)

    def build():
        return SPECTProjector(
            args.n,
            args.nz,
            args.pixel_mm,
            n_views=args.views,
            orbit_radius_mm=args.radius,
            mu_map=mu,
            collimator=COLLIMATOR,
            intrinsic_fwhm_mm=INTRINSIC_FWHM_MM,
            device=device,
        )

    t_setup, proj = timed(build, device)
    y = proj.A(activity)  # warm-up, and the projections for the agreement check
    times = {
        "setup": t_setup,
        "forward": median_time(lambda: proj.A(activity), device, args.repeats),
        "back": median_time(lambda: proj.A_adjoint(y), device, args.repeats),
    }
    return times, y.cpu()


def bench_pytomography(args, activity, mu, device) -> tuple[dict[str, float], torch.Tensor]:
    """Time setup, forward and back projection of PyTomography's ``SPECTSystemMatrix``.

    Returns the forward projections mapped onto our view and lateral conventions.
    """
    import pytomography  # imported here: it silences warnings process-wide
    from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
    from pytomography.projectors.SPECT import SPECTSystemMatrix
    from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform

    pytomography.set_device(device)
    col = get_collimator(COLLIMATOR)
    d_cm, leff_cm = col.hole_diameter_mm / 10, col.effective_length_mm / 10
    psf_params = [
        d_cm / leff_cm * FWHM_TO_SIGMA,
        d_cm * FWHM_TO_SIGMA,
        INTRINSIC_FWHM_MM / 10 * FWHM_TO_SIGMA,
    ]
    angles = [(v * 360.0 / args.views + 180.0) % 360.0 for v in range(args.views)]
    dr_cm = args.pixel_mm / 10

    def build():
        object_meta = SPECTObjectMeta([dr_cm] * 3, (args.n, args.n, args.nz))
        proj_meta = SPECTProjMeta(
            (args.n, args.nz), [dr_cm] * 2, angles, radii=[args.radius / 10] * args.views
        )
        psf_meta = SPECTPSFMeta(
            psf_params, sigma_fit=lambda r, a, b, c: ((a * r + b) ** 2 + c**2) ** 0.5
        )
        transforms = [SPECTAttenuationTransform(mu.to(device)), SPECTPSFTransform(psf_meta)]
        return SPECTSystemMatrix(transforms, [], object_meta, proj_meta)

    activity = activity.to(device)
    t_setup, system = timed(build, device)
    t_fwd, y = timed(lambda: system.forward(activity), device)  # no warm-up: it is slow
    more = [timed(lambda: system.forward(activity), device)[0] for _ in range(args.pyt_repeats - 1)]
    fwd = [t_fwd, *more]
    times = {
        "setup": t_setup,
        "forward": statistics.median(fwd),
        "back": median_time(lambda: system.backward(y), device, max(1, args.pyt_repeats)),
    }
    return times, y.cpu().flip(1)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run both benchmarks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="in-plane grid size")
    parser.add_argument("--nz", type=int, default=64, help="number of slices")
    parser.add_argument("--pixel-mm", type=float, default=3.3, help="voxel size (mm)")
    parser.add_argument("--views", type=int, default=120, help="views over 360 degrees")
    parser.add_argument(
        "--radius",
        type=float,
        default=130.0,
        help="orbit radius (mm); raised to half the grid width + 1 voxel if smaller",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for our projector")
    parser.add_argument("--pyt-repeats", type=int, default=1, help="repeats for PyTomography")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    half_width = args.n * args.pixel_mm / 2
    if args.radius <= half_width:
        # Our projector refuses a detector inside the grid (PyTomography clips distances at 0).
        print(
            f"note: orbit radius {args.radius:g} mm is inside the {2 * half_width:g} mm grid; "
            f"using {half_width + args.pixel_mm:g} mm for both projectors"
        )
        args.radius = half_width + args.pixel_mm

    activity, mu = make_phantom(args.n, args.nz, args.pixel_mm)
    print(
        f"grid {args.n} x {args.n} x {args.nz} at {args.pixel_mm:g} mm, {args.views} views, "
        f"orbit {args.radius:g} mm, {COLLIMATOR} + attenuation, device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    ours, y_ours = bench_ours(args, activity, mu, device)
    theirs, y_theirs = bench_pytomography(args, activity, mu, device)

    ratios = {k: theirs[k] / ours[k] for k in ours}
    print(f"\n{'':16s}{'setup':>10s}{'forward':>10s}{'back':>10s}")
    for name, row, unit in (
        ("fastdat", ours, "s"),
        ("PyTomography", theirs, "s"),
        ("ratio PyT/ours", ratios, "x"),
    ):
        print(f"{name:16s}" + "".join(f"{row[k]:9.3f}{unit}" for k in ("setup", "forward", "back")))
    rel = ((y_ours - y_theirs).norm() / y_theirs.norm()).item()
    print(f"\nrelative L2 difference of the forward projections: {rel:.4f}")


if __name__ == "__main__":
    main()
