"""Settings of the scan-time sweep (``fastdat sweep``; presets in ``presets/sweep/``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastdat.methods.filters import FILTERS, VOLUME_FILTERS

MEASURES = ("putamen", "caudate", "putamen_posterior", "southampton")
"""SBR measures the sweep reports: template-VOI putamen, caudate and posterior putamen, and the
Southampton striatum."""


@dataclass(frozen=True)
class ObserverConfig:
    """The channelized Hotelling observer of early loss (grade 1 against grade 0 striata).

    Each striatum is seen as one 2D image: the sum of the dataset's crop slices (the slices
    around the striatal maximum), a ``patch_px`` square centred on that side's posterior
    putamen (the centroid of the subject's label, so the location is known exactly), the left
    side mirrored onto the right. Laguerre-Gauss channels centred there, of width ``width_mm``.

    Attributes:
        patch_px: Side of the patch (voxels).
        n_channels: Laguerre-Gauss channels (orders 0 .. n - 1).
        width_mm: Laguerre-Gauss width ``a`` (mm).
        n_folds: Subject-grouped folds (train on the others, score one).
        seed: Seed of the fold assignment.
    """

    patch_px: int = 24
    n_channels: int = 5
    width_mm: float = 20.0
    n_folds: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patch_px < 8 or self.n_channels < 1 or self.width_mm <= 0 or self.n_folds < 2:
            raise ValueError(f"observer settings out of range: {self}")


@dataclass(frozen=True)
class SweepConfig:
    """What the sweep measures.

    Attributes:
        durations: Acquisition durations (minutes); the cohort must hold ``recon_<d>min`` for
            each and ``recon_noisefree``.
        reference_duration: The standard protocol every method is matched against (minutes).
        filters: Post-filters tuned on the validation split per duration, against the
            noise-free reconstruction (2D: ``gaussian``, ``butterworth``, ``nlm``; 3D:
            ``gaussian3d``, ``butterworth3d``).
        networks: Networks trained at 5 min (run folders, checkpoints, ``default``), applied at
            every duration.
        per_duration: Also train one network per duration (``per_duration_model`` on that
            duration's images of the training split, 25-min targets).
        per_duration_model: Registry name of the per-duration network.
        per_duration_sets: ``fastdat train`` ``--set`` overrides of the per-duration networks.
        split: Train / validation / test patients.
        split_seed: Seed of the patient split.
        target_accuracy: Balanced accuracy the inconclusive share is computed for.
        n_boot: Subject-bootstrap replicates of the iso-performance CIs.
        level: Confidence level of every interval.
        interval_level: Nominal coverage of the SBR intervals of ensemble networks
            (:mod:`fastdat.sweep.intervals`).
        seed: Seed of the bootstrap.
        observer: The observer's settings.
    """

    durations: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 25.0)
    reference_duration: float = 25.0
    filters: tuple[str, ...] = ("gaussian", "butterworth", "gaussian3d", "butterworth3d")
    networks: tuple[str, ...] = ("default",)
    per_duration: bool = False
    per_duration_model: str = "unet4"
    per_duration_sets: tuple[str, ...] = (
        "model_kwargs.features=16",
        "nonneg=false",
        "max_epochs=100",
    )
    split: tuple[float, float, float] = (100.0, 40.0, 160.0)
    split_seed: int = 0
    target_accuracy: float = 0.98
    n_boot: int = 1000
    level: float = 0.95
    interval_level: float = 0.9
    seed: int = 0
    observer: ObserverConfig = field(default_factory=ObserverConfig)

    def __post_init__(self) -> None:
        if len(self.durations) < 2 or min(self.durations) <= 0:
            raise ValueError(f"sweep.durations must list 2+ positive minutes: {self.durations}")
        if self.reference_duration not in self.durations:
            raise ValueError(
                f"sweep.reference_duration {self.reference_duration} is not one of the "
                f"durations {self.durations}"
            )
        unknown = sorted(set(self.filters) - {*FILTERS, *VOLUME_FILTERS})
        if unknown:
            raise ValueError(f"sweep.filters: unknown {unknown}")
        if not 0 < self.interval_level < 1:
            raise ValueError(f"sweep.interval_level must be in (0, 1): {self.interval_level}")
        if not 0.5 < self.target_accuracy <= 1 or not 0 < self.level < 1 or self.n_boot < 100:
            raise ValueError("sweep.target_accuracy in (0.5, 1], level in (0, 1), n_boot >= 100")


def kind(minutes: float) -> str:
    """Image kind of a duration: ``2.0`` -> ``"2min"``, ``7.5`` -> ``"7.5min"``."""
    return f"{minutes:g}min"
