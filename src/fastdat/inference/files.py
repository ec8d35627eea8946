"""Denoise files and folders: DICOM series, NM multi-frame files, NIfTI volumes, folders of studies.

:func:`denoise_path` finds the studies under its input, denoises each with
:func:`fastdat.inference.denoise.denoise_volume` and writes DICOM (a new series of the same study)
or NIfTI beside a provenance JSON, never replacing a file; a folder's failures are recorded in
``denoise_summary.csv`` and the rest go on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastdat.inference.denoise import check_voxel, denoise_volume, load_denoiser
from fastdat.models.registry import ImageToImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenoiseResult:
    """What happened to one input: ``status`` is ``ok``, ``failed`` or ``skipped``."""

    source: str
    status: str
    output: str = ""
    reason: str = ""
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii") if _is_nifti(path) else path.stem


def _inputs(src: Path) -> tuple[list[tuple[str, object]], list[DenoiseResult]]:
    """``[(name, NIfTI path or Series)]`` under ``src`` and the files left out, with reasons."""
    from fastdat.data.dicom import scan_folder
    from fastdat.io.dicom import Series, read_header

    if _is_nifti(src):
        return [(_stem(src), src)], []
    if src.is_file():
        ds = read_header(src)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        series = Series(
            str(getattr(ds, "PatientID", "")),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(getattr(ds, "SeriesDescription", "")),
            [src],
            [ds],
            multiframe=frames > 1,
        )
        return [(src.stem, series)], []
    series, skipped = scan_folder(src)
    niftis = sorted(p for p in src.rglob("*") if p.is_file() and _is_nifti(p))
    items: list[tuple[str, object]] = []
    for s in series:  # named after the file (multi-frame) or the folder (stack)
        rel = s.files[0].relative_to(src)
        rel = rel.with_suffix("") if s.multiframe else rel.parent
        items.append((str(rel) if str(rel) != "." else src.name, s))
    items += [(str(p.parent.relative_to(src) / _stem(p)), p) for p in niftis]
    left = [
        DenoiseResult(r["file"], "skipped", reason=r["reason"])
        for r in skipped
        if not _is_nifti(Path(r["file"]))
    ]
    names: dict[str, int] = {}
    unique = []
    for name, item in items:  # two series named alike in one folder: number them
        names[name] = names.get(name, 0) + 1
        unique.append((name if names[name] == 1 else f"{name}_{names[name]}", item))
    return unique, left


def _check_paths(src: Path, out: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"{src}: input not found")
    s, o = src.resolve(), out.resolve()
    if s == o:
        raise ValueError(f"{out}: the output path is the input; choose another")
    if src.is_dir() and o.is_relative_to(s):
        raise ValueError(f"{out}: the output lies inside the input folder {src}; choose another")


def _commit(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` atomically, never replacing an existing ``final``."""
    try:
        os.link(tmp, final)  # fails if final exists: no silent overwrite, even in a race
    except FileExistsError:
        raise FileExistsError(f"{final}: already exists; not overwritten") from None
    except OSError:  # no hard links on this file system
        if final.exists():
            raise FileExistsError(f"{final}: already exists; not overwritten") from None
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _write(final: Path, writer) -> None:
    if final.exists():
        raise FileExistsError(f"{final}: already exists; not overwritten")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # same suffix: same format
    try:
        writer(tmp)
        _commit(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Job:
    """What every input of one :func:`denoise_path` call shares."""

    net: ImageToImage
    meta: dict
    device: str
    mode: str
    label: str
    provenance: dict


def _one(name: str, item, out: Path, single: bool, job: _Job) -> tuple[Path, tuple[str, ...]]:
    """Denoise one series or NIfTI file; returns its output path and warnings."""
    import nibabel as nib

    import fastdat
    from fastdat.io.dicom import series_volume
    from fastdat.io.dicom_write import write_derived_series

    nifti = isinstance(item, Path)
    if nifti and single and _is_nifti(out):
        target = out
    else:
        target = out / f"{name}_denoised{'.nii.gz' if nifti else '.dcm'}"
    stem = target.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".dcm")
    sidecar = target.with_name(stem + ".json")
    for path in (target, sidecar):
        if path.exists():
            raise FileExistsError(f"{path}: already exists; not overwritten")
    if nifti:
        from fastdat.io.nifti import read_volume

        data, aff = read_volume(item)
        ornt = nib.orientations.io_orientation(aff)
        vol = nib.orientations.apply_orientation(data, ornt)  # closest RAS
        voxel = np.linalg.norm(aff[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    else:
        vol, aff = series_volume(item)
        voxel = np.linalg.norm(aff[:3, :3], axis=0)
    if not np.isclose(voxel[0], voxel[1], rtol=1e-3):
        raise ValueError(f"{name}: in-plane voxels are not square ({voxel[:2]} mm)")
    warning = check_voxel(float(voxel[0]), job.meta)
    result, info = denoise_volume(
        vol, job.net, job.device, job.mode, tuple(float(v) for v in voxel)
    )
    info["warnings"] = ([warning] if warning else []) + info["warnings"]
    if nifti:
        back = nib.orientations.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]]), ornt)
        img = nib.Nifti1Image(nib.orientations.apply_orientation(result, back), aff)
        _write(target, lambda p: nib.save(img, p))
    else:
        desc = f"Denoised by FastDaT {fastdat.__version__} with {job.label}; {info['mode']} mode"
        _write(
            target,
            lambda p: write_derived_series(
                result, aff, item, p, derivation=desc, software_version=fastdat.__version__
            ),
        )
    files = [item] if nifti else item.files
    doc = {
        **job.provenance,
        "inputs": [str(Path(p).resolve()) for p in files],
        "output": str(target.resolve()),
        "voxel_mm": [float(v) for v in voxel],
        **info,
    }
    _write(sidecar, lambda p: p.write_text(json.dumps(doc, indent=1)))
    return target, tuple(info["warnings"])


