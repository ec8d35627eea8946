"""The one image-quality convention of FastDaT.

Both images of a pair are divided by the maximum of the reference (25-min) image, so the reference
spans [0, 1] and PSNR / SSIM use ``data_range = 1``. SSIM follows scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``: Gaussian window (sigma 1.5 px, truncated at 3.5 sigma, 11 px), reflect padding,
K1 = 0.01, K2 = 0.03, mean over the image minus a 5-px border.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_pair(
    image: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide both images by the reference's maximum per image.

    Args:
        image: ``(..., H, W)`` test images.
        reference: ``(..., H, W)`` reference images, same shape, positive maximum.

    Returns:
        ``(image / m, reference / m)`` with ``m`` the per-image reference maximum.
    """
    if image.shape != reference.shape:
        raise ValueError(f"shape mismatch: {tuple(image.shape)} vs {tuple(reference.shape)}")
    m = reference.amax(dim=(-2, -1), keepdim=True)
    if (m <= 0).any():
        raise ValueError("reference image has a non-positive maximum")
    return image / m, reference / m


def psnr(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of ``(..., H, W)`` under the convention above."""
    x, r = normalize_pair(image.double(), reference.double())
    mse = ((x - r) ** 2).mean(dim=(-2, -1))
    return 10 * torch.log10(1.0 / mse)


def _gauss_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def ssim(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM per image of ``(..., H, W)`` under the convention above (H, W >= 11)."""
    x, r = normalize_pair(image.double(), reference.double())
    shape = x.shape[:-2]
    h, w = x.shape[-2:]
    if min(h, w) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 px, got {h} x {w}")
    x, r = x.reshape(-1, 1, h, w), r.reshape(-1, 1, h, w)
    g = _gauss_window().to(x.device)  # the images' device (CUDA in training)
    pad = g.numel() // 2

    def filt(a: torch.Tensor) -> torch.Tensor:
        a = F.pad(a, (pad, pad, pad, pad), mode="reflect")
        a = F.conv2d(a, g.view(1, 1, -1, 1))
        return F.conv2d(a, g.view(1, 1, 1, -1))

    c1, c2 = 0.01**2, 0.03**2
    mx, mr = filt(x), filt(r)
    vx = filt(x * x) - mx * mx
    vr = filt(r * r) - mr * mr
    cxr = filt(x * r) - mx * mr
    s = ((2 * mx * mr + c1) * (2 * cxr + c2)) / ((mx**2 + mr**2 + c1) * (vx + vr + c2))
    crop = (g.numel() - 1) // 2
    s = s[..., crop : h - crop, crop : w - crop]
    return s.mean(dim=(-3, -2, -1)).reshape(shape) if shape else s.mean()


__all__ = ["normalize_pair", "psnr", "ssim"]
