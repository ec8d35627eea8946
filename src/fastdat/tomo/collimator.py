"""Named parallel-hole collimators and their depth-dependent response.

Geometric resolution of a parallel-hole collimator (domain.md, SIMIND collimator table)::

    FWHM_geo(d) = D * (d + L_eff) / L_eff,   L_eff = L - 2 / mu_Pb

combined in quadrature with the intrinsic resolution of the detector. ``d`` is the distance (mm)
from the collimator face to the source plane.
"""

from __future__ import annotations

from dataclasses import dataclass

FWHM_TO_SIGMA = 1.0 / 2.354820045

#: Linear attenuation coefficient of lead at 159 keV (1/mm).
MU_PB_159KEV_PER_MM = 1.98


@dataclass(frozen=True)
class Collimator:
    """Parallel-hole collimator geometry.

    Attributes:
        name: Registry name, e.g. ``"siemens-lehr"``.
        hole_diameter_mm: Hole diameter D (mm).
        hole_length_mm: Hole length L (mm).
    """

    name: str
    hole_diameter_mm: float
    hole_length_mm: float

    @property
    def effective_length_mm(self) -> float:
        """Effective hole length L - 2 / mu_Pb (mm)."""
        return self.hole_length_mm - 2.0 / MU_PB_159KEV_PER_MM

    def fwhm_mm(self, distance_mm: float, intrinsic_fwhm_mm: float = 3.6) -> float:
        """System FWHM (mm) at ``distance_mm`` from the collimator face."""
        if distance_mm < 0:
            raise ValueError(f"distance_mm must be >= 0, got {distance_mm}")
        leff = self.effective_length_mm
        geo = self.hole_diameter_mm * (distance_mm + leff) / leff
        return (geo**2 + intrinsic_fwhm_mm**2) ** 0.5


COLLIMATORS: dict[str, Collimator] = {
    c.name: c
    for c in (
        Collimator("siemens-lehr", 1.11, 24.05),
        Collimator("ge-lehr", 1.50, 35.0),
        Collimator("philips-lehr", 1.22, 27.0),
    )
}


def get_collimator(name: str) -> Collimator:
    """Return the named collimator or raise a ``ValueError`` listing the known names."""
    try:
        return COLLIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown collimator {name!r}; known: {', '.join(sorted(COLLIMATORS))}"
        ) from None
