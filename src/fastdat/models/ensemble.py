"""A deep ensemble: K networks of one architecture, trained from different seeds, as one model.

Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017. The ensemble's output is the mean of its
members' outputs; the spread of the members (their SD, voxel by voxel) is the uncertainty map
that ``fastdat denoise`` writes beside the image and that SBR intervals are calibrated on
(:mod:`fastdat.stats.conformal`). Members are the inner networks of trained
:class:`~fastdat.models.registry.ImageToImage` models, so the residual and the non-negative
clamp are applied once, around the mean: ``y = relu(x_c + mean_k net_k(x))``; :meth:`each`
gives the members' own outputs ``relu(x_c + net_k(x))`` for the spread.

Saved like any network (one safetensors file, member ``k``'s weights under ``net.members.k.``),
with the sidecar's ``model`` holding ``name: ensemble``, ``member`` (the members' architecture
and options) and ``size``: :func:`fastdat.models.load_model` rebuilds it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastdat.models.base import register


class Ensemble(nn.Module):
    """Mean of ``size`` networks built alike (module docstring).

    Args:
        members: The member networks (inner networks, no residual or clamp).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.conditioned = bool(getattr(members[0], "conditioned", False))
        self.size_multiple = int(getattr(members[0], "size_multiple", 1))

    def each(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Every member's correction ``(K, B, C_out, *S)``."""
        return torch.stack([m(x, cond) if self.conditioned else m(x) for m in self.members])

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.each(x, cond).mean(dim=0)


@register(
    "ensemble",
    reference="Lakshminarayanan et al., NeurIPS 2017 (deep ensembles) of a registered network",
    multiple=1,
)
def _ensemble(
    in_channels: int,
    out_channels: int,
    spatial_dims: int,
    member: dict[str, Any] | None = None,
    size: int = 3,
):
    from fastdat.models.registry import model_info

    member = member or {"name": "countunet"}
    if "name" not in member or member["name"] == "ensemble" or size < 1:
        raise ValueError(
            "ensemble needs member={'name': ..., options} (not an ensemble), size >= 1"
        )
    options = {k: v for k, v in member.items() if k != "name"}
    info = model_info(member["name"])
    return Ensemble(
        [info.builder(in_channels, out_channels, spatial_dims, **options) for _ in range(size)]
    )


def ensemble_from(models: list[nn.Module]):
    """One ensemble model of trained networks of the same architecture and options.

    Args:
        models: :class:`~fastdat.models.registry.ImageToImage` networks (e.g. trained with
            different ``seed``), all with the same ``config``.

    Returns:
        An ``ensemble`` :class:`~fastdat.models.registry.ImageToImage` holding their weights.

    Raises:
        ValueError: No models, or two built differently (named).
    """
    from fastdat.models.registry import build_model

    if not models:
        raise ValueError("an ensemble needs at least one trained network")
    cfg = dict(models[0].config)
    for i, m in enumerate(models[1:], 2):
        if m.config != cfg:
            raise ValueError(f"ensemble member {i} is built differently: {m.config} vs {cfg}")
    top = {k: cfg.pop(k) for k in ("in_channels", "out_channels", "spatial_dims")}
    residual, nonneg = cfg.pop("residual"), cfg.pop("nonneg")
    ens = build_model(
        "ensemble", **top, residual=residual, nonneg=nonneg, member=cfg, size=len(models)
    )
    for slot, m in zip(ens.net.members, models, strict=True):
        slot.load_state_dict(m.net.state_dict())
    return ens.eval()


SEED_FREE = ("seed",)
"""Training settings members may differ in (everything else must be equal)."""


def save_ensemble(refs: list[str | Path], out: str | Path) -> Path:
    """Join trained networks into one ensemble checkpoint ``out`` (``out.safetensors`` + sidecar).

    The members must be runs of one training recipe on one dataset that differ only in their
    seed: same architecture (:func:`ensemble_from`), same ``train`` settings except ``seed``
    and same ``dataset_fingerprint`` in their sidecars. The ensemble's sidecar keeps the common
    ``train`` settings (so methods read its input and target kinds as a member's), the dataset
    fingerprint, and per member its checkpoint, seed, epoch and validation loss.

    Args:
        refs: Two or more run folders or checkpoints (:func:`resolve_checkpoint`).
        out: Checkpoint stem to write (refused if it exists).

    Returns:
        The weights path.

    Raises:
        ValueError: Fewer than two members, members trained differently (the setting named), or
            ``out`` exists.
    """
    from fastdat.models.checkpoint import _paths, load_model, read_sidecar, resolve_checkpoint

    if len(refs) < 2:
        raise ValueError(f"an ensemble needs at least two trained networks, got {len(refs)}")
    weights, sidecar = _paths(out)
    if weights.exists() or sidecar.exists():
        raise ValueError(f"{weights}: exists; choose another name (results are never replaced)")
    stems = [resolve_checkpoint(r) for r in refs]
    metas = [read_sidecar(s) for s in stems]
    first = metas[0]
    train = {k: v for k, v in (first.get("train") or {}).items() if k not in SEED_FREE}
    for stem, meta in zip(stems[1:], metas[1:], strict=True):
        other = {k: v for k, v in (meta.get("train") or {}).items() if k not in SEED_FREE}
        diff = sorted(k for k in set(train) | set(other) if train.get(k) != other.get(k))
        if diff:
            raise ValueError(f"{stem}: trained differently from {stems[0]} ({', '.join(diff)})")
        if meta.get("dataset_fingerprint") != first.get("dataset_fingerprint"):
            raise ValueError(f"{stem}: trained on another dataset than {stems[0]}")
    ens = ensemble_from([load_model(s) for s in stems])
    members = [
        {
            "checkpoint": str(s),
            "seed": (m.get("train") or {}).get("seed"),
            "epoch": m.get("epoch"),
            "val": m.get("val"),
            "git_commit": m.get("git_commit"),
        }
        for s, m in zip(stems, metas, strict=True)
    ]
    from fastdat.models.checkpoint import save_model

    extra = {
        "train": first.get("train"),
        "dataset_fingerprint": first.get("dataset_fingerprint"),
        "members": members,
    }
    for key in ("training_voxel_mm", "input_range"):  # one dataset and recipe: the first's
        if first.get(key):
            extra[key] = first[key]
    return save_model(ens, out, extra=extra)
