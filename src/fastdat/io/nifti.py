"""Raw NIfTI volumes, as stored, with errors that name the file.

Reconstructed images are read with :func:`fastdat.io.image.read_image`, which builds on
:func:`read_volume` and reorients to RAS+. :func:`read_volume` itself keeps the array in the
file's own storage order, for maps whose array is used together with their affine as they are
(the mu maps of :mod:`fastdat.tomo.files`, the user maps of :mod:`fastdat.simulate.user_maps`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_volume(path: str | Path, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI volume as stored (not reoriented) and its voxel -> mm affine.

    Args:
        path: The file.
        what: What the file should be (``"activity map"``), prefixed to error messages.

    Returns:
        ``(data, affine)``: ``(X, Y, Z)`` float64 values in the file's units (scaling applied,
        singleton axes squeezed) in the file's storage order, and the ``(4, 4)`` voxel -> RAS+
        mm affine.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Not a readable NIfTI file, or not 3D; the message names the file.
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
