"""The scan-time sweep's report: one self-contained HTML page from ``fom.csv`` and ``iso.csv``.

The sweep measures every method at every acquisition duration; its files answer one question:
*how short can the scan be, and does restoration change that?* The page leads with that answer,
in sentences generated from the CSV values only (never from constants), and the iso-performance
table (the shortest scan with which each method matches 25-min OSEM, per figure of merit), then
one figure per figure of merit (FOM) against scan time, then the definitions.

Inputs (the sweep's output folder ``OUT``):

- ``fom.csv``, one row per (method, duration, FOM): ``method``, ``kind`` (raw | filter |
  network), ``duration_min``, ``fom``, ``value``, ``low``, ``high`` (95 % CI, may be empty),
  ``n``, ``higher_is_better``.
- ``iso.csv``, one row per (method, FOM): ``method``, ``fom``, ``time_min`` (may be ``inf``),
  ``bound`` (``exact`` | ``at_most`` | ``beyond``), ``low``, ``low_bound``, ``high``,
  ``high_bound``, ``reference_value``, ``share_beyond``. ``at_most``: at most the shortest
  duration (the time given is that duration); ``beyond``: longer than the longest duration, not
  reached (the time given is ``inf``). See :mod:`fastdat.stats.iso`.
- ``sweep.json`` (optional): ``n_test_patients``, ``durations``, ``mode``, ``notes``,
  ``timings``, ``reference_method``, ``reference_duration``.

Outputs: ``OUT/report.html`` and ``OUT/figures/<fom>.png``.

Whether restoration shortens the scan is judged by the 95 % CIs of the iso times: a method is
said to shorten it only when its CI lies entirely below raw OSEM's (non-overlapping intervals, a
conservative criterion); otherwise the page says there is no evidence that it does.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastdat.io.atomic import write_bytes

FOM_REQUIRED = ("method", "kind", "duration_min", "fom", "value")
"""Columns ``fom.csv`` must have (``low``, ``high``, ``n``, ``higher_is_better`` are optional)."""
ISO_REQUIRED = ("method", "fom", "time_min", "bound")
"""Columns ``iso.csv`` must have (the CI and reference columns are optional)."""
BOUNDS = ("exact", "at_most", "beyond")
RAW_METHOD = "osem"
REFERENCE_DURATION = 25.0
DPI = 100

MEASURES = {
    "putamen": "putamen",
    "caudate": "caudate",
    "putamen_posterior": "posterior-putamen",
    "southampton": "Southampton (whole-striatum)",
}
"""Plain names of the SBR measures that end the ``sbr_*`` FOM names."""

_FIXED: dict[str, tuple[str, str, str]] = {  # name: (short label, unit, definition)
    "psnr_nf": (
        "PSNR vs noise-free",
        "dB",
        "Peak signal-to-noise ratio of the image against the noise-free reconstruction "
        "(higher is better).",
    ),
    "ssim_nf": (
        "SSIM vs noise-free",
        "",
        "Structural similarity of the image to the noise-free reconstruction, dimensionless, "
        "at most 1 (higher is better).",
    ),
    "psnr_25": (
        "PSNR vs 25-min",
        "dB",
        "Peak signal-to-noise ratio of the image against the 25-min image (higher is better).",
    ),
    "ssim_25": (
        "SSIM vs 25-min",
        "",
        "Structural similarity of the image to the 25-min image, dimensionless, at most 1 "
        "(higher is better).",
    ),
    "cho_auc": (
        "CHO AUC",
        "",
        "Area under the ROC curve of a channelized Hotelling observer detecting early loss: "
        "grade 1 against grade 0 striata (0.5 is chance, 1 perfect; higher is better).",
    ),
    "sbr_auc_putamen_posterior": (
        "posterior-putamen SBR AUC",
        "",
        "Area under the ROC curve of the posterior-putamen SBR as the decision variable for "
        "the same task as the CHO: grade 1 against grade 0 striata (higher is better).",
    ),
    "inconclusive_share": (
        "inconclusive share",
        "share of patients",
        "Share of patients (0 to 1) that must be called inconclusive, calling normal vs "
        "abnormal by SBR, for the rest to reach the target balanced accuracy "
        "(sweep.target_accuracy, 98 % by default; lower is better).",
    ),
    "kappa": (
        "grading kappa",
        "",
        "Weighted kappa of the automated grade against the true grade, per striatum (1 is "
        "perfect agreement, 0 chance; higher is better).",
    ),
}

_PREFIXED: tuple[tuple[str, str, str, str], ...] = (  # prefix: (short label, unit, definition)
    (
        "sbr_bias_nf_",
        "{m} SBR bias vs noise-free",
        "SBR units",
        "Mean signed error of the {m} SBR against the noise-free reconstruction's {m} SBR "
        "(SBR units; 0 is best).",
    ),
    (
        "sbr_bias_truth_",
        "{m} SBR bias vs truth",
        "SBR units",
        "Mean signed error of the {m} SBR against the truth's {m} SBR (SBR units; 0 is best; "
        "includes the partial-volume loss of the reconstruction).",
    ),
    (
        "sbr_rmse_nf_",
        "{m} SBR RMSE vs noise-free",
        "SBR units",
        "Root-mean-square error of the {m} SBR against the noise-free reconstruction's {m} "
        "SBR (SBR units; lower is better).",
    ),
    (
        "sbr_sd_",
        "{m} SBR SD",
        "SBR units",
        "Precision of the {m} SBR: its SD across independent noise realizations of the same "
        "subject (SBR units; lower is better).",
    ),
)

HEADLINE: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("detecting early loss", ("cho_auc", "sbr_auc_putamen_posterior"), None),
    ("calling patients normal or abnormal by SBR", ("inconclusive_share",), None),
    ("automated grading", ("kappa",), None),
    (
        "SBR precision",
        ("sbr_sd_putamen", "sbr_sd_southampton", "sbr_sd_putamen_posterior", "sbr_sd_caudate"),
        "sbr_sd_",
    ),
    (
        "SBR accuracy",
        (
            "sbr_rmse_nf_putamen",
            "sbr_rmse_nf_southampton",
            "sbr_rmse_nf_putamen_posterior",
            "sbr_rmse_nf_caudate",
        ),
        "sbr_rmse_nf_",
    ),
    ("image quality", ("psnr_nf", "ssim_nf", "psnr_25", "ssim_25"), None),
)
"""The question each headline sentence answers, its FOMs in order of preference (the first one
present is used) and a prefix whose FOMs are used when none of them is present."""

_KIND_ORDER = {"raw": 0, "filter": 1, "network": 2}


# -- FOM names --------------------------------------------------------------------------------


def _measure(name: str) -> str:
    return MEASURES.get(name, name.replace("_", " "))


def _describe(fom: str) -> tuple[str, str, str] | None:
    if fom in _FIXED:
        return _FIXED[fom]
    for prefix, label, unit, definition in _PREFIXED:
        if fom.startswith(prefix) and len(fom) > len(prefix):
            m = _measure(fom[len(prefix) :])
            return label.format(m=m), unit, definition.format(m=m)
    return None


def fom_label(fom: str) -> str:
    """A FOM's short plain-word label (``"CHO AUC"``); an unknown FOM's own name."""
    d = _describe(fom)
    return d[0] if d else fom


def fom_unit(fom: str) -> str:
    """A FOM's unit (``"dB"``, ``"SBR"``; ``""`` when dimensionless or unknown)."""
    d = _describe(fom)
    return d[1] if d else ""


