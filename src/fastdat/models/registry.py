"""One registry for every image-to-image network, with one contract.

Every registered builder takes ``(in_channels, out_channels, spatial_dims, **kwargs)`` and returns a
``torch.nn.Module`` mapping ``(B, C_in, *S)`` to ``(B, C_out, *S)``. :func:`build_model` wraps it in
:class:`ImageToImage`, which checks the input size against the multiple the architecture needs and
optionally adds residual learning (predict the correction to the input) and a non-negative output.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from fastdat.models.base import _REGISTRY, ModelInfo, register  # noqa: F401  (re-exported)

# the study's ten, in the paper's order; models registered by users follow
STUDY_MODELS = (
    "unet1",
    "unet2",
    "unet3",
    "unet4",
    "unet5",
    "vnet",
    "unetpp",
    "r2unet",
    "attention_unet",
    "transunet",
)


# the module that registers each built-in model: building one imports only its module (the
# count-aware network is plain PyTorch, so ``fastdat denoise`` with it never imports MONAI)
_BUILTIN = {
    "unet1": "fastdat.models.unet1",
    **{f"unet{k}": "fastdat.models.monai_nets" for k in (2, 3, 4, 5)},
    "vnet": "fastdat.models.monai_nets",
    "unetpp": "fastdat.models.monai_nets",
    "attention_unet": "fastdat.models.monai_nets",
    "r2unet": "fastdat.models.r2unet",
    "transunet": "fastdat.models.transunet",
    "countunet": "fastdat.models.countnet",
    "ensemble": "fastdat.models.ensemble",
}


def list_models() -> list[str]:
    """Registered model names: the study's ten in the paper's order, then any others."""
    _load_builtin()
    return [n for n in STUDY_MODELS if n in _REGISTRY] + [
        n for n in _REGISTRY if n not in STUDY_MODELS
    ]


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name`` (``ValueError`` naming the known models if absent)."""
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        _load_builtin()
        if name not in _REGISTRY:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(list_models())})")
    return _REGISTRY[name]


class ImageToImage(nn.Module):
    """Size check, optional residual learning and non-negative output around a network.

    ``y = net(x)`` (``net(x, cond)`` for a conditioned network, :mod:`.countnet`); with
    ``residual``: ``y = x_c + net(x)``, where ``x_c`` is ``x`` itself when input and output
    channels agree, or the centre channel of an odd stack of slices (2.5D) with one output
    channel; with ``nonneg``: ``y = relu(y)`` (in training mode with the identity's gradient,
    :meth:`forward`).
    """

    def __init__(self, net: nn.Module, info: ModelInfo, residual: bool, nonneg: bool) -> None:
        super().__init__()
        self.net = net
        self.name = info.name
        self.multiple = int(getattr(net, "size_multiple", info.multiple))
        self.conditioned = bool(getattr(net, "conditioned", info.conditioned))
        self.residual = residual
        self.nonneg = nonneg

    def _check(self, x: torch.Tensor, cond: torch.Tensor | None) -> None:
        bad = [s for s in x.shape[2:] if s % self.multiple]
        if bad:
            raise ValueError(
                f"{self.name} needs every image side to be a multiple of {self.multiple}, "
                f"got {tuple(x.shape[2:])}"
            )
        if self.conditioned and cond is None:
            raise ValueError(f"{self.name} is count-aware: give the scan time's condition")
        if not self.conditioned and cond is not None:
            raise ValueError(f"{self.name} takes no scan-time condition")

    def _residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return y
        if x.shape[1] == y.shape[1]:
            return x + y
        c = x.shape[1] // 2  # 2.5D: the centre slice of the stack
        return x[:, c : c + 1] + y

    def each(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Every ensemble member's output ``(K, B, C_out, *S)`` with the residual, before the
        clamp (``K = 1`` for a single network): :func:`fastdat.methods.predict_volume`'s
        spread. The model's output is ``relu`` of their mean (with ``nonneg``)."""
        self._check(x, cond)
        if hasattr(self.net, "each"):
            ys = self.net.each(x, cond)
        else:
            ys = (self.net(x, cond) if self.conditioned else self.net(x))[None]
        return torch.stack([self._residual(x, y) for y in ys])

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, cond)
        y = self.net(x, cond) if self.conditioned else self.net(x)
        y = self._residual(x, y)
        if not self.nonneg:
            return y
        if self.training:
            # straight-through clamp: the value of relu(y), the gradient of y. A plain relu
            # passes no gradient where the output is below zero, so a network pushed below
            # zero everywhere stays there (measured: a count-aware network trained on whole
            # slices output zero after one epoch); evaluation is the plain clamp
            return y + (torch.relu(y) - y).detach()
        return torch.relu(y)


def build_model(
    name: str,
    in_channels: int = 1,
    out_channels: int = 1,
    spatial_dims: int = 2,
    residual: bool = False,
    nonneg: bool = False,
    **kwargs: Any,
) -> ImageToImage:
    """Build a registered network.

    Args:
        name: Registry name (:func:`list_models`).
        in_channels, out_channels: Channels of input and output images.
        spatial_dims: 2 (slices) or 3 (volumes), where the architecture allows.
        residual: Learn the correction to the input (``in_channels == out_channels``).
        nonneg: Clamp the output at zero.
        **kwargs: Architecture options (widths etc.).
    """
    info = model_info(name)
    if spatial_dims not in info.dims:
        raise ValueError(f"{name} supports spatial_dims {info.dims}, got {spatial_dims}")
    if residual and in_channels != out_channels and not (out_channels == 1 and in_channels % 2):
        raise ValueError(
            "residual learning needs in_channels == out_channels, or an odd stack of slices "
            "in and one channel out (the centre slice's correction)"
        )
    net = info.builder(in_channels, out_channels, spatial_dims, **kwargs)
    model = ImageToImage(net, info, residual, nonneg)
    model.config = {
        "name": name,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "spatial_dims": spatial_dims,
        "residual": residual,
        "nonneg": nonneg,
        **kwargs,
    }
    return model


def _load_builtin() -> None:
    """Import the modules that register the built-in architectures."""
    for module in dict.fromkeys(_BUILTIN.values()):
        importlib.import_module(module)
