"""The anatomy every stage shares: the label lookup table, regions, sides and the true SBR.

A leaf: it imports no stage. Label maps (the phantom's truth, VOIs placed on an image) use
:data:`LABELS`; :data:`REGIONS` groups them into the regions SBRs are reported for. The one
definition of a subject's *true* specific binding ratio is :func:`true_sbr`: mean activity of
each striatal region of the subject's own labels over the mean of its eroded occipital lobe, the
reference the placed VOIs of :mod:`fastdat.quantification.sbr` measure. The simulator records it
in the cohort manifest and the study's quantification reports it as ``truth``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LABELS: dict[int, str] = {
    0: "background",
    1: "caudate_left",
    2: "caudate_right",
    3: "putamen_anterior_left",
    4: "putamen_anterior_right",
    5: "putamen_posterior_left",
    6: "putamen_posterior_right",
    7: "occipital",
}
"""Region label lookup table of the label maps."""

SIDES = ("left", "right")
REGIONS: dict[str, tuple[int, ...]] = {
    "caudate": (1,),
    "putamen": (3, 5),
    "putamen_anterior": (3,),
    "putamen_posterior": (5,),
    "striatum": (1, 3, 5),
}
"""Region -> left-side labels of :data:`LABELS` (right side = +1)."""
OCCIPITAL = 7


def side_labels(region: str, side: str) -> list[int]:
    """Labels of ``region`` on ``side`` (right = left + 1)."""
    return [i + SIDES.index(side) for i in REGIONS[region]]


def label_sbr(image: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``SBR = mean(VOI) / mean(occipital) - 1`` per region and side from a label map.

    Keys ``<region>_<side>`` for every region of :data:`REGIONS`. With the truth labels on the
    truth activity this is the true SBR; with placed VOIs it is the template-VOI method.
    """
    ref_mask = labels == OCCIPITAL
    if not ref_mask.any():
        raise ValueError("no occipital reference voxels (label 7)")
    ref = float(image[ref_mask].mean())
    if ref <= 0:
        raise ValueError(f"occipital reference mean is {ref:.3g}: must be > 0")
    out = {}
    for region in REGIONS:
        for side in SIDES:
            mask = np.isin(labels, side_labels(region, side))
            out[f"{region}_{side}"] = float(image[mask].mean() / ref - 1) if mask.any() else np.nan
    return out


def true_sbr(activity: np.ndarray, labels: np.ndarray, erode: int = 2) -> dict[str, float]:
    """True SBR of a simulated subject, against the same kind of reference the VOIs use.

    Striatal regions come from the subject's own labels; the reference is the subject's own
    occipital lobe (brain voxels, ``activity >= 0.6`` x the cortex level, inside the bounding box
    of its occipital cortex label, eroded by ``erode`` voxels), i.e. what the placed occipital VOI
    measures. On grids so coarse that the erosion leaves no reference voxel, the erosion is
    reduced one voxel at a time until some remain. Keys as :func:`label_sbr`.
    """
    occ = labels == OCCIPITAL
    if not occ.any():
        raise ValueError("no occipital cortex voxels (label 7) in the truth labels")
    ii, jj, kk = np.nonzero(occ)
    box = np.zeros(labels.shape, dtype=bool)
    box[ii.min() : ii.max() + 1, jj.min() : jj.max() + 1, kk.min() : kk.max() + 1] = True
    head = activity >= 0.6 * float(np.median(activity[occ]))
    outside = box & ~np.isin(labels, range(1, 7))
    for k in range(int(erode), -1, -1):
        brain = ndimage.binary_erosion(head, iterations=k) if k else head
        if (outside & brain).any():
            break
    ref = np.where(outside & brain, OCCIPITAL, 0)
    striatal = np.where(np.isin(labels, range(1, 7)), labels, 0)
    return label_sbr(activity, np.maximum(ref, striatal).astype(np.uint8))
