"""Classical denoising baselines, tuned on the validation split: what clinics already do.

- ``gaussian``: 2D Gaussian filter of each crop (``sigma`` in pixels), the usual post-filter.
- ``butterworth``: 2D low-pass ``1 / sqrt(1 + (f / f_c)^(2 n))`` in the frequency domain, cutoff
  ``f_c`` as a fraction of Nyquist, order ``n`` (the classical FBP / post-filter of DaT SPECT).
- ``nlm``: non-local means (scikit-image), filtering strength ``h`` as a fraction of each image's
  maximum (the noise is spatially correlated after OSEM and post-filtering, so white-noise SD
  estimators are not a usable scale).

Each is tuned by a grid search that maximizes the mean validation PSNR against the 25-min crops
under FastDaT's image-quality convention.

Volume filters (:data:`VOLUME_FILTERS`), the same low-passes in 3D over a whole reconstruction
``(X, Y, Z)`` (a post-filter as a reconstruction workstation applies it):

- ``gaussian3d``: 3D Gaussian, ``sigma`` in voxels;
- ``butterworth3d``: 3D Butterworth ``1 / sqrt(1 + (f / f_c)^(2 n))``, ``f`` the radial
  frequency in units of Nyquist, on the volume mirrored at its borders.

They are tuned by :func:`tune_volume` on validation volumes, scored on their crop slices.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fastdat.metrics import psnr

GRIDS: dict[str, dict[str, list[float]]] = {
    "gaussian": {"sigma": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]},
    "butterworth": {"cutoff": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "order": [2, 4, 7, 10]},
    "nlm": {"h": [0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.16, 0.2]},
}


def gaussian(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of each ``(N, H, W)`` image (reflecting borders)."""
    return np.stack([ndimage.gaussian_filter(im, sigma, mode="reflect") for im in images])


def butterworth(images: np.ndarray, cutoff: float, order: float) -> np.ndarray:
    """Butterworth low-pass of each ``(N, H, W)`` image; ``cutoff`` in units of Nyquist."""
    h, w = images.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None] * 2  # Nyquist = 1
    fx = np.fft.fftfreq(w)[None, :] * 2
    gain = 1.0 / np.sqrt(1.0 + (np.hypot(fy, fx) / cutoff) ** (2 * order))
    out = np.fft.ifft2(np.fft.fft2(images) * gain).real
    return np.clip(out, 0, None)


def nlm(images: np.ndarray, h: float) -> np.ndarray:
    """Non-local means of each image (5 x 5 patches, 13 x 13 search); ``h`` is the filtering
    strength as a fraction of the image maximum."""
    from skimage.restoration import denoise_nl_means

    out = []
    for im in images:
        scale = float(im.max()) or 1.0
        x = im / scale
        out.append(denoise_nl_means(x, h=h, patch_size=5, patch_distance=6, fast_mode=True) * scale)
    return np.stack(out)


FILTERS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian": gaussian,
    "butterworth": butterworth,
    "nlm": nlm,
}


def gaussian3d(volume: np.ndarray, sigma: float) -> np.ndarray:
    """3D Gaussian filter of an ``(X, Y, Z)`` volume (reflecting borders), ``sigma`` in voxels."""
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float64), sigma, mode="reflect")


def butterworth3d(volume: np.ndarray, cutoff: float, order: float) -> np.ndarray:
    """3D Butterworth low-pass of an ``(X, Y, Z)`` volume; ``cutoff`` in units of Nyquist. The
    volume is mirrored along every axis first, so its borders do not wrap around."""
    v = np.asarray(volume, dtype=np.float64)
    m = v
    for axis in range(3):
        m = np.concatenate([m, np.flip(m, axis)], axis=axis)
    freqs = np.meshgrid(*(np.fft.fftfreq(n) * 2 for n in m.shape), indexing="ij")
    gain = 1.0 / np.sqrt(1.0 + (np.sqrt(sum(f**2 for f in freqs)) / cutoff) ** (2 * order))
    out = np.fft.ifftn(np.fft.fftn(m) * gain).real[: v.shape[0], : v.shape[1], : v.shape[2]]
    return np.clip(out, 0, None)


VOLUME_FILTERS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian3d": gaussian3d,
    "butterworth3d": butterworth3d,
}
GRIDS["gaussian3d"] = {"sigma": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5]}
GRIDS["butterworth3d"] = {"cutoff": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "order": [2, 4, 7]}


def _mean_psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(psnr(torch.from_numpy(pred).double(), torch.from_numpy(ref).double()).mean())


def tune(
    name: str, noisy: np.ndarray, reference: np.ndarray, grid: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """Grid-search a baseline on validation images; returns best params and every score."""
    grid = grid or GRIDS[name]
    keys = list(grid)
    scores = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        scores.append({**params, "psnr": _mean_psnr(FILTERS[name](noisy, **params), reference)})
    best = max(scores, key=lambda s: s["psnr"])
    return {"params": {k: best[k] for k in keys}, "val_psnr": best["psnr"], "grid": scores}


def tune_volume(
    name: str,
    volumes: list[np.ndarray],
    slices: list[np.ndarray],
    references: np.ndarray,
    grid: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Grid-search a volume filter on validation volumes; returns best params and every score.

    Args:
        name: A key of :data:`VOLUME_FILTERS`.
        volumes: Noisy ``(X, Y, Z)`` volumes (e.g. crop columns).
        slices: For each volume, the axial slice indices that are scored.
        references: The reference images of those slices, ``(sum of len(slices), X, Y)``, in
            the same order.
    """
    grid = grid or GRIDS[name]
    keys = list(grid)
    scores = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        pred = np.concatenate(
            [
                np.moveaxis(VOLUME_FILTERS[name](v, **params)[:, :, s], -1, 0)
                for v, s in zip(volumes, slices, strict=True)
            ]
        )
        scores.append({**params, "psnr": _mean_psnr(pred, references)})
    best = max(scores, key=lambda s: s["psnr"])
    return {"params": {k: best[k] for k in keys}, "val_psnr": best["psnr"], "grid": scores}


def apply(name: str, images: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Run baseline ``name`` with tuned ``params`` (a volume filter on one ``(X, Y, Z)``)."""
    if name in VOLUME_FILTERS:
        return VOLUME_FILTERS[name](images, **params)
    if name not in FILTERS:
        known = ", ".join([*FILTERS, *VOLUME_FILTERS])
        raise ValueError(f"unknown baseline {name!r} (known: {known})")
    return FILTERS[name](images, **params)
