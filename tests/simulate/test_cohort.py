from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from fastdat.cli import main
from fastdat.simulate.cohort import (
    parse_shard,
    resolve_config,
    shard_indices,
    simulate_cohort,
)

# A tiny but complete cohort: 10 mm voxels, 26 x 26 x 16 grid, 24 views, 32-bin detector.
TINY = [
    "cohort.n_studies=2",
    "cohort.balanced=true",
    "grid.voxel_mm=10.0",
    "grid.size=26",
    "grid.n_slices=16",
    "acquisition.detector_size=32",
    "acquisition.n_views=24",
    "recon.iterations=2",
    "recon.subsets=4",
    "phantom.supersample=1",
]


def _tiny(*extra):
    return resolve_config({}, TINY + list(extra))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(_tiny(), out, progress=False)
    return out


def _rows(out):
    return _rows_of(out / "manifest.csv")


def test_manifest_and_files(cohort):
    rows = _rows(cohort)
    assert [r["study_id"] for r in rows] == ["sim0001", "sim0002"]
    required = "study_id patient_id age sex grade_left grade_right counts_25min counts_5min"
    for r in rows:
        assert set(required.split()) <= set(r)
        assert int(r["counts_5min"]) / int(r["counts_25min"]) == pytest.approx(0.2, abs=0.005)
        for key in ("truth", "mu_map", "labels", "recon_25min", "recon_5min"):
            img = nib.load(cohort / r[key])
            assert img.shape == (26, 26, 16)
            np.testing.assert_allclose(img.header.get_zooms(), (10.0, 10.0, 10.0))
            # grid centred on the rotation axis: voxel centre (12.5, 12.5, 7.5) at (0, 0, 0) mm
            np.testing.assert_allclose(img.affine @ [12.5, 12.5, 7.5, 1], [0, 0, 0, 1])
        p25 = nib.load(cohort / r["proj_25min"])
        p5 = np.asarray(nib.load(cohort / r["proj_5min"]).dataobj)
        assert p25.get_data_dtype() == np.int32 and p25.shape == (32, 32, 24)
        assert (p5 <= np.asarray(p25.dataobj)).all()
        assert int(np.asarray(p25.dataobj).sum()) == int(r["counts_25min"])
    assert rows[0]["grade_left"] == rows[0]["grade_right"] == "0"  # balanced: grade 0 first
    for name in ("config.yaml", "montage.png", "realism.csv", "realism.json"):
        assert (cohort / name).stat().st_size > 0
    doc = yaml.safe_load((cohort / "config.yaml").read_text())
    assert doc["config"]["grid"]["voxel_mm"] == 10.0
    assert {"fastdat_version", "git_commit", "torch"} <= set(doc["provenance"])
    realism = json.loads((cohort / "realism.json").read_text())
    assert realism["n_studies"] == 2 and np.isfinite(realism["psnr_5_vs_25"]["mean"])


def test_same_seed_same_cohort_and_resume(cohort, tmp_path):
    out = tmp_path / "again"
    simulate_cohort(_tiny(), out, progress=False)
    for key in ("truth", "recon_5min", "proj_5min"):
        a = np.asarray(nib.load(cohort / f"studies/sim0002/{key}.nii.gz").dataobj)
        b = np.asarray(nib.load(out / f"studies/sim0002/{key}.nii.gz").dataobj)
        np.testing.assert_array_equal(a, b)
    # a killed run: one study lost, a half-written temporary left behind
    before = np.asarray(nib.load(out / "studies/sim0001/recon_25min.nii.gz").dataobj)
    for f in (out / "studies/sim0001").iterdir():
        f.unlink()
    (out / "studies/sim0001").rmdir()
    (out / "studies/.sim0001.tmp").mkdir()
    (out / "studies/.sim0001.tmp/truth.nii.gz").write_bytes(b"partial")
    (out / "manifest.csv").unlink()
    simulate_cohort(_tiny(), out, progress=False)
    after = np.asarray(nib.load(out / "studies/sim0001/recon_25min.nii.gz").dataobj)
    np.testing.assert_array_equal(before, after)
    assert not (out / "studies/.sim0001.tmp").exists()
    assert len(_rows(out)) == 2


def test_different_seed_differs(cohort, tmp_path):
    out = tmp_path / "seed1"
    simulate_cohort(_tiny("cohort.seed=1"), out, progress=False)
    a = np.asarray(nib.load(cohort / "studies/sim0001/truth.nii.gz").dataobj)
    b = np.asarray(nib.load(out / "studies/sim0001/truth.nii.gz").dataobj)
    assert not np.array_equal(a, b)


