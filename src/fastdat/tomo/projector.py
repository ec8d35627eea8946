"""Parallel-hole SPECT projector with attenuation and depth-dependent collimator response.

Forward model for view ``v`` at angle ``theta_v`` (rotation about the axial z axis), following
PyTomography's rotate-attenuate-blur-sum recipe::

    p_v(s, z) = sum_t  G_{d(t)} * [ a_v(t, s, z) * (R_v x)(t, s, z) ]

``R_v`` resamples the object (bilinear, a sparse matrix) onto a view frame with depth ``t``
(plane index ``N - 1`` nearest the detector) and lateral ``s``; ``a_v`` is the attenuation factor
``exp(-sum mu dl)`` from each voxel to the detector; ``G_d`` is a Gaussian blur along ``s`` and
``z`` whose variance grows with the distance ``d`` to the collimator face. The blur is applied
incrementally (Zeng & Gullberg): planes are accumulated from the far side to the detector, and
between consecutive planes the accumulator is blurred by the variance difference with a 3-tap
kernel ``[w, 1 - 2w, w]`` of exact variance ``2w``. The adjoint runs the same steps in reverse.

Shapes: object ``(N, N, Z)`` (x, y, z voxels of ``pixel_mm``); projections ``(V, N, Z)``.

Field of view: the view frame is ``N`` planes deep and ``N`` bins wide, so only the cylinder
inscribed in the grid (:func:`field_of_view`) is seen from every angle; activity or attenuation in
the grid's corners would be dropped from oblique views. Callers check that their maps lie inside it
(:func:`outside_field_of_view`).

Orientation: view ``theta`` looks from ``(sin theta, cos theta)`` (anterior at ``theta = 0`` for a
RAS grid), lateral axis ``(cos theta, -sin theta)``. PyTomography's (DICOM-like) view ``beta``
equals ours at ``theta = beta - 180`` degrees with the lateral axis reversed.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings

import torch

from fastdat.tomo.collimator import FWHM_TO_SIGMA, get_collimator

_MAX_STEP_VAR = 0.5  # px^2 per 3-tap step (w <= 0.25 keeps the kernel non-negative)


def rotation_matrix(n: int, angles_rad: torch.Tensor) -> torch.Tensor:
    """Sparse bilinear resampling from an ``(n, n)`` object to each view frame.

    Row ``v * n * n + t * n + s`` holds the weights of object pixels ``i * n + j`` for depth
    ``t`` and lateral ``s`` in view ``v``. The detector normal of view ``theta`` is
    ``(sin theta, cos theta)`` in (x, y); the lateral axis is ``(cos theta, -sin theta)``.

    Returns:
        A COO tensor of shape ``(V * n * n, n * n)``, float64.
    """
    c = (n - 1) / 2
    t, s = torch.meshgrid(
        torch.arange(n, dtype=torch.float64) - c,
        torch.arange(n, dtype=torch.float64) - c,
        indexing="ij",
    )
    sin, cos = torch.sin(angles_rad)[:, None, None], torch.cos(angles_rad)[:, None, None]
    xi = t * sin + s * cos + c  # (V, n, n) object index along x
    yi = t * cos - s * sin + c
    x0, y0 = torch.floor(xi), torch.floor(yi)
    fx, fy = xi - x0, yi - y0
    out = torch.arange(angles_rad.numel() * n * n).reshape(-1, n, n)
    rows, cols, vals = [], [], []
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xx, yy = x0 + dx, y0 + dy
        m = (xx >= 0) & (xx < n) & (yy >= 0) & (yy < n) & (w > 1e-12)
        rows.append(out[m])
        cols.append((xx[m] * n + yy[m]).long())
        vals.append(w[m])
    idx = torch.stack([torch.cat(rows), torch.cat(cols)])
    shape = (out.numel(), n * n)
    return torch.sparse_coo_tensor(idx, torch.cat(vals), shape, check_invariants=True).coalesce()


def field_of_view(n: int) -> torch.Tensor:
    """Boolean ``(n, n)`` mask of the cylinder every view sees (radius ``(n - 1) / 2 - 1`` px)."""
    c = (n - 1) / 2
    r = torch.arange(n, dtype=torch.float64) - c
    return r[:, None] ** 2 + r[None, :] ** 2 <= (c - 1) ** 2


def outside_field_of_view(volume: torch.Tensor) -> bool:
    """Whether ``(N, N, Z)`` has non-zero values outside :func:`field_of_view`."""
    mask = field_of_view(volume.shape[0]).to(volume.device)
    return bool((volume[~mask] != 0).any())


@functools.lru_cache(maxsize=16)
def _rotation_operators(
    n: int,
    n_views: int,
    arc_deg: float,
    views: tuple[int, ...] | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Angles and CSR rotation matrices (and transposes), cached: they depend on geometry only."""
    angles = torch.arange(n_views, dtype=torch.float64) * math.radians(arc_deg) / n_views
    if views is not None:
        angles = angles[torch.as_tensor(views, dtype=torch.long)]
    coo = rotation_matrix(n, angles)
    with warnings.catch_warnings():
        # torch marks CSR tensors "beta" on every conversion; the operations used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        rot = coo.to(dtype).to_sparse_csr().to(device)
        rot_t = coo.t().coalesce().to(dtype).to_sparse_csr().to(device)
    return angles, rot, rot_t


