"""Datasets of striatal crops: build from simulated cohorts, NIfTI or DICOM; load for training."""

from fastdat.data.load import load_crops

__all__ = ["load_crops"]