def test_refuses_different_config_in_existing_dir(cohort):
    with pytest.raises(FileExistsError, match="different config.*recon.iterations"):
        simulate_cohort(_tiny("recon.iterations=3"), cohort, progress=False)


def _cli(tmp_path, *args):
    sets = [a for s in TINY for a in ("--set", s)]
    return main(["simulate", "--out", str(tmp_path / "cli"), *sets, *args])


@pytest.mark.parametrize(
    "override, message",
    [
        ("recon.iterationz=3", "unknown config key 'recon.iterationz'"),
        ("acquisition.n_views=0", "n_views"),
        ("acquisition.counts_median=-1", "counts"),
        ("acquisition.collimator=pinhole", "unknown collimator"),
        ("cohort.grade_mix=[0.5,0.5]", "grade_mix"),
        ("grid.voxel_mm=abc", "grid.voxel_mm"),
    ],
)
def test_cli_bad_parameters(tmp_path, capsys, override, message):
    assert _cli(tmp_path, "--set", override) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cli" / "manifest.csv").exists()


def test_cli_unknown_preset(tmp_path, capsys):
    assert _cli(tmp_path, "--preset", "huge") == 2
    assert "unknown simulate preset 'huge'" in capsys.readouterr().err


def _write(path, data, affine=None):
    nib.save(
        nib.Nifti1Image(
            np.asarray(data, np.float32), np.diag([10.0, 10, 10, 1]) if affine is None else affine
        ),
        path,
    )
    return str(path)


@pytest.fixture
def user_maps(tmp_path):
    act = np.zeros((20, 20, 12), np.float32)
    act[5:15, 4:16, 2:10] = 1.0
    act[8:11, 9:12, 5:7] = 5.0
    mu = np.where(act > 0, 0.15, 0.0)
    return _write(tmp_path / "act.nii.gz", act), _write(tmp_path / "mu.nii.gz", mu), act, mu


def test_cli_user_maps(tmp_path, user_maps):
    act_path, mu_path, act, _ = user_maps
    assert _cli(tmp_path, "--activity", act_path, "--mu-map", mu_path) == 0
    rows = _rows(tmp_path / "cli")
    # cohort.n_studies=2 in TINY: two noise realizations of the same user phantom
    assert [r["study_id"] for r in rows] == ["user0001", "user0002"]
    out = tmp_path / "cli"
    for r in rows:
        truth = nib.load(out / r["truth"])
        np.testing.assert_array_equal(np.asarray(truth.dataobj), act)
        assert nib.load(out / r["recon_25min"]).shape == (20, 20, 12)
    p1, p2 = (np.asarray(nib.load(out / r["proj_25min"]).dataobj) for r in rows)
    assert not np.array_equal(p1, p2)


@pytest.mark.parametrize(
    "problem", ["shape", "affine", "nan", "negative", "units", "missing", "outside_fov"]
)
def test_cli_rejects_unusable_user_maps(tmp_path, user_maps, capsys, problem):
    act_path, mu_path, act, mu = user_maps
    bad = tmp_path / "bad.nii.gz"
    if problem == "shape":
        mu_path = _write(bad, mu[:, :, :10])
    elif problem == "affine":
        mu_path = _write(bad, mu, np.diag([9.0, 9, 9, 1]))
    elif problem == "nan":
        a = act.copy()
        a[3, 3, 3] = np.nan
        act_path = _write(bad, a)
    elif problem == "negative":
        a = act.copy()
        a[3, 3, 3] = -1
        act_path = _write(bad, a)
    elif problem == "outside_fov":
        a = act.copy()
        a[0, 0, 5] = 1.0  # a grid corner, invisible from oblique views
        act_path = _write(bad, a)
    elif problem == "units":
        mu_path = _write(bad, mu * 1000)  # Hounsfield-like values
    else:
        act_path = str(tmp_path / "absent.nii.gz")
    assert _cli(tmp_path, "--activity", act_path, "--mu-map", mu_path) == 2
    err = capsys.readouterr().err
    assert str(bad if problem != "missing" else act_path) in err
    assert not (tmp_path / "cli").exists()


def test_study_from_another_config_is_refused(cohort, tmp_path):
    out = tmp_path / "mixed"
    simulate_cohort(_tiny(), out, progress=False)
    meta_path = out / "studies/sim0002/study.json"
    meta = json.loads(meta_path.read_text())
    meta["config_sha256"] = "0" * 64  # as if a stray process of another run had written it
    meta_path.write_text(json.dumps(meta))
    (out / "manifest.csv").unlink()
    with pytest.raises(FileExistsError, match="sim0002 was made with a different config"):
        simulate_cohort(_tiny(), out, progress=False)


