"""Denoise real studies with a trained model: volumes, DICOM series, NIfTI files, folders."""

from fastdat.inference.denoise import denoise, load_denoiser
from fastdat.inference.files import DenoiseResult, denoise_path

__all__ = ["DenoiseResult", "denoise", "denoise_path", "load_denoiser"]
