from __future__ import annotations

import pytest
import torch

from fastdat.tomo.counts import poisson_counts, thin_counts


def test_thinning_ratio_and_nesting():
    g = torch.Generator().manual_seed(0)
    expected = torch.rand(30, 64, 64, generator=g) * 2e6 / (30 * 64 * 64) * 2
    full = poisson_counts(expected, g)
    parts = thin_counts(full, [1500.0, 300.0, 600.0], g)
    assert parts[1500.0].sum() == full.sum()
    ratio = parts[300.0].sum().item() / full.sum().item()
    assert ratio == pytest.approx(0.2, abs=0.005)
    assert (parts[300.0] <= parts[600.0]).all() and (parts[600.0] <= full).all()


def test_poisson_variance_equals_mean():
    g = torch.Generator().manual_seed(1)
    flat = torch.full((2000, 16), 7.0)
    c = poisson_counts(flat, g).double()
    assert c.dtype == torch.float64
    assert c.mean().item() == pytest.approx(7.0, rel=0.01)
    assert c.var().item() == pytest.approx(7.0, rel=0.03)
    # a thinned Poisson is Poisson with the scaled mean
    t = thin_counts(c.int(), [5.0, 1.0], g)[1.0].double()
    assert t.mean().item() == pytest.approx(1.4, rel=0.03)
    assert t.var().item() == pytest.approx(1.4, rel=0.05)


def test_same_seed_same_counts():
    e = torch.full((8, 8), 3.0)
    a = poisson_counts(e, torch.Generator().manual_seed(5))
    b = poisson_counts(e, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_bad_counts_refused():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_counts(torch.tensor([-1.0]), g)
    with pytest.raises(ValueError, match="positive"):
        thin_counts(torch.tensor([3]), [0.0], g)
