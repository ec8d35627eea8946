"""One notion of a method: what turns a study's images into the image a reader or an SBR tool sees.

Every image FastDaT compares is the output of a :class:`Method`:

- ``raw``: the short (5-min) image as reconstructed;
- ``filter``: a post-filter of the short image with parameters tuned on the validation split
  (:mod:`fastdat.methods.filters`);
- ``network``: a trained network applied to the short image with the one scaling rule of
  :func:`predict`;
- ``reference``: an image of its own, the long (25-min) scan or the truth, shown as it is.

A method reads the images of its :attr:`Method.input_kind` (``5min`` for the first three, its own
kind for a reference) and :meth:`Method.apply` maps a stack of 2D slices ``(N, H, W)`` to the stack
it shows. Evaluation, quantification, the reader study, training's validation and ``fastdat
denoise`` all go through this module, so a method is computed the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fastdat.data.kinds import kind_minutes
from fastdat.methods.filters import VOLUME_FILTERS
from fastdat.methods.filters import apply as apply_filter

RAW, LONG, TRUTH = "5min", "25min", "truth"
"""The names of the raw short image, the long reference image and the truth."""
KINDS = ("raw", "filter", "network", "reference")

HEAD_FLOOR = 0.1
"""Share of a volume's 99.9th percentile above which a voxel is in the box a volume network
restores (:func:`head_box`): the head, as the safety checks define it."""
BOX_MARGIN = 8
"""Voxels added on every side of that box: the network's view of the head's edge is the
whole-volume one (its receptive field reaches ~8 voxels into the background)."""


def image_scale(x: torch.Tensor) -> torch.Tensor:
    """The one per-image scale: each image's maximum over its last two axes (1 where it is <= 0).

    A network sees ``x / image_scale(x)`` (values in ``[0, ~1]`` whatever the units) and its
    output is multiplied back by the same scale; training scales its targets by it too.

    Args:
        x: Images ``(..., H, W)``.

    Returns:
        ``(..., 1, 1)`` scales, broadcastable against ``x``.
    """
    m = x.amax(dim=(-2, -1), keepdim=True)
    return torch.where(m > 0, m, torch.ones_like(m))


@torch.no_grad()
def predict_tensor(model: nn.Module, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Network output of images ``(B, C, H, W)`` under the one scaling rule, batch by batch.

    Each image is divided by :func:`image_scale` before the network and multiplied back after; an
    image without positive values gives zeros (a network adds nothing to an empty image).
    """
    out = []
    for xb in x.split(batch):
        m = xb.amax(dim=(-2, -1), keepdim=True)
        s = torch.where(m > 0, m, torch.ones_like(m))
        y = model(xb / s).to(xb.dtype) * s
        out.append(torch.where(m > 0, y, torch.zeros_like(y)))
    return torch.cat(out)


