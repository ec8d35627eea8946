"""Read a dataset built by :func:`fastdat.data.dataset.build_dataset`: the one read API.

Later stages (training, evaluation, the reader study) read a dataset through :func:`read_dataset`
(or :func:`load_crops` for the arrays alone), never through its files: the layout of ``DS`` is
this module's and the builder's business.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Dataset:
    """A built dataset: its crops, where they were cut and what they were cut from.

    Attributes:
        path: The dataset folder.
        crops: Kind -> float32 ``(N, crop, crop)`` (see :func:`load_crops`).
        index: One row per crop (see :func:`load_crops`).
        studies: The studies crops were cut from (``status == "ok"``), indexed by ``study_id``:
            ``corner_i``, ``corner_j`` (in-plane crop corner, voxels), ``voxel_mm``, ``shape``
            (``"XxYxZ"``), localization fit and grades.
        config: The resolved :class:`~fastdat.data.dataset.DatasetConfig` as a dict.
        source: What the dataset was built from (``{"kind": "simulation", "path": ...}``).
        fingerprint: Content hash of the dataset (networks record the one they were trained on).
    """

    path: Path
    crops: dict[str, np.ndarray]
    index: Any
    studies: Any
    config: dict[str, Any]
    source: dict[str, Any]
    fingerprint: str | None

    @property
    def crop(self) -> int:
        """Crop side (voxels)."""
        return int(self.config.get("crop", 64))

    def rows(self, split: str) -> np.ndarray:
        """Crop rows (``crop_id``) of a split (``train``, ``val``, ``test``), in index order."""
        return self.index.index[self.index["split"] == split].to_numpy()

    @functools.cached_property
    def split_of_study(self) -> dict[str, str]:
        """``study_id`` -> split."""
        return self.index.groupby("study_id")["split"].first().to_dict()


def read_dataset(ds_dir: str | Path, mmap: bool = False) -> Dataset:
    """Read a dataset folder (see :class:`Dataset`).

    Raises:
        FileNotFoundError: ``ds_dir`` is not a dataset (no ``index.csv`` / ``config.yaml``).
        ValueError: Its arrays do not match its index.
    """
    import pandas as pd
    import yaml

    ds_dir = Path(ds_dir)
    crops, index = load_crops(ds_dir, mmap)
    cfg_path = ds_dir / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{ds_dir}: not a FastDaT dataset (no config.yaml)")
    doc = yaml.safe_load(cfg_path.read_text()) or {}
    studies_path = ds_dir / "studies.csv"
    studies = pd.DataFrame(columns=["study_id"]).set_index("study_id")
    if studies_path.exists():
        studies = pd.read_csv(studies_path, dtype={"study_id": str, "patient_id": str})
        studies = studies[studies["status"] == "ok"].set_index("study_id")
    return Dataset(
        path=ds_dir,
        crops=crops,
        index=index,
        studies=studies,
        config=dict(doc.get("dataset", doc)),
        source=dict(doc.get("source") or {}),
        fingerprint=doc.get("fingerprint"),
    )
