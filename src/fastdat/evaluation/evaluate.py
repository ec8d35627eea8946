"""Score raw 5-min images, tuned filters and trained networks on the test split; test them.

``EVAL`` receives:

- ``metrics.csv``: one row per method and test crop (``method, image_id, patient_id, grade,
  psnr, ssim`` against the 25-min crop, plus ``psnr_truth, ssim_truth`` when the truth is known);
- ``patients.csv``: the same scores averaged over each test patient's crops. The patient is the
  unit of every CI and test the report leads with: crops of one patient are not independent;
- ``summary.csv`` (mean and SD per method, crops and patients counted), ``validation.csv`` (mean
  validation scores, kind, convergence: "best" is chosen here, on validation);
- ``stats.json``: over crops, as in the paper, Friedman with Dunn-Holm and the paired
  Wilcoxon-Holm; and ``patient_level``, the same with patients as blocks;
- ``headline.json``: the best network and filter (chosen on validation) and patient-level paired
  differences with 95 % CIs; ``networks.json``: where each network came from;
- ``baselines.json`` (the filters tuned on the validation split), ``config.yaml`` (dataset and
  networks evaluated, provenance), ``boxplots.png``, ``grid.png`` and ``report.html``.

Against the truth, the truth crop is first put on the images' scale (counts / s) by the factor that
matches its total to the 25-min crop's; the same factor serves every method of that image.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdat.methods import filters as bl
from fastdat.methods.catalog import (
    FILTERS,
    LONG,
    RAW,
    TRUTH,
    choose_best,
    convergence,
    describe_network,
    kind_of,
)
from fastdat.metrics import psnr, ssim
from fastdat.stats import dunn, friedman, wilcoxon_holm
from fastdat.stats import holm as holm  # re-exported: moved to stats

log = logging.getLogger(__name__)


@torch.no_grad()
def predict(model, images: np.ndarray, device: torch.device | str = "cpu", batch: int = 64):
    """Model output for ``(N, H, W)`` images, each scaled by its maximum as in training."""
    device = torch.device(device)
    model = model.to(device).eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).float()[:, None]
        x = x.to(device)
        m = x.amax(dim=(-2, -1), keepdim=True)
        m = torch.where(m > 0, m, torch.ones_like(m))
        out.append((model(x / m).float() * m)[:, 0].cpu().numpy())
    return np.concatenate(out)


def _scores(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = torch.from_numpy(pred).double(), torch.from_numpy(ref).double()
    return psnr(p, r).numpy(), ssim(p, r).numpy()


def statistics(table: dict[str, np.ndarray]) -> dict[str, Any]:
    """Friedman over methods (blocks = images), Dunn-Holm and paired Wilcoxon-Holm, all pairs."""
    names = list(table)
    wide = np.column_stack([np.asarray(table[n], dtype=np.float64) for n in names])
    fr = friedman(wide)
    dunn_p = dunn(wide, p_adjust="holm")
    wilcoxon_p = wilcoxon_holm(wide)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    return {
        "friedman": {"chi2": fr.statistic, "p": fr.p, "k": fr.k, "n": fr.n},
        "pairs": [
            {
                "a": names[i],
                "b": names[j],
                "mean_difference": float(np.mean(table[names[i]] - table[names[j]])),
                "dunn_holm_p": float(dunn_p[i, j]),
                "wilcoxon_holm_p": float(wilcoxon_p[i, j]),
            }
            for i, j in pairs
        ],
    }


def evaluate(
    dataset: str | Path,
    runs: list[str | Path] | dict[str, str | Path],
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    baselines: tuple[str, ...] = FILTERS,
    note: str | None = None,
    write_report: bool = True,
) -> Path:
    """Evaluate on the test split; returns the path of ``report.html`` (or ``out_dir``).

    Args:
        dataset: Dataset folder.
        runs: Networks: run folders, checkpoints or ``"default"`` (labelled by
            :func:`fastdat.models.checkpoint.network_labels`), or a mapping label -> any of these.
        out_dir: Evaluation folder.
        device: Torch device of the networks.
        baselines: Filters to tune on the validation split.
        note: Shown on top of the report.
        write_report: Write ``report.html`` (the study writes its own report at the end).
    """
    import pandas as pd

    from fastdat.data import load_crops
    from fastdat.models import load_model
    from fastdat.models.checkpoint import network_labels

    dataset, out_dir = Path(dataset), Path(out_dir)
    crops, index = load_crops(dataset)
    for kind in (RAW, LONG):
        if kind not in crops:
            raise ValueError(f"{dataset}: no {kind!r} crops")
    test = index.index[index["split"] == "test"].to_numpy()
    val = index.index[index["split"] == "val"].to_numpy()
    if len(test) == 0 or len(val) == 0:
        raise ValueError(f"{dataset}: evaluation needs 'val' (to tune filters) and 'test' splits")
    networks = network_labels(runs)
    clash = set(networks) & {RAW, LONG, TRUTH, *baselines}
    if clash:
        raise ValueError(f"network label(s) {sorted(clash)} clash with a raw or filter method")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_config(out_dir, dataset, networks, baselines, device)
    x_val, y_val = crops[RAW][val].astype(np.float64), crops[LONG][val].astype(np.float64)
    tuned = {name: bl.tune(name, x_val, y_val) for name in baselines}
    write_json(out_dir / "baselines.json", tuned)
    nets = {label: load_model(stem, device=device) for label, stem in networks.items()}

    val_preds = {RAW: x_val}
    x, y = crops[RAW][test].astype(np.float64), crops[LONG][test].astype(np.float64)
    preds: dict[str, np.ndarray] = {RAW: x}
    for name in baselines:
        val_preds[name] = bl.apply(name, x_val, tuned[name]["params"])
        preds[name] = bl.apply(name, x, tuned[name]["params"])
    for label, net in nets.items():
        val_preds[label] = predict(net, x_val, device).astype(np.float64)
        preds[label] = predict(net, x, device).astype(np.float64)
    fingerprint = _fingerprint(dataset)
    info = {lab: describe_network(lab, stem, fingerprint) for lab, stem in networks.items()}
    validation = _validation(val_preds, y_val, networks, info)
    write_csv(out_dir / "validation.csv", validation)
    truth = crops["truth"][test].astype(np.float64) if "truth" in crops else None
    if truth is not None:
        k = y.sum(axis=(1, 2)) / np.maximum(truth.sum(axis=(1, 2)), 1e-12)
        truth = truth * k[:, None, None]
    test_index = index.loc[test]
    rows: list[dict[str, Any]] = []
    table_psnr, table_ssim = {}, {}
    # the 25-min images are scored against the truth only
    for name, pred in {**preds, LONG: y}.items():
        p = s = pt = st = None
        if name != LONG:
            p, s = _scores(pred, y)
            table_psnr[name], table_ssim[name] = p, s
        if truth is not None:
            pt, st = _scores(pred, truth)
        elif name == LONG:
            continue
        rows += _rows(name, test_index, p, s, pt, st)
    write_csv(out_dir / "metrics.csv", rows)
    patients = patient_means(pd.DataFrame(rows))
    write_csv(out_dir / "patients.csv", patients.to_dict("records"))
    summary = _summary(rows, networks, patients)
    write_csv(out_dir / "summary.csv", summary)
    stats_doc = {
        "psnr": statistics(table_psnr),
        "ssim": statistics(table_ssim),
        "patient_level": patient_statistics(patients),
    }
    write_json(out_dir / "stats.json", stats_doc)
    best = {
        "network": choose_best(validation, "network"),
        "filter": choose_best(validation, "filter"),
    }
    write_json(
        out_dir / "headline.json",
        {
            "chosen_on": "validation",
            "n_patients": int(patients["patient_id"].nunique()),
            "best": best,
            "comparisons": headline(patients, best),
        },
    )
    write_json(out_dir / "networks.json", info)
    from fastdat.evaluation.figures import grid_figure, points_boxplot_figure
    from fastdat.evaluation.report import save_bytes
    from fastdat.evaluation.report import write_report as write_page

    per_patient = {
        m: (g["psnr"].to_numpy(), g["ssim"].to_numpy())
        for m, g in patients[patients["method"] != LONG].groupby("method", sort=False)
    }
    save_bytes(out_dir / "boxplots.png", points_boxplot_figure(per_patient))
    shown = [m for m in (RAW, best["filter"], best["network"], LONG) if m]
    shown += [m for m in networks if m not in shown][:2]
    save_bytes(out_dir / "grid.png", grid_figure({**preds, LONG: y}, truth, test_index, shown))
    return write_page(out_dir, note=note) if write_report else out_dir


def _fingerprint(dataset: Path) -> str | None:
    import yaml

    doc = yaml.safe_load((dataset / "config.yaml").read_text()) or {}
    return doc.get("fingerprint")


def _validation(val_preds, y_val, networks, info) -> list[dict[str, Any]]:
    """Mean validation PSNR / SSIM against 25-min per method, kind and convergence."""
    out = []
    for name, pred in val_preds.items():
        p, s = _scores(pred, y_val)
        out.append(
            {
                "method": name,
                "kind": kind_of(name, networks),
                "val_psnr": float(p.mean()),
                "val_ssim": float(s.mean()),
                "converged": True,
                "why_not": "",
            }
        )
    raw = out[0]["val_psnr"]
    for rec in out:
        if rec["kind"] == "network":
            rec["converged"], rec["why_not"] = convergence(
                info[rec["method"]], rec["val_psnr"], raw
            )
    return out


def patient_means(metrics):
    """Per method and test patient, the mean of each score over the patient's crops.

    The unit of every test and CI of the report is the patient: crops of one patient share its
    anatomy, counts and reconstruction, so they are not independent samples.
    """
    cols = [c for c in ("psnr", "ssim", "psnr_truth", "ssim_truth") if c in metrics]
    g = metrics.groupby(["method", "patient_id"], sort=False)
    out = g[cols].mean()
    out["n_crops"] = g.size()
    out["grade"] = g["grade"].first()
    return out.reset_index()


def patient_statistics(patients) -> dict[str, Any]:
    """Friedman and paired Wilcoxon-Holm with the patient as the block (25-min excluded)."""
    sub = patients[patients["method"] != LONG]
    out: dict[str, Any] = {"n_patients": int(sub["patient_id"].nunique())}
    for key in ("psnr", "ssim"):
        wide = sub.pivot(index="patient_id", columns="method", values=key)
        wide = wide[list(dict.fromkeys(sub["method"]))]
        if len(wide) < 2:
            out[key] = {"skipped": f"{len(wide)} test patient(s)"}
            continue
        out[key] = statistics({m: wide[m].to_numpy() for m in wide.columns})
    return out


def headline(patients, best: dict[str, str | None]) -> list[dict[str, Any]]:
    """Patient-level paired differences behind the report's first lines, with 95 % CIs."""
    from fastdat.stats import paired_difference

    net, filt = best["network"], best["filter"]
    pairs = [(net, RAW), (net, filt), (filt, RAW), (RAW, LONG), (net, LONG), (filt, LONG)]
    out = []
    for a, b in pairs:
        if not a or not b or a == b:
            continue
        for key in ("psnr", "ssim", "psnr_truth", "ssim_truth"):
            if key not in patients:
                continue
            wide = patients[patients["method"].isin([a, b])].pivot(
                index="patient_id", columns="method", values=key
            )
            if a not in wide or b not in wide:
                continue
            wide = wide.dropna()
            if len(wide) < 2:
                continue
            d = paired_difference(wide[a].to_numpy(), wide[b].to_numpy())
            out.append({"a": a, "b": b, "metric": key, **d.__dict__})
    return out


