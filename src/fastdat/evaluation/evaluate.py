"""Score raw 5-min images, tuned filters and trained models on the test split; test the differences.

``EVAL`` receives ``metrics.csv`` (one row per method and test image: ``method, image_id, psnr,
ssim`` against the 25-min crop, plus ``psnr_truth, ssim_truth`` when the truth is known),
``summary.csv`` (mean and SD per method), ``config.yaml`` (dataset and runs evaluated,
provenance), ``stats.json`` (Friedman over methods; Dunn's post-hoc with Holm correction, all
pairs, as in the paper; and the paired Wilcoxon signed-rank test with Holm correction, since every
method is scored on the same images), ``baselines.json`` (the filters tuned on the validation
split), box plots, an image grid per grade and ``report.html``.

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

from fastdat.evaluation import baselines as bl
from fastdat.evaluation.metrics import psnr, ssim
from fastdat.evaluation.stats import dunn, friedman, wilcoxon_holm
from fastdat.evaluation.stats import holm as holm  # re-exported: moved to stats

log = logging.getLogger(__name__)

RAW, LONG = "5min", "25min"


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
    runs: list[str | Path],
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    baselines: tuple[str, ...] = ("gaussian", "butterworth", "nlm"),
    note: str | None = None,
) -> Path:
    """Evaluate on the test split; returns the path of ``report.html``.

    ``note`` is shown on top of the report.
    """
    from fastdat.data import load_crops
    from fastdat.models import load_model
    from fastdat.models.checkpoint import read_sidecar

    dataset, out_dir = Path(dataset), Path(out_dir)
    crops, index = load_crops(dataset)
    for kind in (RAW, LONG):
        if kind not in crops:
            raise ValueError(f"{dataset}: no {kind!r} crops")
    test = index.index[index["split"] == "test"].to_numpy()
    val = index.index[index["split"] == "val"].to_numpy()
    if len(test) == 0 or len(val) == 0:
        raise ValueError(f"{dataset}: evaluation needs 'val' (to tune filters) and 'test' splits")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_config(out_dir, dataset, runs, baselines, device)
    x_val, y_val = crops[RAW][val].astype(np.float64), crops[LONG][val].astype(np.float64)
    tuned = {name: bl.tune(name, x_val, y_val) for name in baselines}
    write_json(out_dir / "baselines.json", tuned)

    x, y = crops[RAW][test].astype(np.float64), crops[LONG][test].astype(np.float64)
    preds: dict[str, np.ndarray] = {RAW: x}
    for name in baselines:
        preds[name] = bl.apply(name, x, tuned[name]["params"])
    for run in runs:
        run = Path(run)
        meta = read_sidecar(run / "best")
        label = meta["model"]["name"]
        if label in preds:
            label = f"{label}:{run.name}"
        preds[label] = predict(load_model(run / "best", device=device), x, device).astype(
            np.float64
        )
    truth = crops["truth"][test].astype(np.float64) if "truth" in crops else None
    if truth is not None:
        k = y.sum(axis=(1, 2)) / np.maximum(truth.sum(axis=(1, 2)), 1e-12)
        truth = truth * k[:, None, None]
    image_ids = index.loc[test, "crop_id"].astype(int).tolist()
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
        rows += _rows(name, image_ids, p, s, pt, st)
    write_csv(out_dir / "metrics.csv", rows)
    summary = _summary(rows)
    write_csv(out_dir / "summary.csv", summary)
    stats_doc = {"psnr": statistics(table_psnr), "ssim": statistics(table_ssim)}
    write_json(out_dir / "stats.json", stats_doc)
    from fastdat.evaluation.report import write_report

    return write_report(
        out_dir,
        summary,
        stats_doc,
        tuned,
        {**preds, LONG: y},
        {n: (table_psnr[n], table_ssim[n]) for n in table_psnr},
        truth,
        index.loc[test],
        note,
    )


def _write_config(out_dir: Path, dataset: Path, runs, baselines, device) -> None:
    """``EVAL/config.yaml``: what was evaluated (absolute paths) and who evaluated it."""
    import yaml

    from fastdat.config import provenance

    doc = {
        "dataset": str(Path(dataset).resolve()),
        "runs": [str(Path(r).resolve()) for r in runs],
        "baselines": list(baselines),
        "provenance": provenance(device=str(device)),
    }
    tmp = out_dir / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, out_dir / "config.yaml")


def _rows(method, image_ids, p, s, pt, st) -> list[dict[str, Any]]:
    """metrics.csv rows of one method (``None`` arrays leave their columns empty / absent)."""

    def val(a, i):
        return None if a is None else float(a[i])

    out = []
    for i, image_id in enumerate(image_ids):
        row = {"method": method, "image_id": image_id, "psnr": val(p, i), "ssim": val(s, i)}
        if pt is not None:
            row.update(psnr_truth=val(pt, i), ssim_truth=val(st, i))
        out.append(row)
    return out


def _summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        rec: dict[str, Any] = {"method": method, "n": len(sel)}
        for key in ("psnr", "ssim", "psnr_truth", "ssim_truth"):
            vals = np.array([r[key] for r in sel if r.get(key) is not None], dtype=np.float64)
            if vals.size:
                rec[f"{key}_mean"] = float(vals.mean())
                rec[f"{key}_sd"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
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
