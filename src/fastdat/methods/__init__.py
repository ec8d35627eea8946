"""Methods: raw, tuned filters, trained networks and references behind one interface.

:class:`Method` (:mod:`.base`) is the one notion of "a way of producing an image"; :mod:`.filters`
holds the classical post-filters and their tuning; :mod:`.load` makes methods from tuned
parameters, run folders and evaluation folders; :mod:`.catalog` says where a network came from,
whether it converged and which method is best on validation.
"""

from fastdat.methods.base import (
    KINDS,
    LONG,
    RAW,
    TRUTH,
    Method,
    ensemble_size,
    head_box,
    image_scale,
    predict,
    predict_in_box,
    predict_tensor,
    predict_volume,
    restores_volumes,
)
from fastdat.methods.load import from_evaluation, load_methods, network_method, tune_filters

__all__ = [
    "KINDS",
    "LONG",
    "RAW",
    "TRUTH",
    "Method",
    "ensemble_size",
    "from_evaluation",
    "head_box",
    "image_scale",
    "load_methods",
    "network_method",
    "predict",
    "predict_in_box",
    "predict_tensor",
    "predict_volume",
    "restores_volumes",
    "tune_filters",
]
