"""Channelized Hotelling observer (CHO): channels, training, out-of-subject AUC, d_A.

A model observer for a signal-detection task (Barrett & Myers 2004, *Foundations of Image
Science*, ch. 13-14). An image ``g`` (``P`` pixels, flattened) is reduced to ``C`` channel
outputs ``v = U^T g`` (``U``: ``P x C``, one channel per column); with the class means ``vbar_0``
(signal absent), ``vbar_1`` (signal present) and the average of the two class covariances
``S = (S_0 + S_1) / 2`` of ``v``, the Hotelling template in channel space and the decision
variable are::

    w = S^-1 (vbar_1 - vbar_0),      t(g) = w^T U^T g,

and the training Hotelling SNR is ``SNR^2 = (vbar_1 - vbar_0)^T S^-1 (vbar_1 - vbar_0)``. For
Gaussian ``t`` the AUC and the detectability index are related by ``AUC = Phi(d_A / sqrt 2)``.

Channel families (every length in pixels, frequencies in cycles/pixel):

* Laguerre-Gauss (LG): rotationally symmetric, orthonormal in the continuum; efficient for a
  rotationally symmetric signal at a known location (Barrett et al. 1993; Barrett & Myers 2004,
  eq. 14.98).
* Gabor: band-pass, oriented, even and odd phase; the anthropomorphic channels used for lesion
  detection in SPECT (Gifford, King, de Vries & Soares 2000, "Channelized Hotelling and human
  observer correlation for lesion detection in hepatic SPECT imaging", J Nucl Med 41:514-521;
  Wollenweber et al. 1999).

:func:`cho_auc` trains on some subjects and scores the others (subject-grouped k-fold) and
reports the AUC of the pooled out-of-fold decision variables with the DeLong CI of
:mod:`fastdat.stats.roc`.

A leaf: numpy, scipy and :mod:`fastdat.stats.roc` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

from fastdat.stats.roc import AUCResult, auc, auc_delong

__all__ = [
    "GIFFORD_2000_FREQUENCIES",
    "GIFFORD_2000_ORIENTATIONS",
    "CHOModel",
    "CHOResult",
    "auc_from_detectability",
    "cho_auc",
    "cho_train",
    "detectability",
    "gabor_channels",
    "group_folds",
    "laguerre_gauss_channels",
]

GIFFORD_2000_FREQUENCIES = (3 / 128, 3 / 64, 3 / 32, 3 / 16)
"""Centre frequencies (cycles/pixel) of the four octave passbands [1/64, 1/32], ..., [1/8, 1/4]
of the Gabor channels of Gifford et al. (2000); the default of :func:`gabor_channels`."""

GIFFORD_2000_ORIENTATIONS = tuple(k * 2 * np.pi / 5 for k in range(5))
"""Orientations (radians) 0, 2 pi/5, 4 pi/5, 6 pi/5, 8 pi/5 of Gifford et al. (2000)."""


def _grid(shape: Sequence[int], centre: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets ``(H, W)`` from ``centre`` (default the image centre), in pixels."""
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"channels: shape must be (H, W) with H, W >= 1, got {tuple(shape)}")
    h, w = int(shape[0]), int(shape[1])
    if centre is None:
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    else:
        cen = np.asarray(centre, dtype=np.float64)
        if cen.shape != (2,) or not np.isfinite(cen).all():
            raise ValueError(f"channels: centre must be a finite (row, column), got {centre}")
        cy, cx = float(cen[0]), float(cen[1])
    y, x = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    return y, x


