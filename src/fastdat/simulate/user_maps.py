"""A user's own activity and attenuation maps (NIfTI) as the phantom of a simulation.

Requirements, each checked with an error naming the file: 3D volumes of the same shape and the same
affine; isotropic voxels (the projector's bins equal the voxels) with axes aligned to the scanner
(no rotation or shear in the affine); a square transaxial matrix no larger than the detector; finite
values; activity non-negative with some positive voxel; mu non-negative in 1/cm at 159 keV (values
above 1 /cm suggest 1/mm, Hounsfield units or a CT, which must be converted first). An optional
label map in FastDaT's lookup table (:data:`fastdat.anatomy.phantom.LABELS`) is carried along.

:func:`user_phantom` loads the maps a command was given and :func:`user_map_config` the grid they
impose on the simulation config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fastdat.anatomy.phantom import Phantom


def _load(path: str | Path, what: str):
    from fastdat.io.nifti import read_volume

    return read_volume(path, f"{what} map")


def load_user_maps(
    activity: str | Path,
    mu_map: str | Path,
    labels: str | Path | None = None,
    max_size: int = 128,
) -> Phantom:
    """Load and validate user maps into a :class:`Phantom` on their own grid."""
    act, aff = _load(activity, "activity")
    mu, aff_mu = _load(mu_map, "mu")
    if mu.shape != act.shape:
        raise ValueError(f"mu map {mu_map}: shape {mu.shape} differs from activity {act.shape}")
    if not np.allclose(aff_mu, aff, atol=1e-3):
        raise ValueError(f"mu map {mu_map}: affine differs from the activity map's ({activity})")
    lin = aff[:3, :3]
    vox = np.sqrt((lin**2).sum(0))
    if not np.allclose(np.abs(lin), np.diag(vox), atol=1e-4 * vox.max()):
        raise ValueError(f"activity map {activity}: affine must be axis-aligned (no rotation)")
    if not np.allclose(vox, vox[0], rtol=1e-3):
        raise ValueError(f"activity map {activity}: voxels must be isotropic, got {vox} mm")
    nx, ny, nz = act.shape
    if nx != ny or max(nx, nz) > max_size:
        raise ValueError(
            f"activity map {activity}: need a square transaxial matrix no larger than the "
            f"{max_size}-bin detector, got {act.shape}"
        )
    for data, path, what in ((act, activity, "activity"), (mu, mu_map, "mu")):
        if not np.isfinite(data).all():
            raise ValueError(f"{what} map {path}: contains NaN or infinite values")
        if (data < 0).any():
            raise ValueError(f"{what} map {path}: negative values (min {data.min():.3g})")
    if act.max() <= 0:
        raise ValueError(f"activity map {activity}: no positive activity")
    if mu.max() > 1.0:
        raise ValueError(
            f"mu map {mu_map}: values up to {mu.max():.3g}; expected 1/cm at 159 keV (0-0.5), "
            "convert from 1/mm, Hounsfield units or CT first"
        )
    import torch

    from fastdat.tomo.projector import outside_field_of_view

    for data, path, what in ((act, activity, "activity"), (mu, mu_map, "mu")):
        if outside_field_of_view(torch.from_numpy(data)):
            raise ValueError(
                f"{what} map {path}: non-zero voxels outside the cylinder inscribed in the "
                f"{nx} x {ny} matrix (not seen from every view); pad the maps to a larger matrix"
            )
    lab = np.zeros(act.shape, np.uint8)
    if labels is not None:
        lab_data, aff_l = _load(labels, "label")
        if lab_data.shape != act.shape or not np.allclose(aff_l, aff, atol=1e-3):
            raise ValueError(f"label map {labels}: shape or affine differs from the activity map")
        if (lab_data != np.round(lab_data)).any() or lab_data.min() < 0 or lab_data.max() > 255:
            raise ValueError(f"label map {labels}: labels must be integers 0-255")
        lab = lab_data.astype(np.uint8)
    return Phantom(act.astype(np.float32), mu.astype(np.float32), lab, aff)


def user_phantom(
    activity: str | Path | None,
    mu_map: str | Path | None,
    labels: str | Path | None = None,
) -> Phantom | None:
    """The phantom of a user's activity and mu maps, or ``None`` when neither is given.

    Args:
        activity: Activity map (NIfTI), or ``None``.
        mu_map: Attenuation map (NIfTI, 1/cm at 159 keV), or ``None``.
        labels: Optional label map (NIfTI).

    Returns:
        The validated :class:`Phantom` (:func:`load_user_maps`), or ``None`` for drawn phantoms.

    Raises:
        ValueError: When only one of the two maps is given, or a map is invalid (named).
    """
    if not (activity or mu_map):
        return None
    if not (activity and mu_map):
        raise ValueError("--activity and --mu-map must be given together")
    return load_user_maps(activity, mu_map, labels)


def user_map_config(phantom: Phantom | None) -> dict[str, Any]:
    """The partial simulation config a user phantom imposes: its grid and, by default, 1 study.

    Meant as the ``base`` layer of :func:`fastdat.config.resolve` (above the preset, below a
    config file and ``--set``, so ``--set cohort.n_studies=N`` asks for N noise realizations).

    Args:
        phantom: A phantom from :func:`user_phantom`, or ``None``.

    Returns:
        ``{"grid": {size, n_slices, voxel_mm}, "cohort": {"n_studies": 1}}``; ``{}`` for ``None``.
    """
    if phantom is None:
        return {}
    n, _, nz = phantom.activity.shape
    voxel = float(abs(phantom.affine[0, 0]))
    return {
        "grid": {"size": int(n), "n_slices": int(nz), "voxel_mm": voxel},
        "cohort": {"n_studies": 1},
    }
