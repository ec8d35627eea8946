"""CSV input, analysis dispatch and text output of ``fastdat stats``.

Two layouts are read:

* **wide**: a header row, then one row per target (ICC, kappa, Bland-Altman) or per block
  (Friedman, Dunn) and one column per rater or method. The first column is kept as the row id,
  not as ratings, when its header is empty, ``target`` or ``id``, or when none of its cells is a
  number.
* **long**: columns ``target``, ``rater`` and ``rating`` (any order, other columns ignored), one
  row per rating; pivoted to wide with targets and raters in order of first appearance. A target
  that a rater did not rate becomes a missing cell.

Missing cells are empty or ``NA`` / ``NaN`` / ``N/A`` (any case). Every problem with a file is
raised as :class:`StatsInputError`, whose message starts with the file path and says what is
wrong and where (line number of the file, column name).
"""

from __future__ import annotations

import csv
import inspect
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fastdat.stats.formulas import (
    MCGRAW_WONG,
    bland_altman,
    dunn,
    friedman,
    icc,
    weighted_kappa,
)

MISSING = frozenset({"", "na", "nan", "n/a"})
ID_COLUMNS = frozenset({"target", "id"})
LONG_COLUMNS = ("target", "rater", "rating")


class StatsInputError(ValueError):
    """A ratings file that cannot be used; the message starts with the file path."""


def _error(path: Path, message: str) -> StatsInputError:
    return StatsInputError(f"{path}: {message}")


