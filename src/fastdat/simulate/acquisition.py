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
25-min acquisition).

Durations (``acquisition.mode``):

- ``"nested"`` (default): shorter durations are binomial thinnings of the longest, each of the
  next longer one, so a 5-min scan is a subset of the 25-min scan's counts, as a scan's first
  minutes would be, or an archived scan thinned after the fact. A short image and the long one
  then share noise.
- ``"independent"``: one acquisition per duration, each ``y_d ~ Poisson(kappa_d (p + b))`` with
  ``kappa_d = kappa t_d / t_longest``, drawn independently, as separate scans would be. With
  ``motion_mm`` / ``motion_deg`` each shorter acquisition sees the subject moved rigidly (a
  rotation about each axis with SD ``motion_deg`` and a shift along each with SD
  ``motion_mm``, about the grid centre) from the longest acquisition's pose, which the truth,
  labels and attenuation map keep. The attenuation map follows the head in the reconstruction of
  a moved acquisition (as an attenuation map fitted to that acquisition's outline would).

``replicates`` adds that many further independent scans of every duration at the reference pose
(``Poisson(kappa_d (p + b))``): noise realizations of the same subject for the precision of what
is measured in the images (the SD across them). Distributionally these equal the disjoint
``t_d`` subsets of a longer scan (a Poisson process split in time).

Reconstruction: OSEM with the attenuation and collimator-response model, on the central ``N x Z``
detector region that sees the object grid. With ``scatter_correction = "none"`` (a common clinical
choice for DaTscan) the background stays in the image; ``"model"`` gives OSEM the expected
background (an ideal scatter estimate). Images are divided by the acquisition time, so all durations
share one scale (counts / s per voxel, proportional to activity concentration), then smoothed with a
3D Gaussian post-filter.

``recon.noise_free`` adds the noise-free reconstruction: the same OSEM (iterations, subsets,
post-filter) of the expected projections ``kappa (p + b)`` of the longest acquisition, per second.
Without scatter correction OSEM from a uniform start is scale-equivariant (scaling the data
scales every iterate), so this one image is the noise-free reconstruction of every duration; with
``scatter_correction = "model"`` it is the longest duration's. Against it, image quality measures
a method's noise and bias and not the partial-volume loss that every reconstruction shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator
from fastdat.tomo.counts import poisson_counts, thin_counts
from fastdat.tomo.osem import OSEMConfig, gaussian_filter3d, osem, subset_views
from fastdat.tomo.projector import SPECTProjector, field_of_view, outside_field_of_view

MODES = ("nested", "independent")


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
        durations_min: Acquisition durations (minutes).
        mode: ``"nested"`` (shorter durations thinned from the longest) or ``"independent"``
            (one acquisition per duration), see the module.
        motion_mm: SD of the subject's shift along each axis between acquisitions (mm;
            ``independent`` only).
        motion_deg: SD of its rotation about each axis between acquisitions (degrees;
            ``independent`` only).
        replicates: Further independent scans of every duration (noise realizations).
        save_projections: Which projections a cohort writes: ``"all"`` durations,
            ``"longest"`` only, or ``"none"``.
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
    mode: str = "nested"
    motion_mm: float = 0.0
    motion_deg: float = 0.0
    replicates: int = 0
    save_projections: str = "all"

    def __post_init__(self) -> None:
        get_collimator(self.collimator)
        if self.mode not in MODES:
            raise ValueError(f"acquisition.mode must be one of {MODES}, got {self.mode!r}")
        if self.motion_mm < 0 or self.motion_deg < 0:
            raise ValueError("acquisition.motion_mm and motion_deg must be >= 0")
        if (self.motion_mm or self.motion_deg) and self.mode != "independent":
            raise ValueError(
                "acquisition.motion_mm / motion_deg need acquisition.mode=independent: nested "
                "durations are parts of one acquisition"
            )
        if self.replicates < 0:
            raise ValueError(f"acquisition.replicates must be >= 0, got {self.replicates}")
        if self.save_projections not in ("all", "longest", "none"):
            raise ValueError(
                "acquisition.save_projections must be 'all', 'longest' or 'none', "
                f"got {self.save_projections!r}"
            )
        if len(set(self.durations_min)) != len(self.durations_min):
            raise ValueError(f"acquisition.durations_min repeats a value: {self.durations_min}")
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
        noise_free: Also reconstruct the expected projections (see the module).
    """

    iterations: int = 8
    subsets: int = 8
    postfilter_fwhm_mm: float = 6.0
    scatter_correction: str = "none"
    noise_free: bool = False

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


def rigid_move(
    volume: np.ndarray, angles_deg: np.ndarray, shift_mm: np.ndarray, voxel_mm: float, order: int
) -> np.ndarray:
    """``volume`` ``(N, N, Z)`` rotated by ``angles_deg`` (about x, y, z, applied in that order)
    and shifted by ``shift_mm`` (x, y, z), about the grid centre; zero outside the inscribed
    field of view. ``order``: spline order (1 for activity and attenuation, 0 for labels)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    centre = (np.asarray(volume.shape, float) - 1) / 2
    shift = np.asarray(shift_mm, float) / voxel_mm
    # output voxel o samples input at rot^-1 (o - centre - shift) + centre
    inv = rot.T
    offset = centre - inv @ (centre + shift)
    out = ndimage.affine_transform(volume, inv, offset=offset, order=order, mode="constant")
    fov = field_of_view(volume.shape[0]).numpy()
    return (out * fov[:, :, None]).astype(volume.dtype)


