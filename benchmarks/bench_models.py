"""Training throughput and inference latency of the ten study models, beside MONAI's own classes.

For every registered study model: training images / s (Adam, L1, batch 16, 64 x 64) and the
median latency of one 64 x 64 slice in eval mode. Where the model is a MONAI network, the bare
MONAI class with the same arguments is measured in the same run, so the ratio shows what
FastDaT's wrapper (size check, residual, non-negativity) costs.

Usage::

    python benchmarks/bench_models.py [--threads 2] [--device cpu] [--steps 3]
"""

from __future__ import annotations

import argparse

import torch

from fastdat.models import build_model, list_models
from fastdat.models.throughput import inference_latency, training_throughput


def main(argv: list[str] | None = None) -> None:
    """Run and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, batch 16, 64 x 64")
    print(
        f"{'model':<16}{'params':>10}{'train img/s':>13}{'infer ms':>10}"
        f"{'MONAI img/s':>13}{'ratio':>7}"
    )
    for name in list_models():
        torch.manual_seed(0)
        model = build_model(name, residual=True, nonneg=True)
        n = sum(q.numel() for q in model.parameters())
        ours = training_throughput(model, steps=args.steps, device=device)
        latency = inference_latency(model, device=device) * 1000
        inner = model.net.net if hasattr(model.net, "net") else model.net
        bare = ""
        if type(inner).__module__.startswith("monai"):
            torch.manual_seed(0)
            raw = _monai_original(name)
            theirs = training_throughput(_Plain(raw), steps=args.steps, device=device)
            bare = f"{theirs:13.1f}{ours / theirs:7.2f}"
        print(f"{name:<16}{n:>10,}{ours:13.1f}{latency:10.1f}{bare}")


def _monai_original(name: str) -> torch.nn.Module:
    """MONAI's class with the same arguments, unmodified (UNet++ keeps its unused heads)."""
    if name == "unetpp":
        from monai.networks.nets import BasicUNetPlusPlus

        return BasicUNetPlusPlus(2, 1, 1, features=(32, 32, 64, 128, 256, 32))
    return build_model(name).net


class _Plain(torch.nn.Module):
    """MONAI's network called directly (first output of list-returning ones)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y[0] if isinstance(y, list | tuple) else y


if __name__ == "__main__":
    main()
