"""The anatomical template: FastDaT's mean anatomy without disease, on any grid.

:func:`fastdat.data.localize.locate_striata` fits it to find the striata of a scan and
:mod:`fastdat.quantification.sbr` places its VOIs from it. It is the phantom of
:mod:`fastdat.anatomy.phantom` for the mean subject: no texture, labels and uptake sampled at voxel
centres, every striatal region at :data:`TEMPLATE_SBR`.
"""

from __future__ import annotations

import functools

from fastdat.anatomy.phantom import Phantom, PhantomConfig, Subject, make_phantom

TEMPLATE_SBR = 6.0
"""Specific binding ratio of every striatal region of the template subject."""


def template_subject(yaw_deg: float = 0.0) -> Subject:
    """The template subject: FastDaT's mean anatomy, no disease, rotated by ``yaw_deg``."""
    sbr = {
        f"{r}_{s}": TEMPLATE_SBR
        for r in ("caudate", "putamen_anterior", "putamen_posterior")
        for s in ("left", "right")
    }
    return Subject(65.0, "M", 0, 0, sbr, angles_deg=(float(yaw_deg), 0.0, 0.0))


TEMPLATE_PHANTOM = PhantomConfig(texture_sd=0.0, supersample=1)
"""Phantom settings of the template (no texture, labels and uptake sampled at voxel centres)."""


@functools.lru_cache(maxsize=32)
def template_phantom(shape: tuple[int, int, int], voxel_mm: float, yaw_deg: float) -> Phantom:
    """The template subject voxelized on a grid centred on the brain (cached per grid and yaw)."""
    return make_phantom(template_subject(yaw_deg), shape, voxel_mm, TEMPLATE_PHANTOM)
