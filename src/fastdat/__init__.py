"""FastDaT: deep-learning acceleration of 123I-ioflupane (DaTscan) SPECT."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    """``fastdat.denoise`` on first use, so that ``import fastdat`` stays fast."""
    if name == "denoise":
        from fastdat.inference import denoise

        return denoise
    raise AttributeError(f"module 'fastdat' has no attribute {name!r}")
