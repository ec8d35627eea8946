"""Patient-level train / validation / test splits: exact sizes, stratified by grade, seeded.

Patients are ordered by stratum (worse-hemisphere grade when known, unknown last) and shuffled
within each stratum by the seed; split labels are then dealt along that order so that after every
patient each split's count is as close as possible to its target share (largest deficit first).
This gives exactly the requested sizes and, within every stratum, shares as close to the target
proportions as whole patients allow. For the paper's 207 patients and proportions 120 / 37 / 50
the sizes are exactly 120 / 37 / 50.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def split_sizes(n: int, proportions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Whole-patient sizes summing to ``n`` (largest remainder)."""
    p = np.asarray(proportions, dtype=np.float64)
    if p.shape != (3,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"split proportions must be 3 non-negative numbers, got {proportions}")
    raw = n * p / p.sum()
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[i] += 1
    return tuple(int(s) for s in sizes)


def split_patients(
    patients: list[str],
    strata: list[int | None],
    proportions: tuple[float, float, float] = (120, 37, 50),
    seed: int = 0,
) -> dict[str, str]:
    """Assign every patient to ``train``, ``val`` or ``test``.

    Args:
        patients: Patient identifiers (each once; a patient's studies all follow it).
        strata: Stratum per patient (e.g. worse grade), ``None`` when unknown.
        proportions: Relative split sizes.
        seed: Seed of the within-stratum shuffle.

    Returns:
        Mapping patient -> split name.
    """
    if len(set(patients)) != len(patients):
        raise ValueError("patients must be unique")
    if len(strata) != len(patients):
        raise ValueError("one stratum per patient is needed")
    if not patients:
        raise ValueError("no patients to split")
    sizes = np.asarray(split_sizes(len(patients), proportions), dtype=np.float64)
    rng = np.random.default_rng(seed)
    key = [(-1 if s is None else 0, -1 if s is None else int(s)) for s in strata]
    noise = rng.random(len(patients))
    order = sorted(range(len(patients)), key=lambda i: (key[i], noise[i]))
    share = sizes / sizes.sum()
    counts = np.zeros(3)
    out = {}
    for n_done, i in enumerate(order, start=1):
        deficit = share * n_done - counts
        deficit[counts >= sizes] = -np.inf
        k = int(np.argmax(deficit))
        counts[k] += 1
        out[patients[i]] = SPLITS[k]
    return out
