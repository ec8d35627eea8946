"""Resample a volume to the network's training voxel size and back.

A network trained at one voxel size (``training_voxel_mm`` in its sidecar, 3.3 mm for the default
model) sees a striatum, a noise grain and its own receptive field in voxels; an input at another
size is resampled onto an isotropic grid of the training size, restored there, and the
restoration resampled back onto the input's own grid:

    needed = plan(voxel_mm, training_mm)              # ValueError outside the stated range
    grid = to_grid(volume, voxel_mm, training_mm) if needed else volume
    restored = ... network on ``grid`` ...
    out = from_grid(restored, volume.shape, voxel_mm, training_mm) if needed else restored

Conventions:

- **Geometry.** The two grids share the centre of the field of view and their axes: voxel ``i``
  of an axis of ``n`` voxels of size ``v`` has its centre at ``(i - (n - 1) / 2) * v`` mm from
  that centre. The training grid has ``round(n * v / t)`` voxels of size ``t`` on that axis
  (:func:`grid_shape`), so the fields of view agree to half a voxel on each side; where the
  training grid reaches past the input's outermost voxel centres the edge value is repeated.
  The affine of the input therefore describes the output of :func:`from_grid` unchanged.
- **Values.** The volume holds activity concentration (or anything per unit volume: reconstructed
  counts per voxel of a fixed-size grid are such a density up to a constant), so resampling
  keeps values, not sums: a uniform volume stays the same value on any grid, and the total
  activity is ``sum * voxel volume`` on either grid (to the interpolation error). A volume of
  counts per voxel that should keep its total must be scaled by the voxel-volume ratio by the
  caller.
- **Interpolation.** Cubic B-spline (``scipy.ndimage.affine_transform``, ``order=3``), clamped
  at zero when the input is non-negative (activity). Linear interpolation was measured and
  rejected: on a smooth head (two striatum-sized Gaussians of 6 mm SD on a 30 mm SD brain,
  ``smooth_volume`` in ``tests/inference/test_resample.py``) it is off by 6 % of the maximum
  on the 4.42 mm grid and by 15 % after the round trip 3.3 -> 4.42 -> 3.3 mm, against 0.14 %
  and 0.7 % for the spline (the test guards 0.5 % and 1 %). It also halves the noise variance
  between voxel centres per axis (to 1/8 in 3D), where the spline keeps 3/4 (0.43 in 3D), so
  the network sees a noise grain closer to its training images'. The spline passes through the
  samples and rings at sharp edges (not at the reconstruction's 12 mm resolution: < 1 %
  overshoot, tested); its negative lobes fall outside the head, next to zero background, and
  the clamp removes them (a uniform volume stays exactly uniform, a non-negative one
  non-negative). The network's input checks (:mod:`fastdat.inference.safety`) should run on the
  resampled grid, where they see the noise the network sees.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

ORDER = 3
"""Spline order of the interpolation (cubic; see the module)."""
RESAMPLE_TOLERANCE = 0.05
"""Relative difference of a voxel size from the training size below which nothing is
resampled (5 %: a 3.3 mm network restores 3.14-3.47 mm voxels as they are)."""
STATED_RANGE_MM = (2.0, 5.0)
"""Voxel sizes (mm, each axis) that :func:`plan` allows to be resampled; outside them it
refuses. Chosen, not measured: it spans the pixel sizes of 128 x 128 DaT SPECT acquisitions with
the usual zooms, with room on either side. Before it is stated to users it should be checked
with resampled inputs (``benchmarks/ood_denoise.py`` prints what the checks see at 2.4, 3.9 and
4.8 mm); a model may pass its own range."""


def _voxels(voxel_mm: tuple[float, float, float] | float) -> tuple[float, float, float]:
    v = np.broadcast_to(np.asarray(voxel_mm, dtype=np.float64), (3,))
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel sizes must be positive and finite, got {voxel_mm!r} mm")
    return (float(v[0]), float(v[1]), float(v[2]))


def _target(target_mm: float) -> float:
    t = float(target_mm)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"target voxel size must be positive and finite, got {target_mm!r} mm")
    return t


def plan(
    voxel_mm: tuple[float, float, float] | float,
    training_mm: float,
    tolerance: float = RESAMPLE_TOLERANCE,
    stated_range: tuple[float, float] = STATED_RANGE_MM,
) -> bool:
    """Whether a volume of ``voxel_mm`` voxels must be resampled for a ``training_mm`` network.

    Args:
        voxel_mm: One size or ``(x, y, z)`` sizes (mm).
        training_mm: The network's (isotropic) training voxel size (mm).
        tolerance: Largest relative difference ``|v / training_mm - 1|`` of every axis for which
            the volume is used as it is.
        stated_range: ``(lo, hi)`` voxel sizes (mm, inclusive) that may be resampled.

    Returns:
        ``False`` when every axis is within ``tolerance`` of ``training_mm`` (use the volume as
        it is), ``True`` when it must be resampled (:func:`to_grid`).

    Raises:
        ValueError: A voxel size outside ``stated_range`` (the message names both), or a size
            that is not positive.
    """
    v, t = _voxels(voxel_mm), _target(training_mm)
    lo, hi = stated_range
    outside = [a for a in v if not lo <= a <= hi]
    if outside:
        sizes = " x ".join(f"{a:g}" for a in v)
        raise ValueError(
            f"voxel size {sizes} mm is outside the range this model accepts, "
            f"{lo:g}-{hi:g} mm (trained at {t:g} mm); resample it yourself or use another model"
        )
    return any(abs(a / t - 1) > tolerance for a in v)


def grid_shape(
    shape: tuple[int, int, int],
    voxel_mm: tuple[float, float, float] | float,
    target_mm: float,
) -> tuple[int, int, int]:
    """Shape of the isotropic ``target_mm`` grid that covers a ``shape`` volume of ``voxel_mm``
    voxels: ``round(n * v / target_mm)`` voxels per axis (at least 1)."""
    v, t = _voxels(voxel_mm), _target(target_mm)
    if len(shape) != 3:
        raise ValueError(f"expected a volume shape (X, Y, Z), got {tuple(shape)}")
    nx, ny, nz = (max(1, round(n * a / t)) for n, a in zip(shape, v, strict=True))
    return (nx, ny, nz)


def _resample(
    x: np.ndarray, src_mm: tuple[float, ...], dst_mm: tuple[float, ...], shape: tuple[int, ...]
) -> np.ndarray:
    """``x`` (voxels ``src_mm``) interpolated at the centres of a ``shape`` grid of
    ``dst_mm`` voxels with the same field-of-view centre (see the module)."""
    dtype = np.result_type(x.dtype, np.float32)
    if x.shape == tuple(shape) and np.allclose(src_mm, dst_mm, rtol=1e-12, atol=0):
        return x.astype(dtype, copy=True)
    scale = np.array(dst_mm) / np.array(src_mm)  # input index per output index
    offset = (np.array(x.shape) - 1) / 2 - scale * (np.array(shape) - 1) / 2
    out = ndimage.affine_transform(
        x.astype(np.float64),
        scale,
        offset=offset,
        output_shape=tuple(shape),
        order=ORDER,
        mode="nearest",
    )
    if x.size and x.min() >= 0:
        np.maximum(out, 0.0, out=out)  # activity: the spline's negative lobes are clamped
    return out.astype(dtype)


def to_grid(
    volume: np.ndarray,
    voxel_mm: tuple[float, float, float] | float,
    target_mm: float,
) -> np.ndarray:
    """``volume`` resampled onto the isotropic ``target_mm`` grid (see the module).

    Args:
        volume: Activity concentration, shape ``(X, Y, Z)``.
        voxel_mm: Its voxel size, one or ``(x, y, z)`` (mm).
        target_mm: The grid's voxel size (mm), the network's training size.

    Returns:
        Shape :func:`grid_shape` ``(volume.shape, voxel_mm, target_mm)``, float32 (float64 for a
        float64 input); values are concentrations as in ``volume``, non-negative if it is.
    """
    x = np.asarray(volume)
    if x.ndim != 3:
        raise ValueError(f"expected a volume (X, Y, Z), got shape {x.shape}")
    v, t = _voxels(voxel_mm), _target(target_mm)
    return _resample(x, v, (t, t, t), grid_shape(x.shape, v, t))


def from_grid(
    restored: np.ndarray,
    original_shape: tuple[int, int, int],
    voxel_mm: tuple[float, float, float] | float,
    target_mm: float,
) -> np.ndarray:
    """The inverse of :func:`to_grid`: ``restored`` back on the input's own grid.

    Args:
        restored: A volume on the ``target_mm`` grid, shape :func:`grid_shape`
            ``(original_shape, voxel_mm, target_mm)``.
        original_shape: Shape ``(X, Y, Z)`` of the volume given to :func:`to_grid`.
        voxel_mm: Its voxel size, one or ``(x, y, z)`` (mm).
        target_mm: The grid's voxel size (mm).

    Returns:
        Shape ``original_shape``, same dtype rule as :func:`to_grid`.

    Raises:
        ValueError: ``restored`` is not on the grid :func:`to_grid` makes for these arguments.
    """
    y = np.asarray(restored)
    v, t = _voxels(voxel_mm), _target(target_mm)
    shape = tuple(int(n) for n in original_shape)
    expected = grid_shape(shape, v, t)
    if y.shape != expected:
        raise ValueError(
            f"restored has shape {y.shape}; the {t:g} mm grid of a {shape} volume of "
            f"{' x '.join(f'{a:g}' for a in v)} mm voxels has shape {expected}"
        )
    return _resample(y, (t, t, t), v, shape)
