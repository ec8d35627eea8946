"""fastdat.tomo.reconstruct: thinning statistics, the simulator reproduced, grid, orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recon_support import ACQ, NZ, RECON, VOXEL, N, oriented, phantom

from fastdat.anatomy.phantom import grid_affine
from fastdat.io.projections import EnergyWindow
from fastdat.simulate.acquisition import simulate_acquisition
from fastdat.simulate.export import projection_set
from fastdat.tomo.reconstruct import ReconSettings, object_extent, reconstruct, thin


@pytest.fixture(scope="module")
def simulated():
    act, mu = phantom()
    gen = torch.Generator().manual_seed(3)
    sim = simulate_acquisition(act, mu, VOXEL, 3e5, ACQ, RECON, gen)
    return act, mu, sim


def _as_set(sim, minutes=25.0):
    return projection_set(sim["projections"][minutes], minutes, ACQ, VOXEL, (N, NZ))


def _as_simulated(**changes) -> ReconSettings:
    """The simulator's reconstruction settings, on its grid, with its mu map."""
    kw = dict(iterations=RECON.iterations, subsets=RECON.subsets, attenuation="map")
    return ReconSettings(**kw, collimator=ACQ.collimator, grid=(N, NZ), **changes)


def test_thinning_is_binomial_per_bin():
    ps = projection_set(torch.full((8, 48, 48), 50, dtype=torch.int32), 25.0, ACQ, VOXEL, (N, NZ))
    got = thin(ps, 0.2, torch.Generator().manual_seed(0))
    k = got.counts.double().flatten()
    n, p = 50, 0.2
    se_mean = (n * p * (1 - p) / k.numel()) ** 0.5
    assert abs(k.mean().item() - n * p) < 4 * se_mean
    # variance of a binomial: n p (1 - p) = 8; its sampling SE ~ sqrt(2 / N) * 8 for large n
    assert abs(k.var().item() - n * p * (1 - p)) < 4 * (2 / k.numel()) ** 0.5 * 8
    assert (got.counts <= ps.counts).all() and (got.counts == got.counts.round()).all()
    assert torch.allclose(got.frame_s, ps.frame_s * 0.2)
    assert got.acquisition_s == pytest.approx(ps.acquisition_s * 0.2)
    same = thin(ps, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(same.counts, got.counts)


def test_thinning_refuses_non_counts():
    ps = projection_set(torch.full((8, 48, 48), 2.5), 25.0, ACQ, VOXEL, (N, NZ))
    with pytest.raises(ValueError, match="integer counts"):
        thin(ps, 0.5, torch.Generator())


def test_reconstruct_reproduces_the_simulator(simulated):
    act, mu, sim = simulated
    ps = _as_set(sim)
    cfg = _as_simulated(postfilter_mm=RECON.postfilter_fwhm_mm)
    aff = grid_affine((N, N, NZ), VOXEL)
    rec = reconstruct(ps, cfg, (mu.numpy(), aff))
    assert np.allclose(rec.affine, aff)
    ref = sim["images"][25.0].numpy()
    # same counts, projector, subsets and filter: float32 round-off only
    assert np.abs(rec.volume - ref).max() <= 1e-4 * ref.max()


def test_thinned_reconstruction_matches_the_simulated_short_scan_in_distribution(simulated):
    _, mu, sim = simulated
    ps = _as_set(sim)
    cfg = _as_simulated(fraction=0.2, seed=1)
    aff = grid_affine((N, N, NZ), VOXEL)
    rec = reconstruct(ps, cfg, (mu.numpy(), aff))
    ref5 = sim["images"][5.0].numpy()
    # another noise realisation of the same 5-min scan: same scale, not the same image
    assert rec.volume.sum() == pytest.approx(ref5.sum(), rel=0.03)
    assert not np.allclose(rec.volume, ref5, rtol=1e-3)
    assert rec.info["acquisition_s"] == pytest.approx(300.0)


def test_support_grid_holds_the_object_and_is_smaller_than_the_detector(simulated):
    _, _, sim = simulated
    ps = _as_set(sim)
    radius, first, last = object_extent(ps.counts[0])
    assert radius < 24 and 0 < first <= last < 47
    rec = reconstruct(ps, ReconSettings(iterations=1, subsets=4, attenuation="none"))
    size, _, slices = rec.info["grid"]
    assert size < 48 and size % 2 == 0 and slices < 48
    # the head (72 mm half-axis = 12 bins) lies inside the reconstructed field of view
    assert (size - 1) / 2 - 1 >= 72 / VOXEL


@pytest.mark.parametrize("attenuation", ["none", "chang", "uniform"])
def test_orientation_survives_reconstruction(simulated, attenuation):
    _, _, sim = simulated
    rec = reconstruct(_as_set(sim), ReconSettings(iterations=3, subsets=4, attenuation=attenuation))
    assert oriented(rec.volume, rec.affine)
    assert not oriented(rec.volume[::-1], rec.affine)  # a mirrored image fails the check


def test_scatter_needs_its_windows(simulated):
    _, _, sim = simulated
    with pytest.raises(ValueError, match="TEW needs a lower and an upper scatter window.*EM"):
        reconstruct(_as_set(sim), ReconSettings(scatter="tew", attenuation="none"))


def test_non_square_bins_are_refused(simulated):
    _, _, sim = simulated
    ps = _as_set(sim).replace(bin_mm=(VOXEL, 1.2 * VOXEL))
    with pytest.raises(ValueError, match="not square"):
        reconstruct(ps, ReconSettings(attenuation="none"))


def test_no_photopeak_window_is_refused(simulated):
    _, _, sim = simulated
    ps = _as_set(sim).replace(windows=(EnergyWindow("low", 120, 140, "scatter-lower"),))
    with pytest.raises(ValueError, match="no photopeak window"):
        reconstruct(ps, ReconSettings(attenuation="none"))


def test_self_supervised_pair_is_disjoint_and_independent():
    """A thinned subset and its complement (same generator state) add up to the acquisition
    bin for bin; over Poisson acquisitions of one object they are independent Poisson scans:
    means p lam and (1 - p) lam, variances equal to the means, covariance 0 (while the two
    parts of one fixed acquisition are perfectly anti-correlated given their sum)."""
    lam, p, reps = 40.0, 0.2, 400
    gen = torch.Generator().manual_seed(7)
    expected = torch.full((reps, 8, 16, 16), lam)
    acquired = torch.poisson(expected, generator=gen).to(torch.int32)
    subset, rest = [], []
    for r in range(reps):
        ps = projection_set(acquired[r], 25.0, ACQ, VOXEL, (N, NZ))
        a = thin(ps, p, torch.Generator().manual_seed(r))
        b = thin(ps, p, torch.Generator().manual_seed(r), complement=True)
        assert torch.equal(a.counts + b.counts, ps.counts)  # disjoint, nothing lost
        assert a.acquisition_s + b.acquisition_s == pytest.approx(ps.acquisition_s)
        assert b.acquisition_s == pytest.approx(0.8 * ps.acquisition_s)
        subset.append(a.counts.double())
        rest.append(b.counts.double())
    x, y = torch.stack(subset), torch.stack(rest)  # (reps, 8, 16, 16)
    bins = x[0].numel()
    # per-bin covariance over realizations, averaged over bins: SE ~ sqrt(vx vy / reps / bins)
    cov = ((x - x.mean(0)) * (y - y.mean(0))).sum(0) / (reps - 1)
    se = (p * lam * (1 - p) * lam / reps / bins) ** 0.5
    assert abs(cov.mean().item()) < 4 * se
    assert x.mean().item() == pytest.approx(p * lam, rel=0.01)
    assert y.mean().item() == pytest.approx((1 - p) * lam, rel=0.01)
    assert x.var(0).mean().item() == pytest.approx(p * lam, rel=0.03)
    assert y.var(0).mean().item() == pytest.approx((1 - p) * lam, rel=0.03)
    # a different draw's complement is not the rest of this subset
    ps = projection_set(acquired[0], 25.0, ACQ, VOXEL, (N, NZ))
    other = thin(ps, p, torch.Generator().manual_seed(1), complement=True)
    assert not torch.equal(subset[0].to(torch.int32) + other.counts, ps.counts)
    with pytest.raises(ValueError, match="empty"):
        thin(ps, 1.0, torch.Generator(), complement=True)


def test_rest_of_a_thinning_reconstructs_as_the_longer_scan(simulated):
    """The rest of a 5-min thinning of a 25-min scan reconstructs as a 20-min scan: counts / s
    on the same scale as the whole acquisition's image, another noise realization of it."""
    _, mu, sim = simulated
    ps = _as_set(sim)
    aff = grid_affine((N, N, NZ), VOXEL)
    rest = reconstruct(ps, _as_simulated(fraction=0.2, seed=4, complement=True), (mu.numpy(), aff))
    whole = sim["images"][25.0].numpy()
    assert rest.info["acquisition_s"] == pytest.approx(1200.0)
    assert rest.info["counts_photopeak"] == pytest.approx(0.8 * int(ps.counts.sum()), rel=0.01)
    assert rest.volume.sum() == pytest.approx(whole.sum(), rel=0.03)
    assert not np.allclose(rest.volume, whole, rtol=1e-3)
    with pytest.raises(ValueError, match="complement"):
        ReconSettings(complement=True)


def test_every_thinning_of_an_acquisition_shares_its_grid(simulated):
    """The support grid is found on the whole acquisition: a 2 % thinning (sparse, noisy
    profiles), its rest and the whole scan are reconstructed on one grid and affine, so that a
    projection-built dataset can pair them voxel by voxel."""
    _, _, sim = simulated
    ps = _as_set(sim)
    settings = dict(iterations=1, subsets=4, attenuation="none")
    whole = reconstruct(ps, ReconSettings(**settings))
    for fraction, complement in ((0.02, False), (0.02, True), (0.3, False)):
        part = reconstruct(
            ps, ReconSettings(**settings, fraction=fraction, seed=7, complement=complement)
        )
        assert part.volume.shape == whole.volume.shape
        assert part.info["grid"] == whole.info["grid"]
        np.testing.assert_array_equal(part.affine, whole.affine)
