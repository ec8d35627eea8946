"""fastdat.stats.observer: channels, the CHO on signal-known-exactly tasks with analytic AUCs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from fastdat.stats.observer import (
    GIFFORD_2000_FREQUENCIES,
    CHOModel,
    auc_from_detectability,
    cho_auc,
    cho_train,
    detectability,
    gabor_channels,
    group_folds,
    laguerre_gauss_channels,
)

SIZE = 32  # image side (pixels)
WIDTH = 6.0  # LG width a (pixels); the signal is the first LG channel's Gaussian
N_PER_CLASS = 1000


def _ske(rng, amplitude_dprime, n=N_PER_CLASS, size=SIZE, width=WIDTH, sigma=1.0):
    """Signal known exactly in white Gaussian noise N(0, sigma^2).

    The signal ``s = A exp(-pi r^2 / a^2)`` (the first LG channel's shape) is scaled so that the
    ideal observer's ``d' = ||s|| / sigma`` equals ``amplitude_dprime``. Returns images
    ``(2n, size, size)``, labels (n absent, then n present) and subject ids (2 images each,
    one class per subject).
    """
    blob = laguerre_gauss_channels((size, size), 1, width)[0]
    s = amplitude_dprime * sigma * blob / np.linalg.norm(blob)
    g = rng.normal(0.0, sigma, (2 * n, size, size))
    y = np.concatenate([np.zeros(n, int), np.ones(n, int)])
    g[y == 1] += s
    return g, y, np.arange(2 * n) // 2


# ------------------------------------------------------------------------------------ channels


@pytest.mark.parametrize("centre", [None, (60.3, 70.8)])
def test_lg_channels_are_orthonormal_on_a_large_grid(centre):
    u = laguerre_gauss_channels((128, 128), 6, 15.0, centre=centre)
    assert u.shape == (6, 128, 128) and u.dtype == np.float64
    uf = u.reshape(6, -1)
    assert np.abs(uf @ uf.T - np.eye(6)).max() < 1e-3


def test_lg_channel_formula():
    a = 8.0
    u = laguerre_gauss_channels((33, 41), 3, a, centre=(16, 20))
    assert u[0, 16, 20] == pytest.approx(math.sqrt(2) / a, rel=1e-14)  # L_j(0) = 1
    assert u[2, 16, 20] == pytest.approx(math.sqrt(2) / a, rel=1e-14)
    r2 = 3.0**2 + 4.0**2  # pixel (19, 24): 5 px from the centre
    x = 2 * math.pi * r2 / a**2
    expected = math.sqrt(2) / a * math.exp(-x / 2) * (1 - x)  # L_1(x) = 1 - x
    assert u[1, 19, 24] == pytest.approx(expected, rel=1e-12)
    # the default centre is the middle of the image (sub-pixel for even sizes)
    v = laguerre_gauss_channels((32, 32), 1, a)[0]
    assert np.allclose(v, v[::-1, ::-1]) and np.argmax(v) in (v.size // 2 - 17, v.size // 2 - 16)


def test_gabor_channels_defaults_and_frequency():
    g = gabor_channels((64, 64))
    assert g.shape == (4 * 5 * 2, 64, 64)
    assert np.allclose((g**2).sum(axis=(1, 2)), 1.0)
    # default widths: FWHM 6 ln2 / (pi f) (octave bandwidth); check the envelope along the
    # column through the centre of an even (phase 0), theta = 0 channel on an odd grid
    f = GIFFORD_2000_FREQUENCIES[2]
    w = 6 * math.log(2) / (math.pi * f)
    assert w == pytest.approx(14.12, abs=0.01)
    ch = gabor_channels((129, 129), [f], [0.0], [0.0])[0]
    for k in (3, 7):
        assert ch[64 + k, 64] / ch[64, 64] == pytest.approx(
            math.exp(-4 * math.log(2) * k**2 / w**2)
        )
    # the spectrum peaks at the carrier: 1/8 cycles/pixel along the columns for theta = 0
    ch = gabor_channels((64, 64), [1 / 8], [0.0], [0.0], widths_px=20.0)[0]
    spec = np.abs(np.fft.fft2(ch))
    ky, kx = np.unravel_index(np.argmax(spec), spec.shape)
    assert ky == 0 and kx in (8, 64 - 8)
    ch = gabor_channels((64, 64), [1 / 8], [np.pi / 2], [0.0], widths_px=20.0)[0]
    ky, kx = np.unravel_index(np.argmax(np.abs(np.fft.fft2(ch))), spec.shape)
    assert kx == 0 and ky in (8, 64 - 8)


def test_channel_arguments_are_checked():
    with pytest.raises(ValueError, match="width_px"):
        laguerre_gauss_channels((16, 16), 3, 0.0)
    with pytest.raises(ValueError, match="n_channels"):
        laguerre_gauss_channels((16, 16), 0, 4.0)
    with pytest.raises(ValueError, match="shape"):
        laguerre_gauss_channels((16, 16, 3), 2, 4.0)
    with pytest.raises(ValueError, match="centre"):
        laguerre_gauss_channels((16, 16), 2, 4.0, centre=(1, 2, 3))
    with pytest.raises(ValueError, match="frequencies"):
        gabor_channels((16, 16), [0.0])


# -------------------------------------------------------------------------------- detectability


def test_detectability_round_trip():
    assert detectability(0.5) == 0.0
    assert detectability(sps.norm.cdf(1 / math.sqrt(2))) == pytest.approx(1.0, rel=1e-12)
    d = np.array([0.0, 0.5, 1.0, 2.5])
    assert np.allclose(detectability(auc_from_detectability(d)), d, atol=1e-12)
    assert auc_from_detectability(0.0) == 0.5 and isinstance(auc_from_detectability(1.0), float)
    with pytest.raises(ValueError, match="AUC"):
        detectability(1.2)


# ---------------------------------------------------------------------------------------- CHO


@pytest.mark.parametrize(("analytic_auc", "seed"), [(0.7, 4), (0.85, 5), (0.95, 7)])
def test_cho_recovers_the_ideal_observer_in_white_noise(analytic_auc, seed):
    # the signal lies in the span of the LG channels and the noise is white, so the CHO is the
    # ideal (Hotelling = likelihood-ratio) observer: AUC = Phi(d' / sqrt 2), d' = ||s|| / sigma.
    # One fixed noise realisation per level; over 60 other seeds the 95 % CI held the analytic
    # AUC in 90 %, 95 %, 92 % of runs (slightly under 95 %: the template is estimated from 500
    # images per class, which costs ~0.006, 0.003, 0.002 of AUC on average).
    d_prime = detectability(analytic_auc)
    g, y, groups = _ske(np.random.default_rng(seed), d_prime)
    u = laguerre_gauss_channels((SIZE, SIZE), 5, WIDTH)
    r = cho_auc(g, y, groups, u, n_folds=2, seed=seed)
    assert r.auc.low <= analytic_auc <= r.auc.high
    assert abs(r.auc.auc - analytic_auc) < 0.03
    # paired with the ideal observer (the known template s) on the same images: a small loss
    # (over 40 seeds: mean -0.003 .. -0.001, worst -0.014 at AUC 0.7)
    ideal = roc_auc_score(y, (g * u[0]).sum(axis=(1, 2)))
    assert -0.02 < r.auc.auc - ideal < 0.005
    assert (r.auc.n_pos, r.auc.n_neg) == (N_PER_CLASS, N_PER_CLASS)
    # the pooled out-of-fold scores give the same AUC in scikit-learn
    assert abs(roc_auc_score(y, r.scores) - r.auc.auc) < 1e-12
    assert abs(r.resubstitution_auc - analytic_auc) < 0.03
    # the training SNR estimates d'
    model = cho_train(g[y == 0], g[y == 1], u)
    assert model.snr == pytest.approx(d_prime, rel=0.1)


def test_cho_with_gabor_channels_detects_but_does_not_beat_the_ideal():
    analytic_auc = 0.85
    g, y, groups = _ske(np.random.default_rng(21), detectability(analytic_auc), n=600)
    u = gabor_channels((SIZE, SIZE), [1 / 32, 1 / 16, 1 / 8], [0, np.pi / 2], [0.0, np.pi / 2])
    r = cho_auc(g, y, groups, u, n_folds=3, seed=4)
    assert r.auc.low > 0.6
    assert r.auc.low <= analytic_auc  # no better than the ideal observer


def test_cho_without_signal_is_at_chance():
    g, y, groups = _ske(np.random.default_rng(31), 0.0, n=500)
    r = cho_auc(g, y, groups, laguerre_gauss_channels((SIZE, SIZE), 5, WIDTH), seed=2)
    assert r.auc.low <= 0.5 <= r.auc.high
    assert r.resubstitution_auc >= r.auc.auc - 0.05  # resubstitution is optimistic


def test_cho_folds_keep_subjects_together_and_reproduce_the_scores():
    rng = np.random.default_rng(41)
    # 60 subjects with 2..6 images each, both classes within a subject
    sizes = rng.integers(2, 7, 60)
    groups = np.repeat([f"subj{k:02d}" for k in range(60)], sizes)
    n = groups.size
    y = np.tile([0, 1], n)[:n]
    u = laguerre_gauss_channels((16, 16), 3, 4.0)
    g = rng.normal(0, 1, (n, 16, 16)) + 0.3 * y[:, None, None] * u[0]
    r = cho_auc(g, y, groups, u, n_folds=3, seed=7)
    assert r.folds.shape == (n,) and set(np.unique(r.folds)) == {0, 1, 2}
    for subj in np.unique(groups):  # every subject in exactly one fold
        assert np.unique(r.folds[groups == subj]).size == 1
    for f in range(3):  # no subject both in the training and the test set of a fold
        assert not set(groups[r.folds == f]) & set(groups[r.folds != f])
        # each fold's scores are those of a CHO trained on the other folds only
        train = r.folds != f
        model = cho_train(g[train & (y == 0)], g[train & (y == 1)], u)
        assert np.allclose(r.scores[r.folds == f], model.score(g[r.folds == f]))
    counts = np.bincount(r.folds)
    assert counts.max() - counts.min() <= 10  # balanced (largest subject has 6 images)
    assert abs(roc_auc_score(y, r.scores) - r.auc.auc) < 1e-12
    # deterministic from the seed; another seed gives another split
    assert np.array_equal(cho_auc(g, y, groups, u, n_folds=3, seed=7).folds, r.folds)
    assert not np.array_equal(group_folds(y, groups, 3, seed=8), r.folds)
    assert (r.n_folds, r.seed) == (3, 7)


def test_group_folds_stratify_single_class_subjects():
    rng = np.random.default_rng(51)
    groups = np.repeat(np.arange(40), 3)
    y = np.repeat(rng.integers(0, 2, 40), 3)  # one class per subject
    folds = group_folds(y, groups, 4, seed=0)
    for cls in (0, 1):  # each class spread over the folds within one subject
        per_fold = np.bincount(folds[y == cls], minlength=4)
        assert per_fold.max() - per_fold.min() <= 3
    with pytest.raises(ValueError, match="n_folds"):
        group_folds(y, groups, 41)
    with pytest.raises(ValueError, match="n_folds"):
        group_folds(y, groups, 1)


def test_cho_model_is_frozen_and_consistent():
    rng = np.random.default_rng(61)
    g, y, _ = _ske(rng, 1.5, n=200, size=16, width=4.0)
    u = laguerre_gauss_channels((16, 16), 4, 4.0)
    m = cho_train(g[y == 0], g[y == 1], u)
    assert isinstance(m, CHOModel) and (m.n_absent, m.n_present) == (200, 200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.ridge = 1.0
    with pytest.raises(ValueError):
        m.template[0] = 0.0  # read-only arrays
    # t = w^T U^T g = <U w, g>, and w solves S w = dv
    assert np.allclose(m.score(g[:5]), (g[:5] * m.image_template).sum(axis=(1, 2)))
    assert np.allclose(m.covariance @ m.template, m.mean_present - m.mean_absent)
    v = m.channel_outputs(g[y == 1])
    assert v.shape == (200, 4) and np.allclose(v.mean(axis=0), m.mean_present)
    # flattened images with flattened channels give the same template
    mf = cho_train(g[y == 0].reshape(200, -1), g[y == 1].reshape(200, -1), u.reshape(4, -1))
    assert np.allclose(mf.template, m.template)


def test_cho_ridge_and_refusals():
    rng = np.random.default_rng(71)
    u = laguerre_gauss_channels((16, 16), 8, 4.0)
    g0, g1 = rng.normal(0, 1, (3, 16, 16)), rng.normal(0, 1, (3, 16, 16))
    with pytest.raises(ValueError, match="singular"):  # 8 channels, 3 + 3 images
        cho_train(g0, g1, u)
    m = cho_train(g0, g1, u, ridge=1e-3)
    assert np.isfinite(m.template).all() and m.ridge == 1e-3
    with pytest.raises(ValueError, match=">= 2 training images"):
        cho_train(g0[:1], g1, u, ridge=0.1)
    with pytest.raises(ValueError, match="like the channels"):
        cho_train(g0[:, :8], g1, u)
    with pytest.raises(ValueError, match="ridge"):
        cho_train(g0, g1, u, ridge=-1.0)
    g, y = np.concatenate([g0, g1]), np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        cho_auc(g, y + 1, None, u[:2])
    with pytest.raises(ValueError, match="needs >= 2 of each"):
        cho_auc(g, y, np.array([0, 0, 1, 1, 1, 1]), u[:2], n_folds=2, ridge=0.1)
