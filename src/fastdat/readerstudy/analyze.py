"""Unblind and analyse a reader study: agreement with the 25-min consensus and reliability.

Targets are striata: every case gives two (left, right), each graded 0-3 by every reader for
every method. With the statistics of :mod:`fastdat.stats`:

* **Consensus** of a striatum: the majority of the readers' first-read grades of its 25-min image;
  when grades tie for the majority (e.g. three readers 0, 1, 2, or two readers who differ), the
  tied grade closest to the median of all their grades, and if still tied the higher (more
  abnormal) grade. Each reader's own 25-min grades are part of the consensus, so the 25-min
  kappas are an upper reference, not an independent result.
* **Agreement**: per reader and method, Cohen's weighted kappa (linear and quadratic weights, on
  the categories 0-3, SE of Fleiss, Cohen & Everitt, 95 % CI) of the reader's first-read grades
  against the consensus; and, where the dataset knows each study's grades (simulated cohorts),
  against those.
* **Intra-reader reliability**: per reader (per method and pooled over methods), the ICC of the
  first read and the repeat of the same image (targets = striata, the two reads as raters).
* **Inter-reader reliability**: per method, the ICC of the readers' first reads (targets =
  striata, readers as raters).

ICCs are reported as ICC2 = ICC(A,1) (two-way, absolute agreement, single measurement; the
headline figure) and ICC3 = ICC(C,1) (consistency), each with its 95 % CI (Shrout & Fleiss 1979,
McGraw & Wong 1996). ``OUT`` receives ``analysis.json``, ``table.csv`` (the paper's layout: one
row per quantity, one column per method), ``kappa.png``, ``icc.png`` and ``report.html``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

import fastdat.readerstudy.store as st
from fastdat.stats import icc, weighted_kappa

log = logging.getLogger(__name__)

SIDES = ("left", "right")
CONSENSUS_METHOD = "25min"
ICC_FORMS = {"ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)"}
READS = ["first read", "repeat"]


def consensus_grade(grades) -> int:
    """Consensus of one striatum's grades (see the module docstring for the tie rule)."""
    g = np.asarray(grades, dtype=int)
    if g.size == 0:
        raise ValueError("consensus of no grades")
    values, counts = np.unique(g, return_counts=True)
    tied = values[counts == counts.max()]
    median = float(np.median(g))
    return int(max(tied.tolist(), key=lambda v: (-abs(v - median), v)))


def load_grades(study_dir: str | Path):
    """Every stored grade, unblinded, one row per striatum.

    Returns:
        A DataFrame with ``reader, read_id, position, image, case, method, repeat, side, grade``
        and ``reference`` (the dataset's grade of that striatum, NaN when unknown), and the key.
    """
    import pandas as pd

    study_dir = Path(study_dir)
    key = json.loads((study_dir / "key.json").read_text())
    conn = st.connect(study_dir)
    try:
        rows = st.grade_rows(conn)
    finally:
        conn.close()
    out = []
    for r in rows:
        k = key["reads"][r["read_id"]]
        case = key["cases"][k["case"]]
        for side in SIDES:
            ref = case.get(f"grade_{side}")
            out.append(
                {
                    "reader": r["reader"],
                    "read_id": r["read_id"],
                    "position": r["position"],
                    "image": k["image"],
                    "case": k["case"],
                    "method": k["method"],
                    "repeat": bool(k["repeat"]),
                    "side": side,
                    "grade": int(r[f"grade_{side}"]),
                    "reference": np.nan if ref is None else float(ref),
                }
            )
    cols = ["reader", "read_id", "position", "image", "case", "method", "repeat", "side", "grade"]
    return pd.DataFrame(out, columns=[*cols, "reference"]), key


def _kappa(a, b) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(len(a))}
    for w in ("linear", "quadratic"):
        try:
            k = weighted_kappa(np.asarray(a), np.asarray(b), w, categories=st.GRADES)
            out[w] = {"kappa": k.kappa, "se": k.se, "ci": [k.ci_low, k.ci_high]}
        except ValueError as err:
            out[w] = {"kappa": None, "reason": str(err)}
    return out


def _icc(table, raters: list[str]) -> dict[str, Any]:
    try:
        res = icc(np.asarray(table, dtype=np.float64), raters)
    except ValueError as err:
        return {"n": int(len(table)), "reason": str(err)}
    out: dict[str, Any] = {"n": res["ICC2"].n, "k": res["ICC2"].k}
    for form, name in ICC_FORMS.items():
        r = res[form]
        out[form] = {"name": name, "value": r.value, "ci": [r.ci_low, r.ci_high], "p": r.p}
    return out


