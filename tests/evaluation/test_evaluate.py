from __future__ import annotations

import numpy as np
import pytest

from fastdat.evaluation.evaluate import statistics
from fastdat.stats import holm


def test_statistics_match_scipy_and_scikit_posthocs():
    import pandas as pd
    import scikit_posthocs as sp
    from scipy import stats

    rng = np.random.default_rng(1)
    base = rng.normal(30, 2, 40)
    table = {"a": base, "b": base + 0.5 + rng.normal(0, 0.3, 40), "c": base + rng.normal(0, 1, 40)}
    doc = statistics(table)
    ref = stats.friedmanchisquare(*table.values())
    assert doc["friedman"]["chi2"] == pytest.approx(ref.statistic, rel=1e-12)
    assert doc["friedman"]["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    long = pd.DataFrame([{"g": k, "v": v} for k, vals in table.items() for v in vals])
    dunn = sp.posthoc_dunn(long, val_col="v", group_col="g", p_adjust="holm")
    for pair in doc["pairs"]:
        assert pair["dunn_holm_p"] == pytest.approx(dunn.loc[pair["a"], pair["b"]], rel=1e-12)
    raw = [
        stats.wilcoxon(table[a], table[b]).pvalue for a, b in (("a", "b"), ("a", "c"), ("b", "c"))
    ]
    np.testing.assert_allclose([p["wilcoxon_holm_p"] for p in doc["pairs"]], holm(raw))


def test_restored_once_per_study_scores_like_the_crops(cohort, tmp_path):
    """The evaluation restores each test study once, as a whole volume, and scores its crop
    slices; a dataset without whole volumes is scored from its crops. Both give the same image
    quality, and only the first has the SBR half."""
    import shutil

    import pandas as pd
    import torch
    import yaml

    from fastdat.data.dataset import DatasetConfig, build_dataset, sources_from_simulation
    from fastdat.evaluation.evaluate import evaluate
    from fastdat.models import build_model, save_model

    cfg = DatasetConfig(n_slices=3, crop=32, split=(2, 1, 1))
    ds = tmp_path / "ds"
    build_dataset(sources_from_simulation(cohort, cfg.durations), ds, cfg, {}, progress=False)
    doc = yaml.safe_load((ds / "config.yaml").read_text())
    doc["source"] = {"kind": "simulation", "path": str(cohort)}
    (ds / "config.yaml").write_text(yaml.safe_dump(doc))
    crops_only = tmp_path / "crops_only"
    shutil.copytree(ds, crops_only)
    doc["source"] = {"kind": "nifti", "path": "elsewhere"}
    (crops_only / "config.yaml").write_text(yaml.safe_dump(doc))
    torch.manual_seed(0)
    save_model(build_model("unet1", features=4).eval(), tmp_path / "net")
    runs = {"net": tmp_path / "net"}
    whole = evaluate(ds, runs, tmp_path / "ev1", baselines=("gaussian",), write_report=False)
    crops = evaluate(
        crops_only, runs, tmp_path / "ev2", baselines=("gaussian",), write_report=False
    )
    a, b = pd.read_csv(whole / "metrics.csv"), pd.read_csv(crops / "metrics.csv")
    assert list(a["method"].unique()) == ["5min", "gaussian", "net", "25min"]
    assert a[["method", "image_id"]].equals(b[["method", "image_id"]])
    for col in ("psnr", "ssim", "psnr_truth", "ssim_truth"):
        np.testing.assert_allclose(a[col], b[col], rtol=0, atol=1e-6, err_msg=col)
    assert (whole / "quant" / "sbr.csv").exists() and not (crops / "quant").exists()
    sbr = pd.read_csv(whole / "quant" / "sbr.csv")
    assert set(sbr.loc[sbr["split"] == "test", "method"]) == {
        "truth",
        "5min",
        "gaussian",
        "net",
        "25min",
    }
