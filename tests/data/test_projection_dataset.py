"""dataset build --projections: a simulated cohort exported as projection DICOM, rebuilt.

The dataset built from the exported 25-min projections must equal the one built from the cohort
itself (``--from SIMDIR``) where it can: same studies, patients, splits, slices and crop centres,
and the same 25-min crops (same counts, same reconstruction). Its 5-min crops are another binomial
thinning of the same 25-min counts than the simulator drew, so they differ by noise only: their
totals agree and their PSNR against the 25-min crops is alike. The truth crops exist only in the
simulated dataset (an archive has no truth).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fastdat.cli import main
from fastdat.data.load import load_crops
from fastdat.metrics import psnr
from fastdat.simulate.export import export_projections

RECON = ["--grid", "32,20", "--iterations", "2", "--subsets", "5"]  # the tiny cohort's recon


@pytest.fixture(scope="module")
def both(cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("projds")
    export_projections(cohort, root / "archive", "siemens")
    common = ["--split", "2,1,1", "--durations", "5min,25min", "--slices", "3", "--crop", "24"]
    assert (
        main(["dataset", "build", "--from", str(cohort), "--out", str(root / "sim"), *common]) == 0
    )
    args = ["dataset", "build", "--projections", str(root / "archive"), "--out", str(root / "proj")]
    assert main([*args, *common, *RECON]) == 0
    return root


def test_projection_dataset_equals_the_simulated_one_but_for_thinning_noise(both):
    sim, sim_index = load_crops(both / "sim")
    proj, proj_index = load_crops(both / "proj")
    cols = ["study_id", "patient_id", "slice", "split", "grade_left", "grade_right"]
    pd.testing.assert_frame_equal(sim_index[cols], proj_index[cols])
    s_studies = pd.read_csv(both / "sim" / "studies.csv").set_index("study_id")
    p_studies = pd.read_csv(both / "proj" / "studies.csv").set_index("study_id")
    for c in [c for c in s_studies.columns if c.startswith(("centre", "center"))]:
        assert np.allclose(s_studies[c], p_studies[c])
    assert set(proj) == {"5min", "25min"} and "truth" in sim
    ref = sim["25min"]
    assert np.abs(proj["25min"] - ref).max() <= 1e-4 * ref.max()
    assert not np.allclose(proj["5min"], sim["5min"], rtol=1e-3)
    assert proj["5min"].sum() == pytest.approx(sim["5min"].sum(), rel=0.05)
    p_sim = psnr(torch.from_numpy(sim["5min"]), torch.from_numpy(ref)).mean().item()
    p_proj = psnr(torch.from_numpy(proj["5min"]), torch.from_numpy(ref)).mean().item()
    assert abs(p_sim - p_proj) < 1.5


def test_reconstructions_are_kept_and_reused(both, capsys):
    recon = both / "proj.recon"
    studies = sorted(p.name for p in recon.iterdir())
    assert len(studies) == 4
    doc = json.loads((recon / studies[0] / "recon.json").read_text())
    assert doc["attenuation"].endswith("mu_map.nii.gz")
    assert doc["reconstructions"]["5min"]["fraction"] == pytest.approx(0.2)
    # a second dataset from the same archive and settings reuses every reconstruction
    before = {p: p.stat().st_mtime_ns for p in recon.rglob("*.nii.gz")}
    args = ["dataset", "build", "--projections", str(both / "archive"), "--out"]
    args += [str(both / "proj2"), "--recon-dir", str(recon), "--split", "2,1,1"]
    args += ["--slices", "3", "--crop", "24", *RECON]
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in recon.rglob("*.nii.gz")}
    # other settings into the same folder are refused, naming it
    args[-1] = "4"
    args[args.index("--out") + 1] = str(both / "proj3")
    assert main(args) == 2
    assert "reconstructed with other settings" in capsys.readouterr().err
    assert not (both / "proj3").exists()


def test_a_duration_longer_than_the_acquisition_is_listed_with_its_reason(both, capsys):
    args = ["dataset", "build", "--projections", str(both / "archive"), "--out"]
    args += [str(both / "long"), "--durations", "25min,30min", "--split", "2,1,1"]
    args += ["--slices", "3", "--crop", "24", *RECON]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "acquired 25 min, shorter than the 30min asked for" in err


def test_self_supervised_pairs_from_the_archive(both):
    """``rest5min`` crops: the counts the 5-min thinning left (a 20-min scan of the same
    acquisition). 5min + rest5min counts are the 25-min counts, so in counts / s
    ``(5 x img_5 + 20 x img_rest) / 25`` totals the 25-min image's total; the rest is far less
    noisy than the 5-min image and is not the 25-min image."""
    args = ["dataset", "build", "--projections", str(both / "archive"), "--out"]
    args += [str(both / "n2n"), "--recon-dir", str(both / "n2n.recon"), "--split", "2,1,1"]
    args += ["--durations", "5min,rest5min,25min", "--slices", "3", "--crop", "24", *RECON]
    assert main(args) == 0
    crops, _ = load_crops(both / "n2n")
    proj, _ = load_crops(both / "proj")
    np.testing.assert_array_equal(crops["5min"], proj["5min"])  # same draw as the plain build
    recon = both / "n2n.recon"
    study = sorted(p.name for p in recon.iterdir())[0]
    doc = json.loads((recon / study / "recon.json").read_text())["reconstructions"]
    assert doc["rest5min"]["seed"] == doc["5min"]["seed"]
    assert doc["rest5min"]["info"]["acquisition_s"] == pytest.approx(1200.0)
    counts = {k: doc[k]["info"]["counts_photopeak"] for k in ("5min", "rest5min", "25min")}
    assert counts["5min"] + counts["rest5min"] == counts["25min"]
    mixed = (5 * crops["5min"] + 20 * crops["rest5min"]) / 25
    assert mixed.sum() == pytest.approx(crops["25min"].sum(), rel=0.02)
    ref = torch.from_numpy(crops["25min"])
    p5 = psnr(torch.from_numpy(crops["5min"]), ref).mean().item()
    p_rest = psnr(torch.from_numpy(crops["rest5min"]), ref).mean().item()
    assert p_rest > p5 + 3
    assert not np.allclose(crops["rest5min"], crops["25min"], rtol=1e-3)
