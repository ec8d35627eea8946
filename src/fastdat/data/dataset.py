"""Striatal crop datasets: from simulated cohorts, NIfTI pairs or DICOM exports, one builder.

A dataset directory ``DS`` holds::

    config.yaml          resolved dataset config + provenance + the source it was built from
    splits.json          patient -> split (seeded, stratified by grade; reused, never re-drawn)
    index.csv            one row per crop: crop_id, study_id, patient_id, split, slice, grades...
    studies.csv          one row per study: localization, geometry, what was skipped and why
    crops_<name>.npy     float32 (N, crop, crop) per image kind: "5min", "25min", "truth", ...
    overview.png         a few crops of every kind, one study per grade

Crops keep the images' own units (counts / s per voxel for simulated studies); the image-quality
convention of :mod:`fastdat.metrics` normalizes pairs when they are scored. Slices and
crop centres come from the image content (:func:`fastdat.data.localize.locate_striata` on the
``reference`` image), so the same builder serves real scans without labels.

Every volume is read in RAS+ axes (:func:`fastdat.io.image.read_image`, :func:`load_nifti`): a
crop's axis 1 runs from the subject's left to right and axis 2 from posterior to anterior,
whatever order a NIfTI file or a DICOM series stores its voxels in, as ``fastdat denoise`` and
``fastdat quantify`` read the same files.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from fastdat.config import provenance, to_dict
from fastdat.data.localize import locate_striata
from fastdat.data.splits import SPLITS, split_patients
from fastdat.io.atomic import write_csv, write_json, write_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetConfig:
    """How crops are cut and split.

    Attributes:
        n_slices: Transaxial slices per study around the striatal maximum.
        crop: Crop side (voxels).
        split: Relative train / val / test sizes in patients (the paper: 120 / 37 / 50).
        seed: Seed of the split.
        durations: Image kinds paired per study (minutes as names, shortest first).
        reference: The kind the striata are located on (the longest acquisition).
        resolution_mm: Reconstructed resolution assumed by the localization template (mm).
    """

    n_slices: int = 5
    crop: int = 64
    split: tuple[float, float, float] = (120.0, 37.0, 50.0)
    seed: int = 0
    durations: tuple[str, ...] = ("5min", "25min")
    reference: str = "25min"
    resolution_mm: float = 12.0

    def __post_init__(self) -> None:
        if self.n_slices < 1 or self.crop < 8:
            raise ValueError(f"dataset.n_slices >= 1 and crop >= 8 needed, got {self}")
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise ValueError(f"dataset.split must be 3 non-negative sizes, got {self.split}")
        if len(self.durations) < 2 or len(set(self.durations)) != len(self.durations):
            raise ValueError(f"dataset.durations must name 2+ distinct kinds, got {self.durations}")
        if self.reference not in self.durations:
            raise ValueError(f"dataset.reference {self.reference!r} not in {self.durations}")


@dataclass
class StudySource:
    """One study to cut: where its volumes are and what is known about it.

    Attributes:
        study_id, patient_id: Identifiers (a patient may have several studies).
        loaders: Kind name -> callable returning ``(volume (X, Y, Z), voxel_mm)``.
        grade_left, grade_right: Visual grades when known.
        labels: Callable returning a label volume (simulated studies), for localization checks.
        origin: Human-readable description of the files (for error messages).
    """

    study_id: str
    patient_id: str
    loaders: dict[str, Any]
    grade_left: int | None = None
    grade_right: int | None = None
    labels: Any = None
    origin: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_nifti(path: str | Path) -> tuple[np.ndarray, float]:
    """A 3D NIfTI volume in RAS+ axes and its isotropic voxel size, for cutting crops.

    Read by :func:`fastdat.io.image.read_image`, so a file stored in any orientation (LPS, a
    mirrored affine) gives the crops its RAS+ copy gives, as ``fastdat denoise`` and
    ``fastdat quantify`` see it.

    Returns:
        ``(volume, voxel_mm)``: ``(X, Y, Z)`` float32 in the file's units, RAS+ axes; voxel (mm).

    Raises:
        FileNotFoundError, ValueError: Unreadable, not 3D, anisotropic voxels or non-finite
            values; the message names the file.
    """
    from fastdat.io.image import read_image

    image = read_image(path)
    voxel = image.isotropic_mm(rtol=1e-3)
    if not np.isfinite(image.data).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    return image.data.astype(np.float32), voxel


def sources_from_simulation(sim_dir: str | Path, kinds: tuple[str, ...]) -> list[StudySource]:
    """Studies of a simulated cohort (``fastdat simulate``), with truth and labels."""
    sim_dir = Path(sim_dir)
    manifest = sim_dir / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: not found; is {sim_dir} a simulated cohort?")
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        loaders = {}
        for k in kinds:
            col = f"recon_{k}"
            if col not in r:
                raise ValueError(f"{manifest}: no column {col!r} for duration {k!r}")
            loaders[k] = partial(load_nifti, sim_dir / r[col])
        loaders["truth"] = partial(load_nifti, sim_dir / r["truth"])
        grade = {
            s: (int(r[f"grade_{s}"]) if r.get(f"grade_{s}", "") != "" else None)
            for s in ("left", "right")
        }
        out.append(
            StudySource(
                study_id=r["study_id"],
                patient_id=r["patient_id"],
                loaders=loaders,
                grade_left=grade["left"],
                grade_right=grade["right"],
                labels=partial(load_nifti, sim_dir / r["labels"]),
                origin=str((sim_dir / "studies" / r["study_id"]).resolve()),
            )
        )
    return out


def sources_from_nifti(root: str | Path, kinds: tuple[str, ...]) -> list[StudySource]:
    """Studies given as NIfTI files: a CSV or a folder of study folders.

    CSV: columns ``study_id``, one per kind (``5min``, ``25min``, ...; paths relative to the CSV),
    optional ``patient_id`` (defaults to the study), ``grade_left``, ``grade_right``, ``truth``,
    ``labels``. Folder: ``ROOT/<study_id>/<kind>.nii[.gz]`` for each kind. The files may store
    their voxels in any orientation: they are read in RAS+ axes (:func:`load_nifti`).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: not found")
    rows: list[dict[str, str]] = []
    if root.is_file():
        with open(root, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "study_id" not in rows[0]:
            raise ValueError(f"{root}: a CSV with a study_id column and one row per study needed")
        base = root.parent
        lacking = [k for k in kinds if k not in rows[0]]
        if lacking:
            raise ValueError(f"{root}: no column for {', '.join(lacking)}")
    else:
        base = root
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            row = {"study_id": d.name}
            for k in (*kinds, "truth", "labels"):
                hits = sorted(d.glob(f"{k}.nii*"))
                if hits:
                    row[k] = str(hits[0].relative_to(root))
            rows.append(row)
        if not rows:
            raise ValueError(f"{root}: no study folders (expected ROOT/<study>/<kind>.nii.gz)")
    out = []
    for r in rows:
        loaders = {k: partial(load_nifti, base / r[k]) for k in (*kinds, "truth") if r.get(k)}
        grades = {
            s: int(r[f"grade_{s}"]) if r.get(f"grade_{s}") else None for s in ("left", "right")
        }
        out.append(
            StudySource(
                study_id=r["study_id"],
                patient_id=r.get("patient_id") or r["study_id"],
                loaders=loaders,
                grade_left=grades["left"],
                grade_right=grades["right"],
                labels=partial(load_nifti, base / r["labels"]) if r.get("labels") else None,
                origin=str(base / r["study_id"])
                if root.is_dir()
                else f"{root} row {r['study_id']}",
            )
        )
    return out


def _worse(src: StudySource) -> int | None:
    g = [x for x in (src.grade_left, src.grade_right) if x is not None]
    return max(g) if g else None


def build_dataset(
    sources: list[StudySource],
    out_dir: str | Path,
    cfg: DatasetConfig,
    source_desc: dict[str, Any],
    splits: dict[str, str] | None = None,
    progress: bool = True,
    skipped: list[dict[str, str]] | None = None,
) -> Path:
    """Cut, split and write a dataset; returns ``out_dir``.

    Studies that cannot be used (unreadable, mismatched geometry, no striatum found) are skipped
    with their reason in ``studies.csv``; the build fails only if nothing usable remains.

    Args:
        sources: Studies to cut.
        out_dir: Dataset directory; an existing complete dataset with the same config and source
            is kept as is, a different one is refused.
        cfg: Dataset config.
        source_desc: What the studies came from (recorded in ``config.yaml``).
        splits: Patient -> split to reuse (e.g. from another dataset's ``splits.json``); drawn
            from ``cfg.split`` and ``cfg.seed`` when ``None``.
        progress: Show a progress bar.
        skipped: Files the source reader already left out (``file``, ``reason``), recorded too.
    """
    out_dir = Path(out_dir)
    resolved = {"dataset": to_dict(cfg), "source": source_desc}
    if (out_dir / "config.yaml").exists():
        old = yaml.safe_load((out_dir / "config.yaml").read_text()) or {}
        if {k: old.get(k) for k in resolved} == resolved:
            log.info("%s is complete with the same config; kept", out_dir)
            return out_dir
        raise FileExistsError(
            f"{out_dir} holds a dataset built with a different config or source; "
            "choose a new --out to keep both"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not a FastDaT dataset; choose a new --out")
    if not sources:
        why = "; ".join(f"{r['file']}: {r['reason']}" for r in (skipped or [])[:5])
        raise ValueError("no studies found to build a dataset from" + (f" ({why})" if why else ""))
    crops: dict[str, list[np.ndarray]] = {}
    index: list[dict[str, Any]] = []
    studies: list[dict[str, Any]] = [
        {
            "study_id": "",
            "patient_id": "",
            "status": "skipped",
            "reason": r["reason"],
            "origin": r["file"],
        }
        for r in skipped or []
    ]
    for src in tqdm(sources, desc="dataset", unit="study", disable=not progress):
        try:
            rec, cut = _cut_study(src, cfg)
        except (ValueError, OSError) as err:
            log.warning("skipped %s (%s): %s", src.study_id, src.origin, err)
            studies.append(
                {
                    "study_id": src.study_id,
                    "patient_id": src.patient_id,
                    "status": "skipped",
                    "reason": str(err),
                    "origin": src.origin,
                }
            )
            continue
        studies.append(
            {
                "study_id": src.study_id,
                "patient_id": src.patient_id,
                "status": "ok",
                "reason": "",
                "origin": src.origin,
                **rec,
            }
        )
        for kind, arr in cut.items():
            crops.setdefault(kind, []).append(arr)
        for r, k in enumerate(rec["slices"]):
            index.append(
                {
                    "study_id": src.study_id,
                    "patient_id": src.patient_id,
                    "slice": k,
                    "slice_rank": r,
                    "grade_left": "" if src.grade_left is None else src.grade_left,
                    "grade_right": "" if src.grade_right is None else src.grade_right,
                }
            )
    ok = [s for s in studies if s["status"] == "ok"]
    if not ok:
        raise ValueError(
            f"no usable study among {len(studies)}: "
            + "; ".join(f"{s['study_id']}: {s['reason']}" for s in studies[:5])
        )
    if splits is None:
        patients = list(dict.fromkeys(s["patient_id"] for s in ok))
        worse = {}
        for src in sources:
            w = _worse(src)
            if w is not None:
                worse[src.patient_id] = max(w, worse.get(src.patient_id, w))
        splits = split_patients(patients, [worse.get(p) for p in patients], cfg.split, cfg.seed)
    missing = sorted({r["patient_id"] for r in index} - set(splits))
    if missing:
        raise ValueError(f"the given splits do not cover patients {missing[:5]}")
    for i, r in enumerate(index):
        r["crop_id"] = i
        r["split"] = splits[r["patient_id"]]
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for kind, arrs in crops.items():
        np.save(tmp / f"crops_{kind}.npy", np.concatenate(arrs).astype(np.float32))
    write_csv(tmp / "index.csv", [{"crop_id": r.pop("crop_id"), **r} for r in index])
    write_csv(tmp / "studies.csv", studies)
    write_json(
        tmp / "splits.json",
        {"seed": cfg.seed, "proportions": list(cfg.split), "patients": splits},
    )
    fingerprint = hashlib.sha256()
    for kind in sorted(crops):
        fingerprint.update((tmp / f"crops_{kind}.npy").read_bytes())
    doc = {
        **resolved,
        "fingerprint": fingerprint.hexdigest(),
        "counts": _counts(index),
        "provenance": provenance(),
    }
    write_yaml(tmp / "config.yaml", doc)
    from fastdat.data.overview import overview

    overview(tmp, tmp / "overview.png")
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(tmp, out_dir)
    return out_dir


def _counts(index: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out = {}
    for s in SPLITS:
        rows = [r for r in index if r["split"] == s]
        out[s] = {"crops": len(rows), "patients": len({r["patient_id"] for r in rows})}
    return out


def _cut_study(
    src: StudySource, cfg: DatasetConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Locate the striata on the reference image and cut every kind at the same place."""
    missing = [k for k in cfg.durations if k not in src.loaders]
    if missing:
        raise ValueError(f"no {', '.join(missing)} image (has {', '.join(src.loaders)})")
    vols = {k: src.loaders[k]() for k in src.loaders}
    ref, vox = vols[cfg.reference]
    for k, (v, vx) in vols.items():
        if v.shape != ref.shape or abs(vx - vox) > 1e-3 * vox:
            raise ValueError(
                f"{k} image geometry {v.shape} at {vx:g} mm differs from {cfg.reference} "
                f"{ref.shape} at {vox:g} mm"
            )
    loc = locate_striata(ref, vox, cfg.n_slices, cfg.crop, cfg.resolution_mm)
    i0, j0 = loc.corner
    sl = list(loc.slices)
    cut = {
        k: np.moveaxis(v[i0 : i0 + cfg.crop, j0 : j0 + cfg.crop, sl], -1, 0)
        for k, (v, _) in vols.items()
    }
    rec: dict[str, Any] = {
        "slices": sl,
        "corner_i": i0,
        "corner_j": j0,
        "centre_i": round(loc.centre[0], 3),
        "centre_j": round(loc.centre[1], 3),
        "fit_yaw_deg": loc.yaw_deg,
        "fit_score": round(loc.score, 4),
        "voxel_mm": vox,
        "shape": "x".join(str(s) for s in ref.shape),
    }
    if src.labels is not None:
        labels, _ = src.labels()
        st = np.isin(labels, (1, 2, 3, 4, 5, 6))[:, :, sl]
        if st.any():
            ii, jj, _ = np.nonzero(st)
            c = np.array([i0, j0]) + (cfg.crop - 1) / 2
            rec["truth_centre_i"] = round(float(ii.mean()), 3)
            rec["truth_centre_j"] = round(float(jj.mean()), 3)
            rec["crop_centre_error_px"] = round(float(np.hypot(*(c - [ii.mean(), jj.mean()]))), 3)
    return rec, cut
