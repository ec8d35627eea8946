"""Find the striata in a reconstructed DaT SPECT volume from its content alone (no labels).

Real scans carry no truth labels, so the dataset builder locates the striata with an anatomical
template fit. The template is FastDaT's own mean phantom (:mod:`fastdat.anatomy.phantom`: MNI-like
anatomy, no disease) rendered on the image's grid at a few head rotations about the axial axis
(yaw) and blurred to the reconstructed resolution, split into five components: left and right
caudate, left and right putamen, and the rest of the head (brain, skull, scalp uptake). For every
yaw and translation ``s`` the image is fitted as::

    I(x) ~ sum_k a_k T_k(x - s) + a_0

by least squares, all translations at once with FFTs (the normal matrices depend on the grid only
and are cached); the pose that explains most of the image's energy with a positive head amplitude
and at least one positive caudate amplitude wins, refined to sub-voxel precision by a parabola.
Free amplitudes per region and side let the fit follow any disease grade and asymmetry: where a
putamen has lost its uptake (grade 2-3), the caudate and the head outline still pin the position.
The slices are the ``n_slices`` around the axial slice holding most striatal template voxels, and
the crop is centred on the template's striatal centroid within those slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fastdat.anatomy.template import template_phantom

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class StriatalLocation:
    """Where the striata are in a volume ``(X, Y, Z)`` (voxel indices).

    Attributes:
        centre: Estimated striatal centroid ``(x, y)`` within the chosen slices and the slab's
            middle ``z`` (fractional voxels).
        slices: The chosen axial slices, ascending.
        corner: ``(i0, j0)`` of the in-plane crop (clamped inside the image).
        size: Crop side (voxels).
        shift: Template translation found (voxels).
        yaw_deg: Template rotation about the axial axis found (degrees).
        score: Fraction of the image's (mean-removed) energy the template fit explains.
    """

    centre: tuple[float, float, float]
    slices: tuple[int, ...]
    corner: tuple[int, int]
    size: int
    shift: tuple[int, int, int]
    yaw_deg: float
    score: float


def _fft_workers() -> int:
    """FFT threads: as many as torch may use (``OMP_NUM_THREADS`` / ``torch.set_num_threads``);
    pocketfft's threaded transforms are bit-identical to the single-threaded ones."""
    import torch

    return max(1, torch.get_num_threads())


@functools.lru_cache(maxsize=32)
def _template_fit(
    shape: tuple[int, int, int], voxel_mm: float, fwhm_mm: float, max_shift: int, yaw_deg: float
):
    """Everything of the fit that depends on the grid only (cached per grid).

    Returns ``(spectra, gram_inv, shifts, pad, striatum)``: conjugate template spectra, the inverse
    normal matrices per shift ``(sx, sy, sz, 6, 6)`` (template overlap with the image domain), the
    shift grid ``(3, sx, sy, sz)`` and the striatal template mask.
    """
    from scipy import fft

    ph = template_phantom(shape, voxel_mm, yaw_deg)
    w = _fft_workers()
    # per side: caudate (1 / 2), putamen (3 + 5 / 4 + 6); then the rest of the head
    lab = ph.labels
    parts = [(lab == 1) * 1.0, (lab == 2) * 1.0, ((lab == 3) | (lab == 5)) * 1.0]
    parts.append(((lab == 4) | (lab == 6)) * 1.0)
    striatum = np.sum(parts, axis=0)
    head = np.where(striatum > 0, 0.0, ph.activity.astype(np.float64))
    sigma = fwhm_mm * _FWHM_TO_SIGMA / voxel_mm
    comps = [ndimage.gaussian_filter(t, sigma, mode="constant") for t in (*parts, head)]
    # zero padding of max_shift keeps the correlation free of wrap-around for |shift| <= max_shift
    pad = [fft.next_fast_len(n + max_shift + 1, real=True) for n in shape]
    ranges = [np.arange(-min(max_shift, n - 1), min(max_shift, n - 1) + 1) for n in shape]
    shifts = np.stack(np.meshgrid(*ranges, indexing="ij"))

    k = len(comps)
    g = np.empty(shifts.shape[1:] + (k + 1, k + 1))
    for i in range(k):
        for j in range(i, k):
            g[..., i, j] = g[..., j, i] = _window_sums(comps[i] * comps[j], shifts)
        g[..., i, k] = g[..., k, i] = _window_sums(comps[i], shifts)
    g[..., k, k] = float(np.prod(shape))
    gram_inv = np.linalg.inv(g + 1e-9 * np.eye(k + 1))
    spectra = [np.conj(fft.rfftn(t, pad, workers=w)) for t in comps]
    return spectra, gram_inv, shifts, pad, striatum


