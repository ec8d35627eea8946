from __future__ import annotations

import pytest
import torch

from fastdat.tomo.scatter import dew, smooth_views, tew

# 123I: 20 % photopeak window 143.1-174.9 keV with 6 keV side windows
W_L, W_P, W_U = 6.0, 31.8, 6.0
LOWER_EDGE, UPPER_EDGE = 143.1, 174.9


def _window_counts(density, lo, hi):
    """Counts of a linear spectrum ``density(E) = a + b E`` (per keV, per bin) in [lo, hi]."""
    a, b = density
    return a * (hi - lo) + b * (hi**2 - lo**2) / 2


def _spectrum(a: torch.Tensor, b: torch.Tensor):
    """Window counts of per-bin linear scatter spectra a + b E: (lower, photopeak, upper)."""
    lower = _window_counts((a, b), LOWER_EDGE - W_L, LOWER_EDGE)
    peak = _window_counts((a, b), LOWER_EDGE, UPPER_EDGE)
    upper = _window_counts((a, b), UPPER_EDGE, UPPER_EDGE + W_U)
    return lower, peak, upper


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_tew_is_exact_for_linear_spectra_with_equal_side_windows():
    # any linear (trapezoid) scatter spectrum, different in every bin; the estimate is exact
    a = 10 + 90 * _rand(5, 7, 3, seed=1)
    b = -0.05 * _rand(5, 7, 3, seed=2)  # falling with energy, positive over the windows
    lower, peak, upper = _spectrum(a, b)
    got = tew(peak, lower, upper, (W_L, W_P, W_U), smooth_fwhm_bins=0)
    torch.testing.assert_close(got, peak, rtol=1e-12, atol=0)
    assert got.shape == (5, 7, 3) and got.dtype == torch.float64


def test_tew_flat_spectrum_with_unequal_windows_and_smoothing():
    # a flat spectrum of d counts/keV: S = d W_p for any window widths, smoothed or not
    d = 3.0
    shape = (4, 9, 6)
    lower, upper = torch.full(shape, d * 4.0), torch.full(shape, d * 8.0)
    peak = torch.full(shape, d * W_P)
    for fwhm in (0.0, 2.0, 5.0):
        got = tew(peak, lower, upper, (4.0, W_P, 8.0), smooth_fwhm_bins=fwhm)
        torch.testing.assert_close(got, torch.full(shape, d * W_P))
        assert got.dtype == torch.float32


def test_tew_formula_linearity_and_count_scaling():
    lo, up = 50 * _rand(6, 8, 5, seed=3), 20 * _rand(6, 8, 5, seed=4)
    peak = torch.zeros_like(lo)
    widths = (5.0, 32.0, 7.0)
    got = tew(peak, lo, up, widths, smooth_fwhm_bins=0)
    torch.testing.assert_close(got, (lo / 5.0 + up / 7.0) * 32.0 / 2)
    lo2, up2 = 30 * _rand(6, 8, 5, seed=5), 10 * _rand(6, 8, 5, seed=6)
    for fwhm in (0.0, 3.0):
        one = tew(peak, lo, up, widths, smooth_fwhm_bins=fwhm)
        two = tew(peak, lo2, up2, widths, smooth_fwhm_bins=fwhm)
        both = tew(peak, 2.5 * lo + lo2, 2.5 * up + up2, widths, smooth_fwhm_bins=fwhm)
        torch.testing.assert_close(both, 2.5 * one + two)
        # smoothing keeps the total counts of a view up to edge effects, and adds none
        assert float(one.sum()) == pytest.approx(float(got.sum()), rel=0.05)
    # without an upper window: the triangle (half the lower density across the photopeak)
    torch.testing.assert_close(tew(peak, lo, None, widths, 0.0), lo / 5.0 * 32.0 / 2)


def test_dew_flat_spectrum_and_its_relation_to_tew():
    shape = (3, 5, 4)
    lower = torch.full(shape, 2.0 * W_L)  # 2 counts/keV
    # k = 1 on a flat spectrum: the photopeak holds the same density
    torch.testing.assert_close(dew(lower, (W_L, W_P), k=1.0), torch.full(shape, 2.0 * W_P))
    lo = 40 * _rand(*shape, seed=7)
    # the default k = 0.5 is TEW with an empty upper window
    torch.testing.assert_close(
        dew(lo, (W_L, W_P), smooth_fwhm_bins=0),
        tew(torch.zeros_like(lo), lo, None, (W_L, W_P, W_U), smooth_fwhm_bins=0),
    )
    torch.testing.assert_close(dew(3 * lo, (W_L, W_P), k=0.7), 3 * dew(lo, (W_L, W_P), k=0.7))


def test_estimates_are_non_negative_and_inputs_checked():
    lo = torch.poisson(2 * torch.ones(6, 10, 10), generator=torch.Generator().manual_seed(0))
    peak = torch.zeros_like(lo)
    assert (tew(peak, lo, lo, (W_L, W_P, W_U)) >= 0).all()
    assert (dew(lo, (W_L, W_P)) >= 0).all()
    with pytest.raises(ValueError, match="lower window counts must be finite and >= 0"):
        tew(peak, -lo, lo, (W_L, W_P, W_U))
    with pytest.raises(ValueError, match="upper window counts must be"):
        tew(peak, lo, lo[:, :5], (W_L, W_P, W_U))
    with pytest.raises(ValueError, match="3 window widths"):
        tew(peak, lo, lo, (W_L, W_P))
    with pytest.raises(ValueError, match="k must be"):
        dew(lo, (W_L, W_P), k=-1.0)
    with pytest.raises(ValueError, match="smooth_fwhm_bins"):
        dew(lo, (W_L, W_P), smooth_fwhm_bins=-1.0)


def test_smoothing_reduces_noise_and_keeps_a_constant():
    gen = torch.Generator().manual_seed(1)
    noisy = torch.poisson(torch.full((20, 32, 32), 4.0), generator=gen)
    smooth = smooth_views(noisy, 5.0)
    assert float(smooth.std()) < 0.3 * float(noisy.std())
    assert float(smooth.mean()) == pytest.approx(float(noisy.mean()), rel=0.01)
    flat = torch.full((2, 7, 3), 5.0, dtype=torch.float64)
    torch.testing.assert_close(smooth_views(flat, 5.0), flat)