class SPECTProjector:
    """Matched forward (``A``) and back (``A_adjoint``) projector.

    Args:
        n: In-plane object size (voxels); the object is ``(n, n, n_slices)``.
        n_slices: Axial size Z.
        pixel_mm: Voxel and detector-bin size (mm).
        n_views: Number of views over ``arc_deg``.
        orbit_radius_mm: Distance from the rotation axis to the collimator face (mm).
        mu_map: Attenuation map ``(n, n, Z)`` in 1/cm at 159 keV, or ``None``.
        collimator: Collimator name for the depth-dependent response, or ``None`` for none.
        intrinsic_fwhm_mm: Intrinsic detector resolution (mm).
        arc_deg: Angular range covered by the views (degrees).
        view_indices: Keep only these views (an OSEM subset); all when ``None``.
        dtype: Floating dtype of all computations.
        device: Torch device.
    """

    def __init__(
        self,
        n: int,
        n_slices: int,
        pixel_mm: float,
        n_views: int = 120,
        orbit_radius_mm: float = 130.0,
        mu_map: torch.Tensor | None = None,
        collimator: str | None = "siemens-lehr",
        intrinsic_fwhm_mm: float = 3.6,
        arc_deg: float = 360.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        view_indices: list[int] | None = None,
    ) -> None:
        if n < 2 or n_slices < 1:
            raise ValueError(f"object size must be >= 2 x 2 x 1, got {n} x {n} x {n_slices}")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        if pixel_mm <= 0:
            raise ValueError(f"pixel_mm must be > 0, got {pixel_mm}")
        if orbit_radius_mm <= n * pixel_mm / 2:
            raise ValueError(
                f"orbit_radius_mm={orbit_radius_mm} must exceed the grid half-width "
                f"{n * pixel_mm / 2:.1f} mm (the detector would pass through the object)"
            )
        views = None if view_indices is None else tuple(int(v) for v in view_indices)
        angles, self._rot, self._rot_t = _rotation_operators(
            n, n_views, float(arc_deg), views, dtype, torch.device(device)
        )
        self.n, self.nz, self.pixel_mm, self.n_views = n, n_slices, pixel_mm, angles.numel()
        self.dtype, self.device = dtype, torch.device(device)
        self.angles_rad = angles
        self._geometry = (n_views, float(arc_deg), views)
        self._steps = self._psf_steps(collimator, intrinsic_fwhm_mm, orbit_radius_mm)
        self._att = None
        if mu_map is not None:
            if tuple(mu_map.shape) != (n, n, n_slices):
                raise ValueError(f"mu_map shape {tuple(mu_map.shape)} != object {(n, n, n_slices)}")
            if not torch.isfinite(mu_map).all() or (mu_map < 0).any():
                raise ValueError("mu_map must be finite and non-negative (1/cm)")
            mu_rot = self._rotate(mu_map.to(self.device, dtype))  # (V, t, s, Z)
            path = torch.flip(torch.cumsum(torch.flip(mu_rot, [1]), 1), [1]) - 0.5 * mu_rot
            self._att = torch.exp(-path * (pixel_mm / 10.0))

    def subset(self, view_indices: list[int]) -> SPECTProjector:
        """The projector of some of this projector's views (an OSEM subset).

        Shares the collimator model and slices the attenuation factors already computed, so a
        subset costs no second pass over the mu map. Only for a projector of all views.
        """
        n_views, arc_deg, views = self._geometry
        if views is not None:
            raise ValueError("subset() needs a projector of all views")
        idx = tuple(int(v) for v in view_indices)
        sub = copy.copy(self)
        sub.angles_rad, sub._rot, sub._rot_t = _rotation_operators(
            self.n, n_views, arc_deg, idx, self.dtype, self.device
        )
        sub.n_views = len(idx)
        sub._geometry = (n_views, arc_deg, idx)
        if self._att is not None:
            sub._att = self._att[torch.as_tensor(idx, device=self.device)]
        return sub

    def _psf_steps(self, collimator: str | None, intrinsic: float, radius: float) -> list:
        """Per-plane variance increments (px^2) of the incremental blur, far to near."""
        n = self.n
        if collimator is None:
            return [[] for _ in range(n + 1)]
        col = get_collimator(collimator)
        c = (n - 1) / 2
        var = [
            (
                col.fwhm_mm(radius - (t - c) * self.pixel_mm, intrinsic)
                * FWHM_TO_SIGMA
                / self.pixel_mm
            )
            ** 2
            for t in range(n)
        ]
        steps = [[]] + [self._split(var[t - 1] - var[t]) for t in range(1, n)]
        return steps + [self._split(var[n - 1])]

    @staticmethod
    def _split(v: float) -> list[float]:
        k = max(1, math.ceil(v / _MAX_STEP_VAR))
        return [v / (2 * k)] * k  # weights w of 3-tap kernels, total variance v

    @staticmethod
    def _blur(a: torch.Tensor, ws: list[float]) -> torch.Tensor:
        """Blur ``(V, S, Z)`` along S and Z with 3-tap kernels (symmetric, zero padding)."""
        for w in ws:
            for dim in (1, 2):
                b = a * (1 - 2 * w)
                n = a.shape[dim]
                b.narrow(dim, 1, n - 1).add_(a.narrow(dim, 0, n - 1), alpha=w)
                b.narrow(dim, 0, n - 1).add_(a.narrow(dim, 1, n - 1), alpha=w)
                a = b
        return a

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n
        return (self._rot @ x.reshape(n * n, -1)).reshape(self.n_views, n, n, -1)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Forward projection: object ``(N, N, Z)`` -> projections ``(V, N, Z)``."""
        r = self._rotate(x.to(self.device, self.dtype))
        if self._att is not None:
            r = r * self._att
        acc = torch.zeros_like(r[:, 0])
        for t in range(self.n):
            acc = self._blur(acc, self._steps[t]) + r[:, t]
        return self._blur(acc, self._steps[self.n])

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back projection, the exact adjoint of :meth:`A`: ``(V, N, Z)`` -> ``(N, N, Z)``."""
        n = self.n
        acc = self._blur(y.to(self.device, self.dtype), self._steps[n])
        planes = [None] * n
        for t in range(n - 1, -1, -1):
            planes[t] = acc
            acc = self._blur(acc, self._steps[t])
        r = torch.stack(planes, 1)
        if self._att is not None:
            r = r * self._att
        return (self._rot_t @ r.reshape(self.n_views * n * n, -1)).reshape(n, n, -1)