def test_sweep_cohort_writes_replicates_noise_free_and_chosen_projections(tmp_path):
    """A scan-time cohort: every duration, its noise realizations and the noise-free image are
    recon_* columns a dataset reads as image kinds; only the longest projections are kept; the
    motion drawn for each shorter scan is recorded with the study."""
    from fastdat.data.dataset import sources_from_simulation

    sets = [
        "cohort.n_studies=1",
        "acquisition.durations_min=[25,10,2]",
        "acquisition.mode=independent",
        "acquisition.motion_mm=1.0",
        "acquisition.replicates=2",
        "acquisition.save_projections=longest",
        "recon.noise_free=true",
    ]
    simulate_cohort(_tiny(*sets), tmp_path, progress=False)
    row = _rows(tmp_path)[0]
    kinds = ["25min", "10min", "2min", "noisefree"]
    kinds += [f"{d}_r{k}" for d in ("25min", "10min", "2min") for k in (1, 2)]
    assert {f"recon_{k}" for k in kinds} <= set(row)
    assert "proj_25min" in row and "proj_10min" not in row and "proj_2min" not in row
    assert not (tmp_path / "studies" / "sim0001" / "proj_2min.nii.gz").exists()
    (src,) = sources_from_simulation(tmp_path, tuple(kinds))
    vols = {k: src.loaders[k]()[0] for k in kinds}
    assert all(v.shape == (26, 26, 16) and v.min() >= 0 for v in vols.values())
    assert not np.array_equal(vols["2min"], vols["2min_r1"])
    meta = json.loads((tmp_path / "studies" / "sim0001" / "study.json").read_text())
    assert set(meta["motion"]) == {"10min", "2min"}
    assert int(row["counts_2min"]) / int(row["counts_25min"]) == pytest.approx(0.08, abs=0.01)


@pytest.mark.parametrize("n", [0, 1, 5, 7, 300])
@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_shards_partition_the_cohort(n, shards):
    """Every study index is in exactly one shard, in order, and the blocks differ by at most 1."""
    blocks = [list(shard_indices(n, (i, shards))) for i in range(1, shards + 1)]
    assert sum(blocks, []) == list(range(n))
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("text", ["3", "0/2", "3/2", "a/b", "1/0", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def _tree(root):
    """Relative path -> bytes of every file of a cohort but its config (provenance differs)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "config.yaml" and p.parent.name != "shards"
    }


def test_sharded_cohort_merges_to_the_unsharded_one_bit_for_bit(tmp_path, capsys):
    """Three shards (run out of order, one through the CLI) merged, against one unsharded run:
    every study file, the manifest, the realism report and the montage are byte-identical."""
    sets = ["cohort.n_studies=5", "cohort.balanced=false"]
    whole = tmp_path / "whole"
    simulate_cohort(_tiny(*sets), whole, progress=False)
    parts = tmp_path / "parts"
    cli_sets = [a for s in TINY + sets for a in ("--set", s)]
    assert main(["simulate", "--out", str(parts), "--shard", "3/3", *cli_sets]) == 0
    assert "--merge" in capsys.readouterr().out
    assert not (parts / "manifest.csv").exists()
    # merging before every shard ran names what is missing, and writes no manifest
    assert main(["simulate", "--out", str(parts), "--merge"]) == 2
    err = capsys.readouterr().err
    assert "3 of 5 studies are missing (sim0001, sim0002, sim0003)" in err
    assert "shard-3-of-3" in err and not (parts / "manifest.csv").exists()
    shard1 = simulate_cohort(_tiny(*sets), parts, progress=False, shard=(1, 3))
    simulate_cohort(_tiny(*sets), parts, progress=False, shard=(2, 3))
    assert [r["study_id"] for r in _rows_of(shard1)] == ["sim0001"]
    assert main(["simulate", "--out", str(parts), "--merge"]) == 0
    a, b = _tree(whole), _tree(parts)
    assert set(a) == set(b)
    assert {"manifest.csv", "realism.json", "montage.png"} <= set(a)
    assert len([k for k in a if k.endswith("study.json")]) == 5
    assert [k for k in a if a[k] != b[k]] == []


def test_a_shard_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "parts"
    simulate_cohort(_tiny("cohort.n_studies=4"), out, progress=False, shard=(1, 2))
    with pytest.raises(FileExistsError, match="different config"):
        simulate_cohort(_tiny("cohort.n_studies=4", "recon.iterations=3"), out, shard=(2, 2))
    assert main(["simulate", "--out", str(out), "--merge", "--set", "recon.iterations=3"]) == 2
    assert "drop --set" in capsys.readouterr().err


def _rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))
