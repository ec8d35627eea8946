from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def build_cli():
    """``build_cli(SOURCE_FLAG, root, out, split)``: the exit code of ``fastdat dataset build``
    with 3 slices and 24-px crops (the tests' small datasets)."""
    from fastdat.cli import main

    def run(flag: str, root, out, split: str, *extra: str) -> int:
        args = [flag, str(root), "--out", str(out), "--slices", "3", "--crop", "24"]
        return main(["dataset", "build", *args, "--split", split, *extra])

    return run
