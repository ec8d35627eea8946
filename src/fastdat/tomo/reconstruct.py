"""Reconstruct a SPECT acquisition (:class:`~fastdat.io.projections.ProjectionSet`) with OSEM.

The same projector and OSEM as the simulator (:mod:`fastdat.tomo.projector`,
:mod:`fastdat.tomo.osem`), on the acquisition's own geometry: its view angles (any start angle,
direction and detector order), its per-view radii (circular or body-contour orbits, for the
depth-dependent collimator response) and its bin size. Steps, in order:

1. **Thinning** (``fraction < 1``): every count of every bin of every window is kept with
   probability ``fraction`` (binomial, seeded), and the frame times scaled alike, so an archived
   25-min acquisition thinned by 0.2 is a 5-min acquisition of the same patient (thinned Poisson
   counts are Poisson with ``fraction`` times the mean).
2. **Grid**: a cube of voxels of the bin size, centred on the rotation axis. By default the smallest
   one holding the object: the lateral and axial extent of the photopeak counts of the whole
   acquisition, before any thinning, so that every thinning of it shares one grid (bins above
   ``SUPPORT_FRACTION`` of the largest view-summed profile value), plus ``SUPPORT_MARGIN_MM``, in
   every view; ``grid=(size, slices)`` fixes it (centred laterally, and axially on the detector).
3. **Scatter** (``scatter``): ``"none"``, or the triple / dual energy window estimate from the
   acquisition's scatter windows (:mod:`fastdat.tomo.scatter`), added to the forward model as
   expected background (not subtracted from the counts, which stay Poisson).
4. **Attenuation** (``attenuation``): ``"none"``; ``"chang"``, Chang's first-order correction: the
   image reconstructed without attenuation is multiplied by ``1 / mean_v exp(-mu L_v(x))`` for a
   uniform ``mu`` inside the head outline found in that image; ``"uniform"``, the same uniform map
   modelled in OSEM; or a mu map (``mu_map`` argument: a NIfTI map in 1/cm at 159 keV, or one
   converted from a CT series) resampled onto the grid and modelled in OSEM.
5. **Collimator response**: the named collimator (``collimator``), else the one the file names
   (:func:`fastdat.tomo.collimator.resolve_collimator`); ``"none"`` switches it off.
6. **OSEM** ``iterations x subsets`` (interleaved subsets of the views sorted by angle), the image
   divided by the acquisition time (counts / s per voxel, the simulator's unit), then a 3D Gaussian
   post-filter of ``postfilter_mm`` FWHM.

The result is an RAS volume ``(X, Y, Z)`` with its voxel -> mm affine in the patient frame of the
projections (:attr:`ProjectionSet.axis_origin_mm`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from fastdat.io.projections import ProjectionSet
from fastdat.tomo import attenuation as att
from fastdat.tomo import scatter as sc
from fastdat.tomo.collimator import resolve_collimator
from fastdat.tomo.osem import OSEMConfig, gaussian_filter3d, osem, subset_views
from fastdat.tomo.projector import SPECTProjector, field_of_view

#: Bins whose summed profile exceeds this fraction of the largest one hold the object. Scatter and
#: septal penetration spread 2-8 % of the peak over the whole detector (the simulator's 28 %
#: background); the brain's edge rises through 10-20 %.
SUPPORT_FRACTION = 0.10
#: Margin added around the object's extent when the grid is chosen from the counts (mm).
SUPPORT_MARGIN_MM = 20.0
#: Largest relative difference between lateral and axial bin size reconstructed as cubic voxels.
SQUARE_BIN_RTOL = 0.01

ATTENUATION = ("none", "chang", "uniform", "map")
SCATTER = ("none", "tew", "dew")


@dataclass(frozen=True)
class ReconSettings:
    """How a projection set is reconstructed (defaults: a clinical DaTscan protocol).

    Attributes:
        iterations, subsets: OSEM settings.
        attenuation: One of :data:`ATTENUATION`; ``"map"`` needs a mu map.
        mu_per_cm: Uniform mu for ``"chang"`` / ``"uniform"`` (1/cm); ``None`` chooses
            :func:`fastdat.tomo.attenuation.default_mu` for the scatter setting.
        scatter: One of :data:`SCATTER`.
        collimator: A collimator table name, ``"none"``, or ``None`` for the file's collimator.
        intrinsic_fwhm_mm: Intrinsic detector resolution at 159 keV (mm).
        postfilter_mm: FWHM of the 3D Gaussian post-filter (mm); 0 for none.
        fraction: Share of the counts kept by binomial thinning (1: all).
        seed: Seed of the thinning.
        complement: Reconstruct the counts the thinning did *not* keep (``1 - fraction`` of
            the time): with the same ``fraction`` and ``seed``, the independent other half of a
            self-supervised pair (:func:`thin`).
        grid: ``(size, slices)`` of the reconstruction grid, or ``None`` for the object support.
    """

    iterations: int = 8
    subsets: int = 8
    attenuation: str = "chang"
    mu_per_cm: float | None = None
    scatter: str = "none"
    collimator: str | None = None
    intrinsic_fwhm_mm: float = 3.6
    postfilter_mm: float = 6.0
    fraction: float = 1.0
    seed: int = 0
    complement: bool = False
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        OSEMConfig(self.iterations, self.subsets)
        if self.complement and self.fraction == 1:
            raise ValueError("complement needs fraction < 1 (the rest of a thinned acquisition)")
        if self.attenuation not in ATTENUATION:
            raise ValueError(f"attenuation must be one of {ATTENUATION}, got {self.attenuation!r}")
        if self.scatter not in SCATTER:
            raise ValueError(f"scatter must be one of {SCATTER}, got {self.scatter!r}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.postfilter_mm < 0 or self.intrinsic_fwhm_mm < 0:
            raise ValueError("postfilter_mm and intrinsic_fwhm_mm must be >= 0")
        if self.mu_per_cm is not None and not 0 <= self.mu_per_cm < 1:
            raise ValueError(f"mu_per_cm must be in [0, 1) 1/cm, got {self.mu_per_cm}")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 2):
            raise ValueError(f"grid must be (size, slices) >= 2, got {self.grid}")


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """A reconstructed volume and how it was made.

    Attributes:
        volume: ``(X, Y, Z)`` float32, counts / s per voxel, RAS index order.
        affine: Voxel -> RAS mm ``(4, 4)``.
        settings: The settings used.
        info: What was resolved on the way (collimator, mu, grid, counts, times).
    """

    volume: np.ndarray
    affine: np.ndarray
    settings: ReconSettings
    info: dict[str, Any] = field(default_factory=dict)


def thin(
    ps: ProjectionSet, fraction: float, generator: torch.Generator, complement: bool = False
) -> ProjectionSet:
    """Binomial thinning of every bin of every window to ``fraction`` of the counts.

    With ``complement`` the same draw's *other* counts are returned: the acquisition minus the
    thinned one, a scan of ``1 - fraction`` of the time. For Poisson counts the two parts are
    independent Poisson scans of the same object (a Poisson process split at random), the
    self-supervised (Noise2Noise) pair of one acquisition; the same generator state gives the
    same split, so a subset and its complement are disjoint and add up to the acquisition.

    Args:
        ps: The acquisition (integer counts).
        fraction: Probability that each count is kept, in (0, 1].
        generator: Explicit random generator (CPU).
        complement: Return the counts not kept (``fraction < 1`` needed).

    Returns:
        The thinned acquisition (or its complement), frame times multiplied by its share.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if complement and fraction == 1:
        raise ValueError("the complement of keeping every count is empty (fraction 1)")
    counts = ps.counts.double()
    if (counts < 0).any() or (counts != counts.round()).any():
        raise ValueError("thinning needs non-negative integer counts")
    if fraction == 1:
        return ps
    kept = torch.binomial(counts, torch.full_like(counts, fraction), generator=generator)
    if complement:
        kept, fraction = counts - kept, 1.0 - fraction
    return ps.replace(counts=kept.to(ps.counts.dtype), frame_s=ps.frame_s * fraction)


