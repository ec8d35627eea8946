"""Realism checks and the montage of a simulated cohort.

The realism check applies the paper's protocol to the simulated pairs: the 5 transaxial slices
through the striatal maximum, cropped to 64 x 64 around the striata (here located from the truth
labels), raw 5-min vs 25-min PSNR / SSIM with FastDaT's one image-quality convention; and the 25-min
specific binding ratio per hemisphere with the label VOIs and the occipital reference. Volumes
are read in RAS+ axes by :func:`fastdat.io.image.read_image`, as every other stage reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdat.anatomy.labels import label_sbr
from fastdat.io.atomic import write_csv, write_json
from fastdat.metrics import psnr, ssim

STRIATAL_LABELS = (1, 2, 3, 4, 5, 6)
SBR_KEYS = tuple(f"{r}_{s}" for s in ("left", "right") for r in ("caudate", "putamen", "striatum"))


def striatal_crop(
    labels: np.ndarray, n_slices: int = 5, size: int = 64
) -> tuple[list[int], int, int]:
    """Slices and crop corner around the striata of a label volume ``(X, Y, Z)``.

    Returns:
        ``(slices, i0, j0)``: the ``n_slices`` axial slices centred on the slice with the most
        striatal voxels, and the corner of the ``size x size`` crop centred on their centroid
        (clamped inside the image).
    """
    striatum = np.isin(labels, STRIATAL_LABELS)
    if not striatum.any():
        raise ValueError("label map has no striatal voxels (labels 1-6)")
    nx, ny, nz = labels.shape
    if size > min(nx, ny) or n_slices > nz:
        raise ValueError(f"crop {size} x {size} x {n_slices} does not fit image {labels.shape}")
    k = int(np.argmax(striatum.sum((0, 1))))
    k0 = min(max(k - n_slices // 2, 0), nz - n_slices)
    slices = list(range(k0, k0 + n_slices))
    ii, jj, _ = np.nonzero(striatum[:, :, slices])
    i0 = min(max(round(ii.mean()) - size // 2, 0), nx - size)
    j0 = min(max(round(jj.mean()) - size // 2, 0), ny - size)
    return slices, int(i0), int(j0)


def crops(volume: np.ndarray, slices: list[int], i0: int, j0: int, size: int = 64) -> np.ndarray:
    """``(n_slices, size, size)`` crops of ``(X, Y, Z)``; axis 1 is x, axis 2 is y."""
    return np.moveaxis(volume[i0 : i0 + size, j0 : j0 + size, slices], -1, 0)


def _load(path: Path) -> np.ndarray:
    """A cohort volume ``(X, Y, Z)`` float64 in RAS+ axes (:func:`fastdat.io.image.read_image`)."""
    from fastdat.io.image import read_image

    return read_image(path).data


def realism_report(out_dir: str | Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-study PSNR / SSIM (5 vs 25 min, 64 x 64 striatal crops) and SBR; writes
    ``realism.csv`` and ``realism.json`` in ``out_dir`` and returns the summary."""
    out_dir = Path(out_dir)
    per_study = []
    for row in rows:
        labels = _load(out_dir / row["labels"])
        r25 = _load(out_dir / row["recon_25min"])
        r5 = _load(out_dir / row["recon_5min"])
        size = min(64, labels.shape[0], labels.shape[1])  # tiny test grids get smaller crops
        slices, i0, j0 = striatal_crop(labels, size=size)
        a = torch.from_numpy(crops(r5, slices, i0, j0, size))
        b = torch.from_numpy(crops(r25, slices, i0, j0, size))
        rec = {
            "study_id": row["study_id"],
            "grade_left": int(row["grade_left"]),
            "grade_right": int(row["grade_right"]),
            "psnr_5_vs_25": float(psnr(a, b).mean()),
            "ssim_5_vs_25": float(ssim(a, b).mean()),
        }
        sbr = label_sbr(r25, labels)
        rec.update({f"sbr25_{k}": sbr[k] for k in SBR_KEYS})
        per_study.append(rec)
    write_csv(out_dir / "realism.csv", per_study)
    summary = summarize(per_study)
    write_json(out_dir / "realism.json", summary)
    return summary


