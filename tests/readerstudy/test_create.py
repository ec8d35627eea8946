from __future__ import annotations

import json
import math
import re
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rs_support import METHODS, PATIENT_ID, READERS, STUDY_ID, read_tokens

from fastdat.readerstudy import StudyConfig, create_study
from fastdat.readerstudy.create import reader_order, select_cases
from fastdat.readerstudy.render import png_chunks, render_read
from fastdat.readerstudy.store import connect, hash_token


def _key(study: Path) -> dict:
    return json.loads((study / "key.json").read_text())


def _design(study: Path) -> dict[str, list[tuple[str, str, bool]]]:
    """reader -> [(study id, method, repeat)] in reading order: the seeded part of a study."""
    key = _key(study)
    out: dict[str, list] = {}
    for r in sorted(key["reads"].values(), key=lambda r: (r["reader"], r["position"])):
        out.setdefault(r["reader"], []).append((r["study_id"], r["method"], r["repeat"]))
    return out


def _secret_strings(study: Path) -> list[str]:
    """Everything a reader must not learn: method names, study and patient ids, case labels."""
    key = _key(study)
    words = {"5min", "25min", "5-min", "25-min", "unet", "gaussian", "repeat"}
    for case, c in key["cases"].items():
        words |= {case, c["study_id"], c["patient_id"]}
    return sorted(words)


def test_every_case_and_method_once_per_reader_then_repeats(base_study):
    key = _key(base_study)
    images = {(i["case"], i["method"]) for i in key["images"]}
    assert len(images) == len(key["images"]) == 12 * len(METHODS)
    n = len(images)
    m = round(0.2 * n)
    for reader in READERS:
        reads = sorted(
            (r for r in key["reads"].values() if r["reader"] == reader), key=lambda r: r["position"]
        )
        assert [r["position"] for r in reads] == list(range(n + m))
        first = [(r["case"], r["method"]) for r in reads if not r["repeat"]]
        assert sorted(first) == sorted(images)  # every case x method exactly once
        assert [r["repeat"] for r in reads] == [False] * n + [True] * m  # repeats at the end
        pos = {r["image"]: r["position"] for r in reads if not r["repeat"]}
        reps = [r for r in reads if r["repeat"]]
        assert len({r["image"] for r in reps}) == m  # no image repeated twice
        for r in reps:  # washout: at least half the list between first read and repeat
            assert r["position"] - pos[r["image"]] >= math.ceil((n + m) / 2)
        per_method = Counter(r["method"] for r in reps)
        assert max(per_method.values()) - min(per_method.values()) <= 1
        assert set(per_method) == set(METHODS)


def test_orders_differ_between_readers(base_study):
    design = _design(base_study)
    orders = [tuple(design[r]) for r in READERS]
    assert len(set(orders)) == len(READERS)


def test_same_seed_same_design_fresh_secrets(eval_dir, base_study, tmp_path):
    cfg = StudyConfig(cases=12, methods=METHODS, readers=READERS, repeat_share=0.2, seed=3)
    again = create_study(eval_dir, tmp_path / "again", cfg)
    assert _design(again) == _design(base_study)
    # ids and tokens come from `secrets`, not the seed: knowing the seed gives no key
    assert not set(_key(again)["reads"]) & set(_key(base_study)["reads"])
    assert read_tokens(again)["ann"] != read_tokens(base_study)["ann"]
    other = create_study(eval_dir, tmp_path / "other", StudyConfig(**{**cfg.__dict__, "seed": 4}))
    assert _design(other) != _design(base_study)


def test_images_are_anonymous(base_study):
    files = sorted((base_study / "images").iterdir())
    assert len(files) == 12 * len(METHODS)
    secrets_ = [s.encode() for s in _secret_strings(base_study)]
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{32}\.png", f.name)
        data = f.read_bytes()
        assert set(png_chunks(data)) <= {"IHDR", "PLTE", "IDAT", "IEND"}
        low = data.lower()
        assert not [s for s in secrets_ if s.lower() in low]
    for read_id in _key(base_study)["reads"]:
        assert re.fullmatch(r"[0-9a-f]{24}", read_id)


def test_database_holds_no_key_and_no_tokens(base_study):
    """The server's only file knows read ids and image files, never methods, studies, patients,
    and stores token hashes only."""
    conn = connect(base_study)
    dump = "\n".join(conn.iterdump()).lower()
    conn.close()
    leaked = [s for s in _secret_strings(base_study) if s.lower() in dump]
    assert not leaked
    for name, token in read_tokens(base_study).items():
        assert token.lower() not in dump
        assert hash_token(token) in dump, name


