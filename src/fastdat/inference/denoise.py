"""Denoise whole reconstructed DaT SPECT volumes with a trained model (arrays; files and folders
are :mod:`fastdat.inference.files`).

Inference repeats what training saw. Every transaxial slice ``volume[:, :, k]`` (RAS axes, x
right, y anterior) goes through the 2D network divided by its own maximum and is multiplied back,
as :func:`fastdat.methods.predict` treats a 64 x 64 striatal crop; sides are padded
(edge values) to the network's multiple and cropped back, all-zero slices stay zero and the output
is clamped at zero (activity is non-negative).

The networks were trained on crops centred on the striata, and their output depends on where
the striata sit in the input (strided down-sampling and zero-padded borders): on the 50 test
studies of the simulated ``paper`` cohort, the default model's crop PSNR drops by 0.54 dB when
the crop moves by 1 pixel and by 1.9 dB at 2 pixels (``benchmarks/shift_sensitivity.py``).
Hence three modes, measured on those 50 studies against the crop-based result (crops where the
dataset builder cuts them; PSNR of the crops against 25-min, 33.89 dB crop-based):

- ``"anchored"`` (default): locate the striata as the dataset builder does
  (:func:`fastdat.data.localize.locate_striata`); denoise whole slices padded so that the crop
  corner falls on the network's down-sampling grid, and the 64 x 64 crop of every slice on its
  own, blended in with a weight that is 1 except in an 8-pixel band at the crop's border. Where
  the corner is the builder's, the striatal region equals the crop-based result (max deviation
  < 1e-6 of the crop maximum). But denoise has only the 5-min image to locate on, while the
  builder used the 25-min one: in 8 of the 50 studies the corner is 1 pixel off, those crops
  differ by up to 18 % of the crop maximum (the shift sensitivity above; measured with the
  previous default model), and the crop PSNR is 34.15 dB (``--modes anchored``).
- ``"slice"``: whole slices only. Max striatal deviation 42 % of the crop maximum (mean 3.4 %,
  previous model), crop PSNR 33.30 dB. Used when the striata cannot be located (with a warning).
- ``"tiles"``: 64 x 64 tiles, stride 32, each scaled by its own maximum, blended with a
  separable sin^2 window that sums to one. About as far off as whole slices (33.19 dB), slower.

Safety (:mod:`fastdat.inference.safety`). The network is a residual denoiser for one noise
level: on an input with less noise than a 5-min OSEM image (smoothed, noise-free, finer voxels)
it subtracts a 5-min-like noise estimate that is not there and writes a texture (measured with
``benchmarks/ood_denoise.py`` on smooth simulated inputs: high-frequency energy x6-x80, head mean
+14-30 %, slice sums +38-53 %). Hence, by default:

1. input checks against the training range recorded in the sidecar (``input_range``: voxel
   size, noise level, contrast): a warning recorded in the provenance, or a refusal with
   ``refuse_ood``;
2. a spectral limit (:func:`limit_spectrum`): at periods finer than 13 mm, where a DaT
   reconstruction holds < 5 % of its contrast, no Fourier coefficient of the output exceeds the
   input's in magnitude, so no grid or checkerboard can be stronger than the input's own noise
   (on the 16 test studies of the quick cohort, seed 1: crop PSNR 32.93 against 32.74 dB
   unlimited, SSIM 0.874 against 0.869);
3. output checks (high-frequency energy, head and hot-region means, slice sums against
   :data:`fastdat.inference.safety.BOUNDS`): a restoration that fails one is refused
   (:class:`RestorationRefused`), nothing is written, and the reason names the checks.

The network was trained at one voxel size (3.3 mm for the default model, recorded in its
sidecar as ``training_voxel_mm``). An input whose voxels differ from it by more than 5 % on an
axis, within the stated range of :mod:`fastdat.inference.resample` (2-5 mm), is resampled onto
an isotropic grid of the training size (cubic spline, concentrations kept), restored there with
every check and limit applied on that grid, and the restoration (and every ensemble member) is
resampled back onto the input's grid; ``info["resampled"]`` records both grids. An input outside
the stated range is restored as it is, with a warning (the voxel-size input check fails too),
or refused with ``refuse_ood``.

Volume networks (count-aware, 2.5D or 3D; :func:`fastdat.methods.restores_volumes`) were trained
with position and rotation augmentation on whole slabs: they restore the whole volume at once
(mode ``"volume"``, :func:`fastdat.methods.predict_volume`), need no localizer, and a count-aware
one is told the scan time (``minutes``), which is checked against the scan times it was trained
on. They restore the head's box (:func:`head_box`: the largest connected set of voxels above
10 % of the volume's 99.9th percentile, the safety checks' head, plus 8 voxels on each side)
and keep the input outside it: in a 128^3 field of view most voxels are empty slices and
corners, and the box is what the cold start pays for
(``benchmarks/bench_cold_start.py``); ``info["restored_box"]`` records it. The box also keeps
the network's field of view near its training one: ``countunet`` normalizes each layer over
the image (GroupNorm), so its output depends on how much empty background the field holds (a
network trained on 64 x 64 crops was refused by the output checks on a whole 128 x 128 field,
slice sums +297 %). The spectral limit and the output checks apply to them as to the 2D
networks.

Uncertainty. A deep ensemble of volume networks (:mod:`fastdat.models.ensemble`) restores the
volume once per member; the image is the members' mean. With ``members=True``
:func:`denoise_volume` also returns every member's restoration after the same spectral limit and
non-negative clamp as the image, and :func:`uncertainty_map` their per-voxel SD (``ddof=1``, the
image's units): how much the restoration itself is unsure of each voxel, not its error against
the truth. :func:`fastdat.quantification.intervals.sbr_with_intervals` measures SBRs on the
image (VOIs placed on it) and on every member in the same VOIs; their SD ``sigma`` becomes an
interval only through a conformal calibration stored in the model's sidecar
(:mod:`fastdat.quantification.intervals`). A single network, or a 2D ensemble applied slice by
slice (mean only), gives neither.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastdat.methods import head_box, predict_in_box, predict_tensor
from fastdat.models.registry import ImageToImage

log = logging.getLogger(__name__)

SIMULATED_NOTICE = (
    "the default model was trained on simulated data (FastDaT's simulated paper cohort); "
    "research use only, not for diagnosis"
)
MODES = ("anchored", "slice", "tiles")
TILE, STRIDE, RAMP = 64, 32, 8
LOCATE_WINDOW = (80, 80, 48)


def load_denoiser(
    model: ImageToImage | str | Path = "default", device: torch.device | str = "cpu"
) -> tuple[ImageToImage, dict]:
    """The network (eval mode, on ``device``) and its sidecar metadata (``{}`` for a module).

    ``model``: a network from :func:`fastdat.models.build_model`, a checkpoint path (``RUN/best``
    or its ``.safetensors`` / ``.json``) or ``"default"`` (the packaged model).
    """
    from fastdat.models.checkpoint import PACKAGED, load_model, read_sidecar

    if isinstance(model, ImageToImage):
        return model.to(device).eval(), {}
    if not isinstance(model, str | Path):
        raise TypeError(f"model must be a FastDaT network, a checkpoint path or 'default': {model}")
    path = PACKAGED["default"] if str(model) == "default" else Path(model)
    meta = read_sidecar(path)
    meta["path"] = str(path)
    net = load_model(path, device)
    net.input_range = meta.get("input_range")  # read by denoise_volume's input checks
    net.training_voxel_mm = meta.get("training_voxel_mm")  # and its resampling
    return net, meta


def _pad(x: torch.Tensor, multiple: int, before=(0, 0), minimum: int = 1) -> torch.Tensor:
    """Pad ``(B, 1, H, W)`` with edge values: ``before`` at the near sides, then the far sides up
    to a multiple of ``multiple`` and at least ``minimum``."""
    h, w = x.shape[-2] + before[0], x.shape[-1] + before[1]
    ph, pw = max(-h % multiple, minimum - h), max(-w % multiple, minimum - w)
    if any(before) or ph or pw:
        x = F.pad(x, (before[1], pw, before[0], ph), mode="replicate")
    return x


def _slices(net: ImageToImage, x: torch.Tensor, batch: int, phase=(0, 0)) -> torch.Tensor:
    """Whole slices; ``phase``: the pixel that must fall on the network's down-sampling grid."""
    h, w = x.shape[-2:]
    before = (-phase[0] % net.multiple, -phase[1] % net.multiple)
    out = predict_tensor(net, _pad(x, net.multiple, before), batch)
    return out[..., before[0] : before[0] + h, before[1] : before[1] + w]


