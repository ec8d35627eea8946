"""Is an input like the model's training data, and did the restoration add structure?

A restoration may remove noise; it must never add structure the input does not support. Two
groups of checks, both recorded in every output's provenance:

**Input checks** (before the network), against the range of the model's training inputs recorded
in its sidecar (``input_range``: :func:`input_range_of` the :func:`input_features` of the
training studies' 5-min images):

- ``voxel_mm``: in-plane voxel size (mm);
- ``noise``: relative high-frequency level, ``RMS(x - G_1 * x) / mean(x)`` over the head (voxels
  above 10 % of the volume's 99.9th percentile), ``G_1`` a Gaussian of 1 voxel SD. A noise-free
  or heavily smoothed input has a noise level far below a 5-min OSEM image's; a network trained
  to remove 5-min noise then "removes" structure that is not noise and writes a texture;
- ``contrast``: 99.9th percentile over the head mean (striatal uptake relative to the brain);
- ``hist_p10``, ``hist_p25``, ``hist_p50``, ``hist_p75``, ``hist_p90``: the shape of the head's
  intensity histogram, its 10th-90th percentiles each divided by the head's 99.9th percentile
  (a robust maximum: one hot voxel does not move it, and every quantile is invariant to a global
  intensity scale, so counts, units and calibration do not enter). Lower quantiles mean a brain
  darker relative to the striata (higher contrast, or a template / uptake pattern the network
  has not seen); higher ones a flatter image (smoothed, or striata lost);
- ``head_fraction``: the share of the volume's voxels in the head, a coarse check of the template
  fit (a head far larger or smaller in the matrix, a cropped or padded field of view);
- ``minutes``: the scan time, against the scan times a count-aware model was trained on
  (``input_range["minutes"]``, no margin: outside it the network extrapolates its conditioning).

**Output checks** (after the network), with fixed bounds (:data:`BOUNDS`):

- ``hf_ratio``: high-frequency energy of the output over the input's, over the head, and
  ``hf_ratio_slice_max`` its maximum over slices holding at least 5 % of the largest slice's
  counts. A denoiser lowers it (0.52-0.65 for the default model on 5-min test studies, 0.3-0.4
  from the 5-min to the 25-min image itself); above 1 it added high-frequency structure.
- ``head_change`` / ``hot_change``: relative change of the mean over the head and over the hot
  region: voxels above 70 % of the maximum of the input smoothed by a Gaussian of
  :data:`HOT_SIGMA` voxels (the striata where they are visible). The mask is that smooth so that
  it does not select the input's own noise peaks, which any denoiser lowers: with a 1.5-voxel
  mask the default model's grade-3 restoration of an unfamiliar anatomy read -12.7 % where the
  striatal labels' mean changed -5.0 %. With 3 voxels its change tracks the labels' within 1.4
  points (median; 4.4 at most) on 60 simulated ``paper`` studies.
- ``slice_sum_change``: the largest relative change of a slice's total.

The bounds come from the default model on in-distribution 5-min studies: its largest values over
the first 60 studies of the ``paper`` cohort are hf_ratio 0.52, hf_ratio_slice_max 0.87,
head_change -5.3 %, hot_change -4.3 % and slice_sum_change 0.196 (a slice holding 5-8 % of the
largest slice's counts), and each bound lies above them (``benchmarks/ood_denoise.py`` prints both
groups for in- and out-of-distribution inputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

BOUNDS = {
    "hf_ratio": 1.0,
    "hf_ratio_slice_max": 3.0,
    "head_change": 0.10,
    "hot_change": 0.12,
    "slice_sum_change": 0.25,
}
"""Largest accepted value of each output check (``*_change``: absolute relative change)."""
HIST_QUANTILES = (10, 25, 50, 75, 90)
"""Percentiles (%) of the head's intensities recorded as ``hist_p{q}`` (see the module)."""
RANGE_FEATURES = (
    "noise",
    "contrast",
    *(f"hist_p{q}" for q in HIST_QUANTILES),
    "head_fraction",
)
"""Input features checked against ``input_range[key]`` (min, max) when the range records them."""
INPUT_MARGIN = 0.5
"""An input feature is out of range when it lies beyond the training range widened by this
share of its width on each side (voxel size: beyond +/-20 % of the training voxel)."""
VOXEL_TOLERANCE = 0.2
HOT_SIGMA = 3.0
"""SD (voxels) of the Gaussian that smooths the input before its hot region is thresholded."""


