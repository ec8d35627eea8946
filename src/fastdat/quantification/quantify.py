"""``fastdat quantify``: SBRs (and grades) of a site's own reconstructed DaT SPECT images.

Input: a NIfTI file, a DICOM file or series folder, or a folder holding several of them. Every
image is read in RAS+ axes by :mod:`fastdat.io.image` (x from the subject's left to right, y
anterior, z superior), as the dataset builder and ``fastdat denoise`` read it, quantified by
:func:`fastdat.quantification.sbr.quantify_volume` and drawn with its VOIs for a visual check.

``OUT`` receives ``sbr.csv`` (one row per image: ``image, status, reason`` and every SBR; with a
normal database also z-scores and automated grades per side), ``vois/<image>.png`` and
``config.yaml`` (settings, provenance). Images that cannot be quantified are listed with their
reason and the others are still written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.io.image import Image, is_nifti, read_image, read_series, scan_folder
from fastdat.quantification.sbr import (
    OCCIPITAL,
    SIDES,
    NoStriatumError,
    QuantConfig,
    quantify_volume,
)

log = logging.getLogger(__name__)


def _voi_input(image: Image) -> tuple[np.ndarray, float]:
    """``(volume (X, Y, Z) RAS+, voxel_mm)`` of an image, whose voxels must be cubic for the VOI
    template (1 % tolerance)."""
    return image.data, image.isotropic_mm(rtol=1e-2, why="for the VOI template")


def find_images(path: str | Path) -> tuple[list[tuple[str, Callable]], list[dict[str, str]]]:
    """The images under ``path`` and the files left out.

    Args:
        path: A NIfTI file, a DICOM file, or a folder searched for NIfTI files and DICOM series.

    Returns:
        ``(images, skipped)``: ``(name, loader)`` pairs, ``loader() -> (volume, voxel_mm)`` with
        the volume ``(X, Y, Z)`` float64 in RAS+ axes (:func:`fastdat.io.image.read_image`) and
        its isotropic voxel size (mm); and the files the DICOM scan left out (``file``,
        ``reason``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    images: list[tuple[str, Callable]] = []
    skipped: list[dict[str, str]] = []
    if path.is_file() and is_nifti(path):
        return [(path.name, lambda p=path: _voi_input(read_image(p)))], skipped
    niftis = (
        sorted(p for p in path.rglob("*") if p.is_file() and is_nifti(p)) if path.is_dir() else []
    )
    images += [(str(p.relative_to(path)), lambda p=p: _voi_input(read_image(p))) for p in niftis]
    series, skipped = scan_folder(path if path.is_dir() else path.parent)
    if path.is_file():
        series = [s for s in series if path.resolve() in {Path(f).resolve() for f in s.files}]
    for s in series:
        folder = Path(s.files[0]).parent.name
        name = f"{folder}/{s.series_uid}" if len(series) > 1 else folder
        images.append((name, lambda s=s: _voi_input(read_series(s))))
    skipped = [r for r in skipped if not is_nifti(Path(r["file"]))]
    if not images:
        raise ValueError(f"{path}: no NIfTI image or NM DICOM series found")
    return images, skipped


def quantify_images(
    path: str | Path,
    out_dir: str | Path,
    cfg: QuantConfig | None = None,
    normals: str | Path | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Quantify every image under ``path`` into ``out_dir``.

    Args:
        path: A NIfTI file, DICOM file or folder, or a folder of them.
        out_dir: Output folder (must not already hold an ``sbr.csv``).
        cfg: VOI settings.
        normals: A normal database JSON (``normals.json`` of a study's ``eval/quant``, or one in
            that format, optionally with a grading ``rule``) for z-scores and grades.

    Returns:
        ``(sbr.csv path, rows)``; rows of images that failed have ``status == "error"``.
    """
    import json

    from fastdat.config import provenance
    from fastdat.io.atomic import write_csv, write_yaml
    from fastdat.quantification.grading import GradingRule, NormalDatabase

    cfg = cfg or QuantConfig()
    out = Path(out_dir)
    if (out / "sbr.csv").exists():
        raise FileExistsError(f"{out / 'sbr.csv'} exists; choose another --out (never overwritten)")
    db = rule = None
    if normals is not None:
        doc = json.loads(Path(normals).read_text())
        try:
            db = NormalDatabase.from_dict(doc)
            rule = GradingRule(**doc["rule"]) if "rule" in doc else GradingRule()
        except (ValueError, TypeError) as err:
            raise ValueError(f"{normals}: {err}") from err
    images, skipped = find_images(path)
    (out / "vois").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name, loader in images:
        row: dict[str, Any] = {"image": name, "status": "ok", "reason": ""}
        try:
            vol, vox = loader()
            values, vois = quantify_volume(vol, vox, cfg)
        except (NoStriatumError, ValueError, OSError) as err:
            row.update(status="error", reason=str(err))
            log.error("%s: %s", name, err)
            rows.append(row)
            continue
        row["voxel_mm"] = vox
        row.update(values)
        if db is not None:
            for side in SIDES:
                z = db.zscores(values, side)
                row[f"z_putamen_{side}"], row[f"z_caudate_{side}"] = z["putamen"], z["caudate"]
                row[f"grade_{side}"] = int(rule.grade(z["putamen"], z["caudate"]))
        _voi_figure(vol, vois, out / "vois" / (name.replace("/", "_") + ".png"), name)
        rows.append(row)
    rows += [{"image": r["file"], "status": "skipped", "reason": r["reason"]} for r in skipped]
    write_csv(out / "sbr.csv", rows)
    doc = {
        "quantify": asdict(cfg),
        "input": str(path),
        "normals": str(normals) if normals else None,
    }
    doc.update(provenance())
    write_yaml(out / "config.yaml", doc)
    return out / "sbr.csv", rows


def _voi_window(volume: np.ndarray, vois) -> float:
    """Top of the display window of :func:`_voi_figure`: the maximum inside the drawn VOIs.

    Readers window DaT SPECT to the striatal maximum, so that the shape of the striata and their
    contrast to the background are seen without clipping. The former window, the 99.9th
    percentile of the whole volume, depended on the field of view, not on the anatomy: its
    hottest 0.1 % (about 1600 voxels of a 128 x 128 x 96 grid) is more than a normal striatum
    holds, so 30-60 % of the striatal voxels were clipped into a flat blob; in a grade-3 scan it
    fell to the brain background, saturating the residual striatum and much of the brain. The
    maximum over the striatal, Southampton and occipital VOIs is the striatal peak in a normal
    scan and, where striatal uptake has fallen to background, the brain's own level, so neither
    kind saturates; hot spots outside the VOIs (scatter outside the head, extracerebral uptake,
    a stray voxel at the edge of the field) do not set it.
    """
    mask = np.isin(vois.labels, (1, 2, 3, 4, 5, 6, OCCIPITAL))
    for side in SIDES:
        mask |= vois.southampton[side]
    values = np.asarray(volume)[mask] if mask.any() else np.asarray(volume)
    top = float(np.nanmax(values)) if values.size else 0.0
    return top if np.isfinite(top) and top > 0 else 1.0


def _voi_figure(volume: np.ndarray, vois, path: Path, title: str) -> None:
    """Three transaxial slices through the striata and one through the occipital reference, with
    the VOI outlines (visual QC); radiological view, one window (see :func:`_voi_window`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastdat.plotting import add_colorbar, save_figure, show_transaxial

    lab = vois.labels
    z = np.nonzero(np.isin(lab, range(1, 7)).sum((0, 1)))[0]
    zo = np.nonzero((lab == OCCIPITAL).sum((0, 1)))[0]
    slices = [int(z[len(z) // 4]), int(z[len(z) // 2]), int(z[3 * len(z) // 4]), int(np.median(zo))]
    names = ["striatum", "striatum", "striatum", "occipital reference"]
    fig, axes = plt.subplots(
        1, len(slices), figsize=(3.0 * len(slices) + 1.0, 3.6), layout="constrained"
    )
    vmax = _voi_window(volume, vois)
    im = None
    for ax, k, name in zip(axes, slices, names, strict=True):
        im = show_transaxial(ax, volume[:, :, k], vmax, f"slice {k} ({name})", fontsize=8)
        for ids, colour in (
            ((1, 2), "cyan"),
            ((3, 4), "lime"),
            ((5, 6), "yellow"),
            ((OCCIPITAL,), "white"),
        ):
            m = np.isin(lab[:, :, k], ids).T.astype(float)
            if m.any():
                ax.contour(m, levels=[0.5], colors=colour, linewidths=0.8)
        for side in SIDES:
            m = vois.southampton[side][:, :, k].T.astype(float)
            if m.any():
                ax.contour(m, levels=[0.5], colors="magenta", linewidths=0.6, linestyles="--")
    add_colorbar(im, ax=list(axes), unit="image value (input units)", fontsize=7)
    fig.suptitle(
        f"{title}: caudate cyan, anterior / posterior putamen green / yellow, occipital white, "
        "Southampton dashed.\nWindow 0 to the maximum inside the VOIs; radiological view "
        "(R = patient's right).",
        fontsize=8,
    )
    save_figure(fig, path)
