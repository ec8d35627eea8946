"""Reading NIfTI volumes with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_volume(path: str | Path, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI volume (float64, singleton axes squeezed) and its voxel -> mm affine.

    Args:
        path: The file.
        what: What the file should be (``"activity map"``), prefixed to error messages.
    """
    import nibabel as nib

    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: file not found")
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float64)
    except Exception as err:  # nibabel raises many kinds for unreadable files
        raise ValueError(f"{name}: not a readable NIfTI file ({err})") from err
    data = np.squeeze(data)
    if data.ndim != 3:
        raise ValueError(f"{name}: expected a 3D volume, got shape {data.shape}")
    return data, np.asarray(img.affine, dtype=np.float64)
