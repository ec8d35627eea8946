"""Training samples from a crop dataset: 2D slices, 2.5D stacks or 3D slabs, one or many scan times.

A dataset holds, per study and image kind, ``n_slices`` consecutive ``crop x crop`` slices
(:func:`fastdat.data.read_dataset`). A :class:`~fastdat.training.config.TrainConfig` turns them into
input / target pairs:

- **2D** (``context=0``): one slice in, the same slice of the target out (the paper's networks);
- **2.5D** (``context=k``): the slice and its ``k`` neighbours on each side as ``2k + 1`` input
  channels, the centre slice's target out; at the ends of a study's slab the edge slice is
  repeated (build the dataset with ``k`` extra slices each side to avoid it);
- **3D** (``spatial_dims=3``): the whole slab of a study in, its target slab out.

Inputs may come from several scan times (``input_kinds``: ``2min`` ... ``15min``), each paired
with the target and, for a count-aware (conditioned) network, with its conditioning value
:func:`fastdat.models.countnet.condition_value` of the kind's minutes. The target is one kind
for every input (``25min``, ``noisefree``, ``truth``), or ``rest``: the rest of the acquisition
the input was thinned from (``rest5min`` for ``5min``, a self-supervised Noise2Noise target).

Scaling: a conditioned network sees every sample divided by its **study's scale**, the maximum
of the study's input slab (the striatal peak), so that the noise the conditioning describes is
not rescaled slice by slice and inference can divide a whole volume by its maximum; other
networks keep the one per-image rule of :func:`fastdat.methods.image_scale` (the centre slice's
maximum; a 3D slab's maximum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastdat.data.kinds import REST, kind_minutes
from fastdat.methods import image_scale
from fastdat.training.config import TrainConfig


@dataclass(frozen=True)
class Samples:
    """Tensors of one split.

    Attributes:
        x: Inputs ``(N, 2k + 1, H, W)`` (2D / 2.5D) or ``(N, 1, D, H, W)`` (3D).
        y: Targets ``(N, 1, H, W)`` or ``(N, 1, D, H, W)``.
        cond: Conditioning values ``(N,)`` (count-aware networks) or ``None``.
        scale: Study scales ``(N,)`` (count-aware networks) or ``None`` (per-image rule).
    """

    x: torch.Tensor
    y: torch.Tensor
    cond: torch.Tensor | None
    scale: torch.Tensor | None

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: torch.Tensor) -> Samples:
        """The samples at ``idx``."""
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Samples(self.x[idx], self.y[idx], pick(self.cond), pick(self.scale))

    def to(self, device: torch.device) -> Samples:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Samples(move(self.x), move(self.y), move(self.cond), move(self.scale))


def input_kinds(cfg: TrainConfig) -> tuple[str, ...]:
    """The input kinds of a config: ``input_kinds``, or ``(input_kind,)``."""
    return tuple(cfg.input_kinds) or (cfg.input_kind,)


def target_of(cfg: TrainConfig, kind: str) -> str:
    """The target kind of input ``kind``: ``rest<kind>`` for ``target_kind: rest``."""
    return REST + kind if cfg.target_kind == REST else cfg.target_kind


def _minutes(kind: str) -> float:
    value = kind_minutes(kind)
    if value is None:
        raise ValueError(f"input kind {kind!r} is not a scan time like '5min'")
    return value


def sample_scale(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The divisor of each sample, broadcastable against ``x`` (module docstring).

    Args:
        x: Inputs ``(B, C, H, W)`` or ``(B, 1, D, H, W)``.
        scale: Study scales ``(B,)``, or ``None`` for the per-image rule.
    """
    shape = (-1,) + (1,) * (x.ndim - 1)
    if scale is not None:
        return torch.where(scale > 0, scale, torch.ones_like(scale)).reshape(shape)
    if x.ndim == 5:
        return image_scale(x.amax(dim=2)).amax(dim=1).reshape(shape)
    c = x.shape[1] // 2
    return image_scale(x[:, c : c + 1])


def split_samples(
    ds, cfg: TrainConfig, split: str, conditioned: bool, multiple: int = 1
) -> Samples:
    """The samples of one split of dataset ``ds`` (a :class:`~fastdat.data.load.Dataset`).

    Args:
        ds: The dataset.
        cfg: Which inputs, target, context and dimensionality.
        split: ``train``, ``val`` or ``test``.
        conditioned: Whether the network is count-aware (conditioning values, study scales).
        multiple: A 3D network's size multiple; the slab's slice count must be one.

    Raises:
        ValueError: A kind the dataset lacks, a study whose slices are not consecutive, or a
            slab a 3D network cannot take; the message names the dataset.
    """
    from fastdat.models.countnet import condition_value

    kinds = input_kinds(cfg)
    for k in (*kinds, *(target_of(cfg, k) for k in kinds)):
        if k not in ds.crops:
            raise ValueError(f"{ds.path}: no {k!r} crops (has {', '.join(ds.crops)})")
    index = ds.index[ds.index["split"] == split]
    xs, ys, conds, scales = [], [], [], []
    for study, rows in index.groupby("study_id", sort=False):
        rows = rows.sort_values("slice")
        if (np.diff(rows["slice"].to_numpy()) != 1).any():
            raise ValueError(f"{ds.path}: the slices of study {study} are not consecutive")
        ids = rows.index.to_numpy()
        n = len(ids)
        if cfg.spatial_dims == 3 and n % multiple:
            raise ValueError(
                f"{ds.path}: {n} slices per study; a 3D network needs a multiple of {multiple} "
                f"(build the dataset with --slices {multiple * max(1, round(n / multiple))})"
            )
        for k in kinds:
            x = np.asarray(ds.crops[k][ids], dtype=np.float32)
            y = np.asarray(ds.crops[target_of(cfg, k)][ids], dtype=np.float32)
            if cfg.spatial_dims == 3:
                xs.append(x[None, None])
                ys.append(y[None, None])
                m = 1
            else:
                near = np.clip(
                    np.arange(n)[:, None] + np.arange(-cfg.context, cfg.context + 1), 0, n - 1
                )
                xs.append(x[near])
                ys.append(y[:, None])
                m = n
            if conditioned:
                conds.append(np.full(m, float(condition_value(_minutes(k))), np.float32))
                scales.append(np.full(m, max(float(x.max()), 0.0), np.float32))
    if not xs:
        raise ValueError(f"{ds.path}: no {split!r} crops")
    cat = lambda parts: torch.from_numpy(np.concatenate(parts)) if parts else None  # noqa: E731
    return Samples(cat(xs), cat(ys), cat(conds), cat(scales))