def laguerre_gauss_channels(
    shape: Sequence[int],
    n_channels: int,
    width_px: float,
    centre: Sequence[float] | None = None,
) -> np.ndarray:
    """Laguerre-Gauss channels sampled on a pixel grid.

    ``u_j(r) = sqrt(2) / a * exp(-pi r^2 / a^2) * L_j(2 pi r^2 / a^2)``, ``j = 0 .. C-1``, with
    ``L_j`` the Laguerre polynomial of order ``j``, ``r`` the distance (pixels) from ``centre``
    and ``a = width_px`` (Barrett & Myers 2004). The functions are orthonormal in the plane,
    ``integral u_j u_k d^2r = delta_jk``; sampled at unit pixel spacing, ``sum_pixels u_j u_k`` is
    close to ``delta_jk`` when ``a`` is a few pixels or more and the grid holds the channels'
    support (a few ``a * sqrt(j + 1)``). ``u_0`` is the Gaussian ``exp(-pi r^2 / a^2)`` (FWHM
    ``a * sqrt(4 ln 2 / (2 pi)) ~= 0.66 a``, up to scale); match ``a`` to the signal's size.

    Args:
        shape: ``(H, W)`` image shape in pixels.
        n_channels: Number of channels ``C >= 1``.
        width_px: Gaussian width ``a`` (pixels, > 0).
        centre: ``(row, column)`` of the signal in pixels, sub-pixel allowed; default the image
            centre ``((H - 1) / 2, (W - 1) / 2)``.

    Returns:
        ``(C, H, W)`` float64, units 1/pixel (so that the sum over pixels of ``u_j^2`` is ~1).
    """
    if int(n_channels) < 1:
        raise ValueError(f"laguerre_gauss_channels: n_channels must be >= 1, got {n_channels}")
    if not width_px > 0:
        raise ValueError(f"laguerre_gauss_channels: width_px must be > 0, got {width_px}")
    y, x = _grid(shape, centre)
    a = float(width_px)
    g = 2.0 * np.pi * (x**2 + y**2) / a**2
    gauss = np.sqrt(2.0) / a * np.exp(-g / 2.0)
    return np.stack([gauss * special.eval_laguerre(j, g) for j in range(int(n_channels))])


def gabor_channels(
    shape: Sequence[int],
    frequencies_cyc_per_px: Sequence[float] = GIFFORD_2000_FREQUENCIES,
    orientations_rad: Sequence[float] = GIFFORD_2000_ORIENTATIONS,
    phases_rad: Sequence[float] = (0.0, np.pi / 2),
    widths_px: Sequence[float] | float | None = None,
    centre: Sequence[float] | None = None,
) -> np.ndarray:
    """Gabor channels: Gaussian envelopes times oriented cosines, unit norm on the grid.

    For each centre frequency ``f`` (with its envelope FWHM ``w_s``), orientation ``theta`` and
    phase ``beta``, in that nesting order::

        V(x, y) = exp(-4 ln2 (x^2 + y^2) / w_s^2) * cos(2 pi f (x cos theta + y sin theta) + beta)

    with ``x`` the column offset and ``y`` the row offset (pixels, rows increase downwards) from
    ``centre``; ``theta = 0`` is a carrier varying along the columns. Each channel is scaled to
    unit L2 norm over the pixels (the Hotelling observer does not depend on the channels'
    scale). The channels are not orthogonal.

    The defaults are the channels of Gifford et al. (2000) for SPECT lesion detection: four
    octave passbands with centre frequencies 3/128, 3/64, 3/32, 3/16 cycles/pixel, five
    orientations ``k 2 pi / 5`` and two phases (0, pi/2): 40 channels. The default widths give
    each channel an octave bandwidth ``df = 2 f / 3``: the envelope's spectrum has FWHM
    ``4 ln2 / (pi w_s)``, so ``w_s = 4 ln2 / (pi df) = 6 ln2 / (pi f)`` (56.48, 28.24, 14.12,
    7.06 pixels for the default frequencies).

    Args:
        shape: ``(H, W)`` image shape in pixels.
        frequencies_cyc_per_px: Centre frequencies ``f`` (cycles/pixel, > 0).
        orientations_rad: Orientations ``theta`` (radians).
        phases_rad: Phases ``beta`` (radians); (0, pi/2) gives an even and an odd channel.
        widths_px: Envelope FWHM ``w_s`` (pixels) per frequency, or one for all; default
            ``6 ln2 / (pi f)`` (octave bandwidth).
        centre: ``(row, column)`` of the signal in pixels; default the image centre.

    Returns:
        ``(len(f) * len(theta) * len(beta), H, W)`` float64, each of unit L2 norm.
    """
    freqs = np.atleast_1d(np.asarray(frequencies_cyc_per_px, dtype=np.float64))
    if freqs.ndim != 1 or freqs.size == 0 or not (freqs > 0).all():
        raise ValueError("gabor_channels: frequencies must be a non-empty list of values > 0")
    if widths_px is None:
        widths = 6.0 * np.log(2.0) / (np.pi * freqs)
    else:
        widths = np.broadcast_to(np.asarray(widths_px, dtype=np.float64), freqs.shape)
    if not (widths > 0).all():
        raise ValueError(f"gabor_channels: widths_px must be > 0, got {widths}")
    thetas = np.atleast_1d(np.asarray(orientations_rad, dtype=np.float64))
    betas = np.atleast_1d(np.asarray(phases_rad, dtype=np.float64))
    if thetas.size == 0 or betas.size == 0:
        raise ValueError("gabor_channels: needs at least one orientation and one phase")
    y, x = _grid(shape, centre)
    r2 = x**2 + y**2
    out = []
    for f, ws in zip(freqs, widths, strict=True):
        env = np.exp(-4.0 * np.log(2.0) * r2 / ws**2)
        for th in thetas:
            arg = 2.0 * np.pi * f * (x * np.cos(th) + y * np.sin(th))
            for be in betas:
                ch = env * np.cos(arg + be)
                norm = float(np.sqrt((ch**2).sum()))
                if norm == 0.0:
                    raise ValueError(
                        f"gabor_channels: channel f={f}, theta={th}, beta={be} is zero on the grid"
                    )
                out.append(ch / norm)
    return np.stack(out)


