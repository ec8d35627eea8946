"""A one-level U-Net: one full-resolution block, no down-sampling (the study's shallowest U-Net).

MONAI's ``UNet`` needs at least two levels, so the 1-level network is written here with the same
building block MONAI's ``UNet`` uses at every level of ``unet2`` ... ``unet5``: a residual unit of
two 3 x 3 convolution + batch norm + ReLU layers, then a 1 x 1 output convolution (Ronneberger et
al., MICCAI 2015, with depth 1).
"""

from __future__ import annotations

from monai.networks.blocks import ResidualUnit
from monai.networks.layers.factories import Conv
from torch import nn

from fastdat.models.base import register


class UNet1(nn.Module):
    """Full-resolution residual unit (two conv layers) and a 1 x 1 head.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: Image channels.
        features: Width of the block.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, features: int = 32):
        super().__init__()
        self.block = ResidualUnit(
            spatial_dims, in_channels, features, subunits=2, act="PRELU", norm="BATCH"
        )
        self.head = Conv[Conv.CONV, spatial_dims](features, out_channels, kernel_size=1)

    def forward(self, x):
        return self.head(self.block(x))


@register("unet1", reference="Ronneberger et al., MICCAI 2015 (U-Net), 1 level", multiple=1)
def _unet1(in_channels: int, out_channels: int, spatial_dims: int, features: int = 32):
    return UNet1(spatial_dims, in_channels, out_channels, features)
