"""Create a blinded reader study from an evaluation folder.

``create_study(EVAL, STUDY, cfg)`` picks ``cfg.cases`` test studies of the evaluated dataset
(seeded, stratified by the worse hemisphere's grade), makes every method's images of them (the
dataset's own crops for ``5min`` / ``25min``, a network of ``EVAL/config.yaml``, or a
filter tuned in ``EVAL/baselines.json``), renders one anonymous PNG per case and method, and gives
every reader every image once, in an order shuffled per reader, followed by a share of repeats for
intra-reader reliability. ``STUDY`` receives::

    config.yaml     the settings, the sources of every method, provenance
    key.json        the unblinding key (read id -> case, method, study, patient, repeat); 0600,
                    read by ``analyze`` only, never by the server
    tokens.txt      one personal token per reader and one admin token, written once (0600)
    study.sqlite    readers (token SHA-256 only), work lists, grades (see ``store``)
    images/         <random hex>.png, one per case and method

Blinding: image files and read ids are drawn from :mod:`secrets` (not from the seed, so knowing the
seed does not give the key); the PNGs hold pixels only; all methods of a case share one window
``[0, 99.9th percentile of the case's 25-min crops]`` so brightness does not tell them apart.
The design (cases, orders, repeats) depends on ``cfg.seed`` alone: the same seed, the same study.

Washout: with ``n`` images and ``m = round(repeat_share * n)`` repeats, a list has ``L = n + m``
reads; repeats fill the last ``m`` positions and are drawn (balanced over methods) from the images
read at positions ``<= n - ceil(L / 2)``, so a repeat comes at least half the list after the first
read of its image. This needs ``repeat_share <= 1/3``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.readerstudy.render import colour_lut, render_read
from fastdat.readerstudy.store import DB_NAME, hash_token, init_db

log = logging.getLogger(__name__)

CROP_METHODS = ("5min", "25min")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@dataclass(frozen=True)
class StudyConfig:
    """Design of a reader study.

    Attributes:
        cases: Test studies to read (each = its slices through the striatum).
        methods: Image kinds to compare: ``5min`` / ``25min`` (or any crop kind of the dataset),
            a model name of the evaluation's runs, or a tuned filter (gaussian, butterworth, nlm).
        readers: Reader names (each gets a personal token).
        repeat_share: Share of each reader's images read twice (intra-reader ICC), <= 1/3.
        seed: Seed of the case choice, the orders and the repeats.
        cmap: Colour map of the images (``gray``, or a matplotlib name such as ``magma``).
        scale: Integer magnification of the 64 x 64 crops in the PNGs.
    """

    cases: int = 50
    methods: tuple[str, ...] = ("5min", "unet4", "25min")
    readers: tuple[str, ...] = ("reader1", "reader2", "reader3")
    repeat_share: float = 0.2
    seed: int = 0
    cmap: str = "gray"
    scale: int = 4

    def __post_init__(self) -> None:
        if self.cases < 1:
            raise ValueError(f"reader study: cases must be >= 1, got {self.cases}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"reader study: methods must be distinct and given: {self.methods}")
        if not self.readers or len(set(self.readers)) != len(self.readers):
            raise ValueError(f"reader study: reader names must be distinct: {self.readers}")
        for name in self.readers:
            if not _NAME.match(name) or name == "admin":
                raise ValueError(
                    f"reader study: reader name {name!r} must be 1-40 of A-Z a-z 0-9 _ . - "
                    "and not 'admin'"
                )
        if not 0.0 <= self.repeat_share <= 1.0 / 3.0:
            raise ValueError(
                f"reader study: repeat_share must be in [0, 1/3] (washout of half the list), "
                f"got {self.repeat_share}"
            )
        if not 1 <= self.scale <= 16:
            raise ValueError(f"reader study: scale must be 1-16, got {self.scale}")
        colour_lut(self.cmap)


def select_cases(index, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` test study ids, stratified by worse grade (proportional, largest remainder).

    Args:
        index: The dataset index (``study_id``, ``split``, ``grade_left``, ``grade_right``).
        n: Cases wanted.
        rng: Generator of the draw.

    Raises:
        ValueError: fewer than ``n`` test studies.
    """
    import pandas as pd

    test = index[index["split"] == "test"].copy()
    for col in ("grade_left", "grade_right"):
        test[col] = pd.to_numeric(test[col], errors="coerce") if col in test else np.nan
    studies = test.groupby("study_id", sort=True)[["grade_left", "grade_right"]].max()
    if n > len(studies):
        raise ValueError(f"reader study: {n} cases asked, the test split has {len(studies)}")
    worse = studies.max(axis=1).fillna(-1).astype(int)
    strata = {g: sorted(worse.index[worse == g]) for g in sorted(worse.unique())}
    exact = {g: n * len(ids) / len(studies) for g, ids in strata.items()}
    quota = {g: int(math.floor(q)) for g, q in exact.items()}
    tiebreak = rng.random(len(strata))
    order = sorted(strata, key=lambda g: (-(exact[g] - quota[g]), tiebreak[list(strata).index(g)]))
    for g in order[: n - sum(quota.values())]:
        quota[g] += 1
    chosen = [s for g, ids in strata.items() for s in rng.choice(ids, quota[g], replace=False)]
    return [str(s) for s in rng.permutation(chosen)]


