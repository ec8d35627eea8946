"""Training configuration: one frozen dataclass.

Built from user input by :func:`fastdat.config.resolve` like every other config: defaults < a
YAML file (``fastdat train --config``; its ``train`` section when it has one, so a study preset
works) < ``--set key=value`` overrides; a study's networks by :func:`fastdat.study.resolve_study`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOSSES = ("l1", "mse", "ssim_mixed")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained on a crop dataset.

    Attributes:
        model: Registry name (``fastdat models``).
        model_kwargs: Architecture options passed to ``build_model``.
        residual: Learn the correction to the 5-min image.
        nonneg: Clamp the output at zero.
        input_kind, target_kind: Crop kinds of input and target (``"5min"``, ``"25min"``,
            ``"noisefree"``; target ``"rest"``: the rest of each input's acquisition, a
            self-supervised target, :mod:`fastdat.training.samples`).
        input_kinds: Train on several scan times at once (``["2min", "3min", ...]``, each with
            the target); a count-aware network is told each one's minutes. Empty: ``input_kind``.
        context: Adjacent slices on each side given as input channels (2.5D); 0 = 2D.
        spatial_dims: 2 (slices / stacks) or 3 (each study's whole slab).
        rotate_deg: Random common in-plane rotation of input and target, up to this angle
            (bilinear); 0 = off.
        loss: ``l1``, ``mse`` or ``ssim_mixed`` (``0.84 (1 - SSIM) + 0.16 L1``, Zhao et al. 2017).
        lr: Adam learning rate. weight_decay: Adam weight decay.
        batch_size: Images per step (over all processes).
        max_epochs: Upper bound of epochs. patience: Epochs without validation improvement
            before stopping. min_delta: Smallest validation-loss decrease that counts.
        flips: Random left-right and anterior-posterior flips.
        intensity_scale: Random common scaling of input and target, ``1 +/- intensity_scale``.
        shift_px: Random common in-plane shift of input and target, up to ``shift_px`` pixels
            per axis (edge values fill in); 0 = off (the paper's crops are always centred).
        seed: Seed of initialization, data order and augmentation.
        init: Start from these weights instead of a random initialization (fine-tuning):
            ``"default"`` (the packaged network), a run folder or a checkpoint path; ``""`` = off.
            The checkpoint's architecture (``model``, ``model_kwargs``, ``residual``,
            ``nonneg``) must equal this config's.
        freeze_norm: Keep batch-norm layers in evaluation mode while training (their running
            statistics fixed), as when fine-tuning a network on a few patients whose small
            batches would otherwise overwrite the statistics it was trained with.
        bf16: bfloat16 autocast (CUDA only; ignored on CPU).
    """

    model: str = "unet4"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    residual: bool = True
    nonneg: bool = True
    input_kind: str = "5min"
    target_kind: str = "25min"
    input_kinds: tuple[str, ...] = ()
    context: int = 0
    spatial_dims: int = 2
    rotate_deg: float = 0.0
    loss: str = "l1"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    max_epochs: int = 100
    patience: int = 10
    min_delta: float = 0.0
    flips: bool = True
    intensity_scale: float = 0.1
    shift_px: int = 0
    seed: int = 0
    init: str = ""
    freeze_norm: bool = False
    bf16: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("train.lr > 0, batch_size >= 1, max_epochs >= 1, patience >= 1 needed")
        if not 0 <= self.intensity_scale < 1:
            raise ValueError(f"train.intensity_scale must be in [0, 1), got {self.intensity_scale}")
        if not 0 <= self.shift_px <= 16:
            raise ValueError(f"train.shift_px must be in [0, 16] pixels, got {self.shift_px}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"train.spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if not 0 <= self.context <= 4 or (self.context and self.spatial_dims == 3):
            raise ValueError(
                f"train.context must be 0..4 adjacent slices, and 0 in 3D, got {self.context}"
            )
        if not 0 <= self.rotate_deg <= 180:
            raise ValueError(f"train.rotate_deg must be in [0, 180], got {self.rotate_deg}")
