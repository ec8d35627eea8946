"""Measure one study at every duration with every method: image quality, SBR, observer patches.

For a test study the crop column (the dataset's in-plane crop over all slices) of each
duration's reconstruction is restored once per method (a volume network restores the head's
box of the whole volume, as ``fastdat denoise`` does, and its crop column is cut from that:
:func:`fastdat.methods.predict_in_box`), and that one restoration gives:

- image quality on the dataset's crop slices, against the noise-free reconstruction and against
  the 25-min image (:mod:`fastdat.metrics`, mean over the slices);
- SBR in **fixed VOIs**: :func:`fastdat.quantification.sbr.place_vois` once per subject, on its
  noise-free reconstruction, and :func:`~fastdat.quantification.sbr.measure_sbr` in those VOIs
  for every image of the subject. SBR differences between durations and methods are then the
  images' noise and bias, not where a fit put the VOIs (``fastdat quantify`` fits VOIs per image,
  2-6 s each; the sweep's ~10^4 images would take a day);
- one observer patch per striatum (:class:`~fastdat.sweep.config.ObserverConfig`).

Non-test studies only give their 25-min image's SBR (the normal database and grading rule of the
automated grading, as in the evaluation). Each study's results are one ``.npz`` in the sweep's
``measure/`` folder, written atomically, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdat.anatomy.labels import SIDES, side_labels
from fastdat.evaluation.evaluate import crop_column as slab
from fastdat.evaluation.sbr_study import truth_values
from fastdat.io.atomic import write_bytes
from fastdat.methods import Method, head_box, predict_in_box, restores_volumes
from fastdat.metrics import psnr, ssim
from fastdat.quantification.sbr import NoStriatumError, QuantConfig, measure_sbr, place_vois
from fastdat.sweep.config import MEASURES, ObserverConfig, kind

NOISE_FREE = "noisefree"
SBR_KEYS = tuple(f"{m}_{s}" for m in MEASURES for s in SIDES)


def patch_centres(labels: np.ndarray, slices: np.ndarray) -> dict[str, tuple[int, int]]:
    """In-plane centroid (voxels, rounded) of each side's posterior putamen over ``slices``."""
    out = {}
    for side in SIDES:
        mask = np.isin(labels[:, :, slices], side_labels("putamen_posterior", side)).any(-1)
        if not mask.any():
            raise ValueError(f"no {side} posterior putamen in the labels' crop slices")
        ii, jj = np.nonzero(mask)
        out[side] = (int(round(ii.mean())), int(round(jj.mean())))
    return out


def patches(
    image: np.ndarray, slices: np.ndarray, centres: dict[str, tuple[int, int]], size: int
) -> np.ndarray:
    """Observer patches ``(2, size, size)`` float32 (left, right): the sum of ``slices`` of
    ``image`` ``(X, Y, Z)``, a square around each centre (zero outside the image), the left
    one mirrored along x so that both sides face the same way."""
    plane = image[:, :, slices].sum(-1)
    pad = size
    padded = np.pad(plane, pad)
    out = np.empty((2, size, size), np.float32)
    for k, side in enumerate(SIDES):
        ci, cj = centres[side]
        i0, j0 = ci - size // 2 + pad, cj - size // 2 + pad
        p = padded[i0 : i0 + size, j0 : j0 + size]
        out[k] = p[::-1] if side == "left" else p
    return out