def fom_axis_label(fom: str) -> str:
    """The label of a FOM's axis: its short label and its unit (``"PSNR vs noise-free (dB)"``)."""
    unit = fom_unit(fom)
    return f"{fom_label(fom)} ({unit})" if unit else fom_label(fom)


def fom_definition(fom: str) -> str:
    """What a FOM measures, in a sentence (an unknown FOM is said to be unknown)."""
    d = _describe(fom)
    if d:
        return d[2]
    return (
        "A figure of merit this report does not know; shown under its name as the sweep wrote it."
    )


def _fom_order(foms: Iterable[str]) -> list[str]:
    """FOMs in the report's order: known ones by family, then unknown ones as they came."""
    known = list(_FIXED) + [p for p, *_ in _PREFIXED]
    foms = list(dict.fromkeys(foms))

    def key(f: str) -> tuple[int, int]:
        for i, k in enumerate(known):
            if f == k or (k.endswith("_") and f.startswith(k)):
                return i, foms.index(f)
        return len(known), foms.index(f)

    return sorted(foms, key=key)


# -- reading ----------------------------------------------------------------------------------


def _num(v: Any) -> float:
    """A CSV cell (or a number) as a float; empty or missing is NaN."""
    if v is None:
        return math.nan
    if isinstance(v, (int, float)):
        return float(v)
    v = str(v).strip()
    return float(v) if v else math.nan


