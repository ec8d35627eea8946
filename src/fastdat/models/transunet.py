"""TransUNet: a CNN encoder, a Vision Transformer on its feature grid, a cascaded upsampler.

Chen J., Lu Y., Yu Q., Luo X., Adeli E., Wang Y., Lu L., Yuille A.L., Zhou Y. "TransUNet:
Transformers Make Strong Encoders for Medical Image Segmentation", arXiv:2102.04306 (2021).

The hybrid encoder: a convolutional stem and ``len(features) - 1`` down-sampling stages (the paper
uses a ResNet-50; here residual conv blocks, trained from scratch since no pretrained weights can
be fetched). The deepest feature map, ``1 / 2^(len(features) - 1)`` of the input, is flattened to
tokens (patch size 1), given learned position embeddings (interpolated when the grid size differs
from the one they were made for) and passed through ``depth`` pre-norm Transformer layers. The
tokens are folded back into a feature map and decoded by the cascaded upsampler: at every level
x2 up-sampling, concatenation with the encoder's skip, two conv-BN-ReLU layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers.factories import Conv
from torch import nn

from fastdat.models.base import register


class TransUNet(nn.Module):
    """TransUNet for ``spatial_dims`` 2 or 3.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: Image channels.
        features: Encoder widths; the Transformer runs at the last one's resolution.
        hidden: Transformer width. depth: Transformer layers. heads: Attention heads.
        mlp_ratio: Feed-forward width / hidden. dropout: Transformer dropout.
        grid: Feature-grid side the position embedding is made for (input 64 -> 8).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (32, 64, 128, 256),
        hidden: int = 256,
        depth: int = 4,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        grid: int = 8,
    ) -> None:
        super().__init__()
        f = list(features)
        self.spatial_dims = spatial_dims
        self.size_multiple = 2 ** (len(f) - 1)
        self.stem = Convolution(spatial_dims, in_channels, f[0], act="RELU", norm="BATCH")
        self.down = nn.ModuleList(
            [
                ResidualUnit(spatial_dims, c_in, c_out, strides=2, subunits=2, norm="BATCH")
                for c_in, c_out in zip(f[:-1], f[1:], strict=True)
            ]
        )
        self.to_tokens = Conv[Conv.CONV, spatial_dims](f[-1], hidden, kernel_size=1)
        self.grid = grid
        self.pos = nn.Parameter(torch.zeros(1, hidden, *([grid] * spatial_dims)))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            hidden,
            heads,
            int(hidden * mlp_ratio),
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.from_tokens = Convolution(spatial_dims, hidden, f[-1], act="RELU", norm="BATCH")
        self.up = nn.ModuleList()
        for c_deep, c_skip in zip(f[::-1][:-1], f[::-1][1:], strict=True):
            self.up.append(
                nn.Sequential(
                    Convolution(spatial_dims, c_deep + c_skip, c_skip, act="RELU", norm="BATCH"),
                    Convolution(spatial_dims, c_skip, c_skip, act="RELU", norm="BATCH"),
                )
            )
        self.head = Conv[Conv.CONV, spatial_dims](f[0], out_channels, kernel_size=1)

    def _position(self, size: Sequence[int]) -> torch.Tensor:
        if list(size) == [self.grid] * self.spatial_dims:
            return self.pos
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return F.interpolate(self.pos, size=tuple(size), mode=mode, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        z = self.to_tokens(skips[-1])
        size = z.shape[2:]
        z = z + self._position(size)
        tokens = self.norm(self.transformer(z.flatten(2).transpose(1, 2)))
        z = tokens.transpose(1, 2).reshape(z.shape)
        y = self.from_tokens(z)
        for up, skip in zip(self.up, skips[::-1][1:], strict=True):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = up(torch.cat([y, skip], dim=1))
        return self.head(y)


@register("transunet", reference="Chen et al., arXiv:2102.04306 (2021), TransUNet", multiple=8)
def _transunet(in_channels: int, out_channels: int, spatial_dims: int, **kwargs):
    return TransUNet(spatial_dims, in_channels, out_channels, **kwargs)