def _read_rows(path: str | Path) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` of the data rows; blank lines are skipped."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise _error(path, "is a directory, not a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [
                (reader.line_num, row)
                for row in reader
                if row and not (len(row) == 1 and not row[0].strip())
            ]
    except UnicodeDecodeError:
        raise _error(path, "is not a UTF-8 text (CSV) file") from None
    except csv.Error as err:
        raise _error(path, f"is not a readable CSV file ({err})") from None
    if not rows:
        raise _error(path, "the file is empty")
    header = [name.strip() for name in rows[0][1]]
    if all(_is_number(name) for name in header if name):
        raise _error(path, "the first line must be a header with column names, not numbers")
    for j, name in enumerate(header):
        if not name and j > 0:
            raise _error(path, f"column {j + 1} has no name in the header")
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise _error(path, f"duplicate column names in the header: {', '.join(duplicated)}")
    data = rows[1:]
    if not data:
        raise _error(path, "the file has a header but no data rows")
    for line, row in data:
        if len(row) != len(header):
            raise _error(
                path, f"line {line} has {len(row)} fields but the header has {len(header)}"
            )
    return path, header, data


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _value(path: Path, cell: str, line: int, column: str) -> float:
    """The number in a cell; NaN for a missing cell."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    if not _is_number(text):
        raise _error(path, f"line {line}, column {column!r}: {cell!r} is not a finite number")
    return float(text)


def _is_long(header: list[str]) -> bool:
    return set(LONG_COLUMNS) <= {name.lower() for name in header}


def _long_to_wide(
    path: Path, header: list[str], rows: list[tuple[int, list[str]]]
) -> tuple[np.ndarray, list[str], list[str]]:
    lower = [name.lower() for name in header]
    it, ir, iv = (lower.index(name) for name in LONG_COLUMNS)
    ratings: dict[tuple[str, str], float] = {}
    targets: dict[str, None] = {}
    raters: dict[str, None] = {}
    for line, row in rows:
        target, rater = row[it].strip(), row[ir].strip()
        if not target or not rater:
            raise _error(path, f"line {line}: the target and the rater must not be empty")
        if (target, rater) in ratings:
            raise _error(path, f"line {line}: target {target!r} is rated twice by {rater!r}")
        ratings[target, rater] = _value(path, row[iv], line, header[iv])
        targets.setdefault(target)
        raters.setdefault(rater)
    x = np.full((len(targets), len(raters)), np.nan)
    row_of = {t: i for i, t in enumerate(targets)}
    col_of = {r: j for j, r in enumerate(raters)}
    for (target, rater), value in ratings.items():
        x[row_of[target], col_of[rater]] = value
    return x, list(targets), list(raters)


def _wide(
    path: Path, header: list[str], rows: list[tuple[int, list[str]]]
) -> tuple[np.ndarray, list[str], list[str]]:
    first = [row[0].strip() for _, row in rows]
    given = [cell for cell in first if cell.lower() not in MISSING]
    has_id = (
        not header[0]
        or header[0].lower() in ID_COLUMNS
        or (bool(given) and not any(_is_number(cell) for cell in given))
    )
    start = 1 if has_id else 0
    names = header[start:]
    if not names:
        raise _error(path, "no rating columns (only an id column)")
    x = np.array(
        [
            [_value(path, cell, line, name) for cell, name in zip(row[start:], names, strict=True)]
            for line, row in rows
        ],
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    ids = first if has_id else [str(i + 1) for i in range(len(rows))]
    return x, ids, names


def read_wide(path: str | Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Read a wide (or long) ratings table.

    Args:
        path: CSV file (see the module docstring for the layouts).

    Returns:
        ``(x, row_ids, column_names)``: ``x`` of shape ``(n_rows, n_columns)``, float64, NaN for
        missing cells; row ids are the id column's cells (or ``"1"``, ``"2"``, ... without one).

    Raises:
        StatsInputError: empty file, header only, ragged rows, a non-numeric rating, a duplicate
            ``(target, rater)`` in long format, or a column with every value missing.
        FileNotFoundError: no such file.
    """
    x, ids, names, _ = _read(path)
    return x, ids, names


def _read(path: str | Path) -> tuple[np.ndarray, list[str], list[str], bool]:
    path, header, rows = _read_rows(path)
    long = _is_long(header)
    x, ids, names = (_long_to_wide if long else _wide)(path, header, rows)
    for j, name in enumerate(names):
        if np.isnan(x[:, j]).all():
            what = "rater" if long else "column"
            raise _error(path, f"{what} {name!r} has no values (every rating is missing)")
    return x, ids, names, long


def read_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read paired ratings: exactly two rating columns (or two raters in long format).

    Args:
        path: CSV file with two numeric rating columns and optionally an id column, or a long
            table (``target, rater, rating``) with exactly two raters.

    Returns:
        ``(a, b, names)``: the two rating vectors (float64, NaN where missing) and their names.

    Raises:
        StatsInputError: as :func:`read_wide`, or not exactly two rating columns / raters.
    """
    x, _, names, long = _read(path)
    if x.shape[1] != 2:
        what = "raters" if long else "rating columns"
        raise _error(
            Path(path),
            f"expected exactly two {what}, found {x.shape[1]} ({', '.join(names)}); "
            "an id column must be named 'target' or 'id' or be non-numeric",
        )
    return x[:, 0], x[:, 1], names


def _num(x: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(x, dict):
        return {k: _num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _complete(x: np.ndarray) -> tuple[np.ndarray, int]:
    keep = ~np.isnan(x).any(axis=1)
    return x[keep], int((~keep).sum())


def _run_kappa(path: Path, weights: str | None = None) -> dict[str, Any]:
    a, b, names = read_pairs(path)
    x, dropped = _complete(np.column_stack([a, b]))
    res = weighted_kappa(x[:, 0], x[:, 1], None if weights == "none" else weights)
    cats = np.unique(x).tolist()
    return {
        "raters": names,
        "n_dropped": dropped,
        "categories": cats,
        **asdict(res),
        "ci95": [res.ci_low, res.ci_high],
    }


def _run_icc(path: Path) -> dict[str, Any]:
    x, _, names = read_wide(path)
    res = icc(x, names)
    n = res["ICC1"].n
    forms = {
        key: {"mcgraw_wong": MCGRAW_WONG[key], **asdict(r), "ci95": [r.ci_low, r.ci_high]}
        for key, r in res.items()
    }
    return {"raters": names, "n": n, "k": len(names), "n_dropped": len(x) - n, "icc": forms}


def _run_friedman(path: Path) -> dict[str, Any]:
    x, _, names = read_wide(path)
    x, dropped = _complete(x)
    res = friedman(x)
    return {"methods": names, "n_dropped": dropped, **asdict(res)}


def _run_dunn(path: Path, p_adjust: str | None = "holm") -> dict[str, Any]:
    x, _, names = read_wide(path)
    p = dunn(x, None if p_adjust == "none" else p_adjust)
    pairs = [
        {"a": names[i], "b": names[j], "p": p[i, j]}
        for i, j in zip(*np.triu_indices(len(names), 1), strict=True)
    ]
    sizes = {name: int((~np.isnan(x[:, j])).sum()) for j, name in enumerate(names)}
    return {
        "methods": names,
        "n_per_method": sizes,
        "p_adjust": None if p_adjust == "none" else p_adjust,
        "p": p.tolist(),
        "pairs": pairs,
    }


def _run_bland_altman(path: Path) -> dict[str, Any]:
    a, b, names = read_pairs(path)
    x, dropped = _complete(np.column_stack([a, b]))
    res = asdict(bland_altman(x[:, 0], x[:, 1]))
    ci = {f"{key}95": res.pop(key) for key in ("bias_ci", "loa_low_ci", "loa_high_ci")}
    return {
        "raters": names,
        "difference": f"{names[0]} - {names[1]}",
        "n_dropped": dropped,
        **res,
        **ci,
    }


_RUNNERS = {
    "kappa": _run_kappa,
    "icc": _run_icc,
    "friedman": _run_friedman,
    "dunn": _run_dunn,
    "bland-altman": _run_bland_altman,
}


def run_stats(kind: str, path: str | Path, **options: Any) -> dict[str, Any]:
    """Run one analysis on a CSV file (:mod:`fastdat.stats.tables` layouts).

    The arrays' maths is in :mod:`fastdat.stats`.

    Args:
        kind: ``kappa`` (two rating columns; option ``weights`` none / linear / quadratic),
            ``icc`` (targets x raters), ``friedman`` (blocks x methods, incomplete blocks
            dropped), ``dunn`` (columns = groups; option ``p_adjust`` holm / bonferroni /
            none) or ``bland-altman`` (two columns, incomplete pairs dropped).
        path: the CSV file.
        **options: the options of that kind only.

    Returns:
        A JSON-ready dict with ``kind``, ``file`` and, per kind:
        kappa: ``raters, n, n_dropped, categories, kappa, se, ci_low, ci_high, ci95, weights``;
        icc: ``raters, n, k, n_dropped, icc`` (``{"ICC1": {mcgraw_wong, value, F, df1, df2, p,
        ci_low, ci_high, ci95, n, k}, ...}``); friedman: ``methods, n, k, n_dropped, statistic,
        p``; dunn: ``methods, n_per_method, p_adjust, p`` (``k x k``), ``pairs`` (``a, b,
        p``); bland-altman: ``raters, difference, n, n_dropped, bias, sd, loa_low, loa_high,
        bias_ci95, loa_low_ci95, loa_high_ci95``. Undefined numbers are None.

    Raises:
        StatsInputError: the file cannot be read or the data do not allow the analysis (the
            message starts with the path).
    """
    if kind not in _RUNNERS:
        raise ValueError(f"unknown analysis {kind!r}; one of {', '.join(_RUNNERS)}")
    runner, path = _RUNNERS[kind], Path(path)
    unknown = set(options) - set(inspect.signature(runner).parameters)
    if unknown:
        raise ValueError(f"{kind} takes no option {', '.join(sorted(unknown))}")
    try:
        result = runner(path, **options)
    except StatsInputError:
        raise
    except ValueError as err:
        raise StatsInputError(f"{path}: {err}") from None
    return _num({"kind": kind, "file": str(path), **result})


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e-3 and x != 0 else f"{x:.4f}"
    return str(x)


def _ci(pair: list[float | None]) -> str:
    return f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"


def format_result(result: dict[str, Any]) -> str:
    """Human-readable text of a :func:`fastdat.stats.run_stats` result."""
    kind = result["kind"]
    lines = [f"{kind}: {result['file']}"]
    dropped = result.get("n_dropped", 0)
    if dropped:
        lines.append(f"{dropped} row(s) with a missing value left out")
    if kind == "kappa":
        lines.append(
            f"{result['raters'][0]} vs {result['raters'][1]}, n = {result['n']}, "
            f"weights {result['weights'] or 'none'}"
        )
        lines.append(
            f"kappa = {_fmt(result['kappa'])}, SE = {_fmt(result['se'])}, "
            f"95% CI {_ci(result['ci95'])}"
        )
    elif kind == "icc":
        lines.append(f"{result['n']} targets x {result['k']} raters")
        lines.append(f"{'form':<6} {'McGraw-Wong':<12} {'ICC':>7} {'F':>9} {'df1':>4} {'df2':>5}")
        for name, r in result["icc"].items():
            lines.append(
                f"{name:<6} {r['mcgraw_wong']:<12} {_fmt(r['value']):>7} {_fmt(r['F']):>9} "
                f"{r['df1']:>4} {r['df2']:>5}  p = {_fmt(r['p'])}, 95% CI {_ci(r['ci95'])}"
            )
    elif kind == "friedman":
        lines.append(f"{result['n']} blocks x {result['k']} methods")
        lines.append(f"chi2 = {_fmt(result['statistic'])}, p = {_fmt(result['p'])}")
    elif kind == "dunn":
        lines.append(f"p-values adjusted by {result['p_adjust'] or 'none'}")
        for pair in result["pairs"]:
            lines.append(f"{pair['a']} vs {pair['b']}: p = {_fmt(pair['p'])}")
    else:
        lines.append(f"{result['raters'][0]} - {result['raters'][1]}, n = {result['n']}")
        lines.append(f"bias = {_fmt(result['bias'])}, 95% CI {_ci(result['bias_ci95'])}")
        lines.append(
            f"limits of agreement {_fmt(result['loa_low'])} to {_fmt(result['loa_high'])} "
            f"(SD {_fmt(result['sd'])}); 95% CIs {_ci(result['loa_low_ci95'])}, "
            f"{_ci(result['loa_high_ci95'])}"
        )
    return "\n".join(lines)
