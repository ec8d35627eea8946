"""Helpers of the reader-study tests: a tiny fake dataset, tokens, a real ``uvicorn`` server
started through the CLI in a subprocess (imported by the tests as ``rs_support``)."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CROP, N_SLICES = 64, 5
# Identifiers that must never reach a reader: distinctive, so a leak scan cannot miss them.
STUDY_ID, PATIENT_ID = "ST{:04d}QX", "PX{:04d}ZK"
METHODS = ("5min", "unet1", "25min")
READERS = ("ann", "bob", "cy")


def _slice(rng, grade_left: int, grade_right: int, k: int) -> np.ndarray:
    """An ``(X, Y)`` truth slice: two striatal blobs (x > centre = patient's right, RAS) whose
    uptake falls with their grade, on a background of 1."""
    x, y = np.mgrid[:CROP, :CROP].astype(np.float64)
    img = np.ones((CROP, CROP))
    for cx, grade in ((CROP / 2 - 10, grade_left), (CROP / 2 + 10, grade_right)):
        amp = (6.0 - 1.5 * grade) * (1.0 - 0.1 * abs(k - 2))
        img += amp * np.exp(-((x - cx) ** 2 + (y - CROP / 2 - 4) ** 2) / (2 * 5.0**2))
    return img * rng.uniform(0.8, 1.2)


def write_fake_dataset(path: Path, n_test: int = 30, seed: int = 0) -> Path:
    """A dataset folder as :func:`fastdat.data.dataset.build_dataset` writes it (index.csv with
    the same columns in the same order, float32 ``crops_<kind>.npy``), 2 val and 2 train studies."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    rows, crops = [], {"5min": [], "25min": [], "truth": []}
    splits = ["test"] * n_test + ["val"] * 2 + ["train"] * 2
    for i, split in enumerate(splits):
        gl, gr = (int(g) for g in rng.integers(0, 4, 2))
        for k in range(N_SLICES):
            truth = _slice(rng, gl, gr, k)
            c25 = rng.poisson(truth * 40.0)
            c5 = rng.binomial(c25, 0.2)
            crops["truth"].append(truth)
            crops["25min"].append(c25 / 40.0)
            crops["5min"].append(c5 / 8.0)
            rows.append(
                {
                    "crop_id": len(rows),
                    "study_id": STUDY_ID.format(i),
                    "patient_id": PATIENT_ID.format(i),
                    "slice": 20 + k,
                    "slice_rank": k,
                    "grade_left": gl,
                    "grade_right": gr,
                    "split": split,
                }
            )
    for kind, arrs in crops.items():
        np.save(path / f"crops_{kind}.npy", np.stack(arrs).astype(np.float32))
    with open(path / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def read_tokens(study_dir: Path) -> dict[str, str]:
    """name -> token from ``tokens.txt``."""
    lines = (Path(study_dir) / "tokens.txt").read_text().splitlines()
    return dict(line.split() for line in lines if line and not line.startswith("#"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``fastdat reader-study serve STUDY --port P`` in a subprocess (a real uvicorn)."""

    def __init__(self, study_dir: Path, log_path: Path):
        self.study_dir, self.log_path = Path(study_dir), Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        import httpx

        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = [sys.executable, "-m", "fastdat.cli", "reader-study", "serve", str(self.study_dir)]
        self.proc = subprocess.Popen([*cmd, "--port", str(self.port)], stdout=log, stderr=log)
        log.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/login", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
