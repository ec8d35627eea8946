"""Radiological display of :func:`fastdat.plotting.show_transaxial`, checked on rendered pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fastdat.anatomy.phantom import grid_affine  # noqa: E402
from fastdat.plotting import show_transaxial  # noqa: E402


def _render(image, **kw):
    """Draw ``image`` with show_transaxial; return the RGB buffer, the axes box in buffer pixels
    (x0, x1, top row, bottom row), the AxesImage and the axes."""
    fig = Figure(figsize=(4, 4), dpi=50)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    im = show_transaxial(ax, image, float(image.max()), "", **kw)
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())[..., :3].astype(float)
    bb = ax.get_window_extent()
    h = buf.shape[0]  # display y runs up, buffer rows run down
    box = (int(bb.x0), int(bb.x1), int(h - bb.y1), int(h - bb.y0))
    return buf, box, im, ax


def _bright_centre(buf, box):
    """(column, row) of the bright spot inside the axes box, in buffer pixels."""
    x0, x1, top, bottom = box
    lum = buf[top:bottom, x0:x1].sum(-1)
    rows, cols = np.nonzero(lum > 0.8 * lum.max())
    return x0 + cols.mean(), top + rows.mean()


def _text_x(ax, letter):
    renderer = ax.figure.canvas.get_renderer()
    (t,) = [t for t in ax.texts if t.get_text() == letter]
    bb = t.get_window_extent(renderer)
    return (bb.x0 + bb.x1) / 2


def test_phantom_left_is_small_x():
    # the convention the display relies on: RAS, x increases toward the patient's right, so
    # voxel 0 (negative x in mm) is the patient's left
    aff = grid_affine((64, 64, 48), 3.5)
    assert aff[0, 3] < 0 < aff[0, 0]


@pytest.mark.parametrize("side", ["left", "right"])
def test_patient_side_ends_on_the_radiological_side(side):
    img = np.zeros((64, 64))
    x = 6 if side == "left" else 57  # small x: patient's left; large x: patient's right (RAS)
    img[x - 3 : x + 3, 29:35] = 1.0
    buf, box, im, ax = _render(img)
    col, _ = _bright_centre(buf, box)
    mid = (box[0] + box[1]) / 2
    if side == "left":  # patient's left on the viewer's right
        assert col > mid + 0.25 * (box[1] - box[0])
    else:  # patient's right on the viewer's left
        assert col < mid - 0.25 * (box[1] - box[0])
    # the letters name the patient's side at each edge: R on the viewer's left, L on the right
    assert _text_x(ax, "R") < mid < _text_x(ax, "L")
    assert im.get_clim() == (0.0, 1.0)


def test_anterior_is_up_and_letter_a_on_top():
    img = np.zeros((64, 64))
    img[29:35, 55:61] = 1.0  # large y: anterior
    buf, box, _, ax = _render(img)
    _, row = _bright_centre(buf, box)
    assert row < (box[2] + box[3]) / 2 - 0.25 * (box[3] - box[2])  # upper half (rows run down)
    renderer = ax.figure.canvas.get_renderer()
    (a,) = [t for t in ax.texts if t.get_text() == "A"]
    bb, axbb = a.get_window_extent(renderer), ax.get_window_extent()
    assert bb.y0 > (axbb.y0 + axbb.y1) / 2


def test_defaults_add_only_letters_and_options_add_colorbar():
    img = np.random.default_rng(0).random((16, 16))
    fig = Figure()
    ax = fig.add_subplot()
    show_transaxial(ax, img, 1.0, "t")
    assert len(fig.axes) == 1
    assert sorted(t.get_text() for t in ax.texts) == ["A", "L", "R"]
    fig = Figure()
    ax = fig.add_subplot()
    im = show_transaxial(ax, img, 2.0, "t", colorbar=True, unit="counts / s", orient=False)
    assert ax.texts == [] or not list(ax.texts)
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "counts / s"
    assert im.get_clim() == (0.0, 2.0)
