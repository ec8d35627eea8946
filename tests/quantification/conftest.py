from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from fastdat.anatomy.phantom import make_phantom
from fastdat.anatomy.template import TEMPLATE_PHANTOM, template_subject

PHANTOM_SHAPE, PHANTOM_VOXEL = (64, 64, 40), 3.3
PHANTOM_SBR = {"caudate": 5.0, "putamen": 3.0}


@pytest.fixture(scope="session")
def striatal_phantom():
    """``activity, labels, voxel_mm, sbr, shape`` of the template subject with caudate SBR 5,
    putamen 3 and every non-striatal brain tissue at the reference concentration 1 (no texture):
    the analytic SBR is exactly 5 and 3. Grid :data:`PHANTOM_SHAPE`, voxel :data:`PHANTOM_VOXEL`
    mm."""
    subject = template_subject(0.0)
    sbr = {k: PHANTOM_SBR["caudate" if k.startswith("caudate") else "putamen"] for k in subject.sbr}
    cfg = replace(
        TEMPLATE_PHANTOM,
        white_uptake=1.0,
        csf_uptake=1.0,
        thalamus_uptake=1.0,
        cerebellum_uptake=1.0,
    )
    ph = make_phantom(replace(subject, sbr=sbr), PHANTOM_SHAPE, PHANTOM_VOXEL, cfg)
    return SimpleNamespace(
        activity=ph.activity.astype(np.float64),
        labels=ph.labels,
        voxel_mm=PHANTOM_VOXEL,
        sbr=dict(PHANTOM_SBR),
        shape=PHANTOM_SHAPE,
    )