def predict(
    model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu", batch: int = 64
) -> np.ndarray:
    """Network output for ``(N, H, W)`` images (float32 through the network, float64 out)."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(device)
    return predict_tensor(model, x, batch)[:, 0].cpu().numpy().astype(np.float64)


def restores_volumes(model: nn.Module) -> bool:
    """Whether a network restores volumes rather than independent slices: a count-aware
    (conditioned), 2.5D (a stack of slices in) or 3D network."""
    cfg = getattr(model, "config", {}) or {}
    return bool(
        getattr(model, "conditioned", False)
        or cfg.get("in_channels", 1) > 1
        or cfg.get("spatial_dims", 2) == 3
    )


def ensemble_size(model: nn.Module) -> int:
    """Members of an ensemble (1 for a single network)."""
    return len(getattr(getattr(model, "net", None), "members", [])) or 1


@torch.no_grad()
def predict_volume(
    model: nn.Module,
    volume: np.ndarray,
    minutes: float | None = None,
    device: torch.device | str = "cpu",
    batch: int = 32,
    spread: bool = False,
    members: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A volume network's restoration of an ``(X, Y, Z)`` volume (transaxial slices along z).

    The volume is divided by its maximum (the scale the network was trained with, a study's
    striatal peak: :mod:`fastdat.training.samples`) and multiplied back. 2D / 2.5D networks see
    every slice with its ``k`` neighbours each side (edge slices repeated at the ends), 3D
    networks the whole volume; sides are padded with edge values to the network's multiple and
    cropped back. A count-aware network is told ``minutes``.

    Args:
        model: A network of :func:`fastdat.models.build_model` (eval mode is set).
        volume: ``(X, Y, Z)``, any non-negative scale.
        minutes: The scan time (count-aware networks; ignored by others).
        device: Torch device of the network.
        batch: Slices per call (2D / 2.5D).
        spread: Also return the SD of an ensemble's members (:mod:`fastdat.models.ensemble`)
            voxel by voxel, on the volume's scale (zeros for a single network).
        members: Instead of the spread, return every member's own restoration
            ``(K, X, Y, Z)`` float32 (``K = 1`` for a single network), on the volume's scale.

    Returns:
        float64 ``(X, Y, Z)`` (and its spread, or its members); zeros for an all-zero volume.
    """
    import torch.nn.functional as F

    from fastdat.models.countnet import condition_value

    device = torch.device(device)
    model = model.to(device).eval()
    vol = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)).to(device)
    scale = float(vol.max())
    if scale <= 0:
        if members:
            return np.zeros(vol.shape), np.zeros((ensemble_size(model), *vol.shape), np.float32)
        return (np.zeros(vol.shape), np.zeros(vol.shape)) if spread else np.zeros(vol.shape)
    conditioned = bool(getattr(model, "conditioned", False))
    if conditioned and minutes is None:
        raise ValueError(f"{model.config['name']} is count-aware: give the scan time (minutes)")
    cond = condition_value(float(minutes)).to(device) if conditioned else None
    m = int(getattr(model, "multiple", 1))
    x = (vol / scale).permute(2, 0, 1)  # (Z, X, Y)
    z, h, w = x.shape

    def run(t: torch.Tensor) -> torch.Tensor:
        """Members' outputs ``(K, B, 1, *S)`` before the clamp."""
        return model.each(t, cond.expand(t.shape[0]) if conditioned else None)

    if model.config.get("spatial_dims", 2) == 3:
        pads = (0, -w % m, 0, -h % m, 0, -z % m)
        t = F.pad(x[None, None], pads, mode="replicate")
        ys = run(t)[:, 0, 0, :z, :h, :w]
    else:
        k = (model.config.get("in_channels", 1) - 1) // 2
        near = (torch.arange(z)[:, None] + torch.arange(-k, k + 1)).clamp(0, z - 1).to(device)
        stacks = F.pad(x[near], (0, -w % m, 0, -h % m), mode="replicate")
        ys = torch.cat([run(b) for b in stacks.split(batch)], dim=1)[:, :, 0, :h, :w]
    clamp = torch.relu if model.nonneg else (lambda t: t)
    y = clamp(ys.mean(dim=0))  # the model's output (ImageToImage.forward)
    out = (y.permute(1, 2, 0) * scale).double().cpu().numpy()
    if members:
        each = clamp(ys).permute(0, 2, 3, 1) * scale  # (K, X, Y, Z)
        return out, each.float().cpu().numpy()
    if not spread:
        return out
    sd = clamp(ys).std(dim=0, unbiased=False)
    return out, (sd.permute(1, 2, 0) * scale).double().cpu().numpy()


