"""Specific binding ratios (SBR) of a DaT SPECT volume without labels: template VOIs, Southampton.

Both methods measure against an occipital reference ``C_ref``: the mean over the template's
occipital lobe (grey and white matter behind the parieto-occipital boundary, between the
template's occipital cortex limits), eroded from the brain surface so that a misfit of a few mm
keeps it on the brain. A thin cortical-ribbon VOI was tried first; with head size and pitch
differing from the template its mean varied by up to 2x between subjects.

- **Template VOIs** (BRASS / DaTQUANT-like): FastDaT's anatomical template (the mean phantom of
  :mod:`fastdat.anatomy.phantom`, the one :func:`fastdat.data.localize.locate_striata` fits) is
  placed on the image by that fit (translation and yaw), then each side's striatal VOIs are moved
  together by at most ``refine_voxels`` to the position of highest mean count (individual anatomy
  differs from the template by a few mm). Per region ``SBR = mean(VOI) / C_ref - 1``. Regions:
  caudate, putamen, anterior and posterior putamen, whole striatum, left and right. Small VOIs
  lose counts to the finite resolution (partial volume), so these SBRs fall below the true ones.
- **Southampton** (Tossici-Bolt et al. 2006): a large VOI per side, the striatum grown by
  ``southampton_margin_mm``, holds (nearly) all striatal counts, blurred or not::

      SBR = (1 / V_s) * (C_total / C_ref - V_VOI)

  with ``C_total`` the VOI's total (counts/s * mL), ``V_VOI`` its volume and ``V_s`` a fixed
  striatal volume (``striatal_volume_ml``). It is insensitive to partial volume, but assumes the
  non-striatal tissue in the VOI is at the reference concentration, and its scale depends on
  ``V_s``.

Derived: asymmetry index ``100 * |L - R| / ((L + R) / 2)`` (%) and putamen / caudate ratio per side.
Image axes are ``(X, Y, Z)``, RAS-like (x to the subject's right, z axial), isotropic voxels.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fastdat.anatomy.labels import OCCIPITAL, SIDES, label_sbr, side_labels


class NoStriatumError(ValueError):
    """The image shows nothing that can be quantified as striatal uptake."""


@dataclass(frozen=True)
class QuantConfig:
    """How VOIs are placed and SBRs computed.

    Attributes:
        resolution_mm: Reconstructed resolution the template is blurred to for the fit (FWHM, mm).
        max_shift_mm: Largest template translation searched (mm).
        refine_voxels: Per-side search radius of the striatal VOIs around the fitted pose (voxels).
        reference_erode_voxels: Erosion of the template's occipital lobe (cortex and white
            matter) from the brain surface (voxels), so that head size, pitch and resolution
            move little of it off the brain.
        southampton_margin_mm: Growth of each striatum into the Southampton VOI (mm).
        striatal_volume_ml: Southampton's fixed striatal volume ``V_s`` per side (mL; 11.2 mL is
            the commonly quoted value, ``domain.md`` [R]).
        min_fit_score: Least fraction of image energy the template fit must explain.
        min_striatal_sbr: Least whole-striatum SBR (mean of both sides) for an image to count as
            showing a striatum.
    """

    resolution_mm: float = 12.0
    max_shift_mm: float = 45.0
    refine_voxels: int = 1
    reference_erode_voxels: int = 2
    southampton_margin_mm: float = 12.0
    striatal_volume_ml: float = 11.2
    min_fit_score: float = 0.3
    min_striatal_sbr: float = 0.1

    def __post_init__(self) -> None:
        for name in ("resolution_mm", "max_shift_mm", "striatal_volume_ml"):
            if getattr(self, name) <= 0:
                raise ValueError(f"quantify.{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "refine_voxels",
            "reference_erode_voxels",
            "southampton_margin_mm",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"quantify.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class VOIs:
    """VOIs placed on one image: a label map like the phantom's plus the Southampton VOIs.

    Attributes:
        labels: ``(X, Y, Z)`` uint8 region labels (:data:`REGIONS`, 7 = occipital reference).
        southampton: Side -> ``(X, Y, Z)`` bool large VOI.
        shift: Template translation (voxels); yaw_deg: template rotation (degrees).
        refine: Side -> extra translation of that side's striatal VOIs (voxels).
        score: Fraction of image energy the template fit explains.
    """

    labels: np.ndarray
    southampton: dict[str, np.ndarray]
    shift: tuple[int, int, int]
    yaw_deg: float
    refine: dict[str, tuple[int, int, int]]
    score: float


def _best_offset(image: np.ndarray, mask: np.ndarray, radius: int) -> tuple[int, int, int]:
    """Integer offset within ``radius`` that maximises the mean of ``image`` over ``mask``."""
    idx = np.array(np.nonzero(mask))
    best, best_mean = (0, 0, 0), -np.inf
    for off in itertools.product(range(-radius, radius + 1), repeat=3):
        moved = idx + np.array(off)[:, None]
        if (moved < 0).any() or (moved >= np.array(image.shape)[:, None]).any():
            continue
        m = float(image[tuple(moved)].mean())
        if m > best_mean + 1e-12 * abs(best_mean):
            best, best_mean = off, m
    return best


@functools.lru_cache(maxsize=16)
def _occipital_lobe(
    shape: tuple[int, int, int], voxel_mm: float, yaw_deg: float, erode: int
) -> np.ndarray:
    """The template's occipital lobe: brain (grey and white matter) within the bounding box of
    its occipital cortex label, eroded by ``erode`` voxels (template pose, cached)."""
    from fastdat.anatomy.template import template_phantom

    ph = template_phantom(shape, voxel_mm, yaw_deg)
    ii, jj, kk = np.nonzero(ph.labels == OCCIPITAL)
    box = np.zeros(shape, dtype=bool)
    box[ii.min() : ii.max() + 1, jj.min() : jj.max() + 1, kk.min() : kk.max() + 1] = True
    brain = ph.activity >= 0.6  # cortex 1.0, white matter 0.7; not CSF, skull or scalp
    if erode:  # iterations=0 would erode to nothing in scipy
        brain = ndimage.binary_erosion(brain, iterations=erode)
    return box & brain


def place_vois(volume: np.ndarray, voxel_mm: float, cfg: QuantConfig | None = None) -> VOIs:
    """Place the template VOIs and the Southampton VOIs on ``volume`` ``(X, Y, Z)``.

    Raises:
        NoStriatumError: The template fit finds no striatum-like pattern or explains too little.
    """
    from fastdat.anatomy.template import template_phantom
    from fastdat.data.localize import locate_striata

    cfg = cfg or QuantConfig()
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z), got shape {vol.shape}")
    nx, ny, _ = vol.shape
    try:
        loc = locate_striata(vol, voxel_mm, 1, min(nx, ny), cfg.resolution_mm, cfg.max_shift_mm)
    except ValueError as err:
        raise NoStriatumError(f"no recognisable striatum: {err}") from err
    if loc.score < cfg.min_fit_score:
        raise NoStriatumError(
            f"no recognisable striatum: the template fit explains {loc.score:.2f} of the image "
            f"(at least {cfg.min_fit_score} needed)"
        )
    tpl = template_phantom(vol.shape, float(voxel_mm), float(loc.yaw_deg)).labels
    placed = ndimage.shift(tpl, loc.shift, order=0, mode="constant", cval=0)
    labels = np.zeros_like(placed)
    occ = ndimage.shift(
        _occipital_lobe(
            shape=vol.shape,
            voxel_mm=float(voxel_mm),
            yaw_deg=float(loc.yaw_deg),
            erode=cfg.reference_erode_voxels,
        ),
        loc.shift,
        order=0,
        mode="constant",
        cval=0,
    )
    labels[occ] = OCCIPITAL
    refine = {}
    for side in SIDES:
        ids = side_labels("striatum", side)
        side_mask = np.isin(placed, ids)
        off = _best_offset(vol, side_mask, cfg.refine_voxels) if cfg.refine_voxels else (0, 0, 0)
        refine[side] = tuple(int(o) for o in off)
        for i in ids:
            labels[ndimage.shift(placed == i, off, order=0, mode="constant", cval=0)] = i
    if not np.isin(labels, side_labels("striatum", "left")).any() or not (
        np.isin(labels, side_labels("striatum", "right")).any() and (labels == OCCIPITAL).any()
    ):
        raise NoStriatumError("no recognisable striatum: the template VOIs left the image")
    # Southampton: grow each striatum by the margin; a voxel goes to the nearer striatum
    dist = {
        side: ndimage.distance_transform_edt(
            ~np.isin(labels, side_labels("striatum", side)), sampling=voxel_mm
        )
        for side in SIDES
    }
    south = {
        side: (dist[side] <= cfg.southampton_margin_mm)
        & (dist[side] <= dist[SIDES[1 - k]])
        & (labels != OCCIPITAL)
        for k, side in enumerate(SIDES)
    }
    return VOIs(labels, south, loc.shift, float(loc.yaw_deg), refine, float(loc.score))


def southampton_sbr(
    image: np.ndarray, vois: VOIs, voxel_mm: float, striatal_volume_ml: float
) -> dict[str, float]:
    """Southampton SBR per side, keys ``southampton_<side>`` (see the module docstring)."""
    ref = float(image[vois.labels == OCCIPITAL].mean())
    if ref <= 0:
        raise ValueError(f"occipital reference mean is {ref:.3g}: must be > 0")
    v_ml = voxel_mm**3 / 1000.0
    out = {}
    for side in SIDES:
        voi = vois.southampton[side]
        total = float(image[voi].sum()) * v_ml
        out[f"southampton_{side}"] = (total / ref - voi.sum() * v_ml) / striatal_volume_ml
    return out


def derived(sbr: dict[str, float]) -> dict[str, float]:
    """Asymmetry index (%) per region and putamen / caudate ratio per side."""
    out = {}
    for region in ("caudate", "putamen", "striatum"):
        left, right = sbr[f"{region}_left"], sbr[f"{region}_right"]
        mean = (left + right) / 2
        out[f"asymmetry_{region}"] = float(100 * abs(left - right) / mean) if mean > 0 else np.nan
    for side in SIDES:
        c = sbr[f"caudate_{side}"]
        out[f"putamen_caudate_{side}"] = float(sbr[f"putamen_{side}"] / c) if c > 0 else np.nan
    return out


def quantify_volume(
    volume: np.ndarray, voxel_mm: float, cfg: QuantConfig | None = None
) -> tuple[dict[str, float], VOIs]:
    """All SBRs of one image: template VOIs, Southampton, asymmetry and putamen / caudate.

    Args:
        volume: Reconstructed image ``(X, Y, Z)``, any positive scale (counts or counts/s).
        voxel_mm: Isotropic voxel size (mm).
        cfg: Settings; defaults if ``None``.

    Returns:
        ``(values, vois)``: a flat dict (``<region>_<side>``, ``southampton_<side>``,
        ``asymmetry_<region>``, ``putamen_caudate_<side>``, ``fit_score``) and the VOIs.

    Raises:
        NoStriatumError: Nothing striatum-like, or striatal uptake not above the reference.
    """
    cfg = cfg or QuantConfig()
    vol = np.asarray(volume, dtype=np.float64)
    vois = place_vois(vol, voxel_mm, cfg)
    return measure_sbr(vol, vois, voxel_mm, cfg), vois


def measure_sbr(
    volume: np.ndarray, vois: VOIs, voxel_mm: float, cfg: QuantConfig | None = None
) -> dict[str, float]:
    """All SBRs of ``volume`` ``(X, Y, Z)`` in VOIs already placed (on it or on another image
    of the same subject and grid): the values of :func:`quantify_volume` without the fit.

    Raises:
        NoStriatumError: Striatal uptake not above the reference.
    """
    cfg = cfg or QuantConfig()
    vol = np.asarray(volume, dtype=np.float64)
    values = label_sbr(vol, vois.labels)
    mean_striatum = (values["striatum_left"] + values["striatum_right"]) / 2
    if not mean_striatum >= cfg.min_striatal_sbr:
        raise NoStriatumError(
            f"no recognisable striatum: striatal SBR {mean_striatum:.3f} is not above the "
            f"occipital reference (at least {cfg.min_striatal_sbr} needed)"
        )
    values.update(southampton_sbr(vol, vois, voxel_mm, cfg.striatal_volume_ml))
    values.update(derived(values))
    values["fit_score"] = vois.score
    return values