def _iq(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Mean PSNR and SSIM over slices ``(n, H, W)``."""
    p, r = torch.from_numpy(pred).double(), torch.from_numpy(ref).double()
    return float(psnr(p, r).mean()), float(ssim(p, r).mean())


def _sbr(image: np.ndarray, vois, vox: float, qcfg: QuantConfig) -> dict[str, float]:
    try:
        values = measure_sbr(image, vois, vox, qcfg)
    except ValueError:  # no striatum above the reference, or no positive reference at all
        return dict.fromkeys(SBR_KEYS, float("nan"))
    return {k: float(values[k]) for k in SBR_KEYS}


def measure_study(
    src,
    split: str,
    corner: tuple[int, int],
    slices: np.ndarray,
    methods: dict[float, list[Method]],
    reference_duration: float,
    size: int,
    qcfg: QuantConfig,
    observer: ObserverConfig,
) -> dict[str, Any]:
    """All measurements of one study.

    Args:
        src: The study (:class:`~fastdat.data.dataset.StudySource` with loaders of every
            duration's kind and ``noisefree``).
        split: Its split; only ``test`` studies are restored.
        corner: In-plane crop corner (voxels). slices: The dataset's crop slices.
        methods: Duration (minutes) -> the methods applied to that duration's image.
        reference_duration: The 25-min protocol (minutes).
        size: Crop side (voxels).
        qcfg: VOI settings. observer: Patch settings.

    Returns:
        ``{"rows": [...], "patches": float32 (n_rows, 2, P, P) or None, "failure": str or
        None}``; one row per (duration, method) with ``psnr_nf, ssim_nf, psnr_25, ssim_25``,
        the SBRs ``<measure>_<side>`` and ``restore_s`` (seconds the restoration took), plus a
        ``noisefree`` and a ``truth`` row.
    """
    i0, j0 = corner
    nf, vox = src.loaders[NOISE_FREE]()
    nf_slab = slab(nf, i0, j0, size)
    base = {
        "study_id": src.study_id,
        "patient_id": src.patient_id,
        "split": split,
        "grade_left": src.grade_left,
        "grade_right": src.grade_right,
    }
    try:
        vois = place_vois(nf_slab, float(vox), qcfg)
    except NoStriatumError as err:
        return {"rows": [], "patches": None, "failure": f"noise-free image: {err}"}
    long_slab = slab(src.loaders[kind(reference_duration)]()[0], i0, j0, size)
    rows = [{**base, "method": NOISE_FREE, "kind": "reference", "duration_min": np.nan}]
    rows[0].update(_sbr(nf_slab, vois, vox, qcfg))
    if split != "test":
        rows.append(
            {**base, "method": "osem", "kind": "raw", "duration_min": reference_duration}
            | _sbr(long_slab, vois, vox, qcfg)
        )
        return {"rows": rows, "patches": None, "failure": None}
    truth, _ = src.loaders["truth"]()
    labels, _ = src.labels()
    tv = truth_values(truth, labels)
    rows.append(
        {**base, "method": "truth", "kind": "reference", "duration_min": np.nan}
        | {k: float(tv[k]) if k in tv else np.nan for k in SBR_KEYS}
    )
    centres = patch_centres(slab(labels, i0, j0, size), slices)
    ref_nf = np.moveaxis(nf_slab[:, :, slices], -1, 0)
    ref_25 = np.moveaxis(long_slab[:, :, slices], -1, 0)
    out_patches = [
        patches(v, slices, centres, observer.patch_px) for v in (nf_slab, slab(truth, i0, j0, size))
    ]
    for d, ms in methods.items():
        full = src.loaders[kind(d)]()[0]
        x = slab(full, i0, j0, size)
        for m in ms:
            t0 = time.perf_counter()
            if m.kind == "network" and restores_volumes(m.model):
                # as fastdat denoise restores it: the head's box of the whole volume
                whole, _ = predict_in_box(m.model, full, head_box(full), m.scan_minutes, m.device)
                y = slab(whole, i0, j0, size)
            else:
                y = m.apply_volume(x)
            seconds = time.perf_counter() - t0
            crops = np.moveaxis(y[:, :, slices], -1, 0)
            p_nf, s_nf = _iq(crops, ref_nf)
            p_25, s_25 = _iq(crops, ref_25)
            rec = {**base, "method": m.name, "kind": m.kind, "duration_min": float(d)}
            rec.update({"psnr_nf": p_nf, "ssim_nf": s_nf, "psnr_25": p_25, "ssim_25": s_25})
            rec["restore_s"] = seconds
            rec.update(_sbr(y, vois, vox, qcfg))
            rows.append(rec)
            out_patches.append(patches(y, slices, centres, observer.patch_px))
    return {"rows": rows, "patches": np.stack(out_patches), "failure": None}


def save(path: Path, result: dict[str, Any]) -> None:
    """Write a :func:`measure_study` result as one ``.npz`` (atomically)."""
    buf = io.BytesIO()
    arrays = {"rows": np.array(json.dumps(result["rows"], default=float))}
    arrays["failure"] = np.array(result["failure"] or "")
    if result["patches"] is not None:
        arrays["patches"] = result["patches"]
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load(path: Path) -> dict[str, Any]:
    """Read what :func:`save` wrote."""
    with np.load(path) as z:
        return {
            "rows": json.loads(str(z["rows"])),
            "patches": z["patches"] if "patches" in z.files else None,
            "failure": str(z["failure"]) or None,
        }


def measure_precision_study(
    src,
    corner: tuple[int, int],
    methods: dict[float, list[Method]],
    replicates: int,
    size: int,
    qcfg: QuantConfig,
) -> dict[str, Any]:
    """SBR of every noise realization (the scan and its ``replicates`` further scans) of one
    study of a precision cohort, per duration and method, in fixed VOIs (placed on its
    noise-free reconstruction).

    Returns:
        ``{"rows": [...], "patches": None, "failure": str or None}``; one row per (duration,
        method, realization) with the SBRs ``<measure>_<side>``.
    """
    i0, j0 = corner
    nf, vox = src.loaders[NOISE_FREE]()
    base = {"study_id": src.study_id, "patient_id": src.patient_id, "split": "precision"}
    try:
        vois = place_vois(slab(nf, i0, j0, size), float(vox), qcfg)
    except NoStriatumError as err:
        return {"rows": [], "patches": None, "failure": f"noise-free image: {err}"}
    rows = []
    for d, ms in methods.items():
        names = [kind(d)] + [f"{kind(d)}_r{r + 1}" for r in range(replicates)]
        for r, name in enumerate(names):
            x = slab(src.loaders[name]()[0], i0, j0, size)
            for m in ms:
                rec = {**base, "method": m.name, "kind": m.kind, "duration_min": float(d)}
                rows.append(rec | {"realization": r} | _sbr(m.apply_volume(x), vois, vox, qcfg))
    return {"rows": rows, "patches": None, "failure": None}
