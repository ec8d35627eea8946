from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fastdat.readerstudy.render import BAND, GAP, png_chunks, radiological, render_read


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9)])
def test_radiological_orientation(shape):
    """Patient's right (high x, RAS) on the viewer's left, anterior (high y) up; grey window."""
    s, nx, ny = shape
    img = np.zeros(shape)
    img[:, nx - 1, ny - 1] = 10.0  # right anterior corner of the patient
    img[:, 0, 0] = 5.0  # left posterior corner
    scale = 3
    out = _decode(render_read(img, vmax=10.0, cmap="gray", scale=scale))
    assert out.shape == (BAND + ny * scale, s * nx * scale + (s - 1) * GAP, 3)
    tile = out[BAND : BAND + ny * scale, : nx * scale, 0]
    assert tile[0, 0] == 255 and tile[scale - 1, scale - 1] == 255  # top left, x3 nearest
    assert tile[-1, -1] == 128  # 5 / 10 of the window, round(0.5 * 255)
    assert (tile[scale:, :][tile[scale:, :] != 128] == 0).all()
    np.testing.assert_array_equal(radiological(img[0])[0, 0], 10.0)


def test_window_is_fixed_and_saturates():
    img = np.array([[[0.0, 2.0], [4.0, 8.0]]])
    out = _decode(render_read(img, vmax=4.0, scale=1))[BAND:, :, 0]
    # display = img.T[::-1, ::-1] = [[8, 2], [4, 0]]; 8 saturates at the window top 4
    np.testing.assert_array_equal(out, [[255, 128], [255, 0]])


def test_side_markers_and_colour_map():
    img = np.ones((2, 16, 16))
    out = _decode(render_read(img, vmax=2.0, cmap="magma", scale=2))
    band = out[:BAND].max(axis=2)
    width = out.shape[1]
    assert band[:, :12].max() > 200 and band[:, width - 12 :].max() > 200  # R and L (antialiased)
    assert band[:, 12 : width - 12].max() == 0
    px = out[BAND + 5, 5]
    assert not px[0] == px[1] == px[2]  # a colour map, not grey


def test_png_holds_pixels_only():
    png = render_read(np.random.default_rng(0).random((5, 64, 64)), vmax=1.0)
    assert set(png_chunks(png)) <= {"IHDR", "PLTE", "IDAT", "IEND"}
    assert png_chunks(png)[0] == "IHDR" and png_chunks(png)[-1] == "IEND"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vmax": 0.0}, "positive"),
        ({"vmax": 1.0, "cmap": "no-such-map"}, "colour map"),
        ({"vmax": 1.0, "scale": 0}, "scale"),
    ],
)
def test_render_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_read(np.ones((1, 4, 4)), **kwargs)
