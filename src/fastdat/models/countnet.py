"""A count-aware U-Net: one network for every scan time, conditioned on the acquisition's duration.

Plain PyTorch (no MONAI at import, so ``fastdat denoise`` starts fast). A U-Net (Ronneberger et
al., MICCAI 2015) in 2D or 3D whose every block is modulated by the scan time through FiLM
(feature-wise linear modulation, Perez et al., AAAI 2018): a small MLP maps the conditioning value

    c = log2(minutes / 5)            (0 at 5 min; -1.32 at 2 min, +1.58 at 15 min, +2.32 at 25 min)

to a per-channel scale ``gamma`` and shift ``beta`` of each block, ``h <- h * (1 + gamma) +
beta`` after its normalization, so the same weights denoise a 2-min image harder than a 15-min
one. Block: (3^d convolution, GroupNorm, FiLM, LeakyReLU) twice; down-sampling by strided 2^d
convolution, up-sampling by transposed convolution, skips by concatenation (nnU-Net's plain
U-Net, Isensee et al., Nat Methods 2021). At initialization the FiLM maps are zero, so the
network starts unconditioned and learns how the scan time should change it.

2.5D: ``in_channels = 2k + 1`` adjacent slices in, the centre slice out (the residual, in
:class:`fastdat.models.registry.ImageToImage`, is added to the centre channel). 3D: the whole
striatal slab, ``spatial_dims=3``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fastdat.models.base import register

REFERENCE_MINUTES = 5.0
"""The scan time of conditioning value 0."""


def condition_value(minutes: float | torch.Tensor) -> torch.Tensor:
    """The conditioning value of a scan time: ``log2(minutes / 5)``.

    Args:
        minutes: Scan time(s) in minutes (> 0): the acquisition's duration at the count rate
            of the training cohort (about 80 k counts / min in the striatal study).

    Returns:
        float32 tensor of the same shape.
    """
    t = torch.as_tensor(minutes, dtype=torch.float32)
    if (t <= 0).any() or not torch.isfinite(t).all():
        raise ValueError(f"scan time must be a positive number of minutes, got {minutes}")
    return torch.log2(t / REFERENCE_MINUTES)


class _Block(nn.Module):
    """Two (conv, GroupNorm, FiLM, LeakyReLU) layers; the first may stride."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, cond_features: int):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1)
        self.conv2 = conv(c_out, c_out, 3, padding=1)
        groups = math.gcd(8, c_out)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.film = nn.Linear(cond_features, 4 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.act = nn.LeakyReLU(0.01)
        self.dims = dims

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = self.film(emb)[(...,) + (None,) * self.dims].chunk(4, dim=1)
        h = self.act(self.norm1(self.conv1(x)) * (1 + g1) + b1)
        return self.act(self.norm2(self.conv2(h)) * (1 + g2) + b2)


class CountUNet(nn.Module):
    """U-Net conditioned on the scan time (module docstring).

    Args:
        spatial_dims: 2 (slices, or 2.5D stacks of slices as channels) or 3 (slabs).
        in_channels: Input channels (1, or ``2k + 1`` adjacent slices).
        out_channels: Output channels.
        features: Channels of the first level; doubled per level.
        levels: Resolution levels (inputs must be a multiple of ``2 ** (levels - 1)``).
        cond_features: Width of the conditioning MLP.

    Shapes:
        ``x``: ``(B, in_channels, *S)``, ``cond``: ``(B,)`` conditioning values
        (:func:`condition_value`) -> ``(B, out_channels, *S)``.
    """

    conditioned = True

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: int = 16,
        levels: int = 4,
        cond_features: int = 32,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or levels < 1 or features < 1:
            raise ValueError("countunet: spatial_dims 2 or 3, levels >= 1, features >= 1 needed")
        self.size_multiple = 2 ** (levels - 1)
        self.embed = nn.Sequential(
            nn.Linear(1, cond_features), nn.SiLU(), nn.Linear(cond_features, cond_features)
        )
        widths = [features * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            self.down.append(_Block(spatial_dims, c, w, 1 if i == 0 else 2, cond_features))
            c = w
        up = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upsample.append(up(c, w, 2, stride=2))
            self.up.append(_Block(spatial_dims, 2 * w, w, 1, cond_features))
            c = w
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.head = conv(c, out_channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = torch.as_tensor(cond, dtype=x.dtype, device=x.device).reshape(-1, 1)
        if cond.shape[0] == 1 and x.shape[0] > 1:
            cond = cond.expand(x.shape[0], 1)
        if cond.shape[0] != x.shape[0]:
            raise ValueError(
                f"countunet: {cond.shape[0]} conditioning values for {x.shape[0]} images"
            )
        emb = self.embed(cond)
        skips = []
        h = x
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            h = block(torch.cat([upsample(h), skips.pop()], dim=1), emb)
        return self.head(h)


@register(
    "countunet",
    reference="Ronneberger et al. 2015 U-Net, FiLM scan-time conditioning (Perez et al. 2018)",
    multiple=8,
    conditioned=True,
)
def _countunet(
    in_channels: int,
    out_channels: int,
    spatial_dims: int,
    features: int = 16,
    levels: int = 4,
    cond_features: int = 32,
):
    return CountUNet(spatial_dims, in_channels, out_channels, features, levels, cond_features)
