"""Scatter in the photopeak window estimated from neighbouring energy windows, per projection bin.

Both estimates treat the scattered photons' energy spectrum inside the photopeak window as a
straight line fixed by the count densities (counts per keV) measured in narrow windows beside it:

* **TEW**, triple energy window (Ogawa et al., IEEE Trans Med Imaging 1991;10:408), a trapezoid
  between the lower and upper windows::

      S = (C_l / W_l + C_u / W_u) * W_p / 2

  For 123I the upper window matters: photons of 123I's 440-625 keV lines (2.6 %) scattered in the
  collimator and patient land under the 159 keV peak as a nearly flat background.
* **DEW**, dual energy window (Jaszczak et al., J Nucl Med 1984;25:893), a fixed share ``k`` of the
  lower window's count density times the photopeak width::

      S = k * (C_l / W_l) * W_p

  ``k = 0.5`` (default) is the TEW triangle with no upper-window counts: the scatter density
  falls linearly from the lower window to zero at the photopeak's upper edge. Jaszczak's
  ``k = 0.5`` for 99mTc multiplied the raw counts of a 92-125 keV window (``S = k C_l``, a
  20 % photopeak window 27 keV wide), i.e. ``k ~ 0.6`` in this width-normalised form. ``k`` for
  123I depends on the windows and the camera and should be calibrated (phantom or Monte Carlo);
  no published 123I value was verified here.

Window counts are few (narrow windows), so the estimate is smoothed by default with a 2D Gaussian
of ``smooth_fwhm_bins`` (FWHM 5 bins, ~17-24 mm at DaTscan bin sizes: scatter is smooth on the
scale of its ~60 mm wide kernel, so little of it is lost, while the Poisson noise of the windows
drops several-fold). The smoothing is normalised at the detector edges (a flat estimate stays
flat) and linear, so counts scale and add. Estimates are clipped at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastdat.tomo.collimator import FWHM_TO_SIGMA

#: Default FWHM of the smoothing of scatter estimates (bins).
SMOOTH_FWHM_BINS = 5.0
#: Default DEW factor (width-normalised, see the module docstring).
DEW_K = 0.5


def tew(
    photopeak: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor | None,
    widths_kev: Sequence[float],
    smooth_fwhm_bins: float = SMOOTH_FWHM_BINS,
) -> torch.Tensor:
    """Triple-energy-window scatter estimate in the photopeak window (module docstring).

    Args:
        photopeak: ``(V, S, Z)`` photopeak counts (sets the shape, dtype and device checked).
        lower: ``(V, S, Z)`` counts of the window just below the photopeak.
        upper: ``(V, S, Z)`` counts of the window just above, or ``None`` (taken as 0).
        widths_kev: ``(W_l, W_p, W_u)``: lower, photopeak and upper window widths (keV), in
            order of energy.
        smooth_fwhm_bins: FWHM of the smoothing (bins); 0 for none.

    Returns:
        Expected scatter counts ``(V, S, Z)`` in the photopeak window, float32 (float64 for
        float64 input), >= 0.
    """
    w_l, w_p, w_u = _widths(widths_kev, 3)
    density = _counts(lower, photopeak, "lower") / w_l
    if upper is not None:
        density = density + _counts(upper, photopeak, "upper") / w_u
    return _finish(density * (w_p / 2), smooth_fwhm_bins)


def dew(
    lower: torch.Tensor,
    widths_kev: Sequence[float],
    k: float = DEW_K,
    smooth_fwhm_bins: float = SMOOTH_FWHM_BINS,
) -> torch.Tensor:
    """Dual-energy-window scatter estimate in the photopeak window (module docstring).

    Args:
        lower: ``(V, S, Z)`` counts of the window below the photopeak.
        widths_kev: ``(W_l, W_p)``: lower and photopeak window widths (keV).
        k: Ratio of the photopeak window's scatter density to the lower window's count density.
        smooth_fwhm_bins: FWHM of the smoothing (bins); 0 for none.

    Returns:
        Expected scatter counts ``(V, S, Z)`` in the photopeak window, >= 0.
    """
    w_l, w_p = _widths(widths_kev, 2)
    if not k >= 0:
        raise ValueError(f"DEW k must be >= 0, got {k}")
    return _finish(_counts(lower, lower, "lower") * (k * w_p / w_l), smooth_fwhm_bins)


def _widths(widths_kev: Sequence[float], n: int) -> list[float]:
    w = [float(v) for v in widths_kev]
    if len(w) != n or min(w) <= 0:
        raise ValueError(f"need {n} window widths > 0 keV, got {list(widths_kev)}")
    return w


def _counts(x: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as floating counts, checked against ``like``'s ``(V, S, Z)`` shape."""
    if like.ndim != 3 or x.shape != like.shape:
        raise ValueError(
            f"{name} window counts must be (V, S, Z) like the photopeak, got {tuple(x.shape)}"
        )
    x = x.to(like.device, torch.float64 if like.dtype == torch.float64 else torch.float32)
    if not torch.isfinite(x).all() or (x < 0).any():
        raise ValueError(f"{name} window counts must be finite and >= 0")
    return x


def _finish(estimate: torch.Tensor, fwhm_bins: float) -> torch.Tensor:
    if fwhm_bins < 0:
        raise ValueError(f"smooth_fwhm_bins must be >= 0, got {fwhm_bins}")
    if fwhm_bins > 0:
        estimate = smooth_views(estimate, fwhm_bins)
    return estimate.clamp_min(0.0)


def smooth_views(x: torch.Tensor, fwhm_bins: float) -> torch.Tensor:
    """Gaussian smoothing of each view of ``(V, S, Z)`` along S and Z, normalised at the edges.

    ``y = (g * x) / (g * 1)`` (zero padding, kernel radius ``3 sigma``): a constant view stays
    constant, and the operation is linear in ``x``.
    """
    sigma = fwhm_bins * FWHM_TO_SIGMA
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :])[None, None]  # (1, 1, K, K), separable
    num = torch.nn.functional.conv2d(x[:, None], kernel, padding=r)[:, 0]
    den = torch.nn.functional.conv2d(torch.ones_like(x[:1, None]), kernel, padding=r)[:, 0]
    return num / den