def reader_order(
    image_methods: list[str], repeat_share: float, rng: np.random.Generator
) -> list[tuple[int, bool]]:
    """One reader's list: ``(image index, is_repeat)`` per position (see the module's washout).

    Args:
        image_methods: The method of each image (repeats are balanced over methods).
        repeat_share: Share of images read a second time.
        rng: The reader's generator.
    """
    n = len(image_methods)
    order = [int(i) for i in rng.permutation(n)]
    m = int(round(repeat_share * n))
    cutoff = n - math.ceil((n + m) / 2)
    eligible = order[: max(cutoff + 1, 0)]
    if m > len(eligible):
        log.warning("only %d of %d repeats fit the washout", len(eligible), m)
        m = len(eligible)
    seen: dict[str, int] = {}
    ranked = []
    for i in eligible:  # already in random order: rank within method, then take the first m
        seen[image_methods[i]] = seen.get(image_methods[i], -1) + 1
        ranked.append((seen[image_methods[i]], len(ranked), i))
    picked = [i for _, _, i in sorted(ranked)[:m]]
    repeats = [picked[int(j)] for j in rng.permutation(len(picked))]
    return [(i, False) for i in order] + [(i, True) for i in repeats]


def method_images(
    method: str, evaluated: dict[str, Any], crops: dict, rows: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Images of one method for the crop rows ``rows``, and where they came from.

    Args:
        method: A method the evaluation compared (one of ``evaluated``) or an image kind of the
            dataset (``5min``, ``25min``).
        evaluated: Name -> :class:`~fastdat.methods.Method` of the evaluation
            (:func:`fastdat.methods.from_evaluation`: its tuned filters and its networks).
        crops: The dataset's crops (kind -> ``(N, X, Y)``).
        rows: Crop rows to return.

    Returns:
        ``(images (len(rows), X, Y) float64, source description)``.
    """
    from fastdat.methods import Method

    if method in crops:
        m = Method(method, "raw" if method == "5min" else "reference", input_kind=method)
    elif method in evaluated:
        m = evaluated[method]
    else:
        raise ValueError(
            f"reader study: unknown method {method!r} (crops: {', '.join(sorted(crops))}; "
            f"evaluated: {', '.join(evaluated)})"
        )
    images = m.apply(np.asarray(crops[m.input_kind][rows], dtype=np.float64))
    source = {"crops": {"kind": "crops"}, "filter": {"kind": "filter", "params": m.params}}
    if m.kind == "network":
        return images, {"kind": "model", "checkpoint": str(m.checkpoint)}
    return images, source["filter" if m.kind == "filter" else "crops"]


def _eval_config(eval_dir: Path) -> dict[str, Any]:
    """``EVAL/config.yaml`` of an evaluation folder, or a clear error naming what was given."""
    import yaml

    path = eval_dir / "config.yaml"
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"--eval {eval_dir}: no such folder")
    if not path.exists():
        raise ValueError(
            f"--eval {eval_dir}: not an evaluation folder (no config.yaml); give the folder "
            "written by 'fastdat evaluate' or a study's eval/"
        )
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(doc, dict) or "dataset" not in doc or "baselines" not in doc:
        what = "a dataset folder" if isinstance(doc, dict) and "fingerprint" in doc else "not"
        raise ValueError(
            f"--eval {eval_dir}: {what} an evaluation folder (its config.yaml names no evaluated "
            "dataset); give the folder written by 'fastdat evaluate' or a study's eval/"
        )
    return doc


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def create_study(
    eval_dir: str | Path, out_dir: str | Path, cfg: StudyConfig, device: str = "cpu"
) -> Path:
    """Create the blinded study folder ``out_dir`` (see the module docstring); returns it.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty (a study is never overwritten).
        ValueError: too few test studies, an unknown method, or no 25-min crops for the window.
    """
    import yaml

    from fastdat.config import provenance, to_dict
    from fastdat.data import load_crops

    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; a study is never overwritten")
    eval_cfg = _eval_config(eval_dir)
    crops, index = load_crops(eval_cfg["dataset"])
    if "25min" not in crops or "5min" not in crops:
        raise ValueError(f"{eval_cfg['dataset']}: the reader study needs 5min and 25min crops")
    case_ids = select_cases(index, cfg.cases, np.random.default_rng([cfg.seed, 0]))
    case_rows = [
        index[index["study_id"] == s].sort_values("slice_rank").index.to_numpy() for s in case_ids
    ]
    rows = np.concatenate(case_rows)
    from fastdat.methods import from_evaluation

    known = [*eval_cfg.get("baselines", []), *(eval_cfg.get("networks") or {})]
    unknown = [m for m in cfg.methods if m not in crops and m not in known]
    if unknown:
        raise ValueError(
            f"reader study: unknown method {unknown[0]!r} (crops: {', '.join(sorted(crops))}; "
            f"evaluated: {', '.join(known) or 'none'})"
        )
    evaluated = {m.name: m for m in from_evaluation(eval_dir, device, (), only=set(cfg.methods))}
    sources, images_of = {}, {}
    for method in cfg.methods:
        log.info("reader study: images of %s", method)
        imgs, sources[method] = method_images(method, evaluated, crops, rows)
        images_of[method] = np.split(imgs, np.cumsum([len(r) for r in case_rows])[:-1])

    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images").mkdir(parents=True)
        cases = _cases(index, crops, case_rows)
        images = _render_images(tmp / "images", cases, images_of, cfg)
        tokens = {name: secrets.token_urlsafe(24) for name in (*cfg.readers, "admin")}
        reads = _assign_reads(images, cases, cfg)
        users = [
            (n, "admin" if n == "admin" else "reader", hash_token(t)) for n, t in tokens.items()
        ]
        init_db(
            tmp / DB_NAME,
            users,
            [(rid, r["reader"], r["position"], r["image"]) for rid, r in reads.items()],
        )
        key = {"format": "fastdat-reader-key/1", "cases": cases, "images": images, "reads": reads}
        _write_private(tmp / "key.json", json.dumps(key, indent=1))
        _write_private(
            tmp / "tokens.txt",
            "# FastDaT reader study: give each reader only their own token; 'admin' sees progress\n"
            "# and exports. The server stores only SHA-256 hashes: keep this file private.\n"
            + "".join(f"{n} {t}\n" for n, t in tokens.items()),
        )
        doc = {
            "study": to_dict(cfg),
            "eval": str(eval_dir.resolve()),
            "dataset": str(eval_cfg["dataset"]),
            "methods": sources,
            "counts": {
                "cases": len(cases),
                "images": len(images),
                "reads_per_reader": len(reads) // len(cfg.readers),
                "repeats_per_reader": sum(r["repeat"] for r in reads.values()) // len(cfg.readers),
            },
            "provenance": provenance(device=str(device)),
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("reader study %s: %d cases, %d reads", out_dir, len(cases), len(reads))
    return out_dir


def _cases(index, crops: dict, case_rows: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    """``case001`` ... -> study, patient, dataset grades, slices and the display window
    ``[0, 99.9th percentile of the case's 25-min crops]`` shared by all its methods."""
    cases = {}
    for c, r in enumerate(case_rows):
        first = index.loc[r[0]]
        vmax = float(np.percentile(crops["25min"][r], 99.9))
        cases[f"case{c + 1:03d}"] = {
            "study_id": str(first["study_id"]),
            "patient_id": str(first["patient_id"]),
            "grade_left": _grade(first.get("grade_left")),
            "grade_right": _grade(first.get("grade_right")),
            "slices": [int(s) for s in index.loc[r, "slice"]],
            "window": [0.0, vmax if vmax > 0 else 1.0],
        }
    return cases


def _render_images(
    folder: Path, cases: dict, images_of: dict[str, list[np.ndarray]], cfg: StudyConfig
) -> list[dict[str, str]]:
    """Write one PNG per case and method under a random name (in a random order, so that file
    times say nothing); returns ``{"image", "case", "method"}`` sorted by case, then method."""
    pairs = [(c, m) for c in range(len(cases)) for m in cfg.methods]
    random.SystemRandom().shuffle(pairs)
    images = []
    for c, method in pairs:
        case = f"case{c + 1:03d}"
        name = f"{secrets.token_hex(16)}.png"
        png = render_read(images_of[method][c], cases[case]["window"][1], cfg.cmap, cfg.scale)
        (folder / name).write_bytes(png)
        images.append({"image": name, "case": case, "method": method})
    return sorted(images, key=lambda d: (d["case"], cfg.methods.index(d["method"])))


def _assign_reads(images: list[dict], cases: dict, cfg: StudyConfig) -> dict[str, dict[str, Any]]:
    """The key of every read: random read id -> reader, position, image, case, method, study,
    patient, repeat; reader ``i``'s order from the generator ``(seed, 1, i)``."""
    methods = [d["method"] for d in images]
    reads = {}
    for i, reader in enumerate(cfg.readers):
        order = reader_order(methods, cfg.repeat_share, np.random.default_rng([cfg.seed, 1, i]))
        for pos, (img, repeat) in enumerate(order):
            im, case = images[img], cases[images[img]["case"]]
            reads[secrets.token_hex(12)] = {
                "reader": reader,
                "position": pos,
                "image": im["image"],
                "case": im["case"],
                "method": im["method"],
                "study_id": case["study_id"],
                "patient_id": case["patient_id"],
                "repeat": repeat,
            }
    return reads


def _grade(value: Any) -> int | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else int(f)
