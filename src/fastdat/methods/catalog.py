"""Where a network came from, whether it converged and which method ranks best on validation.

A network *converged* when it beats its own input on the validation split (mean PSNR against
25-min above the raw 5-min image's) and, if it was trained by FastDaT's loop, did not stop at
``max_epochs`` with its best epoch the last one (still improving). Methods that did not converge
are reported, marked, and never chosen as "best". "Best" is always chosen on the validation
split, never on the test split it is then reported on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def describe_network(label: str, stem: Path, dataset_fingerprint: str | None) -> dict[str, Any]:
    """Where a network came from: architecture, size, training data, epochs, fine-tuning.

    Args:
        label: Method name in the evaluation.
        stem: Checkpoint stem (``STEM.json`` sidecar).
        dataset_fingerprint: Fingerprint of the evaluated dataset; a network trained on the same
            dataset is "trained on this cohort's training split".
    """
    from fastdat.models.checkpoint import PACKAGED, read_sidecar

    meta = read_sidecar(stem)
    weights = Path(stem).with_name(Path(stem).name + ".safetensors")
    arch = {k: v for k, v in meta["model"].items() if k not in ("in_channels", "out_channels")}
    rec: dict[str, Any] = {
        "label": label,
        "checkpoint": str(stem),
        "weights_sha256": meta.get("weights_sha256"),
        "architecture": arch,
        "file_bytes": weights.stat().st_size if weights.exists() else None,
        "packaged": any(Path(stem) == p for p in PACKAGED.values()),
        "best_epoch": meta.get("epoch"),
        "init": (meta.get("init") or {}).get("checkpoint"),
    }
    same = dataset_fingerprint is not None and meta.get("dataset_fingerprint") == (
        dataset_fingerprint
    )
    rec["trained_here"] = bool(same)
    rec["trained_on"] = (
        "this cohort's training split"
        if same
        else meta.get("trained_on") or f"another dataset ({meta.get('dataset', 'unknown')})"
    )
    state = Path(stem).parent / "state.json"
    if same and state.exists():
        doc = json.loads(state.read_text())
        rec["epochs_run"] = int(doc.get("epoch", 0))
        rec["max_epochs"] = int(((meta.get("train") or {}).get("max_epochs")) or 0)
    return rec


def convergence(info: dict[str, Any], val_psnr: float, raw_val_psnr: float) -> tuple[bool, str]:
    """Whether a network converged (see the module docstring) and, if not, why."""
    if not val_psnr > raw_val_psnr:
        return False, (
            f"validation PSNR {val_psnr:.2f} dB is not above the raw 5-min image's "
            f"{raw_val_psnr:.2f} dB"
        )
    run, top = info.get("epochs_run"), info.get("max_epochs")
    if run and top and run >= top and info.get("best_epoch") == run:
        return False, f"still improving when it stopped at max_epochs = {top}"
    return True, ""


def choose_best(validation: list[dict[str, Any]], kind: str) -> str | None:
    """The converged method of ``kind`` with the highest mean validation PSNR (None if none)."""
    cands = [r for r in validation if r["kind"] == kind and r.get("converged", True)]
    return max(cands, key=lambda r: r["val_psnr"])["method"] if cands else None
