"""A SPECT acquisition's projections as one typed value: counts plus the geometry that made them.

:class:`ProjectionSet` is what the projection DICOM reader returns, what the simulator can write and
what :mod:`fastdat.tomo.reconstruct` takes. Its counts and angles are already in the projector's
frame (:mod:`fastdat.tomo.projector`), so the vendor's layout (detector order, start angles,
rotation direction, row order) is resolved once, in the reader, and never again.

Conventions (patient frame RAS, nibabel's RAS+: +x the patient's right, +y anterior, +z
superior; all lengths in mm):

* ``counts[w, v, s, z]``: energy window ``w``, view ``v``, lateral bin ``s``, axial bin ``z``.
* View ``v`` has its detector face at angle ``t = angles_deg[v]`` about the rotation axis, in the
  transverse plane, from anterior (0) towards the patient's right (90): the detector centre lies
  in direction ``(sin t, cos t)`` of the RAS (x, y) plane. 180 is posterior, 270 the left side.
* Lateral bins run along ``(cos t, -sin t)`` in RAS (x, y): in the anterior view (t = 0) bin index
  grows towards the patient's right. The rotation axis passes through the centre of the lateral
  bins, ``(S - 1) / 2``.
* Axial bins grow towards superior; bin ``z`` lies at RAS z = ``axis_origin_mm[2] + z * bin_mm[1]``.
* ``radii_mm[v]``: distance from the rotation axis to the collimator face for view ``v`` (per view,
  so body-contour orbits are described exactly).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Roles an energy window can have for the reconstruction.
WINDOW_ROLES = ("photopeak", "scatter-lower", "scatter-upper", "other")


@dataclass(frozen=True)
class EnergyWindow:
    """One acquisition energy window.

    Attributes:
        name: The window's name in the file (Energy Window Name), or ``""``.
        lower_kev: Lower limit (keV).
        upper_kev: Upper limit (keV).
        role: One of :data:`WINDOW_ROLES`, recognised from the limits (123I photopeak 159 keV).
    """

    name: str
    lower_kev: float
    upper_kev: float
    role: str

    def __post_init__(self) -> None:
        if self.role not in WINDOW_ROLES:
            raise ValueError(f"energy window role must be one of {WINDOW_ROLES}, got {self.role!r}")
        if not 0 <= self.lower_kev < self.upper_kev:
            raise ValueError(
                f"energy window {self.name!r}: limits {self.lower_kev}-{self.upper_kev} keV"
            )

    @property
    def width_kev(self) -> float:
        """Window width (keV)."""
        return self.upper_kev - self.lower_kev


@dataclass(frozen=True, eq=False)
class ProjectionSet:
    """Counts and geometry of one SPECT acquisition (see the module docstring for the frame).

    Attributes:
        counts: ``(W, V, S, Z)`` float32 counts per bin (integers for measured data).
        windows: ``W`` energy windows, in the order of ``counts``.
        angles_deg: ``(V,)`` float64 detector angles in the projector's convention (degrees).
        radii_mm: ``(V,)`` float64 rotation axis to collimator face (mm).
        frame_s: ``(V,)`` float64 acquisition time of each view (s).
        detectors: ``(V,)`` int64 detector (head) number of each view, 1-based.
        bin_mm: ``(lateral, axial)`` bin size (mm), zoom included.
        axis_origin_mm: RAS position (mm) of the rotation axis at axial bin 0.
        collimator: The collimator as named in the file (Collimator/grid Name), or ``None``.
        radionuclide: Radionuclide as named in the file, or ``None``.
        header: The source's DICOM header without pixel data (for derived series in the same
            study), or ``None`` for a simulated acquisition.
        source: Files the set was read from.
    """

    counts: torch.Tensor
    windows: tuple[EnergyWindow, ...]
    angles_deg: torch.Tensor
    radii_mm: torch.Tensor
    frame_s: torch.Tensor
    detectors: torch.Tensor
    bin_mm: tuple[float, float]
    axis_origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    collimator: str | None = None
    radionuclide: str | None = None
    header: Any = None
    source: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.counts.ndim != 4:
            raise ValueError(f"counts must be (W, V, S, Z), got shape {tuple(self.counts.shape)}")
        w, v, _, _ = self.counts.shape
        if len(self.windows) != w:
            raise ValueError(f"{len(self.windows)} energy windows for {w} count windows")
        for name in ("angles_deg", "radii_mm", "frame_s", "detectors"):
            t = getattr(self, name)
            if tuple(t.shape) != (v,):
                raise ValueError(f"{name} must have shape ({v},), got {tuple(t.shape)}")
        if (self.radii_mm <= 0).any() or (self.frame_s <= 0).any():
            raise ValueError("radii_mm and frame_s must be > 0")
        if min(self.bin_mm) <= 0:
            raise ValueError(f"bin_mm must be > 0, got {self.bin_mm}")

    @property
    def n_views(self) -> int:
        """Number of views V (all detectors together)."""
        return int(self.counts.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """``(S, Z)``: lateral and axial bins per view."""
        return int(self.counts.shape[2]), int(self.counts.shape[3])

    @property
    def acquisition_s(self) -> float:
        """Scan time (s): the views' times summed per detector, the longest detector's."""
        return max(float(self.frame_s[self.detectors == d].sum()) for d in self.detectors.unique())

    def window(self, role: str) -> int | None:
        """Index of the (first) window with ``role``, or ``None``."""
        return next((i for i, w in enumerate(self.windows) if w.role == role), None)

    def replace(self, **changes: Any) -> ProjectionSet:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