def summarize(per_study: list[dict[str, Any]]) -> dict[str, Any]:
    """Means / SDs of PSNR and SSIM, and 25-min SBR per hemisphere grade."""
    p = np.array([r["psnr_5_vs_25"] for r in per_study])
    s = np.array([r["ssim_5_vs_25"] for r in per_study])
    worse = np.array([max(r["grade_left"], r["grade_right"]) for r in per_study])
    out: dict[str, Any] = {
        "n_studies": len(per_study),
        "psnr_5_vs_25": {"mean": float(p.mean()), "sd": float(p.std(ddof=0))},
        "ssim_5_vs_25": {"mean": float(s.mean()), "sd": float(s.std(ddof=0))},
        "paper_implied": {"psnr": 30.9, "ssim": 0.71},
        "by_worse_grade": {},
        "sbr25_by_hemisphere_grade": {},
    }
    for g in range(4):
        m = worse == g
        if m.any():
            out["by_worse_grade"][str(g)] = {
                "n": int(m.sum()),
                "psnr": float(p[m].mean()),
                "ssim": float(s[m].mean()),
            }
        vals: dict[str, list[float]] = {"caudate": [], "putamen": [], "striatum": []}
        for r in per_study:
            for side in ("left", "right"):
                if r[f"grade_{side}"] == g:
                    for k in vals:
                        vals[k].append(r[f"sbr25_{k}_{side}"])
        if vals["caudate"]:
            out["sbr25_by_hemisphere_grade"][str(g)] = {
                "n_hemispheres": len(vals["caudate"]),
                **{k: {"mean": float(np.mean(v)), "sd": float(np.std(v))} for k, v in vals.items()},
            }
    return out


def montage(out_dir: str | Path, rows: list[dict[str, Any]], path: str | Path) -> Path:
    """PNG: one study per worse grade (rows); truth, 25-min and 5-min central striatal slice.

    Images are shown in radiological convention (patient's right on the viewer's left, anterior
    up, ``R`` / ``L`` / ``A`` letters). The 25-min and 5-min images share one window per row, 0 to
    the 25-min crop maximum, with one colour bar (counts / s per voxel); the truth (relative
    activity, arbitrary units) has its own window and colour bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastdat.plotting import add_colorbar, save_figure, show_transaxial

    out_dir = Path(out_dir)
    chosen = []
    for g in range(4):
        match = [r for r in rows if max(int(r["grade_left"]), int(r["grade_right"])) == g]
        if match:
            chosen.append(match[0])
    fs = 8
    # columns: truth, its colour bar, a gap, 25 min, 5 min, their colour bar
    ratios = [1.0, 0.06, 0.1, 1.0, 1.0, 0.06]
    fig = plt.figure(figsize=(8.2, 0.6 + 2.35 * len(chosen)), layout="constrained")
    gs = fig.add_gridspec(max(len(chosen), 1), len(ratios), width_ratios=ratios)
    for r, row in enumerate(chosen):
        labels = _load(out_dir / row["labels"])
        size = min(64, labels.shape[0], labels.shape[1])
        slices, i0, j0 = striatal_crop(labels, size=size)
        k = slices[len(slices) // 2]
        imgs = {
            key: crops(_load(out_dir / row[key]), [k], i0, j0, size)[0]
            for key in ("truth", "recon_25min", "recon_5min")
        }
        vmax = float(imgs["recon_25min"].max()) or 1.0
        for col, key, title, cbar_col, unit in (
            (0, "truth", "truth", 1, "activity (a.u.)"),
            (3, "recon_25min", "25 min", None, None),
            (4, "recon_5min", "5 min", 5, "counts / s"),
        ):
            ax = fig.add_subplot(gs[r, col])
            top = (float(imgs[key].max()) or 1.0) if key == "truth" else vmax
            im = show_transaxial(ax, imgs[key], top, title if r == 0 else "", fontsize=fs + 1)
            if col == 0:
                ax.set_ylabel(
                    f"{row['study_id']}\ngrade L{row['grade_left']} / R{row['grade_right']}",
                    fontsize=fs + 1,
                )
            if cbar_col is not None:
                add_colorbar(im, cax=fig.add_subplot(gs[r, cbar_col]), unit=unit, fontsize=fs)
    fig.suptitle(
        "Central striatal slice, one study per worse grade. 25 and 5 min share each row's window\n"
        "(0 to the 25-min maximum); truth on its own. Radiological view: R = patient's right.",
        fontsize=fs,
    )
    return save_figure(fig, path, dpi=110)


def realism_line(cohort_dir: str | Path) -> str | None:
    """One line of a cohort's realism summary (``realism.json``) beside the paper's values, or
    ``None`` when the cohort has none."""
    import json

    path = Path(cohort_dir) / "realism.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    return (
        f"5-min vs 25-min (64 x 64 striatal crops): PSNR {r['psnr_5_vs_25']['mean']:.2f} dB, "
        f"SSIM {r['ssim_5_vs_25']['mean']:.3f} (paper: 30.9 dB, 0.71); "
        f"montage: {Path(cohort_dir) / 'montage.png'}"
    )