def simulate_acquisition(
    activity: torch.Tensor,
    mu: torch.Tensor,
    voxel_mm: float,
    total_counts: float,
    cfg: AcquisitionConfig,
    recon: ReconConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> dict[str, dict]:
    """Simulate all durations of one study and reconstruct each.

    Args:
        activity: Activity concentration ``(N, N, Z)`` (any unit; only its shape matters).
        mu: Attenuation map ``(N, N, Z)`` (1/cm at 159 keV).
        voxel_mm: Voxel and detector-bin size (mm).
        total_counts: Expected total counts of the longest acquisition.
        cfg: Acquisition settings. recon: Reconstruction settings.
        generator: Random generator for the counts and the motion (on ``device``).
        device: Where to compute.

    Returns:
        ``{"projections": {minutes: int32 (V, D, D)}, "images": {minutes: float32 (N, N, Z)},
        "replicates": {minutes: [float32 (N, N, Z), ...]}, "noise_free": float32 (N, N, Z) or
        None, "motion": {minutes: {"angles_deg": [3], "shift_mm": [3]}}, "expected": float
        (V, D, D) expected counts of the longest acquisition}``; images are
        counts / s per voxel, post-filtered. With ``mode="nested"``, no replicates and no
        noise-free image, the random draws (and so the numbers) are those of the nested
        simulation alone.
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
    activity = activity.to(device, torch.float32)
    mu = mu.to(device, torch.float32)
    osem_cfg = OSEMConfig(recon.iterations, recon.subsets)
    views = subset_views(cfg.n_views, recon.subsets)

    def system(act: torch.Tensor, att: torch.Tensor):
        """Projector subsets and expected counts (primary, background) of one pose."""
        proj = SPECTProjector(n, nz, voxel_mm, cfg.n_views, mu_map=att, **kw)
        primary = embed(proj.A(act), cfg.detector_size)
        return [proj.subset(v) for v in views], primary, add_background(primary, voxel_mm, cfg)

    def reconstruct(y: torch.Tensor, subsets, bg: torch.Tensor | None, seconds: float):
        x = osem(crop(y, n, nz).float(), subsets, bg, osem_cfg)
        return gaussian_filter3d(x / seconds, recon.postfilter_fwhm_mm, voxel_mm).float()

    subsets, primary, background = system(activity, mu)
    scale = total_counts / float((primary + background).sum())
    expected = (primary + background) * scale
    longest = max(cfg.durations_min)
    shorter = sorted((d for d in cfg.durations_min if d != longest), reverse=True)
    long_counts = poisson_counts(expected, generator)
    motion: dict[float, dict[str, list[float]]] = {}
    poses = {d: (subsets, background * scale) for d in cfg.durations_min}
    if cfg.mode == "nested":
        counts = thin_counts(long_counts, [60.0 * d for d in cfg.durations_min], generator)
        projections = {d: counts[60.0 * d] for d in cfg.durations_min}
    else:
        projections = {longest: long_counts}
        for d in shorter:
            exp_d = expected
            if cfg.motion_mm or cfg.motion_deg:
                draw = torch.randn(
                    6, generator=generator, dtype=torch.float64, device=generator.device
                )
                angles = (draw[:3] * cfg.motion_deg).cpu().numpy()
                shift = (draw[3:] * cfg.motion_mm).cpu().numpy()
                motion[d] = {"angles_deg": angles.tolist(), "shift_mm": shift.tolist()}
                act_d, mu_d = (
                    torch.from_numpy(rigid_move(v.cpu().numpy(), angles, shift, voxel_mm, 1)).to(
                        device
                    )
                    for v in (activity, mu)
                )
                sub_d, prim_d, bg_d = system(act_d, mu_d)
                exp_d = (prim_d + bg_d) * scale
                poses[d] = (sub_d, bg_d * scale)
            projections[d] = poisson_counts(exp_d * (d / longest), generator)
    images = {}
    for d in cfg.durations_min:
        sub, bg = poses[d]
        bg = crop(bg * (d / longest), n, nz) if recon.scatter_correction == "model" else None
        images[d] = reconstruct(projections[d], sub, bg, 60.0 * d)
    replicates: dict[float, list[torch.Tensor]] = {}
    for d in cfg.durations_min:
        bg = crop(background * scale * (d / longest), n, nz)
        bg = bg if recon.scatter_correction == "model" else None
        for _ in range(cfg.replicates):
            y = poisson_counts(expected * (d / longest), generator)
            replicates.setdefault(d, []).append(reconstruct(y, subsets, bg, 60.0 * d))
    noise_free = None
    if recon.noise_free:
        bg = crop(background * scale, n, nz) if recon.scatter_correction == "model" else None
        noise_free = reconstruct(expected, subsets, bg, 60.0 * longest)
    return {
        "projections": projections,
        "images": images,
        "replicates": replicates,
        "noise_free": noise_free,
        "motion": motion,
        "expected": expected,
    }