def _head(x: np.ndarray) -> np.ndarray:
    top = float(np.percentile(x, 99.9)) if x.size else 0.0
    return x > 0.1 * top if top > 0 else np.zeros(x.shape, bool)


def _hf(x: np.ndarray) -> np.ndarray:
    """High-pass of each transaxial slice: ``x - G_1 * x`` in-plane (``(X, Y, Z)``)."""
    return x - ndimage.gaussian_filter(x, sigma=(1.0, 1.0, 0.0), mode="nearest")


def input_features(volume: np.ndarray, voxel_mm: float | None) -> dict[str, float | None]:
    """Input features of an ``(X, Y, Z)`` volume (see the module).

    Args:
        volume: Reconstructed activity, shape ``(X, Y, Z)``, any intensity unit.
        voxel_mm: In-plane voxel size (mm), recorded as given.

    Returns:
        ``voxel_mm`` and each of :data:`RANGE_FEATURES` (dimensionless; ``None`` for a head of
        fewer than 10 voxels). All but ``voxel_mm`` are invariant to a global intensity scale.
    """
    x = np.asarray(volume, dtype=np.float64)
    head = _head(x)
    out: dict[str, float | None] = {"voxel_mm": voxel_mm} | dict.fromkeys(RANGE_FEATURES)
    if head.sum() < 10:
        return out
    values = x[head]
    mean = float(values.mean())
    top = float(np.percentile(values, 99.9))
    out["noise"] = float(np.sqrt(np.mean(_hf(x)[head] ** 2)) / mean)
    out["contrast"] = top / mean
    quantiles = np.percentile(values, HIST_QUANTILES) / top
    out |= {f"hist_p{q}": float(v) for q, v in zip(HIST_QUANTILES, quantiles, strict=True)}
    out["head_fraction"] = float(head.mean())
    return out


def input_range_of(
    features_list: Sequence[Mapping[str, Any]], margin: float = 0.0, digits: int = 4
) -> dict[str, Any]:
    """A model's ``input_range`` from the :func:`input_features` of its training inputs.

    For each of :data:`RANGE_FEATURES`, ``[min - margin * w, max + margin * w]`` over the inputs
    where it is defined (``w = max - min``), rounded outward to ``digits`` decimals so that every
    training input lies inside. The default ``margin`` is 0: the sidecar records the observed
    range, and :func:`check_input` widens it by :data:`INPUT_MARGIN` of its width on each side
    when it checks an input (a positive ``margin`` widens it further, e.g. for a small training
    set). Also ``voxel_mm``, the inputs' common voxel size (mm; absent when none is known), and
    ``n_studies``; callers add their own ``source``.

    Args:
        features_list: :func:`input_features` of each training (or validation) input.
        margin: Share of each range's width added on each side (>= 0).
        digits: Decimals kept.

    Raises:
        ValueError: No inputs, a negative margin, or inputs of different voxel sizes (a model
            has one training voxel size).
    """
    if not features_list:
        raise ValueError("no input features to take a range of")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    scale = 10.0**digits
    out: dict[str, Any] = {}
    voxels = {round(float(f["voxel_mm"]), digits) for f in features_list if f.get("voxel_mm")}
    if len(voxels) > 1:
        raise ValueError(f"the inputs have voxel sizes {sorted(voxels)} mm; a range needs one")
    if voxels:
        out["voxel_mm"] = voxels.pop()
    for key in RANGE_FEATURES:
        values = [float(f[key]) for f in features_list if f.get(key) is not None]
        if not values:
            continue
        lo, hi = min(values), max(values)
        lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
        # outward, past float noise (0.3 * 1e4 is 3000.0000000000005, not 3001)
        lo, hi = math.floor(round(lo * scale, 6)) / scale, math.ceil(round(hi * scale, 6)) / scale
        out[key] = [lo, hi]
    out["n_studies"] = len(features_list)
    return out


