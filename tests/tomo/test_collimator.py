from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastdat.tomo.collimator import (
    COLLIMATORS,
    MU_PB_159KEV_PER_MM,
    VENDOR_CODES,
    collimator_code,
    get_collimator,
    resolve_collimator,
    vendor,
)


def test_table_entries_are_physical_and_cited():
    for name, c in COLLIMATORS.items():
        assert c.name == name and name.split("-")[0] in VENDOR_CODES
        assert 0.8 < c.hole_diameter_mm < 4.0 and 20 < c.hole_length_mm < 70
        assert 0.1 <= c.septal_thickness_mm < 2.0 and "SIMIND" in c.source
        # medium-energy collimators have thicker septa than low-energy ones
        assert (c.septal_thickness_mm > 0.5) == ("-me" in name)
    for codes in VENDOR_CODES.values():
        assert set(codes.values()) <= set(COLLIMATORS)


def test_existing_names_keep_their_geometry():
    # the simulator's defaults (domain.md: SIMIND table)
    assert (
        COLLIMATORS["siemens-lehr"].hole_diameter_mm,
        COLLIMATORS["siemens-lehr"].hole_length_mm,
    ) == (1.11, 24.05)
    assert (COLLIMATORS["ge-lehr"].hole_diameter_mm, COLLIMATORS["ge-lehr"].hole_length_mm) == (
        1.50,
        35.0,
    )
    assert (
        COLLIMATORS["philips-lehr"].hole_diameter_mm,
        COLLIMATORS["philips-lehr"].hole_length_mm,
    ) == (1.22, 27.0)
    with pytest.raises(ValueError, match="unknown collimator 'nope'; known: ge-elegp"):
        get_collimator("nope")


def test_fwhm_matches_the_formula_and_domain_figures():
    c = get_collimator("siemens-lehr")
    leff = 24.05 - 2 / MU_PB_159KEV_PER_MM
    expected = math.hypot(1.11 * (100 + leff) / leff, 3.6)
    assert c.fwhm_mm(100.0) == pytest.approx(expected, rel=1e-12)
    # domain.md: system FWHM ~6.9 mm at 10 cm and ~9 mm at 15 cm for LEHR
    assert 6.0 < c.fwhm_mm(100.0) < 7.5 and 8.0 < c.fwhm_mm(150.0) < 10.0
    # array and tensor distances, elementwise
    d = [0.0, 50.0, 100.0]
    np.testing.assert_allclose(c.fwhm_mm(np.array(d)), [c.fwhm_mm(v) for v in d], rtol=1e-12)
    torch.testing.assert_close(
        c.fwhm_mm(torch.tensor(d, dtype=torch.float64)),
        torch.tensor([c.fwhm_mm(v) for v in d], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="distance_mm"):
        c.fwhm_mm(torch.tensor([1.0, -1.0]))
    # a medium-energy collimator resolves worse than a high-resolution one at the same distance
    assert get_collimator("siemens-melp").fwhm_mm(100.0) > get_collimator("siemens-leuhr").fwhm_mm(
        100.0
    )


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("LEHR", "LEHR"),
        (" lehr ", "LEHR"),
        ("LO.ENER.HI.RES", "LEHR"),
        ("Low Energy High Resolution", "LEHR"),
        ("LOW ENERGY ULTRA HIGH RES", "LEUHR"),
        ("Extended Low Energy General Purpose", "ELEGP"),
        ("MED.ENER.LO.PEN", "MELP"),
        ("LEHR PARALLEL", "LEHR"),
        ("LE-AP", "LEAP"),
    ],
)
def test_collimator_codes(name, code):
    assert collimator_code(name) == code


@pytest.mark.parametrize(
    ("manufacturer", "expected"),
    [
        ("SIEMENS NM", "siemens"),
        ("Siemens Healthineers", "siemens"),
        ("GE MEDICAL SYSTEMS", "ge"),
        ("GE Healthcare", "ge"),
        ("Philips Medical Systems", "philips"),
        ("ADAC", "philips"),
        ("MEDISO", "mediso"),
        ("General Purpose Imaging Inc", None),
        (None, None),
    ],
)
def test_vendor(manufacturer, expected):
    assert vendor(manufacturer) == expected


@pytest.mark.parametrize(
    ("name", "manufacturer", "expected"),
    [
        ("LEHR", "SIEMENS NM", "siemens-lehr"),
        ("LO.ENER.HI.RES", "SIEMENS", "siemens-lehr"),
        ("LEAP", "SIEMENS", "siemens-leap"),
        ("LEUHR", "Siemens Healthineers", "siemens-leuhr"),
        ("MELP", "SIEMENS", "siemens-melp"),
        ("LEHR", "GE MEDICAL SYSTEMS", "ge-lehr"),
        ("LEHRS", "GE MEDICAL SYSTEMS", "ge-lehrs"),
        ("ELEGP", "GE Healthcare", "ge-elegp"),
        ("MEGP", "GE MEDICAL SYSTEMS", "ge-megp"),
        ("LEHR", "Philips Medical Systems", "philips-lehr"),
        ("VXGP", "Philips", "philips-legp"),
        ("MEGP", "Philips", "philips-megp"),
        ("LEUHR", "MEDISO", "mediso-leuhr"),
        # codes only one vendor writes resolve without a manufacturer
        ("MELP", None, "siemens-melp"),
        ("ELEGP", None, "ge-elegp"),
        ("VXGP", None, "philips-legp"),
        # table names pass through
        ("ge-megp", None, "ge-megp"),
        ("Siemens-LEHR", "GE", "siemens-lehr"),
    ],
)
def test_resolve_collimator(name, manufacturer, expected):
    assert resolve_collimator(name, manufacturer).name == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("LEFB", "fan-beam collimators are not supported: 'LEFB'"),
        ("LEHR FAN BEAM", "fan-beam collimators are not supported: 'LEHR FAN BEAM'"),
        ("FANBEAM", "fan-beam collimators are not supported"),
        ("CONE BEAM", "cone-beam collimators are not supported: 'CONE BEAM'"),
        ("PINHOLE 4 MM", "pinhole collimators are not supported: 'PINHOLE 4 MM'"),
        ("SMARTZOOM", "converging collimators are not supported: 'SMARTZOOM'"),
        ("HEGP", "unknown siemens collimator 'HEGP'"),
    ],
)
def test_unsupported_and_unknown_collimators_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_collimator(name, "SIEMENS")


def test_ambiguous_or_missing_names_are_refused():
    with pytest.raises(ValueError, match="differs between vendors"):
        resolve_collimator("LEHR", None)
    with pytest.raises(ValueError, match="unknown collimator 'XYZ'"):
        resolve_collimator("XYZ", None)
    with pytest.raises(ValueError, match="no collimator name"):
        resolve_collimator("  ", "GE")
    with pytest.raises(ValueError, match="no collimator name"):
        resolve_collimator(None, "GE")
