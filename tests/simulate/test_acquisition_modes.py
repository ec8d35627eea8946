"""Acquisition modes (nested thinning, independent scans, motion), noise realizations and the
noise-free reconstruction, tested by their statistics on a small object."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastdat.simulate.acquisition import (
    AcquisitionConfig,
    ReconConfig,
    crop,
    rigid_move,
    simulate_acquisition,
)
from fastdat.tomo.osem import OSEMConfig, gaussian_filter3d, osem, subset_views
from fastdat.tomo.projector import SPECTProjector

N, NZ, VOXEL = 24, 12, 8.0
DURATIONS = (25.0, 10.0, 5.0)


def _object():
    act = torch.zeros(N, N, NZ)
    act[6:18, 5:19, 2:10] = 1.0
    act[9:12, 10:14, 5:8] = 6.0
    return act, torch.where(act > 0, 0.15, 0.0)


def _run(seed: int, total: float = 2.0e5, **kw):
    act, mu = _object()
    recon = kw.pop("recon", ReconConfig(iterations=2, subsets=4, postfilter_fwhm_mm=8.0))
    cfg = AcquisitionConfig(detector_size=32, n_views=24, durations_min=DURATIONS, **kw)
    return simulate_acquisition(
        act, mu, VOXEL, total, cfg, recon, torch.Generator().manual_seed(seed)
    )


def _standardized(y: torch.Tensor, lam: torch.Tensor, keep: torch.Tensor | None = None):
    """``(y - lam) / sqrt(lam)`` over bins ``keep`` (default: expected counts above 20)."""
    keep = lam > 20 if keep is None else keep
    return ((y[keep].double() - lam[keep]) / lam[keep].sqrt()).numpy()


@pytest.mark.parametrize("mode", ["nested", "independent"])
def test_each_duration_is_poisson_with_its_share_of_the_counts(mode):
    """Per bin, ``(y_d - lam_d) / sqrt(lam_d)`` has mean 0 and variance 1 with
    ``lam_d = lam_25 d / 25`` (Poisson with the duration's share), in both modes."""
    out = _run(1, total=2.0e6, mode=mode)
    lam = out["expected"]
    for d in DURATIONS:
        z = _standardized(out["projections"][d], lam * d / 25.0)
        se = 1 / np.sqrt(z.size)
        assert abs(z.mean()) < 5 * se, (mode, d)
        assert z.var() == pytest.approx(1.0, abs=0.05), (mode, d)


def test_nested_short_scans_share_the_long_scans_noise_and_independent_ones_do_not():
    """Correlation of the per-bin noise of the 5- and 25-min scans: sqrt(5/25) for a binomial
    thinning (``cov = 0.2 lam_25``), 0 for separate scans."""
    corr = {}
    for mode in ("nested", "independent"):
        out = _run(2, total=2.0e6, mode=mode)
        lam = out["expected"]
        keep = lam * 0.2 > 20
        z5 = _standardized(out["projections"][5.0], lam * 0.2, keep)
        z25 = _standardized(out["projections"][25.0], lam, keep)
        corr[mode] = float(np.corrcoef(z5, z25)[0, 1])
        if mode == "nested":
            assert (out["projections"][5.0] <= out["projections"][25.0]).all()
    n = z5.size
    assert corr["nested"] == pytest.approx(np.sqrt(0.2), abs=5 / np.sqrt(n))
    assert abs(corr["independent"]) < 5 / np.sqrt(n)


def test_references_do_not_change_the_scans():
    """Replicates and the noise-free image are drawn after the scans: enabling them leaves the
    projections and images of every duration bit for bit as they were."""
    plain = _run(3)
    rich = _run(
        3,
        replicates=2,
        recon=ReconConfig(iterations=2, subsets=4, postfilter_fwhm_mm=8.0, noise_free=True),
    )
    for d in DURATIONS:
        assert torch.equal(plain["projections"][d], rich["projections"][d])
        assert torch.equal(plain["images"][d], rich["images"][d])
    assert plain["replicates"] == {} and plain["noise_free"] is None
    assert set(rich["replicates"]) == set(DURATIONS)
    reps = rich["replicates"][5.0]
    assert len(reps) == 2 and not torch.equal(reps[0], reps[1])
    assert not torch.equal(reps[0], rich["images"][5.0])


def test_replicate_noise_falls_as_one_over_sqrt_time():
    """Voxel SD across noise realizations of the same subject, over the object: the 5-min
    images' is sqrt(25 / 5) = 2.24 times the 25-min images' (raw OSEM, 2 iterations, where the
    noise of a low-iteration OSEM image scales as 1 / sqrt(counts))."""
    out = _run(4, total=2.0e6, replicates=6)
    act, _ = _object()
    inside = act > 0
    sd = {d: torch.stack(out["replicates"][d]).std(0)[inside].mean().item() for d in (5.0, 25.0)}
    assert sd[5.0] / sd[25.0] == pytest.approx(np.sqrt(5.0), rel=0.15)


def test_noise_free_image_is_every_durations_noise_free_reconstruction():
    """Without scatter correction OSEM is scale-equivariant: reconstructing the expected 5-min
    projections (per second) gives the noise-free image, which is also the image the scans
    scatter around (its mean over realizations within a few percent)."""
    recon = ReconConfig(iterations=2, subsets=4, postfilter_fwhm_mm=8.0, noise_free=True)
    out = _run(5, total=2.0e6, recon=recon, replicates=8)
    act, mu = _object()
    proj = SPECTProjector(N, NZ, VOXEL, 24, orbit_radius_mm=135.0, mu_map=mu)
    subsets = [proj.subset(v) for v in subset_views(24, 4)]
    x5 = osem(crop(out["expected"] * 0.2, N, NZ).float(), subsets, None, OSEMConfig(2, 4))
    x5 = gaussian_filter3d(x5 / 300.0, 8.0, VOXEL)
    nf = out["noise_free"]
    assert torch.allclose(x5, nf, rtol=1e-4, atol=1e-6 * float(nf.max()))
    mean25 = torch.stack(out["replicates"][25.0]).mean(0)
    hot = act == 6.0
    assert float(mean25[hot].mean() / nf[hot].mean()) == pytest.approx(1.0, abs=0.03)


def test_independent_motion_moves_the_short_scans_only():
    """With motion each shorter scan's image is the subject moved (its centroid shifted by the
    drawn shift), the longest stays at the truth's pose, and the draw is recorded."""
    out = _run(6, total=2.0e6, mode="independent", motion_mm=6.0, motion_deg=0.0)
    assert set(out["motion"]) == {10.0, 5.0}

    def centroid(x):
        x = x.double().clamp_min(0)
        x = torch.where(x > 0.3 * x.max(), x, torch.zeros_like(x))
        idx = torch.meshgrid(
            *(torch.arange(s, dtype=torch.float64) for s in x.shape), indexing="ij"
        )
        return np.array([float((x * i).sum() / x.sum()) for i in idx])

    c25 = centroid(out["images"][25.0])
    for d in (10.0, 5.0):
        shift = np.array(out["motion"][d]["shift_mm"]) / VOXEL
        assert np.abs(centroid(out["images"][d]) - c25 - shift).max() < 0.35, d


def test_rigid_move_orientation_and_identity():
    rng = np.random.default_rng(0)
    vol = np.zeros((24, 24, 12), np.float32)
    vol[8:12, 10:13, 4:7] = rng.uniform(1, 2, (4, 3, 3))
    assert np.allclose(rigid_move(vol, [0, 0, 0], [0, 0, 0], 4.0, 1), vol, atol=1e-6)
    moved = rigid_move(vol, [0, 0, 0], [8.0, 0, -4.0], 4.0, 0)  # +2 voxels x, -1 voxel z
    assert np.array_equal(moved[10:14, 10:13, 3:6], vol[8:12, 10:13, 4:7])
    # +90 degrees about z maps +x onto +y (right-handed, about the grid centre 11.5)
    point = np.zeros((24, 24, 12), np.float32)
    point[17, 11, 6] = 1.0  # x = centre + 5.5 (rounded grid), y = centre - 0.5
    turned = rigid_move(point, [0, 0, 90.0], [0, 0, 0], 4.0, 0)
    assert turned[12, 17, 6] == 1.0 and turned.sum() == 1.0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"mode": "interleaved"}, "mode"),
        ({"motion_mm": 2.0}, "independent"),
        ({"mode": "independent", "motion_deg": -1.0}, "motion"),
        ({"replicates": -1}, "replicates"),
        ({"save_projections": "some"}, "save_projections"),
        ({"durations_min": (25.0, 5.0, 5.0)}, "repeats"),
    ],
)
def test_mode_settings_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        AcquisitionConfig(**kw)
