"""Reader-study fixtures: an EVAL folder over a tiny fake dataset and a real tiny checkpoint,
studies made from it, tokens and real servers (helpers in ``rs_support``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from rs_support import METHODS, READERS, Server, read_tokens, write_fake_dataset

from fastdat.readerstudy import StudyConfig, create_study


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory) -> Path:
    """An EVAL folder as ``evaluate`` writes it: ``config.yaml`` (absolute dataset and run paths)
    and ``baselines.json``; the run holds a real (untrained) ``unet1`` checkpoint ``best``."""
    import torch

    from fastdat.models import build_model, save_model

    root = tmp_path_factory.mktemp("readerstudy_eval")
    ds = write_fake_dataset(root / "ds")
    torch.manual_seed(0)
    save_model(build_model("unet1", residual=True, nonneg=True), root / "runs" / "u1" / "best")
    ev = root / "eval"
    ev.mkdir()
    doc = {
        "dataset": str(ds.resolve()),
        "networks": {"unet1": str((root / "runs" / "u1" / "best").resolve())},
        "baselines": ["gaussian"],
        "provenance": {"fastdat_version": "test"},
    }
    (ev / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    tuned = {"gaussian": {"params": {"sigma": 1.2}, "val_psnr": 30.0, "grid": []}}
    (ev / "baselines.json").write_text(json.dumps(tuned))
    return ev


@pytest.fixture(scope="session")
def base_study(eval_dir, tmp_path_factory) -> Path:
    """A 12-case study (5min, unet1, 25min) for three readers, 20 % repeats; never graded."""
    out = tmp_path_factory.mktemp("readerstudy_base") / "study"
    cfg = StudyConfig(cases=12, methods=METHODS, readers=READERS, repeat_share=0.2, seed=3)
    return create_study(eval_dir, out, cfg)


@pytest.fixture
def study(base_study, tmp_path) -> Path:
    """A private copy of :func:`base_study` a test may grade."""
    return Path(shutil.copytree(base_study, tmp_path / "study"))


@pytest.fixture
def tokens():
    """``tokens(study_dir)`` -> name -> token."""
    return read_tokens


@pytest.fixture
def serve(tmp_path):
    """``serve(study_dir)`` -> a started :class:`Server`; every one is stopped after the test."""
    for module in ("fastapi", "uvicorn", "httpx"):
        pytest.importorskip(module, reason=f"{module} missing: pip install -e '.[dev]'")
    servers: list[Server] = []

    def start(study_dir: Path) -> Server:
        servers.append(Server(study_dir, tmp_path / f"server{len(servers)}.log").start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()
