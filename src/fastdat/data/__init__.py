"""Datasets of striatal crops: build from simulated cohorts, NIfTI, DICOM or projections; read.

Later stages read a dataset through :func:`read_dataset` / :func:`load_crops` only.
"""

from fastdat.data.load import Dataset, load_crops, read_dataset

__all__ = ["Dataset", "load_crops", "read_dataset"]
