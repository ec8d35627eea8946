from __future__ import annotations

import numpy as np
import pytest

from fastdat.evaluation.evaluate import holm, statistics


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random(rng.integers(2, 12)) ** 3
        np.testing.assert_allclose(holm(list(p)), multipletests(p, method="holm")[1], atol=1e-12)


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


def test_tiny_study_end_to_end_and_rerun(tmp_path, tiny_sim_sets):
    """simulate -> dataset -> train 2 models -> evaluate -> report; a rerun skips the stages."""
    import csv
    import json

    from fastdat.cli import main

    sets = [
        "simulate.set=[" + ",".join(tiny_sim_sets) + "]",
        "dataset.crop=24",
        "dataset.n_slices=3",
        "dataset.split=[2,1,1]",
        "train.max_epochs=1",
        "train.batch_size=4",
        "models=[unet1,unet2]",
    ]
    args = [
        "study",
        "--preset",
        "quick",
        "--out",
        str(tmp_path / "s"),
        "--device",
        "cpu",
        "--workers",
        "1",
    ]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    ev = tmp_path / "s" / "eval"
    with open(ev / "summary.csv") as f:
        methods = [r["method"] for r in csv.DictReader(f)]
    assert methods == ["5min", "gaussian", "butterworth", "nlm", "unet1", "unet2", "25min"]
    stats = json.loads((ev / "stats.json").read_text())
    assert stats["psnr"]["friedman"]["k"] == 6 and len(stats["psnr"]["pairs"]) == 15
    html = (ev / "report.html").read_text()
    assert (ev / "quant" / "grading.json").exists()
    assert "data:image/png;base64" in html and "32.7" in html  # ours beside the paper's table
    assert html.count("Wall time per stage") == 1 and "<td>train:unet2</td>" in html
    assert "<td>quantify</td>" in html  # the table comes after every stage
    timings = json.loads((tmp_path / "s" / "timings.json").read_text())
    assert {"simulate", "dataset", "train:unet1", "train:unet2", "evaluate", "quantify"} <= set(
        timings
    )
    with open(ev / "quant" / "sbr.csv") as f:
        sbr = list(csv.DictReader(f))
    test_methods = {r["method"] for r in sbr if r["split"] == "test"}
    assert test_methods == {"truth", *methods}
    assert html.count("<!-- section:quantification -->") == 1 and "Putamen SBR" in html
    history = json.loads((tmp_path / "s" / "runs" / "unet1" / "state.json").read_text())["history"]
    assert timings["train:unet1"] >= sum(h["seconds"] for h in history) - 0.05
    mtime = (tmp_path / "s" / "runs" / "unet1" / "best.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # everything complete: nothing retrained
    assert (tmp_path / "s" / "runs" / "unet1" / "best.safetensors").stat().st_mtime_ns == mtime
    again = json.loads((tmp_path / "s" / "timings.json").read_text())
    for name in ("simulate", "dataset", "train:unet1", "train:unet2"):  # skips keep the work's time
        assert again[name] == timings[name], name