def _flat_channels(channels: Any) -> np.ndarray:
    u = np.asarray(channels, dtype=np.float64)
    if u.ndim < 2:
        raise ValueError(f"CHO: channels must be (n_channels, ...), got shape {u.shape}")
    if not np.isfinite(u).all():
        raise ValueError("CHO: channels must be finite")
    return u


def _flat_images(images: Any, spatial: tuple[int, ...], what: str) -> np.ndarray:
    g = np.asarray(images, dtype=np.float64)
    if g.ndim < 1 or g.shape[1:] != spatial:
        raise ValueError(
            f"CHO: {what} must be (N, {', '.join(map(str, spatial))}) like the channels, "
            f"got {g.shape}"
        )
    if not np.isfinite(g).all():
        raise ValueError(f"CHO: {what} must be finite")
    return g.reshape(g.shape[0], -1)


@dataclass(frozen=True, eq=False)
class CHOModel:
    """A trained channelized Hotelling observer (arrays are read-only).

    Attributes:
        channels: ``(C, *image_shape)`` channel profiles ``U``.
        template: ``(C,)`` channel-space Hotelling template ``w = S^-1 (vbar_1 - vbar_0)``.
        mean_absent, mean_present: ``(C,)`` class means of the channel outputs.
        covariance: ``(C, C)`` the matrix ``S`` inverted (average class covariance, ddof 1,
            plus the ridge).
        ridge: Ridge added to ``S``, as a fraction of its mean eigenvalue ``trace(S) / C``.
        snr: Training Hotelling SNR ``sqrt((vbar_1 - vbar_0)^T S^-1 (vbar_1 - vbar_0))``
            (optimistic: the same images estimated ``S`` and the means).
        n_absent, n_present: Training images per class.
    """

    channels: np.ndarray
    template: np.ndarray
    mean_absent: np.ndarray
    mean_present: np.ndarray
    covariance: np.ndarray
    ridge: float
    snr: float
    n_absent: int
    n_present: int

    def __post_init__(self) -> None:
        for name in ("channels", "template", "mean_absent", "mean_present", "covariance"):
            arr = np.array(getattr(self, name), dtype=np.float64)  # own copy
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def image_template(self) -> np.ndarray:
        """``(*image_shape)`` the template in image space, ``U w``."""
        return np.tensordot(self.template, self.channels, axes=1)

    def channel_outputs(self, images: Any) -> np.ndarray:
        """Channel outputs ``v = U^T g``.

        Args:
            images: ``(N, *image_shape)``.

        Returns:
            ``(N, C)``.
        """
        u = self.channels
        g = _flat_images(images, u.shape[1:], "images")
        return g @ u.reshape(u.shape[0], -1).T

    def score(self, images: Any) -> np.ndarray:
        """Decision variables ``t = w^T U^T g`` (higher = more likely signal present).

        Args:
            images: ``(N, *image_shape)``, the same shape as the training images.

        Returns:
            ``(N,)`` float64.
        """
        return self.channel_outputs(images) @ self.template


