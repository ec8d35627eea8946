"""Making methods: from tuned filter parameters, run folders and checkpoints, or an evaluation.

Network labels come from :func:`fastdat.models.checkpoint.network_labels` (a run is named by its
architecture, the packaged network by ``default``); filters are tuned once, on the validation
split, by :func:`tune_filters`, and the tuned parameters are what :func:`load_methods` and
:func:`from_evaluation` read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdat.methods.base import LONG, RAW, TRUTH, Method
from fastdat.methods.filters import FILTERS, VOLUME_FILTERS, tune


def tune_filters(
    names: tuple[str, ...] | list[str], x_val: np.ndarray, y_val: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Tune each filter of ``names`` on validation images (``baselines.json``'s content)."""
    return {name: tune(name, x_val, y_val) for name in names}


def network_method(
    label: str, checkpoint: str | Path, device: torch.device | str = "cpu"
) -> Method:
    """A network method from a run folder, checkpoint stem or ``default``."""
    from fastdat.models import load_model
    from fastdat.models.checkpoint import resolve_checkpoint

    stem = resolve_checkpoint(checkpoint)
    model = load_model(stem, device=device)
    return Method(label, "network", model=model, checkpoint=stem, device=str(device))


def load_methods(
    networks: list[str | Path] | dict[str, str | Path] | None = None,
    tuned: dict[str, dict[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    references: tuple[str, ...] = (LONG,),
) -> list[Method]:
    """The methods of a comparison, in report order: raw, filters, networks, references.

    Args:
        networks: Run folders, checkpoints or ``"default"`` (labelled by
            :func:`fastdat.models.checkpoint.network_labels`), or a mapping label -> any of these.
        tuned: Filter name -> ``{"params": ...}`` as :func:`tune_filters` returns it.
        device: Torch device of the networks.
        references: Reference images shown as they are (``25min``, ``truth``).

    Raises:
        ValueError: A network label clashes with the name of another method.
    """
    from fastdat.models.checkpoint import network_labels

    labels = network_labels(networks or [])
    filters = dict(tuned or {})
    known = {*FILTERS, *VOLUME_FILTERS}
    unknown = sorted(set(filters) - known)
    if unknown:
        raise ValueError(f"unknown filter(s) {unknown} (known: {', '.join(sorted(known))})")
    clash = set(labels) & {RAW, LONG, TRUTH, *known}
    if clash:
        raise ValueError(f"network label(s) {sorted(clash)} clash with a raw or filter method")
    out = [Method(RAW, "raw")]
    out += [Method(name, "filter", params=dict(doc["params"])) for name, doc in filters.items()]
    out += [network_method(label, stem, device) for label, stem in labels.items()]
    out += [Method(ref, "reference", input_kind=ref) for ref in references]
    return out


def from_evaluation(
    eval_dir: str | Path,
    device: torch.device | str = "cpu",
    references: tuple[str, ...] = (LONG,),
    only: set[str] | None = None,
) -> list[Method]:
    """The methods an evaluation folder compared: its tuned filters and its networks.

    ``only``: load just the networks of these names (every filter is kept; networks are the
    expensive part).

    Raises:
        ValueError: ``eval_dir`` is not an evaluation folder (named).
    """
    import yaml

    eval_dir = Path(eval_dir)
    cfg, tuned = eval_dir / "config.yaml", eval_dir / "baselines.json"
    for path in (cfg, tuned):
        if not path.exists():
            raise ValueError(
                f"{eval_dir}: not an evaluation folder (no {path.name}); give the folder written "
                "by 'fastdat evaluate' or a study's eval/"
            )
    networks = (yaml.safe_load(cfg.read_text()) or {}).get("networks") or {}
    if only is not None:
        networks = {k: v for k, v in networks.items() if k in only}
    return load_methods(networks, json.loads(tuned.read_text()), device, references)
