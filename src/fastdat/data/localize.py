"""Find the striata in a reconstructed DaT SPECT volume from its content alone (no labels).

Real scans carry no truth labels, so the dataset builder locates the striata with an anatomical
template fit. The template is FastDaT's own mean phantom (:mod:`fastdat.simulate.phantom`: MNI-like
anatomy, no pose, no disease) rendered on the image's grid and blurred to the reconstructed
resolution, split into three components: caudate nuclei ``T_c``, putamina ``T_p`` and the rest of
the head ``T_b`` (brain, skull, scalp uptake). For every translation ``s`` the image is fitted as::

    I(x) ~ a_c T_c(x - s) + a_p T_p(x - s) + a_b T_b(x - s) + a_0

by least squares, all correlations at once with FFTs; the translation that explains most of the
image's energy with non-negative caudate and head amplitudes wins. Free amplitudes let the fit
follow any disease grade: where the putamen has lost its uptake (grade 2-3), the caudate and the
head outline still pin the position. The striatal centre is the template's striatal centroid moved
by ``s``; the slices are the ``n_slices`` around the axial slice holding most striatal template
counts, and the crop is centred on the striatal centroid within those slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fastdat.simulate.phantom import PhantomConfig, Subject, make_phantom

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
        score: Fraction of the image's (mean-removed) energy the template fit explains.
    """

    centre: tuple[float, float, float]
    slices: tuple[int, ...]
    corner: tuple[int, int]
    size: int
    shift: tuple[int, int, int]
    score: float


@functools.lru_cache(maxsize=8)
def _templates(shape: tuple[int, int, int], voxel_mm: float, fwhm_mm: float):
    """Template components ``(T_c, T_p, T_b)`` on a grid of ``shape``, striatal labels too."""
    cfg = PhantomConfig(texture_sd=0.0, supersample=2)
    sbr = {
        f"{r}_{s}": 6.0
        for r in ("caudate", "putamen_anterior", "putamen_posterior")
        for s in ("left", "right")
    }
    ph = make_phantom(Subject(65.0, "M", 0, 0, sbr), shape, voxel_mm, cfg)
    caudate = np.isin(ph.labels, (1, 2)).astype(np.float64)
    putamen = np.isin(ph.labels, (3, 4, 5, 6)).astype(np.float64)
    head = np.where((caudate + putamen) > 0, 0.0, ph.activity.astype(np.float64))
    sigma = fwhm_mm * _FWHM_TO_SIGMA / voxel_mm
    comps = [ndimage.gaussian_filter(t, sigma, mode="constant") for t in (caudate, putamen, head)]
    return comps, caudate + putamen


def _correlate(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``C[s] = sum_x I(x) T(x - s)`` for all shifts (zero-padded; negative shifts wrap)."""
    pad = [2 * n for n in image.shape]
    fi = np.fft.rfftn(image, pad)
    ft = np.fft.rfftn(template, pad)
    return np.fft.irfftn(fi * np.conj(ft), pad)


def locate_striata(
    volume: np.ndarray,
    voxel_mm: float,
    n_slices: int = 5,
    size: int = 64,
    resolution_mm: float = 12.0,
    max_shift_mm: float = 45.0,
) -> StriatalLocation:
    """Locate the striata in a transaxial volume ``(X, Y, Z)`` (RAS-like axes, z axial).

    Args:
        volume: Reconstructed image, non-negative, any scale.
        voxel_mm: Isotropic voxel size (mm).
        n_slices: Number of axial slices to select.
        size: In-plane crop side (voxels).
        resolution_mm: FWHM the templates are blurred to (reconstructed resolution, mm).
        max_shift_mm: Largest template translation searched from the grid centre (mm).

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
    comps, striatum = _templates(vol.shape, float(voxel_mm), float(resolution_mm))
    img = vol / vol.max()
    k = len(comps)
    # least squares per shift s over the image domain D:
    #   b_k(s) = sum_D I T_k(. - s),  G_kl(s) = sum_D T_k(. - s) T_l(. - s), plus a constant term
    domain = np.ones_like(img)
    b = [_correlate(img, t) for t in comps]
    b.append(np.full_like(b[0], img.sum()))
    g = np.empty((k + 1, k + 1), dtype=object)
    for i in range(k):
        for j in range(i, k):
            g[i, j] = g[j, i] = _correlate(domain, comps[i] * comps[j])
        g[i, k] = g[k, i] = _correlate(domain, comps[i])
    g[k, k] = np.full_like(b[0], float(img.size))
    # candidate shifts within max_shift_mm (negative shifts index from the end of the padding)
    r = int(max_shift_mm / voxel_mm)
    ranges = [np.r_[0 : min(r, n - 1) + 1, -min(r, n - 1) : 0] for n in vol.shape]
    sx, sy, sz = (a.ravel() for a in np.meshgrid(*ranges, indexing="ij"))
    bb = np.stack([x[sx, sy, sz] for x in b], -1)  # (n_shifts, k + 1)
    gg = np.stack(
        [np.stack([g[i, j][sx, sy, sz] for j in range(k + 1)], -1) for i in range(k + 1)], -2
    )  # (n_shifts, k + 1, k + 1)
    gg += 1e-9 * np.eye(k + 1)
    coef = np.linalg.solve(gg, bb[..., None])[..., 0]
    energy = (coef * bb).sum(-1)
    valid = (coef[:, 0] > 0) & (coef[:, 2] > 0)
    if not valid.any():
        raise ValueError("no striatum-like pattern found in the volume")
    energy[~valid] = -np.inf
    best = int(np.argmax(energy))
    shift = (int(sx[best]), int(sy[best]), int(sz[best]))
    mean_energy = img.sum() ** 2 / img.size
    score = float((energy[best] - mean_energy) / max((img**2).sum() - mean_energy, 1e-12))
    moved = ndimage.shift(striatum, shift, order=0, mode="constant")
    if moved.sum() == 0:
        raise ValueError("the striatal template left the volume: is the head in the field of view?")
    profile = moved.sum((0, 1))
    kc = int(np.argmax(profile))
    k0 = min(max(kc - n_slices // 2, 0), nz - n_slices)
    slices = tuple(range(k0, k0 + n_slices))
    ii, jj, _ = np.nonzero(moved[:, :, list(slices)])
    ci, cj = float(ii.mean()), float(jj.mean())
    i0 = int(min(max(round(ci - (size - 1) / 2), 0), nx - size))
    j0 = int(min(max(round(cj - (size - 1) / 2), 0), ny - size))
    return StriatalLocation(
        centre=(ci, cj, float(np.mean(slices))),
        slices=slices,
        corner=(i0, j0),
        size=size,
        shift=shift,
        score=score,
    )
