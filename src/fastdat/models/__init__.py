"""The model zoo: the study's ten networks (and yours) behind one registry."""

from fastdat.models.checkpoint import load_model, save_model
from fastdat.models.registry import build_model, list_models, model_info, register

__all__ = ["build_model", "list_models", "load_model", "model_info", "register", "save_model"]