def _window_sums(t: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``c[s] = sum_x t[x] [0 <= x + s < n]`` at every shift ``s`` of ``shifts`` ``(3, ...)``.

    The part of the template ``t`` that stays inside the image domain when moved by ``s``: the sum
    of ``t`` over the box ``[max(0, -s), min(n, n - s))``, read from a summed-volume table in eight
    look-ups (inclusion-exclusion). It is the domain's correlation with ``t`` without FFTs. The
    table covers only the bounding box of ``t``'s non-zero voxels (a blurred striatum is compact).
    """
    nonzero = [np.flatnonzero(t.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if any(nz.size == 0 for nz in nonzero):
        return np.zeros(shifts.shape[1:])
    origin = [int(nz[0]) for nz in nonzero]
    box = t[tuple(slice(o, int(nz[-1]) + 1) for o, nz in zip(origin, nonzero, strict=True))]
    table = np.zeros(tuple(n + 1 for n in box.shape))
    table[1:, 1:, 1:] = box
    for axis in range(3):  # in place; the leading zero planes add nothing
        np.cumsum(table, axis=axis, out=table)
    lo, hi = [], []
    for a, (n, o, m) in enumerate(zip(t.shape, origin, box.shape, strict=True)):
        lo.append(np.clip(np.clip(-shifts[a], 0, n) - o, 0, m))
        hi.append(np.clip(np.clip(n - shifts[a], 0, n) - o, 0, m))
    out = np.zeros(shifts.shape[1:])
    for corner in range(8):
        idx = [hi[a] if corner >> a & 1 else lo[a] for a in range(3)]
        sign = (-1) ** (3 - bin(corner).count("1"))
        out += sign * table[idx[0], idx[1], idx[2]]
    return out


def _fit_energy(img, spectra, gram_inv, shifts, pad) -> np.ndarray:
    """Explained energy of the least-squares template fit at every shift (-inf where invalid)."""
    from scipy import fft

    w = _fft_workers()
    spec = fft.rfftn(img, pad, workers=w)
    b = [fft.irfftn(spec * t, pad, workers=w)[shifts[0], shifts[1], shifts[2]] for t in spectra]
    b = np.stack([*b, np.full(b[0].shape, img.sum())], -1)  # (sx, sy, sz, 6)
    coef = (gram_inv @ b[..., None])[..., 0]
    energy = (coef * b).sum(-1)
    # a head that takes up tracer and at least one caudate brighter than its surroundings
    valid = (coef[..., 4] > 0) & (np.maximum(coef[..., 0], coef[..., 1]) > 0)
    return np.where(valid, energy, -np.inf)


def locate_striata(
    volume: np.ndarray,
    voxel_mm: float,
    n_slices: int = 5,
    size: int = 64,
    resolution_mm: float = 12.0,
    max_shift_mm: float = 45.0,
    yaws_deg: tuple[float, ...] = (-6.0, -3.0, 0.0, 3.0, 6.0),
) -> StriatalLocation:
    """Locate the striata in a transaxial volume ``(X, Y, Z)`` (RAS-like axes, z axial).

    Args:
        volume: Reconstructed image, non-negative, any scale.
        voxel_mm: Isotropic voxel size (mm).
        n_slices: Number of axial slices to select.
        size: In-plane crop side (voxels).
        resolution_mm: FWHM the templates are blurred to (reconstructed resolution, mm).
        max_shift_mm: Largest template translation searched from the grid centre (mm).
        yaws_deg: Head rotations about the axial axis tried (degrees).

    Returns:
        The location; raises ``ValueError`` when nothing striatum-like is found.
    """

    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    if not np.isfinite(vol).all() or vol.max() <= 0:
        raise ValueError("volume must be finite with some positive voxel")
    nx, ny, nz = vol.shape
    if size > min(nx, ny) or n_slices > nz:
        raise ValueError(f"crop {size} x {size} x {n_slices} does not fit the volume {vol.shape}")
    r = max(1, int(max_shift_mm / voxel_mm))
    img = vol / vol.max()
    fits = []
    for yaw in yaws_deg:
        fit = _template_fit(vol.shape, float(voxel_mm), float(resolution_mm), r, float(yaw))
        energy = _fit_energy(img, *fit[:4])
        fits.append((float(energy.max()), yaw, energy, fit))
    best_energy, yaw, energy, (_, _, shifts, _, striatum) = max(fits, key=lambda f: f[0])
    if not np.isfinite(best_energy):
        raise ValueError("no striatum-like pattern found in the volume")
    best = np.unravel_index(int(np.argmax(energy)), energy.shape)
    shift = tuple(int(shifts[a][best]) for a in range(3))
    # sub-voxel refinement: a parabola through the best energy and its neighbours on each axis
    frac = []
    for a in range(3):
        lo, hi = list(best), list(best)
        lo[a] -= 1
        hi[a] += 1
        if best[a] == 0 or best[a] == energy.shape[a] - 1:
            frac.append(0.0)
            continue
        e0, em, ep = energy[best], energy[tuple(lo)], energy[tuple(hi)]
        den = em - 2 * e0 + ep
        frac.append(
            float(np.clip(0.5 * (em - ep) / den, -0.5, 0.5))
            if np.isfinite(den) and den < 0
            else 0.0
        )
    mean_energy = img.sum() ** 2 / img.size
    score = float((energy[best] - mean_energy) / max((img**2).sum() - mean_energy, 1e-12))
    moved = ndimage.shift(striatum, shift, order=0, mode="constant")
    if moved.sum() == 0:
        raise ValueError("the striatal template left the volume: is the head in the field of view?")
    kc = int(np.argmax(moved.sum((0, 1))))
    k0 = min(max(kc - n_slices // 2, 0), nz - n_slices)
    slices = tuple(range(k0, k0 + n_slices))
    ii, jj, _ = np.nonzero(moved[:, :, list(slices)])
    ci, cj = float(ii.mean()) + frac[0], float(jj.mean()) + frac[1]
    i0 = int(min(max(round(ci - (size - 1) / 2), 0), nx - size))
    j0 = int(min(max(round(cj - (size - 1) / 2), 0), ny - size))
    return StriatalLocation(
        centre=(ci, cj, float(np.mean(slices))),
        slices=slices,
        corner=(i0, j0),
        size=size,
        shift=shift,
        yaw_deg=float(yaw),
        score=score,
    )
