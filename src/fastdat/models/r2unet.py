"""R2U-Net: recurrent residual convolutional U-Net.

Alom M.Z., Hasan M., Yakopcic C., Taha T.M., Asari V.K. "Recurrent Residual Convolutional Neural
Network based on U-Net (R2U-Net) for Medical Image Segmentation", arXiv:1802.06955 (2018).

Each level is a recurrent residual block (RRCNN): a 1 x 1 convolution to the level's width, then
two recurrent convolution units whose convolution is applied ``t + 1`` times on the running sum
(``h_0 = f(x)``, ``h_k = f(x + h_{k-1})``), added back to the block's input. Encoder levels are
joined by max pooling, decoder levels by up-sampling + convolution and skip concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from fastdat.models.base import register


class RecurrentConv(nn.Module):
    """Recurrent convolution unit: one convolution applied ``t + 1`` times on ``x + h``.

    The convolution's weights are shared across the ``t + 1`` steps, as in Alom et al.; each step
    has its own batch normalization (per-step statistics, Cooijmans et al., "Recurrent Batch
    Normalization", ICLR 2017). One normalization shared by all steps would average the running
    statistics of ``f(x)`` and ``f(x + h)``, which differ, so the network trained on batch
    statistics would be evaluated with statistics that match none of its steps.
    """

    def __init__(self, spatial_dims: int, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.conv = Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=3, padding=1)
        self.norms = nn.ModuleList([Norm[Norm.BATCH, spatial_dims](channels) for _ in range(t + 1)])
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norms[0](self.conv(x)))
        for norm in self.norms[1:]:
            h = self.act(norm(self.conv(x + h)))
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual block: 1 x 1 projection, two recurrent units, residual sum."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, t: int = 2) -> None:
        super().__init__()
        self.proj = Conv[Conv.CONV, spatial_dims](in_ch, out_ch, kernel_size=1)
        self.body = nn.Sequential(
            RecurrentConv(spatial_dims, out_ch, t), RecurrentConv(spatial_dims, out_ch, t)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x + self.body(x)


class R2UNet(nn.Module):
    """R2U-Net with ``len(features)`` levels (``len(features) - 1`` poolings).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: Image channels.
        features: Widths per level (the paper: 64 ... 1024; default 32 ... 256).
        t: Recurrence steps of each recurrent unit.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (32, 64, 128, 256),
        t: int = 2,
    ) -> None:
        super().__init__()
        f = list(features)
        self.size_multiple = 2 ** (len(f) - 1)
        self.encoders = nn.ModuleList(
            [
                RRCNNBlock(spatial_dims, c_in, c_out, t)
                for c_in, c_out in zip([in_channels, *f], f, strict=False)
            ]
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c_deep, c_skip in zip(f[::-1][:-1], f[::-1][1:], strict=True):
            self.ups.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    Convolution(spatial_dims, c_deep, c_skip, act="RELU", norm="BATCH"),
                )
            )
            self.decoders.append(RRCNNBlock(spatial_dims, 2 * c_skip, c_skip, t))
        self.head = Conv[Conv.CONV, spatial_dims](f[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, dec, skip in zip(self.ups, self.decoders, skips[::-1][1:], strict=True):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


@register("r2unet", reference="Alom et al., arXiv:1802.06955 (2018), R2U-Net", multiple=8)
def _r2unet(in_channels: int, out_channels: int, spatial_dims: int, **kwargs):
    return R2UNet(spatial_dims, in_channels, out_channels, **kwargs)
