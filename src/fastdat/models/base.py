"""The registry's table and its decorator, a leaf the network modules import.

Network modules (:mod:`.monai_nets`, :mod:`.unet1`, ...) register their builders with
:func:`register`; :mod:`.registry` imports them on first use and builds models from the table, so
no module imports one that imports it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of an architecture.

    Attributes:
        name: Registry name.
        builder: ``(in_channels, out_channels, spatial_dims, **kwargs) -> nn.Module``.
        reference: The paper it implements.
        multiple: Input sides must be a multiple of this.
        dims: Spatial dimensionalities it supports.
        conditioned: Its forward takes the scan time's conditioning value as well,
            ``net(x, cond)`` (:mod:`.countnet`).
    """

    name: str
    builder: Callable[..., nn.Module]
    reference: str
    multiple: int
    dims: tuple[int, ...] = (2, 3)
    conditioned: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register(
    name: str,
    reference: str,
    multiple: int,
    dims: tuple[int, ...] = (2, 3),
    conditioned: bool = False,
):
    """Decorator: register a builder under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, fn, reference, multiple, dims, conditioned)
        return fn

    return deco
