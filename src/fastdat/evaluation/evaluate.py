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

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fastdat.data.volumes import study_sources
from fastdat.evaluation.sbr_study import analyse, study_rows, truth_values
from fastdat.io.atomic import write_bytes, write_csv, write_json, write_yaml
from fastdat.methods import LONG, RAW, TRUTH, Method, load_methods, tune_filters
from fastdat.methods.catalog import choose_best, convergence, describe_network
from fastdat.methods.filters import FILTERS
from fastdat.metrics import psnr, ssim
from fastdat.quantification.sbr import NoStriatumError, QuantConfig, quantify_volume
from fastdat.stats import dunn, friedman, wilcoxon_holm

log = logging.getLogger(__name__)


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
    quant: QuantConfig | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Evaluate on the test split; returns the path of ``report.html`` (or ``out_dir``).

    Filters are tuned and networks ranked on the validation split's crops. Every test study is
    then restored once per method, as a whole volume (the crop column over all slices, when the
    dataset's source still holds the studies' volumes) or as its crops: image quality scores the
    crop slices of that restoration and, with whole volumes, the SBR half
    (:mod:`fastdat.evaluation.sbr_study`) quantifies the same restoration.

    Args:
        dataset: Dataset folder.
        runs: Networks: run folders, checkpoints or ``"default"`` (labelled by
            :func:`fastdat.models.checkpoint.network_labels`), or a mapping label -> any of these.
        out_dir: Evaluation folder.
        device: Torch device of the networks.
        baselines: Filters to tune on the validation split.
        note: Shown on top of the report.
        write_report: Write ``report.html``.
        quant: VOI settings; the Southampton ``V_s`` defaults to the template's striatal volume.
        timings: Stage wall times shown in the report (the study's).
    """
    import pandas as pd

    from fastdat.data import read_dataset

    ds = read_dataset(dataset)
    crops, index = ds.crops, ds.index
    for kind in (RAW, LONG):
        if kind not in crops:
            raise ValueError(f"{dataset}: no {kind!r} crops")
    test, val = ds.rows("test"), ds.rows("val")
    if len(test) == 0 or len(val) == 0:
        raise ValueError(f"{dataset}: evaluation needs 'val' (to tune filters) and 'test' splits")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_val, y_val = crops[RAW][val].astype(np.float64), crops[LONG][val].astype(np.float64)
    tuned = tune_filters(baselines, x_val, y_val)
    methods = load_methods(runs, tuned, device, references=())
    networks = {m.name: m.checkpoint for m in methods if m.kind == "network"}
    _write_config(out_dir, Path(dataset), networks, baselines, device)
    write_json(out_dir / "baselines.json", tuned)

    val_studies = index["study_id"].to_numpy()[val]
    val_preds = {m.name: m.apply(x_val, val_studies) for m in methods}
    info = {
        m.name: describe_network(m.name, m.checkpoint, ds.fingerprint)
        for m in methods
        if m.kind == "network"
    }
    validation = _validation(methods, val_preds, y_val, info)
    write_csv(out_dir / "validation.csv", validation)
    best = {
        "network": choose_best(validation, "network"),
        "filter": choose_best(validation, "filter"),
    }

    preds, sbr = _restore_test(ds, methods, quant)
    y = crops[LONG][test].astype(np.float64)
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
    kinds = {m.name: m.kind for m in methods} | {LONG: "reference"}
    write_csv(out_dir / "summary.csv", _summary(rows, kinds, patients))
    stats_doc = {
        "psnr": statistics(table_psnr),
        "ssim": statistics(table_ssim),
        "patient_level": patient_statistics(patients),
    }
    write_json(out_dir / "stats.json", stats_doc)
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

    per_patient = {
        m: (g["psnr"].to_numpy(), g["ssim"].to_numpy())
        for m, g in patients[patients["method"] != LONG].groupby("method", sort=False)
    }
    write_bytes(out_dir / "boxplots.png", points_boxplot_figure(per_patient))
    shown = [m for m in (RAW, best["filter"], best["network"], LONG) if m]
    shown += [m for m in networks if m not in shown][:2]
    write_bytes(out_dir / "grid.png", grid_figure({**preds, LONG: y}, truth, test_index, shown))
    quant_dir = None
    if sbr is not None:
        quant_dir = out_dir / "quant"
        names = [m.name for m in methods] + [LONG]
        analyse(sbr["rows"], names, best, quant_dir, sbr["cfg"], sbr["failures"])
    if not write_report:
        return out_dir
    from fastdat.evaluation.report import write_report as write_page

    return write_page(out_dir, note, quant_dir, timings)


def _restore_test(ds, methods: list[Method], quant: QuantConfig | None):
    """Every method's image of every test crop, each study restored once; and the SBR rows.

    Returns:
        ``(preds, sbr)``: method -> float64 ``(n_test, crop, crop)`` in the test rows' order, and
        ``{"rows", "failures", "cfg"}`` of the SBR half (``None`` without whole volumes).
    """
    test = ds.rows("test")
    test_index = ds.index.loc[test]
    try:
        sources = study_sources(ds, (RAW, LONG))
    except ValueError as err:
        log.warning("image quality from the crops only, no SBR: %s", err)
        sources = None
    preds = {m.name: np.zeros((len(test), ds.crop, ds.crop)) for m in methods}
    if sources is None:
        for m in methods:
            preds[m.name] = m.apply(ds.crops[m.input_kind][test], test_index["study_id"].to_numpy())
        return preds, None
    cfg = quant or default_quant(ds)
    size = ds.crop
    test_studies = test_index["study_id"].to_numpy()
    test_slices = test_index["slice"].to_numpy(int)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    missing = sorted(set(test_studies) - {s.study_id for s in sources})
    if missing:
        raise ValueError(f"{ds.path}: test studies {missing} are not in its source any more")
    for src in tqdm(sources, desc="evaluate", unit="study"):
        st = ds.studies.loc[src.study_id]
        split = ds.split_of_study.get(src.study_id, "")
        i0, j0 = int(st["corner_i"]), int(st["corner_j"])
        vols = {k: src.loaders[k]() for k in (RAW, LONG)}
        vox = float(vols[LONG][1])
        key = (src, split, vox, cfg)
        if split == "test":
            truth, _ = src.loaders[TRUTH]()
            labels, _ = src.labels()
            rows += _sbr_rows(key, TRUTH, None, failures, truth_values(truth, labels))
            where = np.flatnonzero(test_studies == src.study_id)
            for m in methods:
                slab = m.apply_volume(crop_column(vols[m.input_kind][0], i0, j0, size))
                preds[m.name][where] = np.moveaxis(slab[:, :, test_slices[where]], -1, 0)
                rows += _sbr_rows(key, m.name, slab, failures)
        rows += _sbr_rows(key, LONG, crop_column(vols[LONG][0], i0, j0, size), failures)
    return preds, {"rows": rows, "failures": failures, "cfg": cfg}


def _sbr_rows(key, method: str, slab, failures: list, values: dict | None = None) -> list:
    """:func:`~fastdat.evaluation.sbr_study.study_rows` of one image (quantified unless
    ``values`` are given); an image without a recognisable striatum is logged in ``failures``."""
    src, split, vox, cfg = key
    if values is None:
        try:
            values, _ = quantify_volume(slab, vox, cfg)
        except NoStriatumError as err:
            failures.append({"study_id": src.study_id, "method": method, "reason": str(err)})
            values = {}
    grades = {"left": src.grade_left, "right": src.grade_right}
    return study_rows(src.study_id, split, grades, method, values)


def crop_column(volume: np.ndarray, i0: int, j0: int, size: int) -> np.ndarray:
    """The crop column ``(size, size, Z)`` of a volume ``(X, Y, Z)``, float64."""
    return np.ascontiguousarray(volume[i0 : i0 + size, j0 : j0 + size, :], dtype=np.float64)


def default_quant(ds) -> QuantConfig:
    """VOI settings with the Southampton ``V_s`` of the template on the dataset's grid."""
    from fastdat.anatomy.template import template_phantom

    vox = float(ds.studies["voxel_mm"].iloc[0])
    shape = tuple(int(v) for v in str(ds.studies["shape"].iloc[0]).split("x"))
    tpl = template_phantom(shape, vox, 0.0).labels
    return QuantConfig(striatal_volume_ml=float(np.isin(tpl, (1, 3, 5)).sum()) * vox**3 / 1e3)


def _validation(methods, val_preds, y_val, info) -> list[dict[str, Any]]:
    """Mean validation PSNR / SSIM against 25-min per method, kind and convergence."""
    out = []
    for m in methods:
        p, s = _scores(val_preds[m.name], y_val)
        out.append(
            {
                "method": m.name,
                "kind": m.kind,
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
    from fastdat.config import provenance

    doc = {
        "dataset": str(Path(dataset).resolve()),
        "networks": {k: str(Path(v).resolve()) for k, v in networks.items()},
        "baselines": list(baselines),
        "provenance": provenance(device=str(device)),
    }
    write_yaml(out_dir / "config.yaml", doc)


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


def _summary(rows: list[dict[str, Any]], kinds: dict[str, str], patients) -> list[dict[str, Any]]:
    """Per method: crop-level mean / SD (``psnr_mean``, ``psnr_sd``) and patient-level mean / SD
    of the patients' means (``psnr_pmean``, ``psnr_psd``)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        rec: dict[str, Any] = {
            "method": method,
            "kind": kinds[method],
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