def cho_train(
    images_absent: Any, images_present: Any, channels: Any, ridge: float = 0.0
) -> CHOModel:
    """Train a CHO from signal-absent and signal-present images.

    ``v = U^T g`` per image; ``S = (S_0 + S_1) / 2`` with ``S_k`` the sample covariance (ddof 1)
    of class ``k``; ``S_r = S + ridge * trace(S) / C * I``; ``w = S_r^-1 (vbar_1 - vbar_0)``
    (Cholesky solve).

    Args:
        images_absent: ``(N0, *image_shape)`` signal-absent images (e.g. ``(N0, H, W)``).
        images_present: ``(N1, *image_shape)`` signal-present images.
        channels: ``(C, *image_shape)`` channel profiles, e.g. from
            :func:`laguerre_gauss_channels` or :func:`gabor_channels`.
        ridge: Regularisation ``>= 0``, relative to the mean channel variance ``trace(S) / C``;
            use a small value (e.g. 1e-6 .. 1e-2) when ``N0 + N1 - 2`` is not well above ``C``.

    Raises:
        ValueError: shapes disagree, non-finite values, fewer than 2 images in a class, a
            negative ridge, or a singular ``S_r`` (smallest eigenvalue <= 1e-12 times the
            largest).
    """
    u = _flat_channels(channels)
    c = u.shape[0]
    if not ridge >= 0:
        raise ValueError(f"CHO: ridge must be >= 0, got {ridge}")
    uf = u.reshape(c, -1)
    v0 = _flat_images(images_absent, u.shape[1:], "images_absent") @ uf.T
    v1 = _flat_images(images_present, u.shape[1:], "images_present") @ uf.T
    if v0.shape[0] < 2 or v1.shape[0] < 2:
        raise ValueError(
            f"CHO: needs >= 2 training images per class, got {v0.shape[0]} absent, "
            f"{v1.shape[0]} present"
        )
    m0, m1 = v0.mean(axis=0), v1.mean(axis=0)
    s = 0.5 * (np.cov(v0, rowvar=False, ddof=1) + np.cov(v1, rowvar=False, ddof=1))
    s = np.atleast_2d(s)
    if ridge > 0:
        s = s + ridge * np.trace(s) / c * np.eye(c)
    dv = m1 - m0
    eig = np.linalg.eigvalsh(s)
    try:
        if not eig[0] > 1e-12 * max(eig[-1], 0.0):  # rank-deficient to rounding
            raise np.linalg.LinAlgError
        lower = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"CHO: the channel covariance ({c} channels, {v0.shape[0]} + {v1.shape[0]} images) "
            "is singular; use more training images, fewer channels or ridge > 0"
        ) from None
    z = np.linalg.solve(lower, dv)
    w = np.linalg.solve(lower.T, z)
    snr = float(np.sqrt(max(float(z @ z), 0.0)))
    return CHOModel(u, w, m0, m1, s, float(ridge), snr, v0.shape[0], v1.shape[0])


@dataclass(frozen=True, eq=False)
class CHOResult:
    """Out-of-subject CHO performance from :func:`cho_auc`.

    Attributes:
        auc: DeLong :class:`~fastdat.stats.roc.AUCResult` of the pooled out-of-fold scores.
        scores: ``(N,)`` out-of-fold decision variables, in the order of the input images.
        folds: ``(N,)`` int fold of each image (its model was trained on the other folds).
        resubstitution_auc: AUC of a CHO trained and scored on all images (optimistic; for
            information only).
        n_folds: Folds used. seed: Seed of the fold assignment.
    """

    auc: AUCResult
    scores: np.ndarray
    folds: np.ndarray
    resubstitution_auc: float
    n_folds: int
    seed: int