@dataclass(frozen=True)
class Check:
    """One named check: its value, the accepted range and whether it passed."""

    name: str
    value: float | None
    low: float | None
    high: float | None
    ok: bool

    def message(self) -> str:
        rng = f"[{_f(self.low)}, {_f(self.high)}]"
        return f"{self.name} {_f(self.value)} outside the accepted range {rng}"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def check_input(features: dict[str, Any], input_range: dict[str, Any] | None) -> list[Check]:
    """Input checks against the model's training range (a feature the range does not record,
    e.g. the histogram in a sidecar written before it was added, is not checked)."""
    out = []
    trained = (input_range or {}).get("voxel_mm")
    v = features.get("voxel_mm")
    if trained and v is not None:
        lo, hi = trained * (1 - VOXEL_TOLERANCE), trained * (1 + VOXEL_TOLERANCE)
        out.append(Check("voxel_mm", v, lo, hi, lo <= v <= hi))
    minutes = (input_range or {}).get("minutes")
    if minutes and features.get("minutes") is not None:
        m = float(features["minutes"])
        out.append(Check("minutes", m, minutes[0], minutes[1], minutes[0] <= m <= minutes[1]))
    for key in RANGE_FEATURES:
        rng = (input_range or {}).get(key)
        if not rng:
            continue
        width = rng[1] - rng[0]
        lo, hi = rng[0] - INPUT_MARGIN * width, rng[1] + INPUT_MARGIN * width
        value = features.get(key)
        out.append(Check(key, value, lo, hi, value is not None and lo <= value <= hi))
    return out


def output_features(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Output checks' values of the restoration ``y`` of ``x`` (both ``(X, Y, Z)``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    head = _head(x)
    hx, hy = _hf(x), _hf(y)
    ex = (hx**2 * head).sum(axis=(0, 1))
    ey = (hy**2 * head).sum(axis=(0, 1))
    sums_x, sums_y = x.sum(axis=(0, 1)), y.sum(axis=(0, 1))
    busy = sums_x >= 0.05 * sums_x.max() if sums_x.max() > 0 else np.zeros_like(sums_x, bool)
    busy &= ex > 0
    smooth = ndimage.gaussian_filter(x, HOT_SIGMA)
    hot = smooth > 0.7 * smooth.max() if smooth.max() > 0 else head
    return {
        "hf_ratio": float(ey.sum() / ex.sum()) if ex.sum() > 0 else float("inf"),
        "hf_ratio_slice_max": float((ey[busy] / ex[busy]).max()) if busy.any() else 0.0,
        "head_change": float(y[head].mean() / x[head].mean() - 1) if head.any() else 0.0,
        "hot_change": float(y[hot].mean() / x[hot].mean() - 1) if hot.any() else 0.0,
        "slice_sum_change": float(np.abs(sums_y[busy] / sums_x[busy] - 1).max())
        if busy.any()
        else 0.0,
    }


ROUNDOFF = 1e-6
"""Relative slack of every output bound: float32 round-off of an unchanged image (the identity
restoration reads hf_ratio 1 + 2.5e-9) must not count as added structure."""


def check_output(features: dict[str, float]) -> list[Check]:
    """Output checks against :data:`BOUNDS` (to :data:`ROUNDOFF`)."""
    out = []
    for key, bound in BOUNDS.items():
        v = features[key]
        low = -bound if key.endswith("_change") and key != "slice_sum_change" else None
        slack = ROUNDOFF * bound
        ok = bool(np.isfinite(v)) and v <= bound + slack and (low is None or v >= low - slack)
        out.append(Check(key, v, low, bound, ok))
    return out
