"""Quick speed figures of a network: training images / s and inference latency."""

from __future__ import annotations

import time

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _condition(model: nn.Module, batch: int, device: torch.device) -> tuple:
    """``(cond,)`` of a 5-min scan for a count-aware model, ``()`` for others."""
    if getattr(model, "conditioned", False):
        return (torch.zeros(batch, device=device),)
    return ()


def training_throughput(
    model: nn.Module,
    batch: int = 16,
    size: int = 64,
    steps: int = 3,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> float:
    """Images per second of Adam training steps (L1 loss) on random ``(batch, 1, size, size)``."""
    device = torch.device(device)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 1, size, size, generator=g, device=device)
    y = torch.rand(batch, 1, size, size, generator=g, device=device)
    args = _condition(model, batch, device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = (model(x, *args) - y).abs().mean()
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


@torch.no_grad()
def inference_latency(
    model: nn.Module, size: int = 64, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """Median seconds of one eval-mode forward pass of a ``(1, 1, size, size)`` image."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(1, 1, size, size, device=device)
    args = _condition(model, 1, device)
    model(x, *args)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        model(x, *args)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def model_table(speed: bool = True, steps: int = 3) -> list[dict[str, object]]:
    """One row per registered network: ``name``, ``params``, ``train_img_s`` (CPU training
    images / s, batch 16, 64 x 64, Adam + L1; ``None`` without ``speed``) and ``reference``.

    Weights are drawn with ``torch.manual_seed(0)`` first, so the table is the same every run.
    """
    from fastdat.models.registry import build_model, list_models, model_info

    torch.manual_seed(0)
    rows: list[dict[str, object]] = []
    for name in list_models():
        model = build_model(name)
        rows.append(
            {
                "name": name,
                "params": sum(p.numel() for p in model.parameters()),
                "train_img_s": training_throughput(model, steps=steps) if speed else None,
                "reference": model_info(name).reference,
            }
        )
    return rows
