"""Photon counts: Poisson acquisition and binomial thinning to shorter durations.

A shorter acquisition of the same study is exactly a binomial thinning of the longer one's counts:
each detected count is kept with probability ``t_short / t_long``. Thinning the longest acquisition
in a chain (25 -> 10 -> 5 min, each from the next longer) makes the shorter ones nested subsets, as
the first minutes of one scan would be.
"""

from __future__ import annotations

import torch


def poisson_counts(expected: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw integer counts ``~ Poisson(expected)``.

    Args:
        expected: Expected counts per bin, any shape, non-negative and finite.
        generator: Explicit random generator (on ``expected``'s device).

    Returns:
        Counts, same shape, dtype int32.
    """
    if not torch.isfinite(expected).all() or (expected < 0).any():
        raise ValueError("expected counts must be finite and non-negative")
    return torch.poisson(expected.double(), generator=generator).to(torch.int32)


def thin_counts(
    counts: torch.Tensor, durations_s: list[float], generator: torch.Generator
) -> dict[float, torch.Tensor]:
    """Split a long acquisition into nested shorter ones by binomial thinning.

    Args:
        counts: Integer counts of the longest acquisition, duration ``max(durations_s)``.
        durations_s: Durations (s); the longest is ``counts`` itself.
        generator: Explicit random generator.

    Returns:
        Mapping duration (s) -> int32 counts, each ``<=`` the next longer in every bin.
    """
    if not durations_s or min(durations_s) <= 0:
        raise ValueError(f"durations must be positive, got {durations_s}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    order = sorted(set(durations_s), reverse=True)
    out = {order[0]: counts.to(torch.int32)}
    for longer, shorter in zip(order, order[1:], strict=False):
        parent = out[longer].double()
        p = torch.full_like(parent, shorter / longer)
        out[shorter] = torch.binomial(parent, p, generator=generator).to(torch.int32)
    return out