def object_extent(photopeak: torch.Tensor) -> tuple[float, int, int]:
    """Where the object is in ``(V, S, Z)`` photopeak counts.

    A lateral bin belongs to the object in a view when the view's axial sum there exceeds
    :data:`SUPPORT_FRACTION` of the largest such sum over all views; an axial bin when its sum
    over views and lateral bins exceeds that fraction of the largest.

    Returns:
        ``(radius, first, last)``: the largest lateral distance (bins) of an object bin from the
        rotation axis ``(S - 1) / 2`` in any view, and the first and last axial object bins.
    """
    lateral = photopeak.double().sum(2)  # (V, S)
    axial = photopeak.double().sum((0, 1))  # (Z,)
    if float(lateral.max()) <= 0:
        raise ValueError("the photopeak window holds no counts")
    cols = torch.nonzero(lateral > SUPPORT_FRACTION * lateral.max(), as_tuple=True)[1]
    rows = torch.nonzero(axial > SUPPORT_FRACTION * axial.max(), as_tuple=True)[0]
    c = (photopeak.shape[1] - 1) / 2
    radius = float(max(c - float(cols.min()), float(cols.max()) - c))
    return radius, int(rows.min()), int(rows.max())


def _grid(
    ps: ProjectionSet, photopeak: torch.Tensor, grid: tuple[int, int] | None
) -> tuple[int, int, int]:
    """``(size, slices, first_slice)`` of the reconstruction grid (module docstring)."""
    s, z = ps.shape
    if grid is not None:
        size, slices = grid
        if size > s or slices > z or (s - size) % 2:
            raise ValueError(
                f"grid {size} x {slices}: needs size <= {s} with the parity of the {s} lateral "
                f"bins (centred on the rotation axis) and slices <= {z}"
            )
        return size, slices, (z - slices) // 2
    radius, first, last = object_extent(photopeak)
    # the projector sees the cylinder of radius (size - 1) / 2 - 1 voxels
    half = radius + SUPPORT_MARGIN_MM / ps.bin_mm[0] + 1.0
    size = min(s, 2 * math.ceil(half) + 1)
    size = min(s, size + (s - size) % 2)
    pad = math.ceil(SUPPORT_MARGIN_MM / ps.bin_mm[1])
    first, last = max(0, first - pad), min(z - 1, last + pad)
    return size, last - first + 1, first