def _write_config(out_dir: Path, dataset: Path, networks, baselines, device) -> None:
    """``EVAL/config.yaml``: what was evaluated (absolute paths) and who evaluated it."""
    import yaml

    from fastdat.config import provenance

    doc = {
        "dataset": str(Path(dataset).resolve()),
        "networks": {k: str(Path(v).resolve()) for k, v in networks.items()},
        "baselines": list(baselines),
        "provenance": provenance(device=str(device)),
    }
    tmp = out_dir / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, out_dir / "config.yaml")


def _rows(method, test_index, p, s, pt, st) -> list[dict[str, Any]]:
    """metrics.csv rows of one method (``None`` arrays leave their columns empty / absent)."""

    def val(a, i):
        return None if a is None else float(a[i])

    worse = test_index[["grade_left", "grade_right"]].max(axis=1).to_numpy()
    out = []
    for i, (image_id, patient) in enumerate(
        zip(test_index["crop_id"].astype(int), test_index["patient_id"].astype(str), strict=True)
    ):
        row = {
            "method": method,
            "image_id": int(image_id),
            "patient_id": patient,
            "grade": int(worse[i]) if np.isfinite(float(worse[i])) else None,
            "psnr": val(p, i),
            "ssim": val(s, i),
        }
        if pt is not None:
            row.update(psnr_truth=val(pt, i), ssim_truth=val(st, i))
        out.append(row)
    return out


def _summary(
    rows: list[dict[str, Any]], networks: dict[str, Any], patients
) -> list[dict[str, Any]]:
    """Per method: crop-level mean / SD (``psnr_mean``, ``psnr_sd``) and patient-level mean / SD
    of the patients' means (``psnr_pmean``, ``psnr_psd``)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        rec: dict[str, Any] = {
            "method": method,
            "kind": kind_of(method, networks),
            "n": len(sel),
            "n_patients": len({r["patient_id"] for r in sel}),
        }
        for key in ("psnr", "ssim", "psnr_truth", "ssim_truth"):
            vals = np.array([r[key] for r in sel if r.get(key) is not None], dtype=np.float64)
            if vals.size:
                rec[f"{key}_mean"] = float(vals.mean())
                rec[f"{key}_sd"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
                pv = patients.loc[patients["method"] == method, key].dropna().to_numpy(float)
                rec[f"{key}_pmean"] = float(pv.mean())
                rec[f"{key}_psd"] = float(pv.std(ddof=1)) if pv.size > 1 else 0.0
        out.append(rec)
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV (union of their keys as columns), written atomically."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def write_json(path: Path, doc: Any) -> None:
    """``doc`` as indented JSON, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
