"""Self-describing model files: weights in safetensors, everything else in a JSON sidecar.

``NAME.safetensors`` holds the state dict (no pickle, so a file from elsewhere cannot run code);
``NAME.json`` holds the registry name and every argument :func:`build_model` needs, the package
version and git commit, the SHA-256 of the weights file, and any extra metadata (training config,
dataset fingerprint). :func:`load_model` rebuilds the network from the two files alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

import fastdat
from fastdat.config import git_commit
from fastdat.models.registry import ImageToImage, build_model

FORMAT = "fastdat-model/1"


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_model(model: ImageToImage, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path.safetensors`` and ``path.json`` (each atomically); returns the weights path."""
    from safetensors.torch import save_file

    if not isinstance(model, ImageToImage):
        raise TypeError("save_model expects a network made by fastdat.models.build_model")
    weights, sidecar = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_name(f".{weights.name}.tmp")
    # one metadata key: safetensors writes several in no fixed order, and the file's SHA-256
    # (recorded in the sidecar) must depend on the weights alone
    info = json.dumps({"format": FORMAT, "model": model.config["name"]}, sort_keys=True)
    save_file(state, tmp, metadata={"fastdat": info})
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {
        "format": FORMAT,
        "model": model.config,
        "weights": weights.name,
        "weights_sha256": digest,
        "fastdat_version": fastdat.__version__,
        "git_commit": git_commit(),
        **(extra or {}),
    }
    tmp_json = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp_json.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, weights)
    os.replace(tmp_json, sidecar)
    return weights


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a model file, checked for format."""
    _, sidecar = _paths(path)
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar}: model sidecar not found")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{sidecar}: not valid JSON ({err})") from err
    if meta.get("format") != FORMAT or "model" not in meta:
        raise ValueError(f"{sidecar}: not a FastDaT model sidecar (format {meta.get('format')!r})")
    return meta


def load_model(path: str | Path, device: torch.device | str = "cpu") -> ImageToImage:
    """Rebuild a saved network from its sidecar and weights, in eval mode, on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, sidecar = _paths(path)
    meta = read_sidecar(path)
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: model weights not found")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(f"{weights}: checksum differs from {sidecar.name} (corrupt or replaced)")
    cfg = dict(meta["model"])
    model = build_model(cfg.pop("name"), **cfg)
    try:
        state = load_file(weights)
    except SafetensorError as err:
        raise ValueError(f"{weights}: unreadable safetensors file ({err})") from err
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not match {meta['model']['name']} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval()


PACKAGED = {"default": Path(__file__).resolve().parent / "default" / "default"}
"""Networks shipped with the package, by name (``--model default``)."""


def resolve_checkpoint(ref: str | Path) -> Path:
    """The checkpoint stem (``STEM.safetensors`` + ``STEM.json``) a user's reference names.

    Args:
        ref: ``"default"`` (a packaged network), a training run folder (its ``best``
            checkpoint), or a checkpoint path with or without ``.safetensors`` / ``.json``.

    Raises:
        FileNotFoundError: Nothing of that name holds a FastDaT sidecar.
    """
    if str(ref) in PACKAGED:
        return PACKAGED[str(ref)]
    p = Path(ref)
    if p.is_dir():
        if (p / "best.json").exists():
            return p / "best"
        raise FileNotFoundError(f"{p}: a folder without best.json is not a training run")
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    if not stem.with_name(stem.name + ".json").exists():
        raise FileNotFoundError(f"{ref}: no FastDaT model (no {stem.name}.json sidecar)")
    return stem


def network_labels(refs: list[str | Path] | dict[str, str | Path]) -> dict[str, Path]:
    """``{method label: checkpoint stem}`` for the networks an evaluation compares.

    A mapping keeps its labels. In a list, a run is labelled by its registry name (``unet4``), a
    packaged network by its package name (``default``), and a second network of the same
    architecture by ``name:folder``.
    """
    if isinstance(refs, dict):
        return {str(k): resolve_checkpoint(v) for k, v in refs.items()}
    out: dict[str, Path] = {}
    for ref in refs:
        stem = resolve_checkpoint(ref)
        label = str(ref) if str(ref) in PACKAGED else read_sidecar(stem)["model"]["name"]
        if label in out:
            label = f"{label}:{Path(ref).name}"
        out[label] = stem
    return out
