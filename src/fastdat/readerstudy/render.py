"""Render one read of the reader study: the slices of a case in a row, as an anonymous PNG.

The picture carries nothing but pixels and the side markers ``R`` / ``L``: no title, no method,
no study or patient, and the PNG holds only its image chunks (``IHDR``, ``PLTE``, ``IDAT``,
``IEND``: no text, time or software chunks), so neither the image nor its metadata can unblind a
reader.
"""

from __future__ import annotations

import io

import numpy as np

GAP = 4  # px of black between slices
BAND = 18  # px of black above the slices for the R / L markers


def radiological(image: np.ndarray) -> np.ndarray:
    """An ``(X, Y)`` transaxial slice (RAS: x toward the patient's right, y anterior) as display
    rows and columns in radiological convention: anterior up, the patient's right on the viewer's
    left. The same orientation as :func:`fastdat.plotting.show_transaxial` (``image.T`` with
    ``origin="lower"`` and an inverted x axis), i.e. ``image.T[::-1, ::-1]``."""
    return np.asarray(image).T[::-1, ::-1]


def colour_lut(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint8 lookup table of a matplotlib colour map (``"gray"``, ``"magma"`` ...).

    Raises:
        ValueError: an unknown colour map name.
    """
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r} (e.g. gray, magma, hot, viridis)") from None
    return (cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def render_read(slices: np.ndarray, vmax: float, cmap: str = "gray", scale: int = 4) -> bytes:
    """PNG bytes of one read.

    Args:
        slices: ``(S, X, Y)`` transaxial slices of one case and method (counts / s per voxel).
        vmax: Upper end of the fixed window ``[0, vmax]`` (the same for every method of a case,
            so brightness does not tell the method); values above it saturate.
        cmap: Matplotlib colour map name (``"gray"`` for a grey scale).
        scale: Integer magnification (nearest neighbour: no detail is invented).

    Returns:
        An RGB PNG, ``S`` tiles of ``X * scale`` px side by side with :data:`GAP` px between,
        under a :data:`BAND` px band marking the patient's right (``R``, viewer's left) and left
        (``L``).
    """
    from PIL import Image, ImageDraw

    slices = np.asarray(slices, dtype=np.float64)
    if slices.ndim != 3:
        raise ValueError(f"render_read: expected (slices, X, Y), got shape {slices.shape}")
    if not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"render_read: the window top must be positive, got {vmax}")
    if scale < 1:
        raise ValueError(f"render_read: scale must be >= 1, got {scale}")
    lut = colour_lut(cmap)
    tiles = []
    for s in slices:
        level = np.clip(np.nan_to_num(radiological(s)) / vmax, 0.0, 1.0)
        rgb = lut[np.round(level * 255.0).astype(np.uint8)]
        tiles.append(np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1))
    h, w = tiles[0].shape[:2]
    canvas = np.zeros((BAND + h, len(tiles) * w + (len(tiles) - 1) * GAP, 3), dtype=np.uint8)
    for i, t in enumerate(tiles):
        canvas[BAND:, i * (w + GAP) : i * (w + GAP) + w] = t
    img = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(img)
    draw.text((3, 3), "R", fill=(255, 255, 255))
    draw.text((canvas.shape[1] - 10, 3), "L", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)  # no pnginfo: no text chunks at all
    return buf.getvalue()


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order (to check that nothing but pixels is inside)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8].decode("latin-1"))
        pos += 12 + length
    return out
