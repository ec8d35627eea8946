"""Overviews of a dataset: the PNG (the middle crop of one study per grade, every image kind) and
the text summary printed after a build (crops and patients per split, studies left out)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def overview(ds_dir: str | Path, path: str | Path, max_rows: int = 4) -> Path:
    """Write ``path``: rows are studies (one per worse grade when grades are known), columns the
    image kinds; radiological convention (patient's right on the left), anterior up. Each row is
    scaled to its longest acquisition's maximum (truth to its own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastdat.data.load import load_crops
    from fastdat.plotting import save_figure, show_transaxial

    ds_dir = Path(ds_dir)
    crops, index = load_crops(ds_dir)
    kinds = sorted(crops, key=_kind_order)
    middle = index[index["slice_rank"] == index["slice_rank"].max() // 2]
    chosen = []
    worse = middle[["grade_left", "grade_right"]].apply(_worse_grade, axis=1)
    for g in sorted(set(worse.dropna())) or [None]:
        rows = middle if g is None else middle[worse == g]
        chosen.append(rows.iloc[0])
    chosen = chosen[:max_rows] or [middle.iloc[0]]
    fig, axes = plt.subplots(
        len(chosen), len(kinds), figsize=(2.4 * len(kinds), 2.5 * len(chosen)), squeeze=False
    )
    scale_kind = [k for k in kinds if k != "truth"][-1]
    for ax_row, row in zip(axes, chosen, strict=True):
        i = int(row["crop_id"])
        vmax = float(crops[scale_kind][i].max()) or 1.0
        for ax, kind in zip(ax_row, kinds, strict=True):
            img = crops[kind][i]
            top = (float(img.max()) or 1.0) if kind == "truth" else vmax
            title = f"{row['study_id']} {kind} (grades {row['grade_left']}/{row['grade_right']})"
            show_transaxial(ax, img, top, title)
    fig.tight_layout()
    return save_figure(fig, path)


def _kind_order(kind: str) -> tuple[int, float]:
    if kind.endswith("min"):
        try:
            return (0, float(kind[:-3]))
        except ValueError:
            pass
    return (1, 0.0)


def _worse_grade(row) -> float:
    vals = [v for v in row if v == v and v != ""]
    return float(max(vals)) if vals else np.nan


def read_studies(ds_dir: str | Path) -> list[dict[str, str]]:
    """The rows of a dataset's ``studies.csv`` (one per study found: status, reason, origin...)."""
    with open(Path(ds_dir) / "studies.csv", newline="") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class DatasetSummary:
    """What a built dataset holds, for the summary ``fastdat dataset build`` prints.

    Attributes:
        counts: Per split (index), the number of ``crops`` and distinct ``patients``.
        skipped: The ``studies.csv`` rows of studies left out (status other than ``ok``).
        n_used: Studies cut into crops.
    """

    counts: pd.DataFrame
    skipped: list[dict[str, str]]
    n_used: int


def summarize_dataset(ds_dir: str | Path, n_slices: int) -> DatasetSummary:
    """Crops and patients per split, and the studies left out, of the dataset in ``ds_dir``.

    Args:
        ds_dir: Dataset directory.
        n_slices: Slices (crops) per study (``DatasetConfig.n_slices``).
    """
    from fastdat.data.load import load_crops

    _, index = load_crops(ds_dir, mmap=True)
    counts = index.groupby("split").agg(
        crops=("crop_id", "size"), patients=("patient_id", "nunique")
    )
    skipped = [r for r in read_studies(ds_dir) if r["status"] != "ok"]
    return DatasetSummary(counts, skipped, len(index) // n_slices)
