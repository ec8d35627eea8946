"""Configuration plumbing shared by every stage: frozen dataclasses <-> YAML, overrides, provenance.

Configs are nested frozen dataclasses validated in ``__post_init__``. Presets are YAML files under
``fastdat/presets/<stage>/<name>.yaml`` holding a partial config; ``--set a.b=value`` overrides are
applied on top, values parsed as YAML scalars. Unknown keys are errors that name the key.

Every command builds its config the same way, with :func:`resolve`: dataclass defaults < preset <
caller's base dict < YAML file (``--config``) < ``--set`` overrides.
"""

from __future__ import annotations

import copy
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
    hints = _known_fields(cls, data, where)
    kwargs = {}
    for name, value in (data or {}).items():
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = from_dict(hints[name], value, path)
        else:
            kwargs[name] = _field_value(hints[name], value, path)
    return cls(**kwargs)


def _known_fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """The type hints of ``cls``'s fields, after checking ``data`` is a mapping of known keys."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(
            f"config section '{where or cls.__name__}' must be a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValueError(f"unknown config key '{key}' (known here: {', '.join(sorted(fields))})")
    return hints


def _field_value(hint: Any, value: Any, path: str) -> Any:
    """``value`` of a non-dataclass field of type ``hint`` (lists -> tuples, ints -> floats).

    Raises:
        ValueError: For a scalar of the wrong kind, naming ``path``.
    """
    if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ValueError(f"config key '{path}' must be {hint.__name__}, got {value!r}")
    return value


def _check_partial(cls: type, data: Any, where: str) -> None:
    """Check a partial config's keys and scalar kinds without building it (no cross-field checks).

    Raises:
        ValueError: As :func:`from_dict` for an unknown key or a value of the wrong kind.
    """
    hints = _known_fields(cls, data, where)
    for name, value in (data or {}).items():
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            _check_partial(hints[name], value, path)
        else:
            _field_value(hints[name], value, path)


def resolve(
    cls: type[T],
    *,
    preset: tuple[str, str] | None = None,
    file: str | Path | None = None,
    sets: list[str] | None = None,
    section: str | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Resolve config ``cls`` from its layers; the one way every command builds a config.

    Layers, each overriding the ones before it key by key (a mapping merges into the mapping
    below it, any other value replaces it):

    1. the dataclass defaults of ``cls``;
    2. ``preset``: ``(stage, name)``, the packaged preset :func:`load_preset` ``(stage, name)``;
    3. ``base``: a partial config from the caller (e.g. a study preset's section, or the grid
       that user maps impose);
    4. ``file``: a YAML file (``--config``); when ``section`` is given and the file has that
       (dotted) key, only that part is used (a ``study.yaml``'s ``train``), otherwise the whole
       file;
    5. ``sets``: ``key.sub=value`` overrides (:func:`apply_overrides`).

    The result is validated by :func:`from_dict`, with keys named under ``section``
    (``train.max_epochs``) when one is given, else as they are (``recon.iterations``).

    Args:
        cls: The config dataclass.
        preset: ``(stage, name)`` of a packaged preset.
        file: YAML file of settings.
        sets: ``key=value`` overrides.
        section: Key of the file's part to use, and the prefix of key names in errors.
        base: Partial config between the preset and the file.

    Returns:
        The validated config.

    Raises:
        ValueError: For an unknown preset, a file that is missing, not YAML or not a mapping (naming
            the file), an unknown key or a value of the wrong kind (naming the key, and the file
            when it came from it), a malformed ``--set``, or a value ``cls`` rejects.
    """
    where = section or ""
    data: dict[str, Any] = {}
    if preset is not None:
        data = _merge(data, load_preset(*preset))
    if base:
        if not isinstance(base, dict):
            raise ValueError(
                f"config section '{where or cls.__name__}' must be a mapping, got {base!r}"
            )
        data = _merge(data, base)
    if file is not None:
        layer = read_config_file(file, section)
        try:
            _check_partial(cls, layer, where)
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from None
        data = _merge(data, layer)
    data = apply_overrides(data, sets)
    try:
        return from_dict(cls, data, where)
    except ValueError as err:
        if file is None:
            raise
        raise ValueError(f"{err} (settings from {file}{' and --set' if sets else ''})") from None


def read_config_file(file: str | Path, section: str | None = None) -> dict[str, Any]:
    """The settings mapping of a YAML file, or of its (dotted) ``section`` when it has one.

    Args:
        file: YAML file; an empty file is an empty mapping.
        section: Use only this part (``train``, ``finetune.ft``) when the file's top level has its
            first key; otherwise the whole file.

    Raises:
        ValueError: Naming the file, when it cannot be read, is not YAML, or is (or its section
            is) not a mapping.
    """
    path = Path(file)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"config file {path}: {err.strerror or err}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ValueError(f"config file {path}: not valid YAML ({problem}{at})") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ValueError(
            f"config file {path}: must be a mapping of settings, got {type(doc).__name__}"
        )
    parts = section.split(".") if section else []
    if parts and parts[0] in doc:
        for depth, key in enumerate(parts):
            if not isinstance(doc, dict) or key not in doc:
                raise ValueError(f"config file {path}: no section '{'.'.join(parts[: depth + 1])}'")
            doc = doc[key]
        doc = {} if doc is None else doc
        if not isinstance(doc, dict):
            raise ValueError(
                f"config file {path}: section '{section}' must be a mapping, "
                f"got {type(doc).__name__}"
            )
    return doc


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``high`` merged over ``low`` (copies): nested mappings key by key, other values replace."""
    out = copy.deepcopy(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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