def _flag(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    s = str(v if v is not None else "").strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    return None


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the sweep writes it)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for col in required:
            if col not in columns:
                raise ValueError(
                    f"{path}: missing column {col!r} (has: {', '.join(columns) or 'none'})"
                )
        return list(reader)


def _typed(path: Path, line: int, row: dict[str, str], numeric: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for col in numeric:
        try:
            out[col] = _num(row.get(col))
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: column {col!r} is not a number: {row.get(col)!r}"
            ) from None
    return out


def read_fom_csv(path: str | Path) -> list[dict[str, Any]]:
    """``fom.csv`` as dicts, numbers as floats (an empty cell is NaN).

    Raises:
        FileNotFoundError: No such file (naming it).
        ValueError: A required column is missing or a number is not one (naming file and column).
    """
    path = Path(path)
    rows = []
    for i, r in enumerate(_read_csv(path, FOM_REQUIRED), start=2):
        t = _typed(path, i, r, ("duration_min", "value", "low", "high", "n"))
        t["higher_is_better"] = _flag(r.get("higher_is_better"))
        rows.append(t)
    return rows


def read_iso_csv(path: str | Path) -> list[dict[str, Any]]:
    """``iso.csv`` as dicts, times and values as floats (``inf`` kept, empty is NaN).

    Raises:
        FileNotFoundError: No such file (naming it).
        ValueError: A required column is missing, a number is not one or a bound is not one of
            ``exact``, ``at_most``, ``beyond`` (naming file and column).
    """
    path = Path(path)
    rows = []
    numeric = ("time_min", "low", "high", "reference_value", "share_beyond")
    for i, r in enumerate(_read_csv(path, ISO_REQUIRED), start=2):
        t = _typed(path, i, r, numeric)
        for col in ("bound", "low_bound", "high_bound"):
            b = (r.get(col) or "").strip()
            if col == "bound" or b:
                if b not in BOUNDS:
                    raise ValueError(
                        f"{path}, line {i}: column {col!r} must be one of {', '.join(BOUNDS)}, "
                        f"not {b!r}"
                    )
            t[col] = b or None
        rows.append(t)
    return rows


# -- iso times --------------------------------------------------------------------------------


def _g(x: float) -> str:
    return f"{x:g}"


def _end_bound(time: float, bound: str | None) -> str | None:
    if bound in BOUNDS:
        return bound
    if math.isnan(time):
        return None
    return "beyond" if math.isinf(time) else "exact"


def _end(time: float, bound: str | None, longest: float) -> str:
    if bound == "at_most":
        return f"<= {_g(time)}"
    if bound == "beyond":
        return f"> {_g(longest)}"
    return f"{time:.1f}"


def _ci(row: Mapping[str, Any]) -> tuple[tuple[float, str], tuple[float, str]] | None:
    """The row's CI ends as ``(time, bound)`` pairs, or None without a CI."""
    low, high = _num(row.get("low")), _num(row.get("high"))
    lb, hb = _end_bound(low, row.get("low_bound")), _end_bound(high, row.get("high_bound"))
    if lb is None or hb is None:
        return None
    return (low, lb), (high, hb)


def format_iso(row: Mapping[str, Any], longest_min: float = REFERENCE_DURATION) -> str:
    """An iso time with its CI, in plain text: ``"7.6 min [5.9, 9.8]"``, ``"<= 2 min [...]"``
    (at most the shortest duration), ``"> 25 min [...]"`` (beyond ``longest_min``)."""
    time = _num(row.get("time_min"))
    bound = _end_bound(time, row.get("bound"))
    if bound is None:
        return "n/a"
    text = f"{_end(time, bound, longest_min)} min"
    ci = _ci(row)
    if ci:
        (lo, lb), (hi, hb) = ci
        text += f" [{_end(lo, lb, longest_min)}, {_end(hi, hb, longest_min)}]"
    return text


def _upper(time: float, bound: str) -> float:
    """The largest time a CI end can stand for."""
    return math.inf if bound == "beyond" else time


def _lower(time: float, bound: str) -> float:
    """The smallest time a CI end can stand for (``at_most``: anything down to 0)."""
    if bound == "at_most":
        return 0.0
    return math.inf if bound == "beyond" else time