@dataclass(frozen=True)
class Method:
    """A named way of producing the image that is scored, graded or shown.

    Attributes:
        name: Label in tables and figures (``5min``, ``gaussian``, ``unet4``, ``25min``).
        kind: One of :data:`KINDS`.
        input_kind: The dataset image it reads (``5min``, ``25min`` or ``truth``).
        params: A filter's tuned parameters.
        model: A network (``kind == "network"``), in eval mode on ``device``.
        checkpoint: The network's checkpoint stem.
        device: Torch device of the network.
        minutes: The scan time a count-aware network is told; ``None``: the minutes of
            :attr:`input_kind` (``"7.5min"`` -> 7.5).
    """

    name: str
    kind: str
    input_kind: str = RAW
    params: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    checkpoint: Path | None = None
    device: str = "cpu"
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: unknown kind {self.kind!r} (known: {KINDS})")
        if self.kind == "network" and self.model is None:
            raise ValueError(f"method {self.name!r}: a network method needs its model")

    @property
    def scan_minutes(self) -> float | None:
        """The scan time of its input: :attr:`minutes`, else that of :attr:`input_kind`."""
        return self.minutes if self.minutes is not None else kind_minutes(self.input_kind)

    def apply(self, images: np.ndarray, studies: np.ndarray | None = None) -> np.ndarray:
        """The method's image of each slice of ``images`` ``(N, H, W)`` (of :attr:`input_kind`).

        Args:
            images: Slices ``(N, H, W)``.
            studies: ``(N,)`` study of each slice, consecutive slices of a study in order: a
                volume network (:func:`restores_volumes`) restores each study's stack as a
                volume. Not needed by other methods.

        Returns:
            float64 ``(N, H, W)``.
        """
        x = np.asarray(images, dtype=np.float64)
        if self.kind in ("raw", "reference"):
            return x
        if self.kind == "filter":
            if self.name in VOLUME_FILTERS:
                raise ValueError(f"{self.name} filters volumes: use apply_volume")
            return apply_filter(self.name, x, self.params)
        if not restores_volumes(self.model):
            return predict(self.model, x, self.device)
        if studies is None:
            raise ValueError(f"{self.name} restores volumes: give each slice's study")
        studies = np.asarray(studies)
        out = np.empty_like(x)
        starts = np.flatnonzero(np.r_[True, studies[1:] != studies[:-1]])
        for a, b in zip(starts, [*starts[1:], len(x)], strict=True):
            out[a:b] = np.moveaxis(self.apply_volume(np.moveaxis(x[a:b], 0, -1)), -1, 0)
        return out

    def apply_volume(self, volume: np.ndarray) -> np.ndarray:
        """The method applied to an ``(X, Y, Z)`` volume: slice by slice (axial slices), a
        volume filter (:data:`~fastdat.methods.filters.VOLUME_FILTERS`) in 3D, a volume
        network (:func:`predict_volume`) as a volume told the scan time."""
        if self.kind == "filter" and self.name in VOLUME_FILTERS:
            return apply_filter(self.name, np.asarray(volume, dtype=np.float64), self.params)
        if self.kind == "network" and restores_volumes(self.model):
            return predict_volume(self.model, volume, self.scan_minutes, self.device)
        slices = np.moveaxis(np.asarray(volume, dtype=np.float64), -1, 0)
        return np.moveaxis(self.apply(slices), 0, -1)

    def describe(self) -> dict[str, Any]:
        """Where the method came from, for config files and reports."""
        rec: dict[str, Any] = {"name": self.name, "kind": self.kind, "input": self.input_kind}
        if self.params:
            rec["params"] = dict(self.params)
        if self.checkpoint is not None:
            rec["checkpoint"] = str(self.checkpoint)
        return rec


def head_box(
    volume: np.ndarray, floor: float = HEAD_FLOOR, margin: int = BOX_MARGIN
) -> tuple[slice, slice, slice] | None:
    """The box a volume network restores: the largest connected set of voxels above ``floor``
    times the volume's 99.9th percentile (the head), grown by ``margin`` voxels on every side
    and clipped to the volume; ``None`` when no voxel is above it (an all-zero volume).

    Outside the box the input is kept as it is: background under 10 % of the head's level at
    least ``margin`` voxels from the head (26 mm at 3.3 mm), and the empty slices and corners of
    a 128^3 field of view, which cost most of the network's time. The box also keeps a
    GroupNorm network's field of view near its training one (:mod:`fastdat.inference.denoise`).
    """
    vol = np.asarray(volume)
    level = float(np.percentile(vol, 99.9)) if vol.size else 0.0
    if level <= 0:
        level = float(vol.max()) if vol.size else 0.0
    above = vol > floor * level
    if level <= 0 or not above.any():
        return None
    # the head is the largest connected part: isolated noise or edge voxels of a reconstruction
    # above the floor would otherwise stretch the box to the field of view
    from scipy import ndimage  # here: importing methods stays light

    labels, n = ndimage.label(above)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        above = labels == 1 + int(np.argmax(sizes))
    box = []
    for axis in range(3):
        hit = np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = int(hit[0]) - margin, int(hit[-1]) + 1 + margin
        box.append(slice(max(0, lo), min(vol.shape[axis], hi)))
    return tuple(box)


def predict_in_box(model, volume, box, minutes=None, device="cpu", batch=32, members=False):
    """:func:`predict_volume` on ``volume[box]`` (:func:`head_box`; ``None``: the whole
    volume), pasted into a copy of the input: ``(image float64, members float32 or None)``, the
    members equal to the input outside the box too."""
    if box is None:  # nothing above the floor: the whole (empty) volume, as it is
        box = (slice(None),) * 3
    got = predict_volume(model, volume[box], minutes, device, batch, members=members)
    y, ys = got if members else (got, None)
    out = volume.astype(np.float64, copy=True)
    out[box] = y
    if ys is None:
        return out, None
    each = np.repeat(volume[None].astype(np.float32), ys.shape[0], axis=0)
    each[(slice(None), *box)] = ys
    return out, each
