"""Configuration plumbing shared by every stage: frozen dataclasses <-> YAML, overrides, provenance.

Configs are nested frozen dataclasses validated in ``__post_init__``. Presets are YAML files under
``fastdat/presets/<stage>/<name>.yaml`` holding a partial config; ``--set a.b=value`` overrides are
applied on top, values parsed as YAML scalars. Unknown keys are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import re
import subprocess
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

import fastdat

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a plain nested dict (tuples become lists) for YAML."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build config ``cls`` from a (partial) nested dict; missing keys take defaults.

    Raises:
        ValueError: For an unknown key (named with its dotted path) or a value of the wrong kind.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config section '{where or cls.__name__}' must be a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValueError(f"unknown config key '{key}' (known here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, path)
        elif typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
            kwargs[name] = tuple(value)
        elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
            kwargs[name] = float(value)
        elif hint in (int, float, str, bool) and not isinstance(value, hint):
            raise ValueError(f"config key '{path}' must be {hint.__name__}, got {value!r}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (a copy); values parsed as YAML."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: '{p}' is not a config section")
        node[parts[-1]] = _scalar(raw)
    return out


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _scalar(raw: str) -> Any:
    """A ``--set`` value parsed as YAML; ``1e-5`` is a float (YAML 1.1 wants ``1.0e-5``)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return float(value)
    return value


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["a.b: 1 -> 2", ...]``: the dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(old) | set(new)):
        va, vb = old.get(k), new.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def load_preset(stage: str, name: str) -> dict[str, Any]:
    """The partial config dict of preset ``name`` for ``stage`` (e.g. ``simulate``/``quick``)."""
    folder = resources.files("fastdat") / "presets" / stage
    available = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    if name not in available:
        raise ValueError(f"unknown {stage} preset {name!r} (available: {', '.join(available)})")
    return yaml.safe_load((folder / f"{name}.yaml").read_text()) or {}


def git_commit() -> str:
    """The git commit of the source tree ``fastdat`` runs from (``+dirty`` if modified)."""
    root = Path(fastdat.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(**extra: Any) -> dict[str, Any]:
    """Who made an output: package version, git commit, library versions, host, time."""
    import numpy
    import torch

    return {
        "fastdat_version": fastdat.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
