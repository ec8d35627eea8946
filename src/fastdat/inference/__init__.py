"""Denoise real studies with a trained model: volumes, DICOM series, NIfTI files, folders."""

from fastdat.inference.denoise import DenoiseResult, denoise, denoise_path, load_denoiser

__all__ = ["DenoiseResult", "denoise", "denoise_path", "load_denoiser"]
