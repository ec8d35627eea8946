"""Figure helpers shared by the montage, the dataset overview and the evaluation report."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def show_transaxial(ax, image: np.ndarray, vmax: float | None, title: str, fontsize: int = 7):
    """Show an ``(X, Y)`` transaxial slice in radiological convention: the patient's right on
    the viewer's left (x runs right -> left), anterior up, a fixed colour window ``[0, vmax]``."""
    ax.imshow(np.asarray(image).T, origin="lower", cmap="magma", vmin=0, vmax=vmax)
    ax.invert_xaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` to ``path`` atomically (a temporary name, then a rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path
