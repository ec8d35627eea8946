"""Figure helpers shared by the montage, the dataset overview and the evaluation report.

Orientation: image arrays are ``(X, Y)`` transaxial slices with RAS-like axes, as everywhere in
FastDaT (x increases toward the patient's *right*, y toward anterior; the phantom's left
striatum lies at negative x). They are shown in radiological convention: the patient's right on
the viewer's left, anterior up, i.e. ``image.T`` with ``origin="lower"`` and an inverted x axis
(large x, the patient's right, ends on the viewer's left). The letters drawn by
:func:`orientation_letters` name the patient's side at each edge of the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastdat.io.atomic import replace_file

CMAP = "magma"


def orientation_letters(ax, fontsize: float = 7) -> None:
    """Draw ``R`` (viewer's left edge), ``L`` (viewer's right edge) and ``A`` (top) on ``ax``.

    The letters are placed in axes coordinates, so they do not depend on the data limits; they
    assume the radiological display of :func:`show_transaxial`.
    """
    import matplotlib.patheffects as pe

    style = {
        "fontsize": fontsize,
        "fontweight": "bold",
        "color": "white",
        "transform": ax.transAxes,
        "path_effects": [pe.withStroke(linewidth=1.5, foreground="black")],
        "clip_on": False,
    }
    ax.text(0.03, 0.5, "R", ha="left", va="center", **style)
    ax.text(0.97, 0.5, "L", ha="right", va="center", **style)
    ax.text(0.5, 0.97, "A", ha="center", va="top", **style)


def add_colorbar(image, ax=None, cax=None, unit: str | None = None, fontsize: float = 7):
    """A colour bar for ``image`` (an AxesImage) beside ``ax`` (stealing a little of its width)
    or in ``cax``; ``unit`` labels it. Returns the matplotlib Colorbar."""
    fig = image.axes.figure
    if cax is not None:
        cbar = fig.colorbar(image, cax=cax)
    else:
        cbar = fig.colorbar(
            image, ax=ax if ax is not None else image.axes, fraction=0.046, pad=0.03
        )
    cbar.ax.tick_params(labelsize=fontsize)
    if unit:
        cbar.set_label(unit, fontsize=fontsize)
    return cbar


def show_transaxial(
    ax,
    image: np.ndarray,
    vmax: float | None,
    title: str,
    fontsize: int = 7,
    *,
    colorbar: bool = False,
    unit: str | None = None,
    orient: bool = True,
):
    """Show an ``(X, Y)`` transaxial slice in radiological convention with the window
    ``[0, vmax]``.

    The patient's right is on the viewer's left (x, which increases toward the patient's right,
    runs right -> left on the screen) and anterior is up.

    Args:
        ax: Matplotlib axes.
        image: ``(X, Y)`` slice, RAS-like axes.
        vmax: Top of the colour window (``None``: the image maximum); the bottom is 0.
        title: Axes title (empty for none).
        fontsize: Title (and letter / colour-bar) font size.
        colorbar: Add a colour bar beside the axes.
        unit: Colour-bar label, e.g. ``"counts / s"``.
        orient: Draw the orientation letters ``R`` / ``L`` / ``A``.

    Returns:
        The matplotlib ``AxesImage``.
    """
    im = ax.imshow(np.asarray(image).T, origin="lower", cmap=CMAP, vmin=0, vmax=vmax)
    ax.invert_xaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    if orient:
        orientation_letters(ax, fontsize=max(fontsize - 1, 5))
    if colorbar:
        add_colorbar(im, ax=ax, unit=unit, fontsize=max(fontsize - 1, 5))
    return im


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save ``fig`` to ``path`` atomically (a temporary name, then a rename) and close it."""
    import matplotlib.pyplot as plt

    try:
        return replace_file(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi))
    finally:
        plt.close(fig)


def figure_png(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()