def analyze_grades(grades, readers: list[str], methods: list[str]) -> dict[str, Any]:
    """All the study's figures from :func:`load_grades`' table (see the module docstring)."""
    repeat = grades["repeat"].astype(bool)
    first, reps = grades.loc[~repeat], grades.loc[repeat]
    doc: dict[str, Any] = {"readers": readers, "methods": methods, "consensus": {}}
    target = ["case", "side"]
    cons = None
    if CONSENSUS_METHOD in methods:
        long = first[first["method"] == CONSENSUS_METHOD]
        cons = long.groupby(target)["grade"].apply(consensus_grade).rename("consensus")
        doc["consensus"] = {f"{c}/{s}": int(v) for (c, s), v in cons.items()}
    kappa: dict[str, Any] = {}
    kappa_ref: dict[str, Any] = {}
    for method in methods:
        for reader in readers:
            sel = first[(first["method"] == method) & (first["reader"] == reader)]
            sel = sel.set_index(target)["grade"]
            if cons is not None:
                both = sel.to_frame().join(cons, how="inner")
                kappa.setdefault(method, {})[reader] = _kappa(both["grade"], both["consensus"])
            ref = first[(first["method"] == method) & (first["reader"] == reader)]
            ref = ref.dropna(subset=["reference"])
            if len(ref):
                kappa_ref.setdefault(method, {})[reader] = _kappa(
                    ref["grade"], ref["reference"].astype(int)
                )
    doc["kappa_vs_consensus"] = kappa
    doc["kappa_vs_dataset_grade"] = kappa_ref
    intra: dict[str, Any] = {}
    for reader in readers:
        a = first[first["reader"] == reader].set_index(["image", "side"])["grade"]
        b = reps[reps["reader"] == reader].set_index(["image", "side"])
        pair = b[["method"]].join(a.rename("first"), how="inner").join(b["grade"].rename("again"))
        intra[reader] = {"all methods": _icc(pair[["first", "again"]].to_numpy(), READS)}
        for method in methods:
            sub = pair[pair["method"] == method]
            intra[reader][method] = _icc(sub[["first", "again"]].to_numpy(), READS)
    doc["intra_reader_icc"] = intra
    inter: dict[str, Any] = {}
    for method in methods:
        wide = first[first["method"] == method].pivot_table(
            index=target, columns="reader", values="grade", aggfunc="first"
        )
        wide = wide.reindex(columns=readers)
        if len(readers) >= 2:
            inter[method] = _icc(wide.to_numpy(), readers)
    doc["inter_reader_icc"] = inter
    return doc


def _fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None or not np.isfinite(value):
        return ""
    if ci is None:
        return f"{value:.2f}"
    if not all(c is not None and np.isfinite(c) for c in ci):
        return f"{value:.2f} [CI n/a]"  # e.g. perfect agreement: no residual variance
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _range(values: list[float | None]) -> str:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return ""
    return f"{min(v):.2f}" if len(v) == 1 else f"{min(v):.2f}-{max(v):.2f}"


def paper_table(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The paper's layout: one row per quantity (per reader, then the range over readers), one
    column per method; intra-reader rows also pooled over methods (``all methods``)."""
    readers, methods = doc["readers"], doc["methods"]
    rows: list[dict[str, str]] = []
    for w in ("linear", "quadratic"):
        what = f"weighted kappa ({w}) vs 25-min consensus"
        kap = doc["kappa_vs_consensus"]
        if not kap:
            continue
        for reader in readers:
            row = {"quantity": f"{what}, {reader}"}
            for m in methods:
                k = kap[m][reader][w]
                row[m] = _fmt(k["kappa"], k.get("ci"))
            rows.append(row)
        row = {"quantity": f"{what}, range over readers"}
        for m in methods:
            row[m] = _range([kap[m][r][w]["kappa"] for r in readers])
        rows.append(row)
    for form, name in ICC_FORMS.items():
        intra = doc["intra_reader_icc"]
        for reader in readers:
            row = {"quantity": f"intra-reader {name}, {reader}"}
            for m in [*methods, "all methods"]:
                r = intra[reader][m].get(form)
                row[m] = _fmt(r["value"], r["ci"]) if r else ""
            rows.append(row)
        row = {"quantity": f"intra-reader {name}, range over readers"}
        for m in [*methods, "all methods"]:
            row[m] = _range([(intra[r][m].get(form) or {}).get("value") for r in readers])
        rows.append(row)
    for form, name in ICC_FORMS.items():
        row = {"quantity": f"inter-reader {name} [95 % CI]"}
        for m in methods:
            r = doc["inter_reader_icc"].get(m, {}).get(form)
            row[m] = _fmt(r["value"], r["ci"]) if r else ""
        rows.append(row)
    return rows


def analyze_study(study_dir: str | Path, out_dir: str | Path) -> Path:
    """Analyse the grades of ``study_dir`` into ``out_dir``; returns ``report.html``'s path.

    An incomplete study is analysed with the grades it has (the report says how many).
    """
    import yaml

    from fastdat.readerstudy.report import write_outputs

    study_dir, out_dir = Path(study_dir), Path(out_dir)
    cfg = yaml.safe_load((study_dir / "config.yaml").read_text())["study"]
    grades, key = load_grades(study_dir)
    readers, methods = list(cfg["readers"]), list(cfg["methods"])
    doc = analyze_grades(grades, readers, methods)
    total = len(key["reads"])
    graded = int(grades["read_id"].nunique()) if len(grades) else 0
    doc["completeness"] = {"reads": total, "graded": graded}
    if graded < total:
        log.warning("%s: %d of %d reads graded; analysing those", study_dir, graded, total)
    doc["definitions"] = {
        "consensus": "majority of the readers' first-read 25-min grades; ties: the tied grade "
        "closest to the median, then the higher grade",
        "kappa": "Cohen's weighted kappa on categories 0-3, SE of Fleiss, Cohen & Everitt 1969, "
        "95 % CI = kappa +- 1.96 SE",
        "icc": "ICC2 = ICC(A,1) absolute agreement, ICC3 = ICC(C,1) consistency (Shrout & "
        "Fleiss 1979; McGraw & Wong 1996), 95 % CIs; targets = striata",
    }
    return write_outputs(out_dir, doc, paper_table(doc), study_dir)