def _model_label(meta: dict, net: ImageToImage) -> str:
    if not meta:
        return f"an in-memory {net.name} network"
    sha = str(meta.get("weights_sha256", ""))[:12]
    where = "the packaged default model" if meta.get("default_model") else Path(meta["path"]).name
    return f"{meta['model']['name']} ({where}, weights sha256 {sha})"


def denoise_path(
    input: str | Path,
    model: ImageToImage | str | Path = "default",
    out: str | Path = "denoised",
    device: torch.device | str = "cpu",
    *,
    mode: str = "anchored",
    progress: bool = True,
) -> list[DenoiseResult]:
    """Denoise a DICOM series folder, an NM multi-frame file, a NIfTI file or a folder of studies.

    DICOM in, DICOM out (a new series in the same study, :func:`write_derived_series`); NIfTI in,
    NIfTI out with the input's affine. ``out`` is a folder (``<name>_denoised.dcm`` /
    ``.nii.gz`` and a provenance ``<name>_denoised.json`` beside each), or a ``.nii(.gz)`` path
    for one NIfTI input. Outputs are written under a temporary name and renamed; an existing one
    is never replaced; ``out`` may not be the input or lie inside an input folder. Inputs are only
    read.

    One input: errors are raised (:class:`fastdat.io.dicom.DicomInputError`, ``ValueError``,
    ``FileExistsError``). Several (a folder of studies): each failure is recorded and the rest go
    on; ``out/denoise_summary.csv`` lists every input, its output or reason.
    """
    from tqdm.auto import tqdm

    from fastdat.config import provenance

    src, out = Path(input), Path(out)
    _check_paths(src, out)
    items, left = _inputs(src)
    if not items:
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in left[:5])
        raise ValueError(f"{src}: no reconstructed NM series or NIfTI volume found ({reasons})")
    if _is_nifti(out) and not (len(items) == 1 and isinstance(items[0][1], Path)):
        raise ValueError(f"{out}: a NIfTI output path is for one NIfTI input; give a folder")
    net, meta = load_denoiser(model, device)
    meta["default_model"] = str(model) == "default"
    label = _model_label(meta, net)
    keys = ("path", "model", "weights_sha256", "training_voxel_mm", "trained_on")
    doc = provenance(
        stage="denoise",
        model={k: meta.get(k) for k in keys},
        model_label=label,
        device=str(device),
        requested_mode=mode,
    )
    job = _Job(net, meta, str(device), mode, label, doc)
    single = len(items) == 1
    results = []
    for name, item in tqdm(items, desc="denoise", unit="study", disable=not progress or single):
        t0 = time.perf_counter()
        source = str(item if isinstance(item, Path) else item.files[0])
        try:
            target, warns = _one(name, item, out, single, job)
        except (ValueError, OSError, RuntimeError) as err:  # DicomInputError is a ValueError
            if single:
                raise
            log.error("%s: %s", source, err)
            results.append(DenoiseResult(source, "failed", reason=str(err)))
            continue
        seconds = time.perf_counter() - t0
        results.append(DenoiseResult(source, "ok", str(target), "", seconds, warns))
    results += left
    if not single:
        _summary(out / "denoise_summary.csv", results)
    return results


def _summary(path: Path, results: list[DenoiseResult]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "status", "output", "reason", "seconds", "warnings"])
    for r in results:
        w.writerow(
            [r.source, r.status, r.output, r.reason, f"{r.seconds:.2f}", "; ".join(r.warnings)]
        )
    _write(path, lambda p: p.write_text(buf.getvalue()))