def group_folds(labels: Any, groups: Any, n_folds: int, seed: int = 0) -> np.ndarray:
    """Assign whole subjects to folds, balancing each class's image count (numpy only).

    The subjects are shuffled with ``np.random.default_rng(seed)``, then sorted by their image
    count, largest first (stable), and each goes to the fold that least increases
    ``sum_k (count[fold, k] / total_k)^2`` over the classes ``k`` (ties: lowest fold index), i.e.
    the fold with the fewest images of the subject's class when a subject has one class. All
    images of a subject share a fold.

    Args:
        labels: ``(N,)`` 0/1 class of each image.
        groups: ``(N,)`` subject id of each image (any hashable, sortable values).
        n_folds: ``>= 2`` and at most the number of subjects.
        seed: Seed of the shuffle.

    Returns:
        ``(N,)`` int fold per image, in ``0 .. n_folds-1``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.isin(lab, (0, 1)).all():
        raise ValueError("CHO folds: labels must be 1-D 0/1")
    grp = np.asarray(groups)
    if grp.shape != lab.shape:
        raise ValueError(f"CHO folds: groups must be {lab.shape} like labels, got {grp.shape}")
    y = lab.astype(np.int64)
    _, gi = np.unique(grp, return_inverse=True)
    gi = gi.ravel()
    n_groups = int(gi.max()) + 1 if gi.size else 0
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"CHO: n_folds must be in [2, {n_groups} subjects], got {n_folds}")
    counts = np.zeros((n_groups, 2))
    np.add.at(counts, (gi, y), 1.0)
    share = counts / np.maximum(counts.sum(axis=0), 1.0)  # fraction of each class's images
    order = np.random.default_rng(seed).permutation(n_groups)
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    load = np.zeros((n_folds, 2))
    fold_of = np.empty(n_groups, dtype=np.int64)
    for g in order:
        f = int(np.argmin(((load + share[g]) ** 2 - load**2).sum(axis=1)))
        load[f] += share[g]
        fold_of[g] = f
    return fold_of[gi]


def cho_auc(
    images: Any,
    labels: Any,
    groups: Any,
    channels: Any,
    n_folds: int = 2,
    seed: int = 0,
    level: float = 0.95,
    ridge: float = 0.0,
    ci: str = "wald",
) -> CHOResult:
    """Out-of-subject CHO AUC: train on some subjects, score the others, pool the scores.

    Images are split into ``n_folds`` folds by subject (:func:`group_folds`, deterministic from
    ``seed``); each fold is scored by a CHO (:func:`cho_train`) trained on the other folds, and
    the AUC of all pooled out-of-fold decision variables is reported with its DeLong CI
    (:func:`fastdat.stats.roc.auc_delong`).

    Caveats: the pooled scores come from ``n_folds`` different templates (their scales differ
    slightly); the DeLong CI treats images as independent cases and ignores the variability of
    the trained template, so with several images per subject it is somewhat too narrow.

    Args:
        images: ``(N, *image_shape)``, e.g. ``(N, H, W)``.
        labels: ``(N,)`` 0/1, 1 = signal present.
        groups: ``(N,)`` subject id of each image; None = every image its own subject.
        channels: ``(C, *image_shape)`` channel profiles.
        n_folds: Folds ``>= 2`` (at most the number of subjects).
        seed: Seed of the fold assignment.
        level: Confidence level of the DeLong CI.
        ridge: Passed to :func:`cho_train`.
        ci: ``"wald"`` or ``"logit"``, passed to :func:`~fastdat.stats.roc.auc_delong`.

    Raises:
        ValueError: bad shapes or labels, too few subjects for ``n_folds``, or a training set
            (all folds but one) with fewer than 2 images of a class.
    """
    u = _flat_channels(channels)
    g = np.asarray(images, dtype=np.float64)
    _flat_images(g, u.shape[1:], "images")  # validates shape and finiteness
    y = np.asarray(labels)
    if y.shape != (g.shape[0],):
        raise ValueError(f"CHO: labels must be ({g.shape[0]},), got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("CHO: labels must be 0/1 (1 = signal present)")
    y = y.astype(bool)
    grp = np.arange(y.size) if groups is None else np.asarray(groups)
    if grp.shape != y.shape:
        raise ValueError(f"CHO: groups must be ({y.size},), got {grp.shape}")
    folds = group_folds(y, grp, int(n_folds), seed)
    scores = np.empty(y.size)
    for f in range(int(n_folds)):
        test, train = folds == f, folds != f
        n0, n1 = int((train & ~y).sum()), int((train & y).sum())
        if n0 < 2 or n1 < 2:
            raise ValueError(
                f"CHO: training set without fold {f} has {n0} absent and {n1} present images; "
                "needs >= 2 of each (more subjects or fewer folds)"
            )
        model = cho_train(g[train & ~y], g[train & y], u, ridge=ridge)
        scores[test] = model.score(g[test])
    result = auc_delong(scores, y, level=level, ci=ci)
    full = cho_train(g[~y], g[y], u, ridge=ridge)
    resub = auc(full.score(g), y)
    scores.setflags(write=False)
    folds.setflags(write=False)
    return CHOResult(result, scores, folds, float(resub), int(n_folds), int(seed))


def detectability(auc_value: Any) -> Any:
    """Detectability index ``d_A = sqrt(2) Phi^-1(AUC)`` (equal-variance binormal model).

    Args:
        auc_value: AUC in [0, 1], scalar or array (0 and 1 give -inf and +inf).

    Returns:
        ``d_A`` (float, or array of the input's shape).
    """
    a = np.asarray(auc_value, dtype=np.float64)
    if ((a < 0) | (a > 1) | np.isnan(a)).any():
        raise ValueError(f"detectability: AUC must be in [0, 1], got {auc_value}")
    d = np.sqrt(2.0) * sps.norm.ppf(a)
    return float(d) if d.ndim == 0 else d


def auc_from_detectability(d_a: Any) -> Any:
    """The inverse of :func:`detectability`: ``AUC = Phi(d_A / sqrt 2)``.

    Args:
        d_a: Detectability index (scalar or array; for the ideal observer of a known signal
            ``s`` in white Gaussian noise of SD ``sigma``, ``d_A = ||s|| / sigma``).

    Returns:
        AUC (float, or array of the input's shape).
    """
    d = np.asarray(d_a, dtype=np.float64)
    a = sps.norm.cdf(d / np.sqrt(2.0))
    return float(a) if a.ndim == 0 else a
