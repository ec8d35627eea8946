"""A small asymmetric acquisition shared by the reconstruction tests of ``tests/tomo``."""

from __future__ import annotations

import numpy as np
import torch

from fastdat.simulate.acquisition import AcquisitionConfig, ReconConfig

N, NZ, VOXEL = 32, 16, 6.0
ACQ = AcquisitionConfig(
    detector_size=48,
    n_views=32,
    orbit_radius_mm=135.0,
    counts_min=1e5,
    counts_median=2e5,
    counts_max=4e5,
    durations_min=(25.0, 5.0),
)
RECON = ReconConfig(iterations=3, subsets=4, postfilter_fwhm_mm=6.0)


def phantom() -> tuple[torch.Tensor, torch.Tensor]:
    """A head with a hot right striatum, a cooler left one and an anterior-superior marker."""
    c = (torch.arange(N, dtype=torch.float64) - (N - 1) / 2) * VOXEL
    z = (torch.arange(NZ, dtype=torch.float64) - (NZ - 1) / 2) * VOXEL
    x, y, zz = torch.meshgrid(c, c, z, indexing="ij")
    head = (x / 60) ** 2 + (y / 72) ** 2 + (zz / 40) ** 2 <= 1
    act = head.float()
    act[((x - 20) / 9) ** 2 + ((y - 10) / 12) ** 2 + (zz / 9) ** 2 <= 1] = 8.0  # right (+x)
    act[((x + 20) / 9) ** 2 + ((y - 10) / 12) ** 2 + (zz / 9) ** 2 <= 1] = 4.0  # left
    act[(x / 7) ** 2 + ((y - 50) / 7) ** 2 + ((zz - 24) / 7) ** 2 <= 1] = 12.0  # ant-sup marker
    return act, 0.15 * head.float()


def regions(vol: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Mean of ``vol`` in the phantom's right / left striatum, the anterior-superior marker and
    its mirror image through the centre, located in RAS mm through ``affine``."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in vol.shape], indexing="ij"), -1)
    ras = ijk.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]
    x, y, z = (ras[:, i].reshape(vol.shape) for i in range(3))
    return {
        "right": float(vol[((x - 20) / 9) ** 2 + ((y - 10) / 12) ** 2 + (z / 9) ** 2 <= 1].mean()),
        "left": float(vol[((x + 20) / 9) ** 2 + ((y - 10) / 12) ** 2 + (z / 9) ** 2 <= 1].mean()),
        "marker": float(vol[(x / 7) ** 2 + ((y - 50) / 7) ** 2 + ((z - 24) / 7) ** 2 <= 1].mean()),
        "mirror": float(vol[(x / 7) ** 2 + ((y + 50) / 7) ** 2 + ((z + 24) / 7) ** 2 <= 1].mean()),
    }


def oriented(vol: np.ndarray, affine: np.ndarray) -> bool:
    """Right striatum hotter than the left (true ratio 2), marker anterior-superior."""
    r = regions(vol, affine)
    return r["right"] > 1.4 * r["left"] and r["marker"] > 2 * r["mirror"]
