from __future__ import annotations

from fastdat.cli import main
from fastdat.models.registry import STUDY_MODELS


def test_collimators_table(capsys):
    assert main(["collimators"]) == 0
    out = capsys.readouterr().out
    assert "siemens-lehr" in out
    # domain.md: Siemens LEHR system FWHM ~6.9 mm at 10 cm
    line = next(x for x in out.splitlines() if x.startswith("siemens-lehr"))
    assert abs(float(line.split()[-1]) - 6.9) < 0.2


def test_models_table(capsys):
    assert main(["models", "--no-speed"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in out[1:]]
    assert names[:10] == list(STUDY_MODELS)
    assert "Alom" in next(x for x in out if x.startswith("r2unet"))


def test_set_reads_exponent_floats():
    from fastdat.config import apply_overrides

    doc = apply_overrides({}, ["a.lr=1e-5", "b=3E+2", "c=1.0e-3", "d=siemens-lehr", "e=1e5x"])
    assert doc == {"a": {"lr": 1e-5}, "b": 300.0, "c": 1e-3, "d": "siemens-lehr", "e": "1e5x"}
