"""Read a dataset built by :func:`fastdat.data.dataset.build_dataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_crops(ds_dir: str | Path, mmap: bool = False):
    """Crops and index of a dataset.

    Args:
        ds_dir: Dataset directory.
        mmap: Memory-map the arrays instead of reading them.

    Returns:
        ``(crops, index)``: a dict kind -> float32 array ``(N, crop, crop)`` (kinds such as
        ``"5min"``, ``"25min"``, ``"truth"``) and a pandas DataFrame with one row per crop
        (``crop_id`` = row in every array, ``study_id``, ``patient_id``, ``split``, ``slice``,
        ``slice_rank``, ``grade_left``, ``grade_right``).
    """
    import pandas as pd

    ds_dir = Path(ds_dir)
    index_path = ds_dir / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(f"{ds_dir}: not a FastDaT dataset (no index.csv)")
    index = pd.read_csv(index_path, dtype={"study_id": str, "patient_id": str})
    crops = {}
    for path in sorted(ds_dir.glob("crops_*.npy")):
        arr = np.load(path, mmap_mode="r" if mmap else None)
        if arr.ndim != 3 or arr.shape[0] != len(index):
            raise ValueError(f"{path}: shape {arr.shape} does not match {len(index)} index rows")
        crops[path.stem[len("crops_") :]] = arr
    if not crops:
        raise ValueError(f"{ds_dir}: no crops_*.npy arrays")
    return crops, index
