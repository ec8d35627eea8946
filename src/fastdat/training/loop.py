"""The training loop, readable top to bottom: data on the device, Adam, validation, early stopping.

A run directory ``RUN`` holds ``config.yaml`` (resolved config, dataset fingerprint, provenance),
``best.safetensors`` / ``best.json`` (the best validation checkpoint, self-describing),
``last.*`` and ``state.json`` (everything needed to resume), ``history.csv`` and ``curves.png``.

Images are scaled per crop by the maximum of the input (5-min) crop, so the network sees values in
``[0, ~1]`` whatever the units; predictions are scaled back. Data order and augmentation of epoch
``e`` come from a generator seeded with ``(seed, e)``, so a run resumed after epoch ``e`` continues
exactly as an uninterrupted one would. Under ``torchrun`` (``WORLD_SIZE > 1``) every process takes
its share of each batch and gradients are averaged by DistributedDataParallel; rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from fastdat.config import provenance, to_dict
from fastdat.io.atomic import replace_file, write_csv, write_json
from fastdat.metrics import psnr, ssim
from fastdat.models import build_model, save_model
from fastdat.training.config import TrainConfig
from fastdat.training.samples import Samples, sample_scale, split_samples

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def load_split_tensors(ds_dir: Path, cfg: TrainConfig, device: torch.device, model=None):
    """``{split: Samples}`` on ``device`` and the dataset's fingerprint.

    Args:
        ds_dir: The dataset.
        cfg: Inputs, target, context and dimensionality (:mod:`fastdat.training.samples`).
        device: Where the tensors go.
        model: The network (its conditioning and size multiple); ``None``: an unconditioned one.
    """
    from fastdat.data import read_dataset

    ds = read_dataset(ds_dir)
    index = ds.index
    if "split" not in index or not {"train", "val"} <= set(index["split"]):
        raise ValueError(f"{ds_dir}: the dataset needs 'train' and 'val' splits")
    conditioned = bool(getattr(model, "conditioned", False))
    multiple = int(getattr(model, "multiple", 1))
    out = {}
    for split in ("train", "val", "test"):
        if split in set(index["split"]):
            out[split] = split_samples(ds, cfg, split, conditioned, multiple).to(device)
    return out, ds.fingerprint or "unknown"


def training_voxel_mm(ds_dir: str | Path) -> float | None:
    """The voxel size (mm) every study of a dataset was cut at, or ``None`` when the dataset
    does not record it or its studies differ (then no resampling is planned at inference)."""
    from fastdat.data import read_dataset

    studies = read_dataset(ds_dir, mmap=True).studies  # the table only: crops stay on disk
    if "voxel_mm" not in studies:
        return None
    sizes = {round(float(v), 3) for v in studies["voxel_mm"].dropna()}
    return sizes.pop() if len(sizes) == 1 else None


def loss_fn(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Training loss between scaled images ``(B, 1, H, W)``."""
    if name == "l1":
        return F.l1_loss(pred, target)
    if name == "mse":
        return F.mse_loss(pred, target)
    s = ssim(pred[:, 0], target[:, 0]).mean().to(pred.dtype)
    return 0.84 * (1 - s) + 0.16 * F.l1_loss(pred, target)


def _augment(x, y, gen, cfg: TrainConfig):
    """Common random flips, intensity scaling, shift and rotation of inputs and targets
    ``(B, C, H, W)`` or ``(B, 1, D, H, W)`` (in-plane: the last two axes)."""
    if cfg.flips:
        flip = torch.rand(2, generator=gen, device=x.device) < 0.5
        dims = [d for d, f in zip((-2, -1), flip.tolist(), strict=True) if f]
        if dims:
            x, y = x.flip(dims), y.flip(dims)
    if cfg.intensity_scale > 0:
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        a = 1 + cfg.intensity_scale * (2 * torch.rand(shape, generator=gen, device=x.device) - 1)
        x, y = x * a, y * a
    if cfg.shift_px > 0:  # drawn only when on: runs without it keep their random stream
        s = cfg.shift_px
        di, dj = torch.randint(-s, s + 1, (2,), generator=gen, device=x.device).tolist()
        x, y = (_shift(t, di, dj, s) for t in (x, y))
    if cfg.rotate_deg > 0:
        angle = cfg.rotate_deg * (2 * torch.rand(x.shape[0], generator=gen, device=x.device) - 1)
        x, y = _rotate(x, angle), _rotate(y, angle)
    return x, y


def _in_plane(fn, t: torch.Tensor, *args) -> torch.Tensor:
    """Apply a ``(B, C, H, W)`` operation to ``(B, C, D, H, W)`` slab by slab."""
    if t.ndim == 4:
        return fn(t, *args)
    b, c, d, h, w = t.shape
    return fn(t.reshape(b, c * d, h, w), *args).reshape(b, c, d, h, w)


