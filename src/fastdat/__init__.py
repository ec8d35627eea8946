"""FastDaT: deep-learning acceleration of 123I-ioflupane (DaTscan) SPECT."""

from __future__ import annotations

__version__ = "0.1.0"
