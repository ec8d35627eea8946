"""The evaluation report's figures, as PNG bytes (matplotlib Agg, 100 dpi).

- :func:`grid_figure`: one test slice per worse-hemisphere grade (rows), one column per method,
  a shared colour window per row (the 25-min crop's maximum) with one colour bar.
- :func:`by_grade_figure`: an SBR of the test striata per hemisphere grade for every method,
  every striatum drawn as a point over a light box.
- :func:`points_boxplot_figure`: PSNR and SSIM per method, every patient drawn as a point over a
  light box.

Images are in radiological convention (the patient's right on the viewer's left, anterior up)
with ``R`` / ``L`` / ``A`` letters; see :mod:`fastdat.plotting`. Each public function has a
``_..._fig`` twin that returns the matplotlib Figure (tests inspect what is drawn). Jitter comes
from a seeded generator, so the same input gives the same picture.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import numpy as np

from fastdat.methods import LONG, RAW, TRUTH

DPI = 100
MAX_COLUMNS = 7
"""Most image columns (truth included) :func:`grid_figure` shows when it chooses them itself."""
GRADE_COLOURS = ("tab:green", "tab:olive", "tab:orange", "tab:red")
UNIT = "counts / s"
SEED = 0
_NAMES = {RAW: "5-min (raw)", LONG: "25-min", TRUTH: "truth"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(method: str, width: int = 14) -> str:
    """Display name of a method, wrapped to ``width`` characters (also after ``_`` / ``-``)."""
    name = _NAMES.get(method, method)
    lines, line = [], ""
    for part in re.split(r"(?<=[_\-\s])", name):
        if line and len(line) + len(part) > width:
            lines.append(line.rstrip())
            line = ""
        line += part
    lines.append(line.rstrip())
    return "\n".join(w for ln in lines for w in textwrap.wrap(ln, width) or [ln])


def _png(fig) -> bytes:
    from fastdat.plotting import figure_png

    return figure_png(fig, dpi=DPI)


# ---------------------------------------------------------------- grid of slices


def _grid_columns(preds: dict[str, Any], truth, methods: list[str] | None) -> tuple[list, int]:
    """Image columns in display order (methods, then 25-min, then truth) and how many methods
    exist in all (for the "k of n shown" note)."""
    available = [m for m in preds if m != TRUTH]
    n_all = len(available) + (truth is not None)
    if methods is not None:
        unknown = [m for m in methods if m not in preds and m != TRUTH]
        if unknown:
            raise ValueError(f"methods {unknown} not among the predictions {list(preds)}")
        chosen = list(dict.fromkeys(m for m in methods if m != TRUTH))
    else:
        budget = MAX_COLUMNS - (truth is not None)
        chosen = [m for m in (RAW, LONG) if m in available]
        chosen += [m for m in available if m not in chosen][: max(budget - len(chosen), 0)]
        chosen = [m for m in available if m in chosen]  # keep the caller's order
    cols = [m for m in chosen if m != LONG] + [m for m in chosen if m == LONG]
    if truth is not None:
        cols.append(TRUTH)
    return cols, n_all


def _grid_picks(test_index) -> list[tuple[int, int]]:
    """``(worse grade, row)``: the first middle slice of each worse-hemisphere grade."""
    worse = test_index[["grade_left", "grade_right"]].astype(float).max(axis=1).to_numpy()
    middle = test_index["slice_rank"].to_numpy() == test_index["slice_rank"].max() // 2
    picks = []
    for g in sorted({int(v) for v in worse[~np.isnan(worse)]} or {0}):
        cand = np.flatnonzero((worse == g) & middle)
        if cand.size:
            picks.append((g, int(cand[0])))
    return picks or [(-1, 0)]


def _row_label(test_index, g: int, i: int) -> str:
    if g < 0:
        return "grade unknown"
    row = test_index.iloc[i]
    sides = f"L{_g(row['grade_left'])} / R{_g(row['grade_right'])}"
    pid = f"\n{row['patient_id']}" if "patient_id" in test_index.columns else ""
    return f"grade {g}\n({sides}){pid}"


def _g(v) -> str:
    try:
        return str(int(v))
    except (TypeError, ValueError):
        return "?"


def _grid_fig(preds: dict[str, np.ndarray], truth: np.ndarray | None, test_index, methods=None):
    from fastdat.plotting import add_colorbar, show_transaxial

    plt = _pyplot()
    cols, n_all = _grid_columns(preds, truth, methods)
    picks = _grid_picks(test_index)
    shared = [c for c in cols if c != TRUTH]
    has_truth = TRUTH in cols
    # columns: shared images, their colour bar, [gap, truth, truth's colour bar]
    ratios = [1.0] * len(shared) + [0.06]
    if has_truth:
        ratios += [0.05, 1.0, 0.06]
    panel = min(2.1, 8.0 / max(len(cols), 1))  # inches; <= ~1000 px wide at 7 columns
    fig = plt.figure(
        figsize=(
            0.9 + panel * sum(ratios) + 0.45 * (1 + has_truth),
            0.7 + 1.08 * panel * len(picks),
        ),
        layout="constrained",
    )
    gs = fig.add_gridspec(len(picks), len(ratios), width_ratios=ratios)
    fs = 9
    for r, (g, i) in enumerate(picks):
        if LONG in preds:
            vmax = float(preds[LONG][i].max())
        else:
            vmax = max(float(preds[m][i].max()) for m in shared) if shared else 1.0
        vmax = vmax if vmax > 0 else 1.0
        im = None
        for c, name in enumerate(shared):
            ax = fig.add_subplot(gs[r, c])
            im = show_transaxial(ax, preds[name][i], vmax, "", fontsize=fs)
            if r == 0:
                ax.set_title(_label(name), fontsize=fs)
            if c == 0:
                ax.set_ylabel(_row_label(test_index, g, i), fontsize=fs)
        if im is not None:
            add_colorbar(im, cax=fig.add_subplot(gs[r, len(shared)]), unit=UNIT, fontsize=fs - 1)
        if has_truth:
            ax = fig.add_subplot(gs[r, len(shared) + 2])
            img = truth[i]
            top = float(np.max(img)) or 1.0
            im_t = show_transaxial(ax, img, top, "", fontsize=fs)
            if r == 0:
                ax.set_title("truth\n(own window)", fontsize=fs)
            if not shared:
                ax.set_ylabel(_row_label(test_index, g, i), fontsize=fs)
            cax = fig.add_subplot(gs[r, len(shared) + 3])
            add_colorbar(im_t, cax=cax, unit=UNIT, fontsize=fs - 1)
    shown = len(cols)
    note = f" ({shown} of {n_all} methods shown)" if shown < n_all else ""
    fig.suptitle(
        f"One test slice per worse-hemisphere grade{note}.\nWindow per row: 0 to its 25-min "
        "maximum (truth: its own). Radiological view: R = patient's right.",
        fontsize=fs,
    )
    return fig


def grid_figure(
    preds: dict[str, np.ndarray],
    truth: np.ndarray | None,
    test_index,
    methods: list[str] | None = None,
) -> bytes:
    """PNG: one test slice per worse-hemisphere grade (rows), one column per method.

    Args:
        preds: Method -> ``(N, H, W)`` crops, in the order of ``test_index`` (``"25min"`` among
            them sets each row's window).
        truth: ``(N, H, W)`` truth crops (counts / s, shown on their own window) or ``None``.
        test_index: DataFrame with ``grade_left``, ``grade_right``, ``slice_rank`` (and
            ``patient_id``), one row per crop.
        methods: Columns to show (the truth is added when given). ``None``: every method when
            they fit in :data:`MAX_COLUMNS` columns, else the 5-min, the 25-min and the first
            others (the title says how many are shown).

    Returns:
        PNG bytes; columns are the methods, then 25-min, then the truth.
    """
    return _png(_grid_fig(preds, truth, test_index, methods))


# ---------------------------------------------------------------- strips of points


def _orientation(ax, vertical: bool) -> dict[str, Any]:
    """Box orientation keyword: ``orientation`` (matplotlib >= 3.10) or the older ``vert``."""
    import inspect

    if "orientation" in inspect.signature(ax.boxplot).parameters:
        return {"orientation": "vertical" if vertical else "horizontal"}
    return {"vert": vertical}


def _strip(ax, values: np.ndarray, pos: float, width: float, colour, rng, vertical: bool) -> int:
    """A light box and every value as a jittered point at ``pos``; returns the points drawn."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return 0
    ax.boxplot(
        [values],
        positions=[pos],
        widths=width,
        **_orientation(ax, vertical),
        showfliers=False,
        patch_artist=True,
        manage_ticks=False,
        boxprops={"facecolor": "0.92", "edgecolor": "0.6", "linewidth": 0.8},
        medianprops={"color": "0.3", "linewidth": 1.2},
        whiskerprops={"color": "0.6", "linewidth": 0.8},
        capprops={"color": "0.6", "linewidth": 0.8},
    )
    jitter = pos + rng.uniform(-0.32, 0.32, values.size) * width
    xy = (jitter, values) if vertical else (values, jitter)
    ax.scatter(*xy, s=11, color=colour, alpha=0.75, linewidths=0, zorder=3)
    return int(values.size)


def _measure_label(measure: str) -> str:
    if measure.startswith("southampton"):
        return "Southampton SBR"
    return f"{measure.replace('_', ' ')} SBR (template VOI)"


def _n_text(counts: list[int]) -> str:
    counts = [c for c in counts if c]
    if not counts:
        return "0"
    return str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def _by_grade_fig(table, methods: list[str], measure: str = "putamen"):
    plt = _pyplot()
    test = table[table["split"] == "test"]
    grades = (0, 1, 2, 3)
    fig, axes = plt.subplots(
        1,
        len(grades),
        figsize=(10, 1.5 + 0.3 * max(len(methods), 3)),
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    rng = np.random.default_rng(SEED)
    counts = []
    for ax, g, colour in zip(axes, grades, GRADE_COLOURS, strict=True):
        rows = test[test["grade"] == g]
        n_g = []
        for k, m in enumerate(methods):
            vals = rows.loc[rows["method"] == m, measure].to_numpy(dtype=float)
            n_g.append(_strip(ax, vals, k, 0.6, colour, rng, vertical=False))
        counts += n_g
        if LONG in methods:  # the reference level of this grade, to compare every row with
            ref = rows.loc[rows["method"] == LONG, measure].to_numpy(dtype=float)
            if np.isfinite(ref).any():
                ax.axvline(np.nanmedian(ref), color="0.45", linewidth=0.8, linestyle="--")
        ax.set_title(f"grade {g} striata (n = {_n_text(n_g)})", fontsize=9, color=colour)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=9)
    axes[0].set_yticks(range(len(methods)), [_NAMES.get(m, m) for m in methods])
    axes[0].set_ylim(len(methods) - 0.5, -0.5)  # first method on top
    fig.supxlabel(_measure_label(measure), fontsize=10)
    ref_note = "; dashed: 25-min median" if LONG in methods else ""
    fig.suptitle(
        f"Test striata by hemisphere grade: every striatum is a point (n = {_n_text(counts)} "
        f"per method and grade), box: median and quartiles{ref_note}",
        fontsize=9,
    )
    return fig


def by_grade_figure(table, methods: list[str], measure: str = "putamen") -> bytes:
    """PNG: ``measure`` (an SBR column) of the test striata per hemisphere grade, per method.

    One panel per grade (0-3, shared axes), one row per method (in the given order, top to
    bottom); every striatum is a jittered point over a light box (median, quartiles), and a
    dashed line marks the 25-min median when ``"25min"`` is among ``methods``.

    Args:
        table: DataFrame with ``split`` (``"test"`` rows are used), ``method``, ``grade``
            (0-3) and the ``measure`` column.
        methods: Methods to show, in order.
        measure: Column to plot.
    """
    return _png(_by_grade_fig(table, methods, measure))


def _boxplot_fig(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    ylabels: tuple[str, str] = ("PSNR vs 25-min (dB)", "SSIM vs 25-min"),
    unit_label: str = "patient",
):
    plt = _pyplot()
    names = list(scores)
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 1.4 + 0.38 * max(len(names), 2)), sharey=True, layout="constrained"
    )
    rng = np.random.default_rng(SEED)
    counts = []
    for a, key, label in zip(axes, (0, 1), ylabels, strict=True):
        for k, n in enumerate(names):
            counts.append(_strip(a, scores[n][key], k, 0.6, "tab:blue", rng, vertical=False))
        a.set_xlabel(label, fontsize=10)
        a.grid(axis="x", color="0.9", linewidth=0.6)
        a.set_axisbelow(True)
        a.tick_params(labelsize=9)
    axes[0].set_yticks(range(len(names)), [_NAMES.get(n, n) for n in names])
    axes[0].set_ylim(len(names) - 0.5, -0.5)
    fig.suptitle(
        f"One point per {unit_label} (n = {_n_text(counts)} per method); box: median and quartiles",
        fontsize=10,
    )
    return fig


def points_boxplot_figure(
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    ylabels: tuple[str, str] = ("PSNR vs 25-min (dB)", "SSIM vs 25-min"),
    unit_label: str = "patient",
) -> bytes:
    """PNG: PSNR and SSIM per method, a light box and every value as a jittered point.

    Args:
        scores: Method -> ``(psnr_values, ssim_values)``, one value per ``unit_label``.
        ylabels: Axis labels of the two panels (the value axes).
        unit_label: What one point is (named in the title with n).
    """
    return _png(_boxplot_fig(scores, ylabels, unit_label))
