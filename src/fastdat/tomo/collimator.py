"""Named parallel-hole collimators, their depth-dependent response, and the names cameras write.

Geometric resolution of a parallel-hole collimator (domain.md; the model of PyTomography's
``get_psfmeta_from_scanner_params``)::

    FWHM_geo(d) = D * (d + L_eff) / L_eff,   L_eff = L - 2 / mu_Pb

combined in quadrature with the intrinsic resolution of the detector. ``d`` is the distance (mm)
from the collimator face to the source plane, ``D`` the hole diameter (flat to flat for hexagonal
holes) and ``L`` the hole length. Septal penetration is not modelled (the septal thickness is kept
for reference and for users who model it elsewhere).

Sources of the table (:data:`COLLIMATORS`), all hexagonal-hole lead collimators:

* **SIMIND collimator database** (``collim.col`` of the SIMIND Monte Carlo program, M. Ljungberg,
  Lund University), as shipped in PyTomography 3.4 (``pytomography/data/collim.col``); each
  entry names its SIMIND code.
* **OpenGATE** camera models (``opengate/contrib/spect``: ``spect_siemens_intevo_geometrical_
  parameters.json`` and ``ge_discovery_nm670_geometrical_parameters.json``), which agree with
  SIMIND where both list a collimator.

No vendor datasheet was read: all numbers are these secondary sources'. Uncertain (marked in
``source`` where it concerns an entry): Siemens LEUHR is SIMIND's e.cam entry (``SE-LEUR``),
assumed unchanged on Symbia / Intevo; GE LEHRS is SIMIND's 870 DR entry (``G8-LHRS``); GE MEGP
differs between SIMIND's Infinia (3.0 mm holes, also OpenGATE's NM670) and 870 DR (3.5 mm)
entries, the first is used; Mediso MEGP's 35 mm holes are short for a medium-energy collimator;
Philips LEGP and MEGP are BrightView entries, and the older Forte / Skylight / Vertex names
``VXGP`` and ``VXHR`` are mapped to BrightView LEGP and LEHR by name only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FWHM_TO_SIGMA = 1.0 / 2.354820045

#: Linear attenuation coefficient of lead at 159 keV (1/mm).
MU_PB_159KEV_PER_MM = 1.98

_SIMIND = "SIMIND collimator database (PyTomography 3.4 data/collim.col)"


@dataclass(frozen=True)
class Collimator:
    """Parallel-hole collimator geometry.

    Attributes:
        name: Registry name, ``"<vendor>-<type>"``, e.g. ``"siemens-lehr"``.
        hole_diameter_mm: Hole diameter D (mm).
        hole_length_mm: Hole length L (mm).
        septal_thickness_mm: Septal thickness (mm; not used by the response model).
        source: Where the numbers come from.
    """

    name: str
    hole_diameter_mm: float
    hole_length_mm: float
    septal_thickness_mm: float
    source: str

    @property
    def effective_length_mm(self) -> float:
        """Effective hole length L - 2 / mu_Pb (mm)."""
        return self.hole_length_mm - 2.0 / MU_PB_159KEV_PER_MM

    def fwhm_mm(self, distance_mm, intrinsic_fwhm_mm: float = 3.6):
        """System FWHM (mm) at ``distance_mm`` (>= 0) from the collimator face.

        Args:
            distance_mm: A float, or an array / tensor of distances (elementwise).
            intrinsic_fwhm_mm: Intrinsic detector resolution (mm).
        """
        negative = distance_mm < 0
        if bool(negative.any() if hasattr(negative, "any") else negative):
            raise ValueError(f"distance_mm must be >= 0, got {distance_mm}")
        leff = self.effective_length_mm
        geo = self.hole_diameter_mm * (distance_mm + leff) / leff
        return (geo**2 + intrinsic_fwhm_mm**2) ** 0.5


COLLIMATORS: dict[str, Collimator] = {
    c.name: c
    for c in (
        Collimator("siemens-lehr", 1.11, 24.05, 0.16, f"{_SIMIND} SY-LEHR; OpenGATE Intevo lehr"),
        Collimator("siemens-leap", 1.45, 24.05, 0.20, f"{_SIMIND} SY-LEAP"),
        Collimator("siemens-leuhr", 1.16, 35.8, 0.13, f"{_SIMIND} SE-LEUR (e.cam; uncertain)"),
        Collimator("siemens-melp", 2.94, 40.64, 1.14, f"{_SIMIND} SY-ME; OpenGATE Intevo melp"),
        Collimator("ge-lehr", 1.50, 35.0, 0.20, f"{_SIMIND} GI-LEHR; OpenGATE NM670 lehr"),
        Collimator("ge-legp", 1.90, 35.0, 0.20, f"{_SIMIND} GI-LEGP"),
        Collimator("ge-elegp", 2.50, 40.0, 0.40, f"{_SIMIND} GI-ELEG"),
        Collimator("ge-lehrs", 1.43, 32.0, 0.13, f"{_SIMIND} G8-LHRS (870 DR; uncertain)"),
        Collimator(
            "ge-megp", 3.00, 58.0, 1.05, f"{_SIMIND} GI-MEGP (G8-MEGP: 3.5 mm); OpenGATE NM670"
        ),
        Collimator("philips-lehr", 1.22, 27.0, 0.152, f"{_SIMIND} PB-LEHR (BrightView)"),
        Collimator("philips-legp", 1.40, 24.7, 0.18, f"{_SIMIND} PB-LEGP (BrightView)"),
        Collimator("philips-megp", 3.40, 58.4, 0.86, f"{_SIMIND} PB-MEGP (BrightView)"),
        Collimator("mediso-lehr", 1.50, 35.0, 0.20, f"{_SIMIND} MA-LEHR (AnyScan)"),
        Collimator("mediso-leuhr", 1.20, 34.0, 0.20, f"{_SIMIND} MA-LEUHR (AnyScan)"),
        Collimator("mediso-legp", 1.90, 35.0, 0.20, f"{_SIMIND} MA-LEGP (AnyScan)"),
        Collimator("mediso-megp", 2.50, 35.0, 1.20, f"{_SIMIND} MA-MEGP (AnyScan; uncertain)"),
    )
}

#: Collimator codes (see :func:`collimator_code`) each vendor writes, and their table entries.
VENDOR_CODES: dict[str, dict[str, str]] = {
    "siemens": {
        "LEHR": "siemens-lehr",
        "LEAP": "siemens-leap",
        "LEGP": "siemens-leap",
        "LEUHR": "siemens-leuhr",
        "LEUR": "siemens-leuhr",
        "MELP": "siemens-melp",
        "ME": "siemens-melp",
        "MEGP": "siemens-melp",
    },
    "ge": {
        "LEHR": "ge-lehr",
        "LEGP": "ge-legp",
        "ELEGP": "ge-elegp",
        "ELEG": "ge-elegp",
        "LEHRS": "ge-lehrs",
        "MEGP": "ge-megp",
        "ME": "ge-megp",
    },
    "philips": {
        "LEHR": "philips-lehr",
        "VXHR": "philips-lehr",
        "LEGP": "philips-legp",
        "LEAP": "philips-legp",
        "VXGP": "philips-legp",
        "MEGP": "philips-megp",
        "ME": "philips-megp",
    },
    "mediso": {
        "LEHR": "mediso-lehr",
        "LEUHR": "mediso-leuhr",
        "LEGP": "mediso-legp",
        "MEGP": "mediso-megp",
    },
}

# Manufacturer substrings -> vendor (GE by word, below).
_VENDORS = (
    ("siemens", "siemens"),
    ("philips", "philips"),
    ("adac", "philips"),
    ("mediso", "mediso"),
)

# Spelled-out words -> the short codes cameras also use (applied in order, on upper case).
_WORDS = (
    (r"\bLO(W)?[ ._-]*ENER(GY)?\b", " LE "),
    (r"\bMED(IUM)?[ ._-]*ENER(GY)?\b", " ME "),
    (r"\bHI(GH)?[ ._-]*ENER(GY)?\b", " HE "),
    (r"\bULTRA[ ._-]*HI(GH)?[ ._-]*RES(OLUTION)?\b", " UHR "),
    (r"\bHI(GH)?[ ._-]*RES(OLUTION)?\b", " HR "),
    (r"\bHI(GH)?[ ._-]*SENS(ITIVITY)?\b", " HS "),
    (r"\bGEN(ERAL)?[ ._-]*PURP(OSE)?\b", " GP "),
    (r"\bALL[ ._-]*PURP(OSE)?\b", " AP "),
    (r"\bLO(W)?[ ._-]*PEN(ETRATION)?\b", " LP "),
    (r"\bEXT(ENDED)?\b", " E "),
    (r"\b(PARALLEL|PARA|PAR|HOLES?|COLLIMATORS?|COLLIM|COLL)\b", " "),
)

# Non-parallel geometries, recognised in the name: (pattern, what to call them).
_UNSUPPORTED = (
    (r"FAN|FB$|^FB", "fan-beam"),
    (r"CONE|CB$", "cone-beam"),
    (r"PIN[ ._-]*HOLE|^PH\d|PINH", "pinhole"),
    (r"SMART[ ._-]*ZOOM|MULTI[ ._-]*FOCAL|ASTIGMATIC|CONVERG|DIVERG", "converging"),
)


def get_collimator(name: str) -> Collimator:
    """Return the named collimator or raise a ``ValueError`` listing the known names."""
    try:
        return COLLIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown collimator {name!r}; known: {', '.join(sorted(COLLIMATORS))}"
        ) from None


def collimator_code(file_name: str) -> str:
    """A camera's collimator name reduced to a short code: ``"LO.ENER.HI.RES"`` -> ``"LEHR"``,
    ``"Extended Low Energy General Purpose"`` -> ``"ELEGP"``, ``"LEHR "`` -> ``"LEHR"``."""
    text = file_name.upper()
    for pattern, short in _WORDS:
        text = re.sub(pattern, short, text)
    return re.sub(r"[^A-Z0-9]", "", text)


def vendor(manufacturer: str | None) -> str | None:
    """``"siemens"``, ``"ge"``, ``"philips"`` or ``"mediso"`` from a DICOM Manufacturer, else
    ``None`` (``"GE MEDICAL SYSTEMS"`` -> ``"ge"``, ``"ADAC"`` -> ``"philips"``)."""
    text = (manufacturer or "").lower()
    for key, name in _VENDORS:
        if key in text:
            return name
    return "ge" if re.search(r"\bge\b|\bgems\b|general electric", text) else None


def resolve_collimator(file_name: str | None, manufacturer: str | None) -> Collimator:
    """The table entry for a collimator as a camera names it (DICOM Collimator/grid Name).

    Table names (``"ge-megp"``) are accepted as they are. Otherwise the name is reduced to a
    code (:func:`collimator_code`) and looked up among the codes of the manufacturer's vendor
    (:data:`VENDOR_CODES`); without a known manufacturer, only a code that one vendor alone uses
    (e.g. ``"MELP"``, ``"ELEGP"``, ``"VXGP"``) is resolved.

    Args:
        file_name: Collimator/grid Name (0018,1180), e.g. ``"LEHR"``, ``"LO.ENER.HI.RES"``.
        manufacturer: Manufacturer (0008,0070), e.g. ``"SIEMENS NM"``, or ``None``.

    Raises:
        ValueError: No name; a fan-beam, cone-beam, pinhole or converging collimator; a name
            not in the table, or one several vendors use when the manufacturer is unknown.
    """
    if file_name is None or not file_name.strip():
        raise ValueError("no collimator name given")
    if file_name.strip().lower() in COLLIMATORS:
        return COLLIMATORS[file_name.strip().lower()]
    code = collimator_code(file_name)
    for pattern, kind in _UNSUPPORTED:
        if re.search(pattern, code):
            raise ValueError(
                f"{kind} collimators are not supported: {file_name!r} (FastDaT models "
                "parallel-hole collimators only)"
            )
    who = vendor(manufacturer)
    if who is not None:
        if code in VENDOR_CODES[who]:
            return COLLIMATORS[VENDOR_CODES[who][code]]
        known = ", ".join(sorted(VENDOR_CODES[who]))
        raise ValueError(
            f"unknown {who} collimator {file_name!r} (code {code!r}); known codes: {known}"
        )
    matches = sorted({codes[code] for codes in VENDOR_CODES.values() if code in codes})
    if len(matches) == 1:
        return COLLIMATORS[matches[0]]
    if matches:
        raise ValueError(
            f"collimator {file_name!r} differs between vendors ({', '.join(matches)}) and the "
            f"manufacturer {manufacturer!r} is not one of them; name the table entry instead"
        )
    raise ValueError(
        f"unknown collimator {file_name!r} (code {code!r}, manufacturer {manufacturer!r}); "
        f"known: {', '.join(sorted(COLLIMATORS))}"
    )
