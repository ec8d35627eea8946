"""Markdown tables of a finished scan-time sweep, for the README and notes.

Prints (1) the iso-performance table: for each method and figure of merit, the scan time at
which the method matches 25-min OSEM, with its patient-bootstrap 95 % CI (``iso.csv``); (2) the
figures of merit at chosen durations (``fom.csv``); (3) the plain-language answer of the report;
(4) the sweep's stage timings and restoration seconds per patient (``sweep.json``); (5) the
Bland-Altman agreement of each method's SBR with the noise-free reconstruction's in the same VOIs
(``measure/*.npz``, test split, every striatum a case): bias and 95 % limits of agreement
``bias +/- 1.96 SD`` of the differences.

Usage::

    python scripts/sweep_tables.py SWEEP_DIR [--durations 2,5,25] [--foms psnr_nf,cho_auc,...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastdat.sweep.report import answer, fom_label, format_iso, read_fom_csv, read_iso_csv

HEADLINE = (
    "psnr_nf",
    "sbr_rmse_nf_putamen",
    "sbr_sd_putamen",
    "cho_auc",
    "sbr_auc_putamen_posterior",
    "inconclusive_share",
    "kappa",
)


def bland_altman(sweep: Path, measure: str, durations: list[float]) -> list[str]:
    """Markdown rows: method, duration, n, bias, limits of agreement of ``measure`` SBR."""
    import numpy as np

    rows = []
    for f in sorted((sweep / "measure").glob("*.npz")):
        doc = np.load(f, allow_pickle=True)["rows"]
        rows += json.loads(str(doc)) if doc.shape == () else list(doc)
    ref = {r["study_id"]: r for r in rows if r["method"] == "noisefree"}
    diffs: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        if r.get("split") != "test" or r["kind"] == "reference" or r["study_id"] not in ref:
            continue
        for side in ("left", "right"):
            key = f"{measure}_{side}"
            d = r.get(key), ref[r["study_id"]].get(key)
            if d[0] is not None and d[1] is not None and np.isfinite(d).all():
                diffs.setdefault((r["method"], float(r["duration_min"])), []).append(d[0] - d[1])
    out = [
        f"| method | scan min | striata | {measure} SBR bias vs noise-free "
        "| 95 % limits of agreement |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (method, dur), v in sorted(diffs.items(), key=lambda i: (i[0][1], i[0][0])):
        if dur not in durations:
            continue
        v = np.asarray(v)
        bias, sd = float(v.mean()), float(v.std(ddof=1))
        out.append(
            f"| {method} | {dur:g} | {v.size} | {bias:+.3f} | "
            f"[{bias - 1.96 * sd:+.3f}, {bias + 1.96 * sd:+.3f}] |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--durations", default="2,5,25")
    parser.add_argument("--foms", default=",".join(HEADLINE))
    args = parser.parse_args()
    iso = read_iso_csv(args.sweep / "iso.csv")
    fom = read_fom_csv(args.sweep / "fom.csv")
    foms = [f for f in args.foms.split(",") if any(r["fom"] == f for r in iso)]
    methods = list(dict.fromkeys(r["method"] for r in fom))
    print("| method | " + " | ".join(fom_label(f) for f in foms) + " |")
    print("| --- " * (len(foms) + 1) + "|")
    by = {(r["method"], r["fom"]): r for r in iso}
    for m in methods:
        cells = [format_iso(by[m, f]) if (m, f) in by else "-" for f in foms]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    durations = [float(d) for d in args.durations.split(",")]
    print("| method | fom | " + " | ".join(f"{d:g} min" for d in durations) + " |")
    print("| --- " * (len(durations) + 2) + "|")
    vals = {(r["method"], r["fom"], float(r["duration_min"])): r for r in fom}
    for f in foms:
        for m in methods:
            cells = []
            for d in durations:
                r = vals.get((m, f, d))
                cells.append(
                    "-" if r is None else f"{r['value']:.3g} [{r['low']:.3g}, {r['high']:.3g}]"
                )
            if any(c != "-" for c in cells):
                print(f"| {m} | {f} | " + " | ".join(cells) + " |")
    print()
    for line in answer(iso, fom):
        print(line)
    meta = json.loads((args.sweep / "sweep.json").read_text())
    print()
    print("timings (s):", {k: round(v) for k, v in meta.get("timings", {}).items()})
    print("test patients:", meta.get("n_test_patients"))
    per = meta.get("restore_seconds_per_patient") or {}
    for m, d in per.items():
        print(f"restore s/patient {m}:", {k: round(v, 3) for k, v in d.items()})
    print()
    for line in bland_altman(args.sweep, "putamen", durations):
        print(line)


if __name__ == "__main__":
    main()