def _window(n: int) -> torch.Tensor:
    """sin^2 taper: shifted by n / 2 it sums to one."""
    return torch.sin(torch.pi * (torch.arange(n) + 0.5) / n) ** 2


def _starts(n: int) -> list[int]:
    starts = list(range(0, n - TILE + 1, STRIDE))
    return starts if starts[-1] == n - TILE else [*starts, n - TILE]


def _tiles(net: ImageToImage, x: torch.Tensor, batch: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    xp = _pad(x, 1, minimum=TILE)
    hp, wp = xp.shape[-2:]
    win = (_window(TILE)[:, None] * _window(TILE)[None, :]).to(x.device, x.dtype)
    acc, wsum = torch.zeros_like(xp), torch.zeros_like(xp)
    for i in _starts(hp):
        for j in _starts(wp):
            tile = _pad(xp[..., i : i + TILE, j : j + TILE], net.multiple)
            acc[..., i : i + TILE, j : j + TILE] += (
                predict_tensor(net, tile, batch)[..., :TILE, :TILE] * win
            )
            wsum[..., i : i + TILE, j : j + TILE] += win
    return (acc / wsum)[..., :h, :w]


def locate_crop(volume: np.ndarray, voxel_mm: float) -> tuple[int, int]:
    """Corner ``(i0, j0)`` of the 64 x 64 striatal crop, found as the dataset builder finds it.

    :func:`fastdat.data.localize.locate_striata` with its defaults, on a window of at most the
    training grid (``LOCATE_WINDOW`` voxels) centred on the activity centroid: the template fit's
    one-time set-up grows with the grid (27 s at 128^3 against 3 s at 80 x 80 x 48).
    """
    from fastdat.data.localize import locate_striata

    vol = np.asarray(volume, dtype=np.float32)
    size = np.minimum(vol.shape, LOCATE_WINDOW)
    hot = np.argwhere(vol > 0.1 * vol.max())
    centre = hot.mean(0) if len(hot) else np.array(vol.shape) / 2
    lo = np.clip(np.round(centre - size / 2).astype(int), 0, np.array(vol.shape) - size)
    sub = vol[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]]
    loc = locate_striata(sub, voxel_mm, size=TILE)
    return int(lo[0] + loc.corner[0]), int(lo[1] + loc.corner[1])


