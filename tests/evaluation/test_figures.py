"""The evaluation report's figures: valid PNGs that draw every value they are given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from fastdat.evaluation import figures
from fastdat.evaluation.figures import (
    MAX_COLUMNS,
    by_grade_figure,
    grid_figure,
    points_boxplot_figure,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _points(fig) -> int:
    """Scatter points drawn on every axes of ``fig``."""
    n = 0
    for ax in fig.axes:
        n += sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    return n


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.fixture(scope="module")
def crops():
    """Four patients (worse grades 0-3), 3 slices each, 10 methods plus 25-min and truth."""
    rng = np.random.default_rng(0)
    rows = []
    for p, (gl, gr) in enumerate(((0, 0), (1, 0), (0, 2), (3, 2))):
        for rank in range(3):
            rows.append(
                {"patient_id": f"P{p}", "grade_left": gl, "grade_right": gr, "slice_rank": rank}
            )
    index = pd.DataFrame(rows)
    n = len(index)
    y = rng.random((n, 64, 64)).astype(np.float32) + 1.0
    preds = {"5min": y + rng.random((n, 64, 64)), "25min": y}
    for k in range(9):
        preds[f"network_{k}"] = y * (1 + 0.01 * k)
    truth = 3 * y
    return preds, truth, index


def test_grid_figure_png_and_columns(crops):
    preds, truth, index = crops
    shown = ["5min", "network_0", "25min", "network_3"]
    fig = figures._grid_fig(preds, truth, index, shown)
    images = [ax for ax in fig.axes if ax.images]
    # 4 grades x (4 methods + truth); 25-min moved after the methods, truth last
    assert len(images) == 4 * 5
    titles = [ax.get_title() for ax in images[:5]]
    assert titles[0].startswith("5-min") and titles[3] == "25-min" and titles[4].startswith("truth")
    # one shared window per row: the 25-min crop's maximum; the truth on its own
    row = images[5:10]  # grade 1
    i = int(np.flatnonzero((index["grade_left"] == 1) & (index["slice_rank"] == 1))[0])
    for ax in row[:4]:
        assert ax.images[0].get_clim() == pytest.approx((0.0, float(preds["25min"][i].max())))
    assert row[4].images[0].get_clim() == pytest.approx((0.0, float(truth[i].max())))
    # a colour bar per row for the methods and one for the truth, labelled in counts / s
    cbars = [ax for ax in fig.axes if ax.get_ylabel() == "counts / s"]
    assert len(cbars) == 2 * 4
    # orientation letters on the images
    assert {t.get_text() for t in images[0].texts} == {"R", "L", "A"}
    _close(fig)
    assert grid_figure(preds, truth, index, shown).startswith(PNG)


def test_grid_figure_many_methods_without_choice(crops):
    preds, truth, index = crops
    fig = figures._grid_fig(preds, truth, index)
    n_cols = len([ax for ax in fig.axes if ax.images]) // 4
    assert n_cols == MAX_COLUMNS  # 11 methods + truth do not all fit: capped, and said so
    assert "of 12 methods shown" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.images][:n_cols]
    assert titles[0].startswith("5-min") and "25-min" in titles
    _close(fig)
    png = grid_figure(preds, None, index)
    assert png.startswith(PNG)
    with pytest.raises(ValueError, match="not among"):
        grid_figure(preds, truth, index, ["5min", "nope"])


def _table(methods, per_grade=(5, 3, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for m in methods:
        for g, n in enumerate(per_grade):
            for v in rng.normal(2 - 0.5 * g, 0.2, n):
                rows.append({"split": "test", "method": m, "grade": g, "putamen": v})
            rows.append({"split": "val", "method": m, "grade": g, "putamen": 5.0})
    rows.append({"split": "test", "method": methods[0], "grade": 1, "putamen": np.nan})
    return pd.DataFrame(rows)


def test_by_grade_figure_draws_every_test_striatum():
    methods = ["5min", "gaussian", *[f"net{k}" for k in range(13)], "25min", "truth"]
    table = _table(methods)
    fig = figures._by_grade_fig(table, methods)
    # every finite test value, and nothing from the validation rows
    assert _points(fig) == len(methods) * (5 + 3 + 4 + 2)
    values = np.concatenate([c.get_offsets()[:, 0] for ax in fig.axes for c in ax.collections])
    assert values.max() < 4.0  # the validation rows (5.0) are not drawn
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-2:] == ["25-min", "truth"]
    assert "putamen SBR (template VOI)" in fig._supxlabel.get_text()
    _close(fig)
    png = by_grade_figure(table, methods)
    assert png.startswith(PNG)
    # deterministic jitter
    assert by_grade_figure(table, methods) == png


def test_points_boxplot_figure_draws_every_patient():
    rng = np.random.default_rng(1)
    scores = {
        m: (rng.normal(31, 1, n), rng.normal(0.8, 0.05, n))
        for m, n in (("5min", 7), ("gaussian", 7), ("unet", 7), ("late", 6))
    }
    fig = figures._boxplot_fig(scores)
    assert _points(fig) == 2 * (7 + 7 + 7 + 6)
    assert [ax.get_xlabel() for ax in fig.axes] == ["PSNR vs 25-min (dB)", "SSIM vs 25-min"]
    assert "n = 6-7" in fig._suptitle.get_text()
    _close(fig)
    png = points_boxplot_figure(scores, unit_label="patient")
    assert png.startswith(PNG)
    assert points_boxplot_figure(scores) == png


def test_voi_window_is_the_maximum_inside_the_vois_not_a_volume_percentile():
    from types import SimpleNamespace

    from fastdat.quantification.quantify import _voi_window

    vol = np.full((40, 40, 20), 1.0)  # brain background
    labels = np.zeros(vol.shape, dtype=np.uint8)
    labels[10:14, 20:24, 8:12] = 1  # a small residual caudate: 64 voxels, fewer than 0.1 %
    labels[5:35, 2:6, 8:12] = 7  # occipital
    vol[labels == 1] = 2.5
    vol[11, 21, 9] = 3.0  # the striatal peak
    vol[39, 39, 0] = 50.0  # a hot voxel outside every VOI (scatter, edge of the field)
    south = {"left": labels == 1, "right": np.zeros(vol.shape, dtype=bool)}
    vois = SimpleNamespace(labels=labels, southampton=south)
    assert _voi_window(vol, vois) == 3.0
    # the striatal peak is above the whole-volume 99.9th percentile the old window used
    assert np.percentile(vol, 99.9) < 3.0
    labels[labels == 1] = 0  # no striatal uptake left: the window follows the brain background
    vol[vol > 1.0] = 1.0
    assert _voi_window(vol, SimpleNamespace(labels=labels, southampton=south)) == 1.0
