"""A site's DICOM exports as dataset studies: walk, recognise, group, pair, check geometry.

Every file under ``ROOT`` is read once, header only (:func:`fastdat.io.image.scan_folder`).
Files that are not reconstructed NM tomograms (another modality, planar or
projection data, no pixel data, not DICOM at all) are reported with their reason and left out. The
rest are grouped by patient, study and series; a series is a multi-frame NM object (frames = slices)
or a stack of single-slice objects. Series of the same study are paired by acquisition duration
(:func:`fastdat.io.dicom.acquisition_duration_s`: Actual Frame Duration x views, Acquisition
Duration, or minutes in the Series Description), or by a CSV the user supplies (``study_uid,
series_uid, kind``). The series of the reference kind defines the geometry; the others are resampled
onto it (trilinear) when their orientation matches and their fields of view overlap, and refused
with the reason otherwise. Series are read by :func:`fastdat.io.image.read_series`, in RAS+ axes
like every other reader of images.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.data.dataset import StudySource
from fastdat.io.dicom import DicomInputError, Series
from fastdat.io.image import Image, read_series, scan_folder

log = logging.getLogger(__name__)


def _kind(duration_s: float | None, kinds: tuple[str, ...]) -> str | None:
    """The kind (``"5min"``...) whose duration is within 15 % of ``duration_s``."""
    if duration_s is None:
        return None
    for k in kinds:
        try:
            minutes = float(k.removesuffix("min"))
        except ValueError:
            continue
        if abs(duration_s / 60.0 - minutes) <= 0.15 * minutes:
            return k
    return None


def _read_pairs(path: str | Path) -> dict[str, str]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"series_uid", "kind"} <= set(rows[0]):
        raise ValueError(f"{path}: a CSV with columns series_uid, kind (and study_uid) needed")
    return {r["series_uid"]: r["kind"] for r in rows}


def _resampled(src: tuple[np.ndarray, np.ndarray], ref_aff: np.ndarray, shape, path) -> np.ndarray:
    """Resample ``src`` (volume, affine) onto the reference grid (trilinear, zero outside)."""
    from scipy import ndimage

    vol, aff = src
    if np.allclose(aff, ref_aff, atol=1e-3) and vol.shape == tuple(shape):
        return vol
    dir_ref = ref_aff[:3, :3] / np.linalg.norm(ref_aff[:3, :3], axis=0)
    dir_src = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    if not np.allclose(dir_ref, dir_src, atol=1e-2):
        raise DicomInputError(path, "orientation differs from the reference series of the study")
    m = np.linalg.inv(aff) @ ref_aff  # reference voxel -> source voxel
    corners = (
        np.array(
            [
                [i, j, k, 1]
                for i in (0, shape[0] - 1)
                for j in (0, shape[1] - 1)
                for k in (0, shape[2] - 1)
            ]
        )
        @ m.T
    )
    lo, hi = corners[:, :3].min(0), corners[:, :3].max(0)
    overlap = np.prod(np.clip(np.minimum(hi, np.array(vol.shape) - 1) - np.maximum(lo, 0), 0, None))
    if overlap < 0.5 * np.prod(hi - lo):
        raise DicomInputError(path, "field of view overlaps the reference series by less than half")
    return ndimage.affine_transform(
        vol, m[:3, :3], m[:3, 3], output_shape=tuple(shape), order=1, mode="constant", cval=0.0
    ).astype(np.float32)


def sources_from_dicom(
    root: str | Path,
    kinds: tuple[str, ...],
    reference: str | None = None,
    pairs_csv: str | Path | None = None,
) -> tuple[list[StudySource], list[dict[str, str]]]:
    """Studies found under ``root`` and the files / series left out (with reasons)."""
    series, skipped = scan_folder(root)
    by_uid = _read_pairs(pairs_csv) if pairs_csv else {}
    reference = reference or max(kinds, key=lambda k: _minutes(k))
    studies: dict[str, dict[str, Series]] = defaultdict(dict)
    for s in series:
        kind = by_uid.get(s.series_uid) or _kind(s.duration_s, kinds)
        if kind is None:
            d = "unknown" if s.duration_s is None else f"{s.duration_s / 60:.3g} min"
            skipped.append(
                {
                    "file": str(s.files[0]),
                    "reason": f"series {s.series_uid}: duration "
                    f"{d} matches none of {', '.join(kinds)} (give --pairs)",
                }
            )
            continue
        if kind in studies[s.study_uid]:
            skipped.append(
                {
                    "file": str(s.files[0]),
                    "reason": f"second {kind} series in study "
                    f"{s.study_uid} (give --pairs to choose)",
                }
            )
            continue
        studies[s.study_uid][kind] = s
    out = []
    for study_uid, members in studies.items():
        first = next(iter(members.values()))
        out.append(
            StudySource(
                study_id=study_uid,
                patient_id=first.patient_id,
                loaders=_loaders(members, reference),
                origin=str(first.files[0].parent),
            )
        )
    return out, skipped


def _minutes(kind: str) -> float:
    try:
        return float(kind.removesuffix("min"))
    except ValueError:
        return -1.0


def _loaders(members: dict[str, Series], reference: str) -> dict[str, Any]:
    """Kind -> loader of ``(volume (X, Y, Z) float32 RAS+, voxel_mm)`` on the reference grid."""
    cache: dict[str, Image] = {}

    def image(kind: str) -> Image:
        if kind not in cache:
            cache[kind] = read_series(members[kind])
        return cache[kind]

    def load(kind: str):
        def fn() -> tuple[np.ndarray, float]:
            ref_kind = reference if reference in members else kind
            ref = image(ref_kind)
            vox = ref.isotropic_mm(rtol=1e-3)
            if kind == ref_kind:
                return ref.data.astype(np.float32), vox
            other = image(kind)
            vol = _resampled(
                (other.data.astype(np.float32), other.affine),
                ref.affine,
                ref.shape,
                members[kind].files[0],
            )
            return vol, vox

        return fn

    return {k: load(k) for k in members}