def _shift(t: torch.Tensor, di: int, dj: int, margin: int) -> torch.Tensor:
    """``t`` moved by ``(di, dj)`` pixels in-plane (|d| <= margin), edges replicated."""

    def move(u: torch.Tensor) -> torch.Tensor:
        h, w = u.shape[-2:]
        padded = F.pad(u, (margin, margin, margin, margin), mode="replicate")
        return padded[..., margin - di : margin - di + h, margin - dj : margin - dj + w]

    return _in_plane(move, t)


def _rotate(t: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """``t`` rotated in-plane about the image centre by ``angle_deg`` ``(B,)`` (bilinear, edge
    values outside)."""

    def turn(u: torch.Tensor) -> torch.Tensor:
        a = torch.deg2rad(angle_deg).to(u.dtype)
        cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(u.shape), align_corners=False)
        return F.grid_sample(u, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return _in_plane(turn, t)


def _forward(net, model, xb: torch.Tensor, cond: torch.Tensor | None):
    """The network on scaled inputs, with the scan-time condition if it takes one."""
    return net(xb, cond) if model.conditioned else net(xb)


@torch.no_grad()
def evaluate_split(model, data: Samples, cfg: TrainConfig, batch: int = 64) -> dict[str, float]:
    """Loss (scaled images) and PSNR / SSIM (FastDaT convention, per slice) of a split."""
    model.eval()
    losses, ps, ss = [], [], []
    for i in range(0, len(data), batch):
        b = data.take(torch.arange(i, min(i + batch, len(data)), device=data.x.device))
        s = sample_scale(b.x, b.scale)
        pred = _forward(model, model, b.x / s, b.cond)
        losses.append(float(loss_fn(cfg.loss, pred.float(), b.y / s)) * b.x.shape[0])
        out = (pred.float() * s).reshape(-1, *pred.shape[-2:]).double()
        ref = b.y.reshape(-1, *b.y.shape[-2:]).double()
        ps.append(psnr(out, ref))
        ss.append(ssim(out, ref))
    return {
        "loss": sum(losses) / len(data),
        "psnr": float(torch.cat(ps).mean()),
        "ssim": float(torch.cat(ss).mean()),
    }


def _save_state(run: Path, model, opt, state: dict[str, Any], cfg_doc: dict) -> None:
    """Resumable state: model (``last``), optimizer tensors, then ``state.json`` last (commit)."""
    from safetensors.torch import save_file

    save_model(model, run / "last", extra={"train": cfg_doc, "epoch": state["epoch"]})
    sd = opt.state_dict()
    tensors = {
        f"{i}.{k}": v.detach().cpu().contiguous()
        for i, st in sd["state"].items()
        for k, v in st.items()
        if torch.is_tensor(v)
    }
    replace_file(run / "last_optim.safetensors", lambda tmp: save_file(tensors, tmp))
    write_json(run / "state.json", {**state, "param_groups": sd["param_groups"]})


def _load_state(run: Path, model, opt, device) -> dict[str, Any]:
    from safetensors.torch import load_file

    from fastdat.models import load_model

    state = json.loads((run / "state.json").read_text())
    last = load_model(run / "last", device=device)
    model.load_state_dict(last.state_dict())
    tensors = load_file(run / "last_optim.safetensors", device=str(device))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": per_param, "param_groups": state.pop("param_groups")})
    return state


def _write_history(run: Path, history: list[dict[str, float]]) -> None:
    write_csv(run / "history.csv", history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [h["train_loss"] for h in history], label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], label="validation")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    ax[1].plot(ep, [h["val_psnr"] for h in history], color="C2")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation PSNR vs target (dB)")
    fig.tight_layout()
    replace_file(run / "curves.png", lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)``; initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def train(
    dataset: str | Path,
    run_dir: str | Path,
    cfg: TrainConfig,
    device: torch.device | str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``cfg.model`` on ``dataset``; returns the best checkpoint's path.

    Raises:
        FileExistsError: ``run_dir`` holds a run and ``resume`` is False (or its config differs).
        TrainingDiverged: the loss became NaN / infinite (the last good checkpoint is kept).
    """
    rank, world = _distributed()
    device = torch.device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    run = Path(run_dir)
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        in_channels=2 * cfg.context + 1,
        spatial_dims=cfg.spatial_dims,
        residual=cfg.residual,
        nonneg=cfg.nonneg,
        **cfg.model_kwargs,
    )
    data, fingerprint = load_split_tensors(Path(dataset), cfg, device, model)
    cfg_doc = {
        "train": to_dict(cfg),
        "dataset": str(Path(dataset).resolve()),
        "dataset_fingerprint": fingerprint,
    }
    if cfg.init:
        cfg_doc["init"] = _init_source(cfg)
    # the sidecar's, beside cfg_doc (which a resumed run must match): denoise resamples to the
    # voxel and checks inputs against the range (voxel size; a count-aware network's scan times)
    voxel_mm = training_voxel_mm(dataset)
    sidecar: dict = {"training_voxel_mm": voxel_mm}
    input_range = {"voxel_mm": voxel_mm} if voxel_mm else {}
    if getattr(model, "conditioned", False):
        from fastdat.data.kinds import kind_minutes
        from fastdat.training.samples import input_kinds

        minutes = [kind_minutes(k) for k in input_kinds(cfg)]
        if all(m is not None for m in minutes):
            input_range["minutes"] = [min(minutes), max(minutes)]
    if input_range:
        sidecar["input_range"] = input_range
    if (run / "config.yaml").exists():
        old = yaml.safe_load((run / "config.yaml").read_text()) or {}
        if not resume:
            raise FileExistsError(f"{run} holds a training run; use --resume or a new --out")
        if {k: old.get(k) for k in cfg_doc} != cfg_doc:
            raise FileExistsError(f"{run} was trained with a different config or dataset")
    elif resume:
        raise FileNotFoundError(f"{run}: nothing to resume (no config.yaml)")
    if world > 1:
        torch.distributed.barrier()  # every rank has checked the folder before rank 0 writes
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        if not (run / "config.yaml").exists():
            doc = {**cfg_doc, "provenance": provenance(device=str(device), world_size=world)}
            (run / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    if cfg.init:
        _load_init(model, cfg)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
    if resume and (run / "state.json").exists():
        state = _load_state(run, model, opt, device)
        state.pop("finished", None)
        log.info("resumed %s after epoch %d", run, state["epoch"])
    if cfg.init and state["epoch"] == 0:  # fine-tuning: the starting weights are a candidate
        val = evaluate_split(model, data["val"], cfg)
        state.update(best_val=val["loss"], best_epoch=0)
        if rank == 0:
            save_model(model, run / "best", extra={**cfg_doc, **sidecar, "epoch": 0, "val": val})
        log.info("fine-tuning from %s: validation PSNR %.2f dB at epoch 0", cfg.init, val["psnr"])
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = device.type == "cuda" and cfg.bf16
    train_set = data["train"]
    n = len(train_set)
    epochs = range(state["epoch"] + 1, cfg.max_epochs + 1)
    bar = tqdm(epochs, desc=f"train {cfg.model}", unit="epoch", disable=not progress or rank > 0)
    for epoch in bar:
        t0 = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen, device=device)
        net.train()
        if cfg.freeze_norm:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        total, seen = 0.0, 0
        for step, start in enumerate(range(0, n, cfg.batch_size)):
            idx = order[start : start + cfg.batch_size]
            idx = idx[rank::world] if world > 1 else idx
            if idx.numel() == 0:
                continue
            b = train_set.take(idx)
            xb, yb = _augment(b.x, b.y, gen, cfg)
            s = sample_scale(xb, b.scale)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                pred = _forward(net, model, xb / s, b.cond)
            loss = loss_fn(cfg.loss, pred.float(), yb / s)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {float(loss.detach())} at epoch {epoch}, step {step}; the last "
                    f"good checkpoint (epoch {state['epoch']}) is kept in {run}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        val = evaluate_split(model, data["val"], cfg)
        improved = val["loss"] < state["best_val"] - cfg.min_delta
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "val_loss": val["loss"],
            "val_psnr": val["psnr"],
            "val_ssim": val["ssim"],
            "train_seconds": train_seconds,
            "seconds": time.perf_counter() - t0,
        }
        state["history"].append(row)
        state["epoch"] = epoch
        if improved:
            state.update(best_val=val["loss"], best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        if rank == 0:
            if improved:
                save_model(
                    model, run / "best", extra={**cfg_doc, **sidecar, "epoch": epoch, "val": val}
                )
            _save_state(run, model, opt, state, cfg_doc)
            _write_history(run, state["history"])
        bar.set_postfix(val_psnr=f"{val['psnr']:.2f}", best=state["best_epoch"])
        if world > 1:
            torch.distributed.barrier()
        if state["bad_epochs"] >= cfg.patience:
            log.info("early stop after epoch %d (best %d)", epoch, state["best_epoch"])
            break
    if rank == 0:
        state["finished"] = True
        _save_state(run, model, opt, state, cfg_doc)
    return run / "best.safetensors"


def _init_source(cfg: TrainConfig) -> dict[str, Any]:
    """Where a fine-tuning run starts: the checkpoint and its weights' SHA-256."""
    from fastdat.models.checkpoint import read_sidecar, resolve_checkpoint

    stem = resolve_checkpoint(cfg.init)
    meta = read_sidecar(stem)
    return {"checkpoint": str(stem), "weights_sha256": meta.get("weights_sha256")}


def _load_init(model, cfg: TrainConfig) -> None:
    """Copy the weights of ``cfg.init`` into ``model``; the architectures must be the same."""
    from fastdat.models.checkpoint import load_model, resolve_checkpoint

    stem = resolve_checkpoint(cfg.init)
    start = load_model(stem)
    if start.config != model.config:
        raise ValueError(
            f"train.init={cfg.init}: its network {start.config} differs from the config's "
            f"{model.config} (set model, model_kwargs, residual and nonneg to match)"
        )
    model.load_state_dict(start.state_dict())


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run directory holds a completed training run."""
    path = Path(run_dir) / "state.json"
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))
