from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fastdat.anatomy.phantom import PhantomConfig, make_phantom, sample_subject
from fastdat.data.localize import locate_striata

SHAPE, VOXEL, CROP = (64, 64, 40), 4.0, 48


def _scan(seed: int, left: int, right: int):
    """A blurred, noisy stand-in for a reconstruction, with a scatter-like halo."""
    rng = np.random.default_rng(seed)
    subject = sample_subject(rng, PhantomConfig(), left, right, 70.0, "M")
    ph = make_phantom(subject, SHAPE, VOXEL, PhantomConfig(supersample=1))
    img = ndimage.gaussian_filter(ph.activity.astype(np.float64), 11.0 / 2.355 / VOXEL)
    img += 0.3 * ndimage.gaussian_filter(img, 40.0 / 2.355 / VOXEL)
    img = rng.poisson(img * 40.0) / 40.0
    return img, ph.labels


@pytest.mark.parametrize(
    "seed, left, right", [(1, 0, 0), (2, 1, 0), (3, 2, 2), (4, 3, 2), (5, 3, 3)]
)
def test_crop_centre_within_one_pixel_of_truth(seed, left, right):
    img, labels = _scan(seed, left, right)
    loc = locate_striata(img, VOXEL, n_slices=5, size=CROP)
    striatum = np.isin(labels, (1, 2, 3, 4, 5, 6))
    ii, jj, kk = np.nonzero(striatum[:, :, list(loc.slices)])
    centre = np.array(loc.corner) + (CROP - 1) / 2
    assert np.hypot(*(centre - [ii.mean(), jj.mean()])) <= 1.0
    # the slab holds the striatal maximum slice (+/- 1)
    k_max = int(np.argmax(striatum.sum((0, 1))))
    assert loc.slices[0] - 1 <= k_max <= loc.slices[-1] + 1
    assert 0 < loc.score <= 1


def test_follows_a_shifted_head():
    img, labels = _scan(1, 0, 0)
    moved = np.roll(img, (5, -4, 2), axis=(0, 1, 2))
    a = locate_striata(img, VOXEL, size=CROP)
    b = locate_striata(moved, VOXEL, size=CROP)
    np.testing.assert_allclose(np.subtract(b.centre[:2], a.centre[:2]), [5, -4], atol=0.3)
    assert b.slices[0] - a.slices[0] == 2


def test_rejects_unusable_volumes():
    with pytest.raises(ValueError, match="3D"):
        locate_striata(np.ones((8, 8)), 4.0)
    with pytest.raises(ValueError, match="positive"):
        locate_striata(np.zeros(SHAPE), 4.0, size=CROP)
    with pytest.raises(ValueError, match="does not fit"):
        locate_striata(np.ones((32, 32, 8)), 4.0, size=64)


def test_window_sums_are_the_domain_correlation():
    """The summed-volume look-up equals the FFT correlation with the image domain it replaced and a
    brute-force sum of the template part that stays inside the domain, at every shift."""
    from scipy import fft

    from fastdat.data.localize import _window_sums

    rng = np.random.default_rng(3)
    shape, r = (11, 9, 7), 4
    dense = rng.random(shape)
    compact = np.zeros(shape)  # non-zero in a box off the centre (the table covers the box only)
    compact[6:10, 1:4, 2:7] = rng.random((4, 3, 5))
    ranges = [np.arange(-min(r, n - 1), min(r, n - 1) + 1) for n in shape]
    shifts = np.stack(np.meshgrid(*ranges, indexing="ij"))
    pad = [n + r + 1 for n in shape]
    for t in (dense, compact, np.zeros(shape)):
        got = _window_sums(t, shifts)
        corr = fft.irfftn(fft.rfftn(np.ones(shape), pad) * np.conj(fft.rfftn(t, pad)), pad)
        np.testing.assert_allclose(got, corr[shifts[0], shifts[1], shifts[2]], rtol=0, atol=1e-12)
        for idx in np.ndindex(got.shape):
            s = shifts[(slice(None), *idx)]
            inside = tuple(slice(max(0, -a), min(n, n - a)) for a, n in zip(s, shape, strict=True))
            assert got[idx] == pytest.approx(t[inside].sum(), abs=1e-12)