def ci_below(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether iso row ``a``'s 95 % CI lies entirely below ``b``'s (False without both CIs).

    An ``at_most`` end stands for anything up to the shortest duration and a ``beyond`` end for
    anything above the longest, so ``[<= 2, 3.0]`` is below ``[4.1, 6.0]`` but nothing is below
    a CI that starts at ``<= 2``; touching ends overlap.
    """
    ca, cb = _ci(a), _ci(b)
    if ca is None or cb is None:
        return False
    return _upper(*ca[1]) < _lower(*cb[0])


def _estimate_key(row: Mapping[str, Any]) -> tuple[float, float, float]:
    time = _num(row.get("time_min"))
    bound = _end_bound(time, row.get("bound")) or "beyond"
    ci = _ci(row)
    high = _upper(*ci[1]) if ci else math.inf
    return {"at_most": 0, "exact": 1, "beyond": 2}[bound], time if bound == "exact" else 0, high


# -- the table --------------------------------------------------------------------------------


def _by_key(iso_rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(r["method"], r["fom"]): r for r in iso_rows}


def iso_table_html(
    iso_rows: Iterable[Mapping[str, Any]],
    methods: Sequence[str],
    foms: Sequence[str],
    *,
    longest_min: float = REFERENCE_DURATION,
    reference: str = "25-min OSEM",
) -> str:
    """The iso-performance table: one row per method, one column per FOM, HTML-escaped.

    A cell reads ``7.6 min [5.9, 9.8]`` (exact, with its 95 % CI), ``<= 2 min`` (at most the
    shortest duration) or ``> 25 min`` (not reached within ``longest_min``); CI ends likewise;
    a missing row is a dash. The last row gives the reference value each column is matched to.

    Args:
        iso_rows: ``iso.csv`` rows (strings or typed, see :func:`read_iso_csv`).
        methods: Rows of the table, in order.
        foms: Columns of the table, in order.
        longest_min: The sweep's longest duration (what ``beyond`` exceeds).
        reference: What the iso times match, in words.
    """
    by = _by_key(iso_rows)
    head = "".join(
        f'<th title="{html.escape(fom_definition(f))}">{html.escape(fom_axis_label(f))}<br>'
        f"<small><code>{html.escape(f)}</code></small></th>"
        for f in foms
    )
    body = ""
    for m in methods:
        cells = ""
        for f in foms:
            r = by.get((m, f))
            if r is None:
                cells += "<td>&ndash;</td>"
                continue
            share = _num(r.get("share_beyond"))
            title = (
                f' title="{share:.0%} of bootstrap replicates never reach the reference"'
                if not math.isnan(share)
                else ""
            )
            cells += f"<td{title}>{html.escape(format_iso(r, longest_min))}</td>"
        body += f"<tr><td>{html.escape(m)}</td>{cells}</tr>"
    refs = ""
    for f in foms:
        v = next(
            (
                _num(r.get("reference_value"))
                for (_, g), r in by.items()
                if g == f and not math.isnan(_num(r.get("reference_value")))
            ),
            math.nan,
        )
        refs += f"<td>{'&ndash;' if math.isnan(v) else html.escape(f'{v:.4g}')}</td>"
    body += f"<tr><td><i>{html.escape(reference)} value</i></td>{refs}</tr>"
    return (
        f'<table class="iso"><tr><th>method</th>{head}</tr>{body}</table>'
        "<p><small>Iso-performance time: the shortest scan (min) whose figure of merit matches "
        f"{html.escape(reference)}'s, [subject-bootstrap 95 % CI]. &lt;= : at most the shortest "
        f"scan of the sweep; &gt; {html.escape(_g(longest_min))}: not reached within the "
        "sweep. Hover over a cell for the share of bootstrap replicates that never reach the "
        "reference.</small></p>"
    )


# -- the answer -------------------------------------------------------------------------------


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _display(method: str, raw: str | None) -> str:
    return "OSEM" if method == raw and method == RAW_METHOD else method


def _headline_foms(foms: Sequence[str]) -> list[tuple[str, str]]:
    """``(question, fom)`` for each headline group present, then each unknown FOM."""
    out = []
    for question, preferred, prefix in HEADLINE:
        fom = next((f for f in preferred if f in foms), None)
        if fom is None and prefix:
            fom = next((f for f in foms if f.startswith(prefix)), None)
        if fom:
            out.append((question, fom))
    out += [(f, f) for f in foms if _describe(f) is None]
    return out


def answer(
    iso_rows: Iterable[Mapping[str, Any]],
    fom_rows: Iterable[Mapping[str, Any]],
    *,
    raw: str = RAW_METHOD,
    reference: str = "25-min OSEM",
    longest_min: float | None = None,
) -> list[str]:
    """Plain-language sentences: how short can the scan be, and does restoration change that?

    For each headline question (detecting early loss, calling patients normal or abnormal,
    grading, SBR precision, SBR accuracy, image quality; the first FOM of each present in
    ``iso_rows``) and each FOM this module does not know: at what scan time raw OSEM and the
    restoration method with the shortest iso time match ``reference``, with their 95 % CIs; then
    whether any restoration method's CI lies entirely below raw OSEM's (only then is the scan
    said to be shortened; otherwise "no evidence"). The last sentence sums up. Everything said
    comes from the rows.

    Args:
        iso_rows: ``iso.csv`` rows (strings or typed).
        fom_rows: ``fom.csv`` rows: the methods' kinds and the longest duration.
        raw: The raw (unrestored) method; if absent from the rows, the method of kind ``raw``.
        reference: What the iso times match, in words.
        longest_min: The longest duration (default: the longest in ``fom_rows``, else 25).

    Returns:
        Plain-text sentences (not HTML-escaped), one item per question plus a summary.
    """
    iso_rows = list(iso_rows)
    fom_rows = list(fom_rows)
    kinds = {r["method"]: (r.get("kind") or "").strip() for r in fom_rows}
    if longest_min is None:
        durations = [_num(r.get("duration_min")) for r in fom_rows]
        durations = [d for d in durations if math.isfinite(d)]
        longest_min = max(durations) if durations else REFERENCE_DURATION
    by = _by_key(iso_rows)
    methods = list(dict.fromkeys(r["method"] for r in iso_rows))
    if raw not in methods:
        raw = next((m for m in methods if kinds.get(m) == "raw"), raw)
    foms = list(dict.fromkeys(r["fom"] for r in iso_rows))
    if not iso_rows:
        return [
            "No iso-performance times were computed, so this sweep cannot say how short the scan "
            "can be."
        ]

    sentences: list[str] = []
    shortened: list[str] = []
    not_shortened: list[str] = []
    for question, fom in _headline_foms(foms):
        label = fom_label(fom)
        rows = {m: by[(m, fom)] for m in methods if (m, fom) in by}
        ref = next(
            (v for v in (_num(r.get("reference_value")) for r in rows.values()) if v == v),
            math.nan,
        )
        ref_text = f" ({ref:.3g})" if math.isfinite(ref) else ""
        intro = f"For {question} ({label})" if question != fom else f"For {fom}"
        rr = rows.get(raw)
        restorers = [m for m in rows if m != raw and kinds.get(m) != "raw"]
        parts = []
        if rr is not None:
            parts.append(_matched(_display(raw, raw), rr, longest_min))
        best = min(restorers, key=lambda m: _estimate_key(rows[m])) if restorers else None
        if best is not None:
            how = (
                "the only restoration method with an iso time"
                if len(restorers) == 1
                else f"the shortest iso time of {len(restorers)} restoration methods"
            )
            b = rows[best]
            if _end_bound(_num(b.get("time_min")), b.get("bound")) == "beyond":
                parts.append(
                    f"by no restoration method within {_g(longest_min)} min (the shortest, "
                    f"{best}: {format_iso(b, longest_min)})"
                )
            else:
                parts.append(_matched(f"{best} ({how})", b, longest_min))
        if not parts:
            continue
        sentences.append(f"{intro}, {reference}{ref_text} is matched " + " and ".join(parts) + ".")
        if best is None:
            continue
        if rr is None or _ci(rr) is None:
            sentences.append(
                f"Without a 95 % CI for {_display(raw, raw)}'s iso time, whether restoration "
                "shortens the scan cannot be judged here."
            )
            not_shortened.append(label)
            continue
        below = [m for m in restorers if ci_below(rows[m], rr)]
        above = [m for m in restorers if ci_below(rr, rows[m])]
        no_ci = [m for m in restorers if _ci(rows[m]) is None]
        raw_ci = format_iso(rr, longest_min)
        raw_ci = raw_ci[raw_ci.find("[") :]
        if below:
            listed = _join([f"{m} ({format_iso(rows[m], longest_min)})" for m in below])
            plural = len(below) > 1
            others = [m for m in restorers if m not in below and m not in no_ci]
            rest = f"; those of {_join(others)} do not." if others else "."
            sentences.append(
                f"Restoration shortens the scan for {label}: the 95 % CI{'s' if plural else ''} "
                f"of {listed} lie{'' if plural else 's'} entirely below "
                f"{_display(raw, raw)}'s {raw_ci}{rest}"
            )
            shortened.append(label)
        else:
            floor = ""
            ci = _ci(rr)
            if ci and ci[0][1] == "at_most":
                floor = (
                    f"; {_display(raw, raw)}'s CI reaches down to the shortest scan of the sweep, "
                    "below which the sweep cannot resolve"
                )
            sentences.append(
                f"For {label}, there is no evidence that restoration shortens the scan: no "
                f"restoration method's 95 % CI lies entirely below {_display(raw, raw)}'s "
                f"{raw_ci}{floor}."
            )
            not_shortened.append(label)
        if above:
            plural = len(above) > 1
            sentences.append(
                f"{_join(above)} need{'' if plural else 's'} a longer scan than "
                f"{_display(raw, raw)} for {label} (95 % CI{'s' if plural else ''} entirely "
                "above)."
            )
        if no_ci:
            sentences.append(f"No 95 % CI for {_join(no_ci)} ({label}): not compared.")
    if shortened and not_shortened:
        sentences.append(
            f"Overall: restoration shortens the scan, with non-overlapping 95 % CIs, for "
            f"{_join(shortened)}; for {_join(not_shortened)} there is no evidence that it does."
        )
    elif shortened:
        sentences.append(
            f"Overall: restoration shortens the scan, with non-overlapping 95 % CIs, for "
            f"{_join(shortened)}."
        )
    elif not_shortened:
        sentences.append(
            "Overall: no evidence that restoration shortens the scan for any of these figures of "
            f"merit (no restoration method's 95 % CI lies entirely below "
            f"{_display(raw, raw)}'s)."
        )
    return sentences


def _matched(name: str, row: Mapping[str, Any], longest: float) -> str:
    bound = _end_bound(_num(row.get("time_min")), row.get("bound"))
    if bound == "beyond":
        return f"not by {name} within {_g(longest)} min ({format_iso(row, longest)})"
    return f"by {name} at {format_iso(row, longest)}"


# -- figures ----------------------------------------------------------------------------------


def _methods_in_order(fom_rows: Iterable[Mapping[str, Any]]) -> list[str]:
    first: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(fom_rows):
        kind = (r.get("kind") or "").strip()
        first.setdefault(r["method"], (_KIND_ORDER.get(kind, 3), i))
    return sorted(first, key=first.get)


def fom_figure(
    rows: Iterable[Mapping[str, Any]],
    fom: str,
    *,
    reference_method: str = RAW_METHOD,
    reference_duration: float | None = None,
    reference: str = "25-min OSEM",
) -> bytes:
    """One FOM against scan time, as PNG bytes.

    Log x axis with a tick at every duration (labelled in minutes), one line with markers per
    method and its 95 % CI as a shaded band where the rows have one, and a dashed horizontal line
    at ``reference_method``'s value at ``reference_duration`` (default: its longest duration).

    Args:
        rows: ``fom.csv`` rows (any FOMs; those of ``fom`` are drawn).
        fom: The FOM to draw.
        reference_method, reference_duration: Where the reference line comes from.
        reference: The reference line's legend label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fastdat.plotting import figure_png

    rows = [r for r in rows if r["fom"] == fom]
    methods = _methods_in_order(rows)
    durations = sorted({_num(r["duration_min"]) for r in rows})
    durations = [d for d in durations if d > 0 and math.isfinite(d)]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        pts = sorted(
            (
                (_num(r["duration_min"]), _num(r["value"]), _num(r.get("low")), _num(r.get("high")))
                for r in rows
                if r["method"] == m
            ),
            key=lambda p: p[0],
        )
        pts = [p for p in pts if p[0] > 0 and math.isfinite(p[0])]
        if not pts:
            continue
        t, v, lo, hi = (np.array(x, dtype=float) for x in zip(*pts, strict=True))
        raw = m == reference_method
        colour = "black" if raw else colours((i - (reference_method in methods)) % 10)
        ax.plot(
            t,
            v,
            marker="o",
            ms=4,
            lw=2.2 if raw else 1.4,
            color=colour,
            label=_display(m, reference_method) + (" (raw)" if raw else ""),
        )
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(t, lo, hi, where=ok, color=colour, alpha=0.15, lw=0, interpolate=False)
    ref_rows = [r for r in rows if r["method"] == reference_method]
    if ref_rows:
        at = (
            reference_duration
            if reference_duration is not None
            else max(_num(r["duration_min"]) for r in ref_rows)
        )
        ref = next((_num(r["value"]) for r in ref_rows if _num(r["duration_min"]) == at), None)
        if ref is not None and math.isfinite(ref):
            ax.axhline(ref, ls="--", color="grey", lw=1.2, label=reference)
    ax.set_xscale("log")
    if durations:
        ax.set_xticks(durations)
        ax.set_xticklabels([_g(d) for d in durations])
        ax.minorticks_off()
        ax.set_xlim(durations[0] / 1.1, durations[-1] * 1.1)
    ax.set_xlabel("scan time (min, log scale)")
    ax.set_ylabel(fom_axis_label(fom))
    better = next((r.get("higher_is_better") for r in rows), None)
    better = _flag(better)
    suffix = "" if better is None else (" (higher is better)" if better else " (lower is better)")
    ax.set_title(f"{fom_label(fom)}{suffix}", fontsize=11)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return figure_png(fig, dpi=DPI)


# -- the page ---------------------------------------------------------------------------------


def _file_name(fom: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", fom) or "fom"


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode()
    return (
        f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" style="max-width:100%">'
    )


KINDS = {
    "raw": "raw OSEM, no restoration",
    "filter": "classical post-filter",
    "network": "restoration network",
}
METHOD_NOTES = {"default": " (FastDaT's default network, trained at 5 min)"}

MODES = {
    "nested": (
        "nested: every shorter scan is a binomial thinning of the same longest acquisition (its "
        "first minutes, or an archived scan thinned after the fact), so a short image and the "
        "long one share noise."
    ),
    "independent": (
        "independent: one acquisition per duration, drawn independently, as separate scans "
        "would be (with rigid motion between them if the cohort was simulated with it)."
    ),
}


def _definitions(foms: Sequence[str], meta: Mapping[str, Any], reference: str) -> str:
    items = "".join(
        f"<li><b>{html.escape(fom_label(f))}</b> (<code>{html.escape(f)}</code>): "
        f"{html.escape(fom_definition(f))}</li>"
        for f in foms
    )
    mode = meta.get("mode")
    mode_html = (
        f"<li><b>Acquisition mode</b>: {html.escape(MODES.get(str(mode), str(mode)))}</li>"
        if mode
        else ""
    )
    return (
        f"<ul>{items}</ul><ul>"
        "<li><b>Noise-free reconstruction</b> (the reference of the <code>_nf</code> figures of "
        "merit): the same OSEM reconstruction (same iterations, subsets and system model) of "
        "the expected projections, i.e. of the data without Poisson noise. It keeps the "
        "reconstruction's resolution and partial-volume loss, so it "
        "measures noise and what restoration does to it, not the camera's blur.</li>"
        "<li><b>Truth</b>: the simulated activity itself (the <code>_truth</code> "
        "figures of merit).</li>"
        f"<li><b>Iso-performance time</b>: the shortest scan whose figure of merit matches "
        f"{html.escape(reference)}'s and keeps matching it at every longer duration of the sweep; "
        "between durations the figure of merit is interpolated linearly in log time. "
        "&lt;= t: matched already at the shortest duration t (the sweep cannot tell how much "
        "shorter); &gt; t: not matched within the longest duration t. 95 % CI: percentile "
        "subject bootstrap, the same resample feeding the method's curve and the reference.</li>"
        "<li><b>Shortens the scan</b>: said of a restoration method only when its iso time's "
        "95 % CI lies entirely below raw OSEM's (non-overlapping intervals, a conservative "
        "criterion); otherwise the page says there is no evidence that it does.</li>"
        f"{mode_html}</ul>"
    )


def _timings(timings: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{_num(v):.1f}</td></tr>" for k, v in timings.items()
    )
    return (
        "<h2>Wall time per stage (s)</h2>"
        f"<table><tr><th>stage</th><th>seconds</th></tr>{rows}</table>"
    )


def write_sweep_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/<fom>.png`` from the sweep's files.

    Reads ``fom.csv`` (required), ``iso.csv`` (without it the page says no iso times were
    computed) and ``sweep.json`` (optional). Files are written atomically.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: ``fom.csv`` is missing (naming it).
        ValueError: A CSV lacks a required column or holds a malformed value (naming file and
            column).
    """
    out_dir = Path(out_dir)
    fom_rows = read_fom_csv(out_dir / "fom.csv")
    iso_path = out_dir / "iso.csv"
    iso_rows = read_iso_csv(iso_path) if iso_path.is_file() else []
    meta_path = out_dir / "sweep.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}

    raw = str(meta.get("reference_method") or RAW_METHOD)
    durations = [_num(d) for d in meta.get("durations") or []] or [
        _num(r["duration_min"]) for r in fom_rows
    ]
    durations = sorted({d for d in durations if math.isfinite(d)})
    longest = durations[-1] if durations else REFERENCE_DURATION
    ref_duration = _num(meta.get("reference_duration", longest))
    ref_name = "OSEM" if raw == RAW_METHOD else raw
    reference = f"{_g(ref_duration)}-min {ref_name}"

    foms = _fom_order([r["fom"] for r in fom_rows])
    methods = _methods_in_order(fom_rows)
    methods += [m for m in dict.fromkeys(r["method"] for r in iso_rows) if m not in methods]
    iso_foms = _fom_order([r["fom"] for r in iso_rows])

    sentences = answer(iso_rows, fom_rows, raw=raw, reference=reference, longest_min=longest)
    n = meta.get("n_test_patients")
    cohort = (
        f"On {int(n)} simulated test patients, durations "
        f"{', '.join(_g(d) for d in durations)} min. "
        if n is not None
        else f"Durations {', '.join(_g(d) for d in durations)} min. "
    )

    figures_dir = out_dir / "figures"
    figures_dir.mkdir(exist_ok=True)
    figure_html = ""
    for f in foms:
        png = fom_figure(
            fom_rows, f, reference_method=raw, reference_duration=ref_duration, reference=reference
        )
        write_bytes(figures_dir / f"{_file_name(f)}.png", png)
        figure_html += (
            f"<h3>{html.escape(fom_axis_label(f))} <small><code>{html.escape(f)}</code>"
            f"</small></h3><p>{html.escape(fom_definition(f))}</p>{_img(png, f)}"
        )

    kinds = {}
    for r in fom_rows:
        kinds.setdefault(r["method"], (r.get("kind") or "").strip())
    method_list = "".join(
        f"<li><code>{html.escape(m)}</code>: "
        f"{html.escape(KINDS.get(kinds.get(m, ''), kinds.get(m) or 'kind not given'))}"
        f"{html.escape(METHOD_NOTES.get(m, ''))}</li>"
        for m in methods
    )
    notes = meta.get("notes") or []
    notes_html = (
        "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in notes) + "</ul>"
        if notes
        else ""
    )
    iso_html = (
        iso_table_html(iso_rows, methods, iso_foms, longest_min=longest, reference=reference)
        if iso_rows
        else "<p>No iso-performance times (<code>iso.csv</code> is missing or empty).</p>"
    )
    timings = meta.get("timings") or {}
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>FastDaT scan-time sweep</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:
collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:
left}}.answer{{font-size:1.05em;background:#eef6ee;padding:8px 8px 8px 28px}}</style></head><body>
<h1>How short can a DaT SPECT scan be, and does restoration change that?</h1>
<p>{html.escape(cohort)}Iso-performance times in minutes [subject-bootstrap 95 % CI]: the shortest
scan with which a method matches {html.escape(reference)}.</p>
<ul class="answer">{"".join(f"<li>{html.escape(s)}</li>" for s in sentences)}</ul>
<h2>Iso-performance times</h2>{iso_html}
<h2>Figures of merit against scan time</h2>
<p>Lines: the mean over test patients (or the figure computed on all of them); bands: 95 % CI;
dashed: {html.escape(reference)}.</p>{figure_html}
<h2>Definitions</h2>{_definitions(foms, meta, reference)}
<h3>Methods</h3><ul>{method_list}</ul>
{notes_html}
{_timings(timings) if timings else ""}
<p>Data: <code>fom.csv</code> (every method, duration and figure of merit),
<code>iso.csv</code> (iso-performance times), <code>figures/</code>.</p>
</body></html>"""
    return write_bytes(out_dir / "report.html", page.encode())


__all__ = [
    "answer",
    "ci_below",
    "fom_axis_label",
    "fom_definition",
    "fom_figure",
    "fom_label",
    "fom_unit",
    "format_iso",
    "iso_table_html",
    "read_fom_csv",
    "read_iso_csv",
    "write_sweep_report",
]
