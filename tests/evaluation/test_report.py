"""The report's answer is derived from the measured comparisons, never from constants."""

from __future__ import annotations

import json

import numpy as np

from fastdat.evaluation.evaluate import headline
from fastdat.evaluation.report import answer, write_report
from fastdat.io.atomic import write_csv


def _patients(gain_raw: float, gain_filter_sd: float, n: int, seed: int = 0):
    """Synthetic per-patient PSNR / SSIM of 5min, nlm, net, 25min."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = 29 + rng.normal(0, 2)
        f = base + 2 + rng.normal(0, 0.2)
        vals = {"5min": base, "nlm": f, "net": base + gain_raw + rng.normal(0, gain_filter_sd)}
        for m, v in vals.items():
            rows.append(
                {"method": m, "patient_id": f"P{i}", "psnr": v, "ssim": v / 40, "grade": i % 4}
            )
    return pd.DataFrame(rows)


def test_answer_follows_the_confidence_intervals():
    best = {"network": "net", "filter": "nlm"}
    clear = headline(_patients(4.0, 0.3, 16), best)
    sentence, lines = answer({"best": best, "comparisons": clear}, None)
    assert "than both raw 5-min and the best tuned filter" in sentence and "16 test" in sentence
    c = next(x for x in clear if (x["a"], x["b"], x["metric"]) == ("net", "nlm", "psnr"))
    assert f"{c['mean']:+.2f} dB (95 % CI {c['low']:+.2f} to {c['high']:+.2f}" in lines[1]

    # the network's gain over the filter is within noise: not claimed
    vague = headline(_patients(2.0, 3.0, 16, seed=3), best)
    c = next(x for x in vague if (x["a"], x["b"], x["metric"]) == ("net", "nlm", "psnr"))
    assert c["low"] < 0 < c["high"]
    sentence, _ = answer({"best": best, "comparisons": vague}, None)
    assert "not clearly closer than the best tuned filter" in sentence

    few = headline(_patients(4.0, 0.3, 4), best)
    sentence, _ = answer({"best": best, "comparisons": few}, None)
    assert sentence.startswith("Too few test patients (n = 4)")

    none = {"best": {"network": None, "filter": "nlm"}, "comparisons": []}
    assert "No network converged" in answer(none, None)[0]


def test_answer_states_the_sbr_margin_and_verdicts():
    best = {"network": "net", "filter": "nlm"}
    comps = headline(_patients(4.0, 0.3, 16), best)
    quant = {
        "margin": 0.2,
        "equivalence": {
            "net": {"equivalent": False, "mean": -0.18, "ci90_low": -0.24, "ci90_high": -0.11},
            "5min": {"equivalent": True, "mean": -0.06, "ci90_low": -0.11, "ci90_high": -0.01},
        },
    }
    sentence, _ = answer({"best": best, "comparisons": comps}, quant)
    assert "net putamen SBR is not shown to be equivalent to 25-min within &plusmn;0.2" in sentence
    assert "raw 5-min putamen SBR is equivalent" in sentence and "-0.180" in sentence


def test_write_report_shows_the_files_numbers(tmp_path):
    best = {"network": "net", "filter": "nlm"}
    patients = _patients(4.0, 0.3, 8)
    comps = headline(patients, best)
    (tmp_path / "headline.json").write_text(
        json.dumps({"chosen_on": "validation", "best": best, "comparisons": comps})
    )
    stats = {k: {"friedman": {"chi2": 1.0, "n": 40, "p": 0.5, "k": 3}} for k in ("psnr", "ssim")}
    (tmp_path / "stats.json").write_text(json.dumps({**stats, "patient_level": {}}))
    summary = []
    for m, g in patients.groupby("method", sort=False):
        summary.append(
            {
                "method": m,
                "n": 5 * len(g),
                "n_patients": len(g),
                "psnr_pmean": g["psnr"].mean(),
                "psnr_psd": g["psnr"].std(),
                "ssim_pmean": g["ssim"].mean(),
                "ssim_psd": g["ssim"].std(),
            }
        )
    write_csv(tmp_path / "summary.csv", summary)
    write_csv(
        tmp_path / "validation.csv",
        [
            {"method": "net", "kind": "network", "val_psnr": 31.0, "converged": True},
            {"method": "bad", "kind": "network", "val_psnr": 20.0, "converged": False},
        ],
    )
    page = write_report(tmp_path, note="a note").read_text()
    net = next(r for r in summary if r["method"] == "net")
    assert f"{net['psnr_pmean']:.2f} &plusmn; {net['psnr_psd']:.2f}" in page
    assert "a note" in page and page.count("<h1>") == 1
