"""Outputs that appear whole or not at all, and are never silently replaced.

Every file FastDaT writes for a user goes through :func:`write_new`: written under a temporary
name in its folder and linked to its final name only when complete (a hard link fails if the name
exists, so not even a race overwrites a result). Folders are created by :func:`make_folder`, which
proves that a file can be written there before any long work starts; every OS error becomes an
:class:`OutputError` naming the path.

Inside a stage's own folder, a resumable stage rewrites its files as it goes (``state.json``,
``metrics.csv``): :func:`replace_file` and the text writers built on it (:func:`write_text`,
:func:`write_json`, :func:`write_yaml`, :func:`write_csv`) write a temporary file and rename it
over the old one, so a killed run leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class OutputError(OSError):
    """An output that cannot be created or written (``filename`` names it; ``strerror`` says why).

    Stops the whole run: the next outputs would meet the same folder or disk.
    """


def missing_folders(folder: Path) -> list[Path]:
    """The folders from ``folder`` up that do not exist yet (deepest first)."""
    missing, p = [], folder.absolute()
    while not (p.exists() or p.is_symlink()):
        missing.append(p)
        p = p.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created, deepest first, as long as they are empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` (and its parents) and write a probe file in it; returns the folders it
    created. :class:`OutputError` naming the path if that fails."""
    missing = missing_folders(folder)
    above = missing[-1].parent if missing else folder.absolute()
    if not above.is_dir():
        raise OutputError(
            errno.ENOTDIR,
            f"cannot create the output folder: {above} is a file, not a folder",
            str(folder),
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        remove_empty(missing)
        why = f"cannot create the output folder ({err.strerror or err})"
        raise OutputError(err.errno or errno.EIO, why, str(folder)) from err
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastdat-probe-", dir=folder)
        try:
            os.write(fd, b"FastDaT")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        remove_empty(missing)
        why = f"cannot write in the output folder ({err.strerror or err})"
        raise OutputError(err.errno or errno.EIO, why, str(folder)) from err
    return missing


def commit_new(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` atomically, never replacing an existing ``final``."""
    try:
        os.link(tmp, final)  # fails if final exists: no silent overwrite, even in a race
    except FileExistsError:
        raise FileExistsError(f"{final}: already exists; not overwritten") from None
    except OSError:  # no hard links on this file system
        if final.exists():
            raise FileExistsError(f"{final}: already exists; not overwritten") from None
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_new(final: Path, writer) -> None:
    """Write ``final`` through a temporary file in its folder; nothing is left if that fails.

    ``FileExistsError`` if it exists; :class:`OutputError` naming it for any other OS error.
    """
    if final.exists() or final.is_symlink():
        raise FileExistsError(f"{final}: already exists; not overwritten")
    created = missing_folders(final.parent)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # same suffix: same format
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        writer(tmp)
        commit_new(tmp, final)
    except FileExistsError:
        raise
    except OSError as err:
        why = f"could not write it ({err.strerror or err})"
        raise OutputError(err.errno or errno.EIO, why, str(final)) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not final.exists():
            remove_empty(created)


def replace_file(final: str | Path, writer) -> Path:
    """Write ``final`` (replacing it) through ``writer(tmp)`` and an atomic rename; returns it.

    The folder must exist. The temporary file is removed if ``writer`` fails.
    """
    final = Path(final)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # same suffix: same format
    try:
        writer(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return final


def write_text(final: str | Path, text: str) -> Path:
    """``text`` to ``final`` atomically (replacing it)."""
    return replace_file(final, lambda tmp: tmp.write_text(text))


def write_bytes(final: str | Path, data: bytes) -> Path:
    """``data`` to ``final`` atomically (replacing it)."""
    return replace_file(final, lambda tmp: tmp.write_bytes(data))


def write_json(final: str | Path, doc: Any, indent: int = 1) -> Path:
    """``doc`` as indented JSON to ``final`` atomically (replacing it)."""
    return write_text(final, json.dumps(doc, indent=indent))


def write_yaml(final: str | Path, doc: Any) -> Path:
    """``doc`` as YAML (keys in their order) to ``final`` atomically (replacing it)."""
    import yaml

    return write_text(final, yaml.safe_dump(doc, sort_keys=False))


def write_csv(final: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV (the union of their keys as columns, in order of first appearance; a missing
    key is an empty cell) to ``final`` atomically (replacing it)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))

    def writer(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(rows)

    return replace_file(final, writer)
