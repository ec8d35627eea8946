"""Same numbers? Compare the results of two study folders, file by file.

    python benchmarks/same_numbers.py STUDY_A STUDY_B

Compares ``eval/``'s metrics.csv, patients.csv, summary.csv, validation.csv, stats.json,
headline.json and baselines.json and the SBR tables of ``eval/quant/`` (sbr.csv, agreement.csv,
grading.json, normals.json, headline.json): prints the largest absolute difference of each file's
numbers, the cells and keys that differ otherwise, and exits 1 unless everything is identical.
Used to show that a refactoring changes no result (same preset, same seed, before and after).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

a, b = Path(sys.argv[1]), Path(sys.argv[2])


def flat(doc, prefix=""):
    out = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flat(v, f"{prefix}.{k}"))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.update(flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = doc
    return out


worst_all = 0.0
differs = False
for rel in [
    "eval/metrics.csv",
    "eval/patients.csv",
    "eval/summary.csv",
    "eval/validation.csv",
    "eval/quant/sbr.csv",
    "eval/quant/agreement.csv",
]:
    x, y = pd.read_csv(a / rel), pd.read_csv(b / rel)
    if list(x.columns) != list(y.columns) or x.shape != y.shape:
        print(
            f"{rel}: shape or columns differ {x.shape} {y.shape} {set(x.columns) ^ set(y.columns)}"
        )
        differs = True
        continue
    worst, where, nonnum = 0.0, "", 0
    for c in x.columns:
        if pd.api.types.is_numeric_dtype(x[c]) and pd.api.types.is_numeric_dtype(y[c]):
            diff = np.abs(x[c].to_numpy(float) - y[c].to_numpy(float))
            d = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
            nan_diff = (x[c].isna() != y[c].isna()).sum()
            if nan_diff:
                differs = True
                print(f"  {rel}:{c}: NaN pattern differs in {nan_diff} rows")
            if d > worst:
                worst, where = d, c
        else:
            nonnum += int((x[c].astype(str) != y[c].astype(str)).sum())
    worst_all = max(worst_all, worst)
    differs = differs or bool(nonnum)
    print(f"{rel}: max |diff| {worst:.3g} ({where}); non-numeric cells differing: {nonnum}")
for rel in [
    "eval/stats.json",
    "eval/headline.json",
    "eval/baselines.json",
    "eval/quant/grading.json",
    "eval/quant/normals.json",
    "eval/quant/headline.json",
]:
    fx, fy = flat(json.loads((a / rel).read_text())), flat(json.loads((b / rel).read_text()))
    keys = set(fx) | set(fy)
    worst, where, other = 0.0, "", []
    for k in sorted(keys):
        u, v = fx.get(k), fy.get(k)
        if isinstance(u, (int, float)) and isinstance(v, (int, float)) and not isinstance(u, bool):
            d = abs(float(u) - float(v)) if not (np.isnan(float(u)) and np.isnan(float(v))) else 0.0
            if d > worst:
                worst, where = d, k
        elif u != v:
            other.append(k)
    worst_all = max(worst_all, worst)
    differs = differs or bool(other)
    print(f"{rel}: max |diff| {worst:.3g} ({where}); other differing keys: {sorted(other)[:5]}")
print(f"largest numeric difference: {worst_all:.3g}")
sys.exit(1 if differs or worst_all > 0 else 0)
