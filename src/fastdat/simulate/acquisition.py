"""One simulated DaT SPECT study: projection, background, counts, and reconstruction per duration.

Detected photopeak counts of view ``v`` on the ``D x D`` detector (``D = 128``)::

    y_v ~ Poisson( kappa * (p_v + b_v) ),     b_v = beta * (K * p_v)

``p = A x`` is the primary (unscattered, attenuated, collimator-blurred) projection of the phantom,
embedded in the centre of the detector. ``b`` approximates scatter in the 20 % photopeak window and
the septal penetration of 123I's high-energy photons (2.6 % above 300 keV, nearly free through LEHR
septa) as a convolution of each view's primary image with a broad, normalized kernel ``K``: a
mixture of a scatter Gaussian (``scatter_fwhm_mm``) and a wider penetration Gaussian
(``penetration_fwhm_mm``, weight ``penetration_share``). This is the convolution model of scatter
estimation (Axelsson 1984; Msaki 1987) used forwards; it captures the broad, low-frequency halo that
lowers striatal contrast and fills the air around the head, not its dependence on depth or energy.
``beta`` is set per study so that the background is exactly ``background_fraction`` of all detected
counts (20-35 % for 123I with LEHR, ``domain.md``); ``kappa`` scales the total to ``counts`` (the
25-min acquisition). Shorter durations are binomial thinnings of the longest.

Reconstruction: OSEM with the attenuation and collimator-response model, on the central ``N x Z``
detector region that sees the object grid. With ``scatter_correction = "none"`` (a common clinical
choice for DaTscan) the background stays in the image; ``"model"`` gives OSEM the expected
background (an ideal scatter estimate). Images are divided by the acquisition time, so all durations
share one scale (counts / s per voxel, proportional to activity concentration), then smoothed with a
3D Gaussian post-filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator
from fastdat.tomo.counts import poisson_counts, thin_counts
from fastdat.tomo.osem import OSEMConfig, gaussian_filter3d, osem, subset_views
from fastdat.tomo.projector import SPECTProjector, outside_field_of_view


@dataclass(frozen=True)
class AcquisitionConfig:
    """Camera, background and count settings (defaults: a clinical DaTscan protocol).

    Attributes:
        detector_size: Detector bins per side (lateral and axial).
        n_views: Views over 360 degrees.
        orbit_radius_mm: Rotation axis to collimator face (mm).
        collimator: Named collimator (``fastdat collimators``).
        intrinsic_fwhm_mm: Intrinsic resolution at 159 keV (mm).
        background_fraction: Share of scatter + penetration in all detected photopeak counts.
        scatter_fwhm_mm: FWHM of the scatter part of the background kernel (mm).
        penetration_fwhm_mm: FWHM of the septal-penetration part (mm).
        penetration_share: Weight of the penetration part in the kernel.
        counts_median: Median total counts of the longest acquisition.
        counts_log_sd: SD of log total counts across subjects.
        counts_min, counts_max: Clip range of total counts.
        durations_min: Acquisition durations (minutes); the longest is acquired, the rest thinned.
    """

    detector_size: int = 128
    n_views: int = 120
    orbit_radius_mm: float = 135.0
    collimator: str = "siemens-lehr"
    intrinsic_fwhm_mm: float = 3.6
    background_fraction: float = 0.28
    scatter_fwhm_mm: float = 60.0
    penetration_fwhm_mm: float = 200.0
    penetration_share: float = 0.4
    counts_median: float = 2.0e6
    counts_log_sd: float = 0.15
    counts_min: float = 1.5e6
    counts_max: float = 3.0e6
    durations_min: tuple[float, ...] = (25.0, 5.0)

    def __post_init__(self) -> None:
        get_collimator(self.collimator)
        if self.n_views < 1:
            raise ValueError(f"acquisition.n_views must be >= 1, got {self.n_views}")
        if self.detector_size < 8:
            raise ValueError(f"acquisition.detector_size must be >= 8, got {self.detector_size}")
        if not 0 <= self.background_fraction < 1:
            raise ValueError(
                f"acquisition.background_fraction must be in [0, 1), got {self.background_fraction}"
            )
        if not 0 <= self.penetration_share <= 1:
            raise ValueError(
                f"acquisition.penetration_share must be in [0, 1], got {self.penetration_share}"
            )
        if min(self.scatter_fwhm_mm, self.penetration_fwhm_mm) <= 0:
            raise ValueError("acquisition.scatter_fwhm_mm and penetration_fwhm_mm must be > 0")
        if not 0 < self.counts_min <= self.counts_median <= self.counts_max:
            raise ValueError(
                "acquisition counts must satisfy 0 < counts_min <= counts_median <= counts_max, "
                f"got {self.counts_min}, {self.counts_median}, {self.counts_max}"
            )
        if self.counts_log_sd < 0:
            raise ValueError(f"acquisition.counts_log_sd must be >= 0, got {self.counts_log_sd}")
        if not self.durations_min or min(self.durations_min) <= 0:
            raise ValueError(
                f"acquisition.durations_min must be positive, got {self.durations_min}"
            )


@dataclass(frozen=True)
class ReconConfig:
    """Reconstruction settings (clinical defaults).

    Attributes:
        iterations, subsets: OSEM settings.
        postfilter_fwhm_mm: 3D Gaussian post-filter FWHM (mm); 0 for none.
        scatter_correction: ``"none"`` (background left in the image) or ``"model"``.
    """

    iterations: int = 8
    subsets: int = 8
    postfilter_fwhm_mm: float = 6.0
    scatter_correction: str = "none"

    def __post_init__(self) -> None:
        OSEMConfig(self.iterations, self.subsets)
        if self.postfilter_fwhm_mm < 0:
            raise ValueError(
                f"recon.postfilter_fwhm_mm must be >= 0, got {self.postfilter_fwhm_mm}"
            )
        if self.scatter_correction not in ("none", "model"):
            raise ValueError(
                "recon.scatter_correction must be 'none' or 'model', "
                f"got {self.scatter_correction!r}"
            )


def background_kernel(size: int, pixel_mm: float, cfg: AcquisitionConfig) -> torch.Tensor:
    """Normalized scatter + penetration kernel on a ``(2 size, 2 size)`` FFT grid, centre at 0."""
    m = 2 * size
    r = torch.fft.fftfreq(m, 1.0 / m, dtype=torch.float64) * pixel_mm  # signed offsets (mm)
    r2 = r[:, None] ** 2 + r[None, :] ** 2
    k = torch.zeros(m, m, dtype=torch.float64)
    for fwhm, w in (
        (cfg.scatter_fwhm_mm, 1 - cfg.penetration_share),
        (cfg.penetration_fwhm_mm, cfg.penetration_share),
    ):
        g = torch.exp(-r2 / (2 * (fwhm * FWHM_TO_SIGMA) ** 2))
        k += w * g / g.sum()
    return k


def add_background(primary: torch.Tensor, pixel_mm: float, cfg: AcquisitionConfig) -> torch.Tensor:
    """Background ``b`` for detector images ``(V, D, D)`` with ``sum b = f / (1 - f) sum p``."""
    if cfg.background_fraction == 0:
        return torch.zeros_like(primary)
    v, d, _ = primary.shape
    k = torch.fft.rfft2(background_kernel(d, pixel_mm, cfg).to(primary.device))
    b = torch.fft.irfft2(torch.fft.rfft2(primary.double(), s=(2 * d, 2 * d)) * k, s=(2 * d, 2 * d))
    b = b[:, :d, :d].clamp_min(0)
    f = cfg.background_fraction
    return (b * (f / (1 - f) * primary.sum() / b.sum())).to(primary.dtype)


def embed(proj: torch.Tensor, size: int) -> torch.Tensor:
    """Place ``(V, N, Z)`` projections in the centre of a ``(V, size, size)`` detector."""
    v, n, z = proj.shape
    if n > size or z > size:
        raise ValueError(f"object grid {n} x {z} does not fit the {size} x {size} detector")
    out = proj.new_zeros(v, size, size)
    i0, k0 = (size - n) // 2, (size - z) // 2
    out[:, i0 : i0 + n, k0 : k0 + z] = proj
    return out


def crop(det: torch.Tensor, n: int, z: int) -> torch.Tensor:
    """Inverse of :func:`embed`: the central ``(V, n, z)`` region of ``(V, D, D)``."""
    size = det.shape[1]
    i0, k0 = (size - n) // 2, (size - z) // 2
    return det[:, i0 : i0 + n, k0 : k0 + z]


def draw_total_counts(rng: torch.Generator, cfg: AcquisitionConfig) -> float:
    """Total counts of the longest acquisition: log-normal around the median, clipped."""
    z = torch.randn(1, generator=rng, dtype=torch.float64, device=rng.device).item()
    c = cfg.counts_median * math.exp(cfg.counts_log_sd * z)
    return float(min(max(c, cfg.counts_min), cfg.counts_max))


def simulate_acquisition(
    activity: torch.Tensor,
    mu: torch.Tensor,
    voxel_mm: float,
    total_counts: float,
    cfg: AcquisitionConfig,
    recon: ReconConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> dict[str, dict[float, torch.Tensor]]:
    """Simulate all durations of one study and reconstruct each.

    Args:
        activity: Activity concentration ``(N, N, Z)`` (any unit; only its shape matters).
        mu: Attenuation map ``(N, N, Z)`` (1/cm at 159 keV).
        voxel_mm: Voxel and detector-bin size (mm).
        total_counts: Expected total counts of the longest acquisition.
        cfg: Acquisition settings. recon: Reconstruction settings.
        generator: Random generator for the counts (on ``device``).
        device: Where to compute.

    Returns:
        ``{"projections": {minutes: int32 (V, D, D)}, "images": {minutes: float32 (N, N, Z)}}``;
        images are counts / s per voxel, post-filtered.
    """
    if total_counts <= 0:
        raise ValueError(f"total counts must be > 0, got {total_counts}")
    n, _, nz = activity.shape
    for name, vol in (("activity", activity), ("mu", mu)):
        if outside_field_of_view(vol):
            raise ValueError(
                f"{name} map has non-zero voxels outside the cylinder inscribed in the {n} x {n} "
                "grid, which not every view sees: enlarge the grid (pad the maps)"
            )
    kw = dict(
        orbit_radius_mm=cfg.orbit_radius_mm,
        collimator=cfg.collimator,
        intrinsic_fwhm_mm=cfg.intrinsic_fwhm_mm,
        device=device,
    )
    mu = mu.to(device, torch.float32)
    proj = SPECTProjector(n, nz, voxel_mm, cfg.n_views, mu_map=mu, **kw)
    primary = embed(proj.A(activity.to(device, torch.float32)), cfg.detector_size)
    background = add_background(primary, voxel_mm, cfg)
    scale = total_counts / float((primary + background).sum())
    expected = (primary + background) * scale
    longest = max(cfg.durations_min)
    counts = thin_counts(
        poisson_counts(expected, generator), [60.0 * d for d in cfg.durations_min], generator
    )
    projections = {d: counts[60.0 * d] for d in cfg.durations_min}
    subsets = [proj.subset(v) for v in subset_views(cfg.n_views, recon.subsets)]
    images = {}
    for d, y in projections.items():
        bg = None
        if recon.scatter_correction == "model":
            bg = crop(background * scale * (d / longest), n, nz)
        x = osem(crop(y, n, nz).float(), subsets, bg, OSEMConfig(recon.iterations, recon.subsets))
        x = gaussian_filter3d(x / (60.0 * d), recon.postfilter_fwhm_mm, voxel_mm)
        images[d] = x.float()
    return {"projections": projections, "images": images}