def grid_affine(ps: ProjectionSet, size: int, first_slice: int) -> np.ndarray:
    """Voxel -> RAS mm of a ``size``-wide grid centred on the rotation axis from axial bin
    ``first_slice`` on (voxels of the lateral bin size)."""
    d = ps.bin_mm[0]
    aff = np.diag([d, d, d, 1.0])
    x0, y0, z0 = ps.axis_origin_mm
    aff[:3, 3] = [x0 - (size - 1) / 2 * d, y0 - (size - 1) / 2 * d, z0 + first_slice * d]
    return aff


def reconstruct(
    ps: ProjectionSet,
    settings: ReconSettings | None = None,
    mu_map: tuple[np.ndarray, np.ndarray] | None = None,
    device: torch.device | str = "cpu",
) -> Reconstruction:
    """Reconstruct one acquisition (module docstring for the steps).

    Args:
        ps: The acquisition.
        settings: Reconstruction settings (defaults: :class:`ReconSettings`).
        mu_map: ``(mu (X, Y, Z) in 1/cm at 159 keV, voxel -> RAS mm affine)`` for
            ``attenuation="map"``, in the projections' patient frame; resampled onto the grid.
        device: Where to compute.

    Returns:
        The reconstruction, in counts / s per voxel.
    """
    cfg = settings or ReconSettings()
    t0 = time.perf_counter()
    where = f"{ps.source[0]}: " if ps.source else ""
    if abs(ps.bin_mm[0] - ps.bin_mm[1]) > SQUARE_BIN_RTOL * ps.bin_mm[0]:
        raise ValueError(
            f"{where}bins of {ps.bin_mm[0]:.3f} x {ps.bin_mm[1]:.3f} mm are not square; "
            "FastDaT reconstructs cubic voxels of the bin size"
        )
    if (cfg.attenuation == "map") != (mu_map is not None):
        raise ValueError("attenuation 'map' needs a mu map, and a mu map needs attenuation 'map'")
    peak_i = ps.window("photopeak")
    if peak_i is None:
        raise ValueError(f"{where}no photopeak window among {[w.name for w in ps.windows]}")
    # the grid follows the object in the whole acquisition, so that every thinning of one
    # acquisition (5 min, its rest, 25 min) is reconstructed on the same grid
    size, slices, first = _grid(ps, ps.counts[peak_i].float(), cfg.grid)
    generator = torch.Generator().manual_seed(cfg.seed)
    ps = thin(ps, cfg.fraction, generator, cfg.complement)
    photopeak = ps.counts[peak_i].float()
    background = _scatter(ps, cfg.scatter, where)
    affine = grid_affine(ps, size, first)
    s, _ = ps.shape
    lat = slice((s - size) // 2, (s - size) // 2 + size)
    ax = slice(first, first + slices)
    y = photopeak[:, lat, ax]
    bg = None if background is None else background[:, lat, ax].float()
    collimator = _collimator(ps, cfg.collimator, where)
    pixel_mm = ps.bin_mm[0]
    mu_used = cfg.mu_per_cm if cfg.mu_per_cm is not None else att.default_mu(cfg.scatter != "none")

    def projector(mu: torch.Tensor | None) -> SPECTProjector:
        return SPECTProjector(
            size,
            slices,
            pixel_mm,
            angles_deg=ps.angles_deg,
            orbit_radius_mm=ps.radii_mm,
            mu_map=mu,
            collimator=collimator,
            intrinsic_fwhm_mm=cfg.intrinsic_fwhm_mm,
            device=device,
        )

    def run(mu: torch.Tensor | None) -> torch.Tensor:
        full = projector(mu)
        subsets = [full.subset(v) for v in subset_views(ps.n_views, cfg.subsets)]
        return osem(y, subsets, bg, OSEMConfig(cfg.iterations, cfg.subsets))

    info: dict[str, Any] = {"grid": [size, size, slices], "first_slice": first}
    mu = None
    if cfg.attenuation == "map":
        vol, aff = mu_map
        mu = torch.from_numpy(
            att.resample_to_grid(vol, aff, affine, (size, size, slices)).astype(np.float32)
        )
    elif cfg.attenuation in ("chang", "uniform"):
        plain = run(None)
        outline = att.body_outline(plain.cpu().numpy(), pixel_mm)
        outline &= field_of_view(size).numpy()[:, :, None]  # what every view sees
        mu = torch.from_numpy(att.uniform_mu_map(outline, mu_used).astype(np.float32))
        info["outline_voxels"] = int(outline.sum())
        info["mu_per_cm"] = mu_used
    if cfg.attenuation == "chang":
        x = plain * torch.from_numpy(
            att.chang_factors(mu.numpy(), pixel_mm, ps.angles_deg.numpy()).astype(np.float32)
        ).to(plain)
    else:
        x = run(mu)
    x = gaussian_filter3d(x / ps.acquisition_s, cfg.postfilter_mm, pixel_mm)
    info.update(
        collimator=collimator or "none",
        acquisition_s=ps.acquisition_s,
        counts_photopeak=int(ps.counts[peak_i].sum()),
        views=ps.n_views,
        seconds=round(time.perf_counter() - t0, 3),
    )
    return Reconstruction(x.float().cpu().numpy(), affine, cfg, info)


def _scatter(ps: ProjectionSet, method: str, where: str) -> torch.Tensor | None:
    """Expected scatter in the photopeak window ``(V, S, Z)``, or ``None``."""
    if method == "none":
        return None
    peak = ps.windows[ps.window("photopeak")]
    lower, upper = ps.window("scatter-lower"), ps.window("scatter-upper")
    names = ", ".join(f"{w.name or '?'} {w.lower_kev:g}-{w.upper_kev:g} keV" for w in ps.windows)
    if lower is None or (method == "tew" and upper is None):
        need = "a lower and an upper" if method == "tew" else "a lower"
        raise ValueError(
            f"{where}scatter {method.upper()} needs {need} scatter window; the acquisition has: "
            f"{names}"
        )
    if method == "tew":
        return sc.tew(
            ps.counts[ps.window("photopeak")],
            ps.counts[lower],
            ps.counts[upper],
            (ps.windows[lower].width_kev, peak.width_kev, ps.windows[upper].width_kev),
        )
    return sc.dew(ps.counts[lower], (ps.windows[lower].width_kev, peak.width_kev))


def _collimator(ps: ProjectionSet, name: str | None, where: str) -> str | None:
    """The collimator table name to model, ``None`` for no response."""
    if name == "none":
        return None
    if name is not None:
        return resolve_collimator(name, None).name
    manufacturer = None if ps.header is None else getattr(ps.header, "Manufacturer", None)
    if ps.collimator is None:
        raise ValueError(
            f"{where}the file names no collimator (Collimator/grid Name); give one with "
            "--collimator (fastdat collimators lists them) or 'none'"
        )
    try:
        return resolve_collimator(ps.collimator, manufacturer).name
    except ValueError as err:
        raise ValueError(f"{where}{err}; give one with --collimator") from None


def settings_dict(cfg: ReconSettings) -> dict[str, Any]:
    """The settings as plain data (for provenance files)."""
    d = asdict(cfg)
    d["grid"] = list(cfg.grid) if cfg.grid else None
    return d