def _ramp(n: int, width: int) -> torch.Tensor:
    """1 inside, falling linearly to ~0 over ``width`` pixels at both ends."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    return torch.clamp(torch.minimum(i, n - i) / width, max=1.0)


def _anchored(net, x, batch, corner) -> torch.Tensor:
    """Whole slices aligned on the crop's grid, with the crop's own result blended in."""
    i0, j0 = corner
    out = _slices(net, x, batch, phase=corner)
    crop = _slices(net, x[..., i0 : i0 + TILE, j0 : j0 + TILE], batch)
    w = (_ramp(TILE, RAMP)[:, None] * _ramp(TILE, RAMP)[None, :]).to(x.device, x.dtype)
    win = out[..., i0 : i0 + TILE, j0 : j0 + TILE]
    out[..., i0 : i0 + TILE, j0 : j0 + TILE] = w * crop + (1 - w) * win
    return out


PASS_PERIOD_MM = 13.0
"""Structures finer than this period (mm) are left no stronger than in the input (see
:func:`limit_spectrum`): 12 mm FWHM of reconstructed DaT SPECT passes < 5 % of contrast there."""


def limit_spectrum(x: torch.Tensor, y: torch.Tensor, voxel_mm: float | None) -> torch.Tensor:
    """``y`` with no spatial frequency finer than :data:`PASS_PERIOD_MM` stronger than in ``x``.

    Per transaxial slice (``(Z, 1, X, Y)``), at every frequency ``|f| >= 1 / PASS_PERIOD_MM``
    (cycles / mm), the restored image's Fourier coefficient is scaled so that its magnitude is at
    most the input's: ``Y(f) <- Y(f) min(1, |X(f)| / |Y(f)|)``. A reconstructed DaT image holds
    almost no true signal there (its ~12 mm FWHM resolution passes < 5 % of contrast), so a
    restoration may remove what it finds there (noise) but can never add a texture, grid or
    checkerboard stronger than the input's own. Without a voxel size, 3.3 mm is assumed.
    """
    h, w = x.shape[-2:]
    vox = float(voxel_mm) if voxel_mm else 3.3
    fy = torch.fft.fftfreq(h, d=vox, device=x.device)[:, None]
    fx = torch.fft.fftfreq(w, d=vox, device=x.device)[None, :]
    high = torch.hypot(fy, fx) >= 1.0 / PASS_PERIOD_MM
    fx_, fy_ = torch.fft.fft2(x.double()), torch.fft.fft2(y.double())
    ratio = torch.clamp(fx_.abs() / fy_.abs().clamp_min(1e-30), max=1.0)
    fy_ = torch.where(high, fy_ * ratio, fy_)
    return torch.fft.ifft2(fy_).real.to(y.dtype)


def no_members(net: ImageToImage) -> str | None:
    """Why :func:`denoise_volume` cannot keep ``net``'s members (no uncertainty map), or ``None``
    for a deep ensemble of two or more volume networks."""
    from fastdat.methods import ensemble_size, restores_volumes

    k = ensemble_size(net)
    if k < 2:
        return "single network: no ensemble members whose spread could be measured"
    if not restores_volumes(net):
        return f"a 2D ensemble of {k} is applied slice by slice (its mean only): no members kept"
    return None


def uncertainty_map(members: np.ndarray) -> np.ndarray:
    """Per-voxel SD of an ensemble's restorations: ``sqrt(sum_k (y_k - mean)^2 / (K - 1))``.

    Args:
        members: ``(K, X, Y, Z)`` the members' restorations (``K >= 2``), as
            :func:`denoise_volume` returns them with ``members=True``.

    Returns:
        float32 ``(X, Y, Z)``, in the image's units (counts, counts / s...), >= 0.
    """
    each = np.asarray(members, dtype=np.float64)
    if each.ndim != 4 or each.shape[0] < 2:
        raise ValueError(f"expected (K >= 2, X, Y, Z) members, got shape {each.shape}")
    return each.std(axis=0, ddof=1).astype(np.float32)


class RestorationRefused(ValueError):
    """The input is unlike the model's training data (with ``refuse_ood``), or the restoration
    failed an output check (it would add structure): nothing is written."""


@torch.inference_mode()
def denoise_volume(
    volume,
    net,
    device,
    mode: str,
    voxel_mm,
    batch: int = 32,
    *,
    input_range: dict | None = None,
    guard: bool = True,
    refuse_ood: bool = False,
    minutes: float | None = None,
    members: bool = False,
    resample: bool = True,
):
    """Denoised ``(X, Y, Z)`` float32 and what was done (mode, crop corner, checks, warnings).

    :func:`denoise` without the model loading; :mod:`fastdat.inference.files` records ``info``.

    Args:
        volume, net, device, mode: As :func:`denoise`.
        voxel_mm: One size or ``(x, y, z)`` sizes (mm); ``None`` only outside ``"anchored"``.
        batch: Slices per network call.
        input_range: The model's training range of the input features
            (:mod:`fastdat.inference.safety`); default: ``net.input_range``, which
            :func:`load_denoiser` sets from the sidecar.
        guard: Run the output checks and refuse a restoration that fails one (default; off
            only to measure what the network does unguarded).
        refuse_ood: Refuse an input that fails an input check instead of warning.
        minutes: The scan time; a volume network (count-aware, 2.5D or 3D:
            :func:`fastdat.methods.restores_volumes`) restores the whole volume told this
            (``mode`` is then ``"volume"``, no localizer), and it is checked against the scan
            times the model was trained on.
        members: Also return the ensemble members' restorations (module docstring), each after
            the spectral limit (with ``guard``) and the clamp at zero, as the image.
        resample: Restore on the network's training voxel grid when ``voxel_mm`` differs from
            it (``net.training_voxel_mm``, set by :func:`load_denoiser`; module docstring).

    Returns:
        ``(image, info)``; with ``members``, ``(image, info, each)``: ``each`` is float32
        ``(K, X, Y, Z)`` on the input's scale, or ``None`` where :func:`no_members` says why;
        ``info["uncertainty"]`` then describes the map (method, ``members`` = K) or is ``None``
        with ``info["uncertainty_reason"]``.

    Raises:
        RestorationRefused: See the class; the reason names every failed check.
        ValueError: A count-aware network without ``minutes``.
    """
    import fastdat.inference.safety as safety
    from fastdat.methods import restores_volumes

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(volume, np.ndarray):
        volume = np.ascontiguousarray(volume)  # reoriented views have negative strides
    vol = torch.as_tensor(volume).detach().float().cpu()
    if vol.ndim != 3:
        raise ValueError(f"expected a volume (X, Y, Z), got shape {tuple(vol.shape)}")
    if not torch.isfinite(vol).all():
        raise ValueError("volume contains NaN or infinite values")
    training_mm = getattr(net, "training_voxel_mm", None)
    if resample and training_mm and voxel_mm is not None:
        return _on_training_grid(
            vol.numpy(),
            net,
            device,
            mode,
            voxel_mm,
            float(training_mm),
            dict(
                batch=batch,
                input_range=input_range,
                guard=guard,
                refuse_ood=refuse_ood,
                minutes=minutes,
                members=members,
            ),
        )
    volume_net = restores_volumes(net)
    if volume_net and getattr(net, "conditioned", False) and minutes is None:
        raise ValueError(
            f"{net.name} is count-aware and the scan time is unknown: give it (--minutes), "
            "or a DICOM input that records it (Actual Frame Duration x Number of Frames in "
            "Rotation)"
        )
    info: dict = {"mode": "volume" if volume_net else mode, "crop_corner": None, "warnings": []}
    info["minutes"] = minutes
    in_plane = None if voxel_mm is None else float(np.ravel(voxel_mm)[0])
    if input_range is None:
        input_range = getattr(net, "input_range", None)
    features = safety.input_features(vol.numpy(), in_plane) | {"minutes": minutes}
    in_checks = safety.check_input(features, input_range)
    info["input_checks"] = [c.__dict__ for c in in_checks]
    unlike = [c.message() for c in in_checks if not c.ok]
    if unlike:
        text = "input unlike the model's training data: " + "; ".join(unlike)
        if refuse_ood:
            raise RestorationRefused(f"refused: {text}")
        info["warnings"].append(text)
        log.warning(text)
    if info["mode"] == "anchored":
        if voxel_mm is None:
            raise ValueError("mode 'anchored' needs voxel_mm (the striata are located in mm)")
        voxels = np.broadcast_to(np.asarray(voxel_mm, dtype=np.float64), (3,))
        try:
            if not np.allclose(voxels, voxels[0], rtol=1e-3):
                raise ValueError(f"voxels are not isotropic ({voxels.tolist()} mm)")
            info["crop_corner"] = locate_crop(vol.numpy(), float(voxels[0]))
        except ValueError as err:  # anisotropic, no striatum-like pattern, volume too small
            info["warnings"].append(f"striata not located ({err}); whole slices used instead")
            log.warning(info["warnings"][-1])
            info["mode"] = "slice"
    x = vol.permute(2, 0, 1)[:, None].to(device)  # (Z, 1, X, Y): one image per slice
    why_not = no_members(net) if members else "not asked for"
    each = None  # (K, Z, 1, X, Y): the members, as the image
    if volume_net:
        box = head_box(vol.numpy())
        info["restored_box"] = None if box is None else [[b.start, b.stop] for b in box]
        y, ys = predict_in_box(net, vol.numpy(), box, minutes, device, batch, why_not is None)
        if ys is not None:
            each = torch.from_numpy(ys).permute(0, 3, 1, 2)[:, :, None].to(device)
        out = torch.from_numpy(y).float().permute(2, 0, 1)[:, None].to(device)
    elif info["mode"] == "anchored":
        out = _anchored(net, x, batch, info["crop_corner"])
    else:
        out = (_slices if info["mode"] == "slice" else _tiles)(net, x, batch)
    if guard:
        out = limit_spectrum(x, out, in_plane)
        if each is not None:
            each = torch.stack([limit_spectrum(x, e, in_plane) for e in each])
    out = out[:, 0].clamp_min(0).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    if each is not None:
        each = each[:, :, 0].clamp_min(0).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
    if guard:
        checks = safety.check_output(safety.output_features(vol.numpy(), out))
        info["output_checks"] = [c.__dict__ for c in checks]
        failed = [c.message() for c in checks if not c.ok]
        if failed:
            raise RestorationRefused(
                "restoration refused, it would add structure the input does not support: "
                + "; ".join(failed)
                + (f" (and {'; '.join(unlike)})" if unlike else "")
            )
    if not members:
        return out, info
    if each is None:
        info["uncertainty"], info["uncertainty_reason"] = None, why_not
    else:
        k = int(each.shape[0])
        info["uncertainty"] = {
            "method": f"deep ensemble, {k} members, per-voxel SD of members (ddof=1), same "
            "units as the image",
            "members": k,
            "note": "each member's restoration passes the image's spectral limit and clamp at "
            "zero before the SD"
            if guard
            else "each member's restoration is clamped at zero before the SD (no guard)",
        }
    return out, info, each


def _on_training_grid(volume, net, device, mode, voxel_mm, training_mm, kwargs):
    """:func:`denoise_volume` on the training voxel grid and back (module docstring)."""
    import fastdat.inference.resample as rs

    try:
        needed = rs.plan(voxel_mm, training_mm)
    except ValueError as err:  # outside the stated range: as it is, said (or refused)
        if kwargs["refuse_ood"]:
            raise RestorationRefused(f"refused: {err}") from None
        got = denoise_volume(volume, net, device, mode, voxel_mm, resample=False, **kwargs)
        got[1]["warnings"].insert(0, f"not resampled: {err}")
        log.warning(got[1]["warnings"][0])
        return got
    if not needed:
        return denoise_volume(volume, net, device, mode, voxel_mm, resample=False, **kwargs)
    grid = rs.to_grid(volume, voxel_mm, training_mm)
    got = denoise_volume(grid, net, device, mode, training_mm, resample=False, **kwargs)
    back = lambda y: rs.from_grid(y, volume.shape, voxel_mm, training_mm)  # noqa: E731
    out, info = back(got[0]), got[1]
    info["resampled"] = {
        "input_voxel_mm": [float(v) for v in np.broadcast_to(voxel_mm, (3,))],
        "training_voxel_mm": training_mm,
        "grid_shape": list(grid.shape),
        "interpolation": f"cubic B-spline (order {rs.ORDER}), clamped at zero, values kept",
        "note": "input checks, restoration, spectral limit and output checks ran on the grid",
    }
    if len(got) == 2:
        return out, info
    each = None if got[2] is None else np.stack([back(e) for e in got[2]])
    return out, info, each


def denoise(
    volume: np.ndarray | torch.Tensor,
    model: ImageToImage | str | Path = "default",
    device: torch.device | str = "cpu",
    *,
    voxel_mm: float | None = None,
    mode: str = "anchored",
    refuse_ood: bool = False,
    guard: bool = True,
    minutes: float | None = None,
) -> np.ndarray:
    """Denoise a reconstructed volume, every slice.

    Args:
        volume: ``(X, Y, Z)`` transaxial slices along z with RAS-like in-plane axes (x right,
            y anterior), isotropic voxels, any non-negative scale (counts, counts / s).
        model: A FastDaT 2D network, a checkpoint path, or ``"default"`` (trained on simulated
            data, research use only).
        device: ``"cpu"``, ``"cuda"``... (no ``"auto"`` here: resolve it at the edge).
        voxel_mm: Voxel size (mm), checked against the model's training voxel. ``"anchored"``
            locates the striata in mm: without it, the training voxel is assumed (a warning),
            or whole slices are used if the model does not record one.
        mode: ``"anchored"`` (default: whole slices plus the striatal crop, see the module
            docstring), ``"slice"`` (whole slices only) or ``"tiles"`` (64 x 64 tiles, blended).
        refuse_ood: Refuse an input unlike the model's training data (voxel size, noise level,
            contrast: :mod:`fastdat.inference.safety`) instead of warning.
        guard: The spectral limit and the output checks (default). ``False`` returns the
            network's raw restoration: for measuring the network, never for a clinical output.
        minutes: The scan time (needed by a count-aware model; see :func:`denoise_volume`).

    Returns:
        float32 ``(X, Y, Z)`` on the input's scale, non-negative.

    Raises:
        RestorationRefused: The restoration failed an output check (it would add structure),
            or, with ``refuse_ood``, the input failed an input check.
    """
    from fastdat.methods import restores_volumes

    net, meta = load_denoiser(model, device)
    if voxel_mm is None and mode == "anchored" and not restores_volumes(net):
        voxel_mm = meta.get("training_voxel_mm")
        mode = "anchored" if voxel_mm else "slice"
        log.warning(
            "voxel_mm not given: %s",
            f"assuming the training voxel, {voxel_mm} mm" if voxel_mm else "whole slices used",
        )
    out, _ = denoise_volume(
        volume, net, device, mode, voxel_mm, refuse_ood=refuse_ood, guard=guard, minutes=minutes
    )
    return out
