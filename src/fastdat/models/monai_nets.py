"""The study's architectures that MONAI provides, adapted to FastDaT's contract.

- ``unet2`` ... ``unet5``: MONAI ``UNet`` with 2-5 levels (widths 32, 64, ...; every level a
  residual unit of two 3 x 3 conv-norm-act layers, strided down-sampling, transposed-conv
  up-sampling; Ronneberger et al., MICCAI 2015, in Kerfoot et al.'s MONAI form).
- ``vnet``: MONAI ``VNet`` (Milletari et al., 3DV 2016) with dropout off: in 2D MONAI applies
  3D dropout, which at its default p = 0.5 zeroes whole samples' feature maps.
- ``unetpp``: MONAI ``BasicUNetPlusPlus`` (Zhou et al., DLMIA 2018), which returns a list even
  without deep supervision; the wrapper returns its single output and drops the three unused
  deep-supervision heads (their weights would never train and would break DDP).
- ``attention_unet``: MONAI ``AttentionUnet`` (Oktay et al., MIDL 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fastdat.models.base import register

WIDTHS = (32, 64, 128, 256, 512)


def _unet(levels: int):
    def build(in_channels: int, out_channels: int, spatial_dims: int, features: int = 32):
        from monai.networks.nets import UNet

        widths = tuple(features * 2**i for i in range(levels))
        return UNet(
            spatial_dims,
            in_channels,
            out_channels,
            channels=widths,
            strides=(2,) * (levels - 1),
            num_res_units=2,
            norm="BATCH",
        )

    return build


for _levels in (2, 3, 4, 5):
    register(
        f"unet{_levels}",
        reference=f"Ronneberger et al., MICCAI 2015 (U-Net), {_levels} levels; MONAI UNet",
        multiple=2 ** (_levels - 1),
    )(_unet(_levels))


@register("vnet", reference="Milletari et al., 3DV 2016 (V-Net); MONAI VNet", multiple=16)
def _vnet(in_channels: int, out_channels: int, spatial_dims: int):
    from monai.networks.nets import VNet

    if 16 % in_channels:
        raise ValueError(f"vnet needs in_channels dividing 16, got {in_channels}")
    return VNet(
        spatial_dims,
        in_channels,
        out_channels,
        dropout_prob_down=None,
        dropout_prob_up=(None, 0.0),
    )


class _FirstOutput(nn.Module):
    """Return the first element of a network that outputs a list."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


@register(
    "unetpp", reference="Zhou et al., DLMIA 2018 (UNet++); MONAI BasicUNetPlusPlus", multiple=16
)
def _unetpp(
    in_channels: int,
    out_channels: int,
    spatial_dims: int,
    features: Sequence[int] = (32, 32, 64, 128, 256, 32),
):
    from monai.networks.nets import BasicUNetPlusPlus

    net = BasicUNetPlusPlus(
        spatial_dims, in_channels, out_channels, features=tuple(features), deep_supervision=False
    )
    # without deep supervision only the last head is used: drop the others' unused weights
    for name in ("final_conv_0_1", "final_conv_0_2", "final_conv_0_3"):
        setattr(net, name, nn.Identity())
    return _FirstOutput(net)


@register(
    "attention_unet",
    reference="Oktay et al., MIDL 2018 (Attention U-Net); MONAI AttentionUnet",
    multiple=8,
)
def _attention_unet(
    in_channels: int,
    out_channels: int,
    spatial_dims: int,
    channels: Sequence[int] = (32, 64, 128, 256),
):
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(
        spatial_dims,
        in_channels,
        out_channels,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
    )