def test_private_files(base_study):
    for name in ("tokens.txt", "key.json"):
        assert stat.S_IMODE((base_study / name).stat().st_mode) == 0o600
    assert set(read_tokens(base_study)) == {*READERS, "admin"}
    cfg = yaml.safe_load((base_study / "config.yaml").read_text())
    assert cfg["study"]["methods"] == list(METHODS)
    assert cfg["methods"]["unet1"]["kind"] == "model"
    assert cfg["provenance"]["fastdat_version"]


def test_each_image_is_its_method_in_the_case_window(base_study, eval_dir):
    """Re-render every image independently from the dataset / the checkpoint: byte-identical,
    and one window per case ([0, 99.9th percentile of its 25-min crops]) for all methods."""
    from fastdat.data import load_crops
    from fastdat.methods import predict
    from fastdat.models import load_model

    cfg = yaml.safe_load((eval_dir / "config.yaml").read_text())
    crops, index = load_crops(cfg["dataset"])
    model = load_model(cfg["networks"]["unet1"])
    key = _key(base_study)
    for img in key["images"]:
        case = key["cases"][img["case"]]
        rows = index[index["study_id"] == case["study_id"]].sort_values("slice_rank").index
        vmax = np.percentile(crops["25min"][rows], 99.9)
        assert case["window"][1] == pytest.approx(vmax, rel=1e-6)
        if img["method"] == "unet1":
            expected = predict(model, crops["5min"][rows].astype(np.float64))
        else:
            expected = crops[img["method"]][rows]
        png = render_read(expected.astype(np.float64), case["window"][1], "gray", 4)
        assert (base_study / "images" / img["image"]).read_bytes() == png, img


def test_cases_are_test_studies_stratified_by_grade(base_study, eval_dir):
    cfg = yaml.safe_load((eval_dir / "config.yaml").read_text())
    index = pd.read_csv(Path(cfg["dataset"]) / "index.csv", dtype={"study_id": str})
    test = index[index["split"] == "test"].groupby("study_id")[["grade_left", "grade_right"]].max()
    worse = test.max(axis=1)
    chosen = [c["study_id"] for c in _key(base_study)["cases"].values()]
    assert set(chosen) <= set(test.index) and len(set(chosen)) == 12
    got = Counter(worse[chosen])
    for g, size in Counter(worse).items():  # proportional allocation, largest remainder
        assert abs(got.get(g, 0) - 12 * size / len(worse)) < 1
    assert all(re.fullmatch(STUDY_ID.replace("{:04d}", r"\d{4}"), s) for s in chosen)
    assert PATIENT_ID


def test_select_cases_refuses_too_many():
    index = pd.DataFrame(
        {"study_id": ["a", "b"], "split": ["test", "val"], "grade_left": [0, 1], "grade_right": 0}
    )
    with pytest.raises(ValueError, match="test split has 1"):
        select_cases(index, 2, np.random.default_rng(0))


@pytest.mark.parametrize("n", [3, 10, 37, 150])
def test_reader_order_washout_for_any_size(n):
    methods = [f"m{i % 3}" for i in range(n)]
    order = reader_order(methods, 1 / 3, np.random.default_rng(n))
    reads = [i for i, rep in order if not rep]
    assert sorted(reads) == list(range(n))
    first = {i: p for p, (i, rep) in enumerate(order) if not rep}
    for p, (i, rep) in enumerate(order):
        if rep:
            assert p - first[i] >= len(order) / 2


def test_create_refuses_an_existing_study_and_unknown_method(eval_dir, base_study, tmp_path):
    with pytest.raises(FileExistsError):
        create_study(eval_dir, base_study, StudyConfig(cases=2, methods=("5min",)))
    with pytest.raises(ValueError, match="unknown method 'unet9'.*evaluated: .*unet1"):
        create_study(eval_dir, tmp_path / "s", StudyConfig(cases=2, methods=("5min", "unet9")))
    assert not (tmp_path / "s").exists()


def test_filter_method_from_tuned_baselines(eval_dir, tmp_path):
    from fastdat.methods.filters import apply

    out = create_study(
        eval_dir, tmp_path / "g", StudyConfig(cases=2, methods=("gaussian",), readers=("a",))
    )
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["methods"]["gaussian"] == {"kind": "filter", "params": {"sigma": 1.2}}
    assert apply("gaussian", np.ones((1, 8, 8)), {"sigma": 1.2}).shape == (1, 8, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cases": 0}, "cases"),
        ({"methods": ("5min", "5min")}, "distinct"),
        ({"readers": ("admin",)}, "admin"),
        ({"readers": ("a b",)}, "reader name"),
        ({"repeat_share": 0.5}, "repeat_share"),
        ({"cmap": "nope"}, "colour map"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig(**kwargs)
