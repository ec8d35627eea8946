"""Training throughput of FastDaT's loop against a plain PyTorch loop with a DataLoader.

Both train the same model (same seed, Adam, L1, batch 16, flips) for the same number of epochs
on the training split of one dataset. FastDaT keeps the crops on the device as tensors and
augments there; the plain loop wraps the same arrays in a ``TensorDataset`` and a shuffling
``DataLoader`` that collates every batch. Prints images / s of each and the ratio.

Usage::

    python benchmarks/bench_train.py --dataset DS [--model unet4] [--epochs 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fastdat.data import load_crops
from fastdat.models import build_model
from fastdat.training.config import TrainConfig
from fastdat.training.loop import train


def plain_loop(dataset: Path, model_name: str, epochs: int, device: torch.device) -> float:
    """Images / s of a textbook loop: TensorDataset + DataLoader, flips in the loop."""
    crops, index = load_crops(dataset)
    rows = index.index[index["split"] == "train"].to_numpy()
    x = torch.from_numpy(np.ascontiguousarray(crops["5min"][rows]))[:, None].float()
    y = torch.from_numpy(np.ascontiguousarray(crops["25min"][rows]))[:, None].float()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    torch.manual_seed(0)
    model = build_model(model_name, residual=True, nonneg=True).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            if torch.rand(1).item() < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            m = xb.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
            loss = (model(xb / m) - yb / m).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += xb.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - t0)


def fastdat_loop(dataset: Path, model_name: str, epochs: int, device: torch.device) -> float:
    """Images / s of ``fastdat.training.train`` (training steps only: validation excluded)."""
    import csv

    cfg = TrainConfig(model=model_name, max_epochs=epochs, patience=epochs + 1, batch_size=16)
    with tempfile.TemporaryDirectory() as tmp:
        train(dataset, Path(tmp) / "run", cfg, device, progress=False)
        with open(Path(tmp) / "run" / "history.csv") as f:
            seconds = sum(float(r["train_seconds"]) for r in csv.DictReader(f))
    _, index = load_crops(dataset, mmap=True)
    n = int((index["split"] == "train").sum())
    return n * epochs / seconds


def main(argv: list[str] | None = None) -> None:
    """Run both loops and print the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default="unet4")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ds = Path(args.dataset)
    plain = plain_loop(ds, args.model, args.epochs, device)
    ours = fastdat_loop(ds, args.model, args.epochs, device)
    print(f"{args.model}, {args.epochs} epochs, device {device}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch DataLoader loop: {plain:8.1f} img/s")
    print(f"fastdat train (resident data):  {ours:8.1f} img/s   (ratio {ours / plain:.2f})")


if __name__ == "__main__":
    main()
