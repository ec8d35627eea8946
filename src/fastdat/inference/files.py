"""Denoise files and folders: DICOM series, NM multi-frame files, NIfTI volumes, folders of studies.

:func:`denoise_path` checks that its output can be written before any work, finds the studies
under its input, denoises each with :func:`fastdat.inference.denoise.denoise_volume` and writes
DICOM (a new series of the same study) or NIfTI beside a provenance JSON, never replacing a file
and never leaving a half-written one. A folder's run always ends with ``denoise_summary.csv``: every
file's fate (denoised, failed or skipped, with the reason); failures are recorded and the rest go
on. Series FastDaT itself wrote (already denoised) are skipped unless forced; of several
multi-frame objects of one series the usable, newest one is denoised and the others are reported.

Beside each output, written the same way (temporary name, rename, never replacing a file):
``<name>_uncertainty`` (NIfTI, or a DICOM series of its own) for a deep ensemble of volume
networks, the per-voxel SD of its members (:func:`fastdat.inference.denoise.uncertainty_map`);
and with ``sbr``, ``<name>_sbr.json``, the SBRs of the restored image with the members' spread and
the model's calibrated intervals (:func:`fastdat.quantification.intervals.sbr_with_intervals`). The
provenance JSON, written last, names them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastdat.inference.denoise import (
    denoise_volume,
    load_denoiser,
    no_members,
    uncertainty_map,
)
from fastdat.io.atomic import OutputError, make_folder, remove_empty, write_new
from fastdat.models.registry import ImageToImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenoiseResult:
    """What happened to one input: ``status`` is ``ok``, ``failed`` or ``skipped``; ``extras``:
    the files written beside ``output`` (uncertainty map, SBR JSON)."""

    source: str
    status: str
    output: str = ""
    reason: str = ""
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    extras: tuple[str, ...] = field(default_factory=tuple)


SUMMARY = "denoise_summary.csv"
_SECOND_MULTIFRAME = "second multi-frame object in series"  # fastdat.io.image.scan_folder's
_OUR_SUFFIX = "FastDaT denoised"  # write_derived_series' default Series Description suffix
_UNCERTAINTY_SUFFIX = " FastDaT uncertainty (ensemble SD)"


def describe(err: BaseException) -> str:
    """An error as one line that names the path: ``PATH: why`` for an OS error."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii") if _is_nifti(path) else path.stem


@dataclass(frozen=True)
class _Item:
    """One input to denoise: a NIfTI path or a DICOM series, and notes for its result."""

    name: str
    obj: object
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return str(self.obj if isinstance(self.obj, Path) else self.obj.files[0])


def _ours(ds) -> str | None:
    """Why a DICOM header is a series FastDaT wrote (already denoised), or None."""
    derivation = str(ds.get("DerivationDescription", "") or "")
    description = str(ds.get("SeriesDescription", "") or "")
    maker = str(ds.get("Manufacturer", "") or "")
    image_type = [str(v).upper() for v in (ds.get("ImageType", None) or [])]
    derived = bool(image_type) and image_type[0] == "DERIVED"
    if "FastDaT" in derivation:
        what = f"Derivation Description {derivation[:100]!r}"
    elif derived and (maker == "FastDaT" or description.endswith(_OUR_SUFFIX)):
        what = f"DERIVED, Manufacturer {maker!r}, Series Description {description!r}"
    else:
        return None
    return f"a series FastDaT already denoised ({what}); not denoised again (--force to do it)"


def _ours_nifti(path: Path) -> str | None:
    """Why a NIfTI file is one FastDaT wrote (header description or provenance JSON), or None."""
    import nibabel as nib

    try:
        descrip = nib.load(path).header.get("descrip", b"")
        descrip = bytes(descrip.item() if hasattr(descrip, "item") else descrip)
    except Exception:  # noqa: BLE001 - an unreadable file fails later with its own reason
        descrip = b""
    sidecar = path.with_name(_stem(path) + ".json")
    stage = None
    if sidecar.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stage = json.loads(sidecar.read_text()).get("stage")
    if descrip.startswith(b"FastDaT") or stage == "denoise":
        why = f"header {descrip.decode(errors='replace')!r}" if descrip else f"provenance {sidecar}"
        return f"a volume FastDaT already denoised ({why}); not denoised again (--force to do it)"
    return None


def _newest(ds) -> tuple[str, int]:
    """Sort key of an object's version: Content (else Instance Creation) Date and Time, then
    Instance Number."""
    when = "".join(str(ds.get(k, "") or "") for k in ("ContentDate", "ContentTime"))
    if not when:
        when = "".join(
            str(ds.get(k, "") or "") for k in ("InstanceCreationDate", "InstanceCreationTime")
        )
    try:
        number = int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    return when, number


def _choose(series, copies: list[tuple[Path, object]]) -> tuple[object, list, tuple[str, ...]]:
    """The multi-frame object of ``series`` to denoise among ``copies`` (path, header).

    Every copy is read (geometry and pixels); of the usable ones the newest (Content Date / Time,
    then Instance Number) is chosen, ties going to the first by file name. Returns the series on
    the chosen file, results for the others (``skipped`` with the reason) and notes for the
    chosen one's result. When no copy is usable the first fails in the run with its own reason
    and the others are reported ``failed`` with theirs.
    """
    from fastdat.io.dicom import DicomInputError, series_volume

    copies = sorted(copies, key=lambda c: str(c[0]))
    usable, bad = [], []
    for path, ds in copies:
        one = dataclasses.replace(series, files=[path], headers=[ds])
        try:
            usable.append((path, ds, one, *series_volume(one)))
        except DicomInputError as err:
            bad.append((path, err.reason))
    uid = series.series_uid
    if not usable:
        first = dataclasses.replace(series, files=[copies[0][0]], headers=[copies[0][1]])
        others = [
            DenoiseResult(
                str(p), "failed", reason=f"{r} (no multi-frame object of series {uid} is usable)"
            )
            for p, r in bad[1:]
        ]
        return first, others, ()
    best = max(usable, key=lambda u: _newest(u[1]))  # max keeps the first of equals
    path, _, chosen, vol, aff = best
    left = [
        DenoiseResult(
            str(p), "skipped", reason=f"unusable copy ({r}); series {uid} was denoised from {path}"
        )
        for p, r in bad
    ]
    for p, _ds, _, v, a in usable:
        if p == path:
            continue
        if v.shape == vol.shape and np.array_equal(v, vol) and np.allclose(a, aff, atol=1e-6):
            why = f"identical copy of {path}, which was denoised"
        else:
            why = (
                f"another version of series {uid}; {path} was denoised (newest by Content Date / "
                "Time and Instance Number, then first by file name)"
            )
        left.append(DenoiseResult(str(p), "skipped", reason=why))
    note = f"{len(left)} other multi-frame object(s) of this series left out (see {SUMMARY})"
    return chosen, left, (note,) if left else ()


def _inputs(src: Path, force: bool = False) -> tuple[list[_Item], list[DenoiseResult]]:
    """The inputs under ``src`` and the files left out, with reasons."""
    from fastdat.io.dicom import DicomInputError, Series, frame_count, read_header
    from fastdat.io.image import scan_folder

    if _is_nifti(src):
        reason = None if force else _ours_nifti(src)
        if reason:
            raise ValueError(f"{src}: {reason}")
        return [_Item(_stem(src), src)], []
    if src.is_file():
        ds = read_header(src)
        reason = None if force else _ours(ds)
        if reason:
            raise DicomInputError(src, reason)
        series = Series(
            str(getattr(ds, "PatientID", "")),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(getattr(ds, "SeriesDescription", "")),
            [src],
            [ds],
            multiframe=frame_count(ds) > 1,
        )
        return [_Item(src.stem, series)], []
    found, skipped = scan_folder(src)
    left: list[DenoiseResult] = []
    by_uid = {s.series_uid: s for s in found}
    copies: dict[str, list[tuple[Path, object]]] = {}
    for r in skipped:
        path = Path(r["file"])
        if _is_nifti(path):
            continue
        if r["reason"] != _SECOND_MULTIFRAME:
            left.append(DenoiseResult(r["file"], "skipped", reason=r["reason"]))
            continue
        try:
            ds = read_header(path)  # read once already: a usable header, unless it changed
        except DicomInputError as err:
            left.append(DenoiseResult(r["file"], "skipped", reason=err.reason))
            continue
        s = by_uid.get(str(ds.SeriesInstanceUID))
        if s is None:
            left.append(DenoiseResult(r["file"], "skipped", reason=r["reason"]))
            continue
        if not s.multiframe:
            why = f"a multi-frame object in series {s.series_uid}, whose other files are slices"
        elif frame_count(ds) < 2:
            why = (
                f"a single-slice object in series {s.series_uid}, held as multi-frame {s.files[0]}"
            )
        else:
            copies.setdefault(s.series_uid, [(s.files[0], s.headers[0])]).append((path, ds))
            continue
        left.append(DenoiseResult(r["file"], "skipped", reason=why + "; left out"))
    items: list[_Item] = []
    for s in found:
        notes: tuple[str, ...] = ()
        if s.series_uid in copies:
            s, more, notes = _choose(s, copies[s.series_uid])
            left += more
        reason = None if force else _ours(s.headers[0])
        if reason:
            n = len(s.files) - 1
            left.append(
                DenoiseResult(
                    str(s.files[0]),
                    "skipped",
                    reason=reason + (f" ({n} more files of the series)" if n else ""),
                )
            )
            continue
        # named after the file (multi-frame) or the folder (stack)
        rel = s.files[0].relative_to(src)
        rel = rel.with_suffix("") if s.multiframe else rel.parent
        items.append(_Item(str(rel) if str(rel) != "." else src.name, s, notes))
    for p in sorted(p for p in src.rglob("*") if p.is_file() and _is_nifti(p)):
        reason = None if force else _ours_nifti(p)
        if reason:
            left.append(DenoiseResult(str(p), "skipped", reason=reason))
        else:
            items.append(_Item(str(p.parent.relative_to(src) / _stem(p)), p))
    names: dict[str, int] = {}
    unique = []
    for item in items:  # two series named alike in one folder: number them
        names[item.name] = names.get(item.name, 0) + 1
        n = names[item.name]
        unique.append(item if n == 1 else dataclasses.replace(item, name=f"{item.name}_{n}"))
    return unique, left


def _check_paths(src: Path, out: Path) -> None:
    """Input exists; ``out`` is not the input, not inside it, and not an existing file."""
    if not src.exists():
        raise FileNotFoundError(f"{src}: input not found")
    s, o = src.resolve(), out.resolve()
    if s == o:
        raise ValueError(f"{out}: the output path is the input; choose another")
    if src.is_dir() and o.is_relative_to(s):
        raise ValueError(f"{out}: the output lies inside the input folder {src}; choose another")
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        if _is_nifti(out):
            raise FileExistsError(f"{out}: already exists; not overwritten")
        raise FileExistsError(
            f"{out}: --out names an existing file; give a folder (new or existing), or a new "
            ".nii.gz path for one NIfTI input"
        )
    if _is_nifti(out) and src.is_file() and not _is_nifti(src):
        raise ValueError(f"{out}: a NIfTI output path is for one NIfTI input; give a folder")


@dataclass(frozen=True)
class _Job:
    """What every input of one :func:`denoise_path` call shares."""

    net: ImageToImage
    meta: dict
    device: str
    mode: str
    label: str
    provenance: dict
    refuse_ood: bool = False
    minutes: float | None = None
    sbr: bool = False
    intervals: object = None  # SBRIntervals of the sidecar, or None


def _scan_minutes(obj: object, given: float | None) -> tuple[float | None, str | None]:
    """The scan time of an input and where it came from: ``given`` (``--minutes``), else the
    DICOM header's (Actual Frame Duration x Number of Frames in Rotation, Acquisition Duration),
    else unknown (a NIfTI file records none)."""
    from fastdat.io.dicom import acquisition_duration_s

    if given is not None:
        return float(given), "--minutes"
    if isinstance(obj, Path):
        return None, None
    seconds = acquisition_duration_s(obj.headers[0])
    return (seconds / 60.0, "DICOM header") if seconds else (None, None)


def _fitting(series, suffix: str):
    """``series`` with its first header's Series Description cut so that ``suffix`` fits in the
    derived series' 64 characters (a copy; ``series`` itself is not changed)."""
    import copy

    head = series.headers[0]
    description = str(getattr(head, "SeriesDescription", "") or "")
    if len(description + suffix) <= 64:
        return series
    head = copy.deepcopy(head)
    head.SeriesDescription = description[: 64 - len(suffix)].rstrip()
    return dataclasses.replace(series, headers=[head, *series.headers[1:]])


def _write_dicom(volume, image, series, path: Path, derivation: str, suffix: str) -> None:
    """``volume`` as a new series of ``series``' study on its grid (:func:`write_derived_series`),
    through a temporary name; the Series Description ends with ``suffix``."""
    import fastdat
    from fastdat.io.dicom import quiet_pydicom
    from fastdat.io.dicom_write import write_derived_series

    def write(p: Path) -> None:
        with quiet_pydicom(p):
            write_derived_series(
                volume,
                image.affine,
                _fitting(series, suffix),
                p,
                derivation=derivation,
                description_suffix=suffix,
                software_version=fastdat.__version__,
            )

    write_new(path, write)


def _sbr(result, each, image, name: str, job: _Job) -> dict:
    """The SBR document of one output (:func:`sbr_with_intervals`), or why it failed."""
    try:
        vox = image.isotropic_mm(rtol=1e-2, why="for the VOI template")
        # imported here: scipy.stats costs ~1 s of a denoise without --sbr (cold start)
        from fastdat.quantification.intervals import sbr_with_intervals

        return {"status": "ok"} | sbr_with_intervals(result, vox, each, job.intervals)
    except ValueError as err:  # NoStriatumError, voxels not cubic
        why = f"SBRs not measured on the restored image: {err}"
        log.warning("%s: %s", name, why)
        return {"status": "failed", "reason": why, "warnings": [why]}


def _one(item: _Item, out: Path, single: bool, job: _Job) -> tuple[Path, tuple, tuple]:
    """Denoise one series or NIfTI file; returns its output path, warnings and extra files.

    The input is read in RAS+ axes (:mod:`fastdat.io.image`); a NIfTI output is written back in
    the input's own storage order and affine, a DICOM one on the source series' grid. The
    uncertainty map (ensembles) and the SBR JSON (``job.sbr``) are written after the image, the
    provenance last; if any of them fails, none is left behind.
    """
    import nibabel as nib
    import pydicom

    import fastdat
    from fastdat.io.image import read_image, read_series

    name, obj = item.name, item.obj
    nifti = isinstance(obj, Path)
    ext = ".nii.gz" if nifti else ".dcm"
    target = out if nifti and single and _is_nifti(out) else out / f"{name}_denoised{ext}"
    stem = target.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".dcm")
    sidecar = target.with_name(stem + ".json")
    base = stem.removesuffix("_denoised")
    why_not = no_members(job.net)
    spread = None if why_not else target.with_name(f"{base}_uncertainty{ext}")
    sbr_path = target.with_name(f"{base}_sbr.json") if job.sbr else None
    for path in (target, sidecar, spread, sbr_path):
        if path is not None and path.exists():
            raise FileExistsError(f"{path}: already exists; not overwritten")
    image = read_image(obj) if nifti else read_series(obj)
    vol, voxel = image.data, np.asarray(image.voxel_mm)
    if not np.isclose(voxel[0], voxel[1], rtol=1e-3):
        raise ValueError(f"{name}: in-plane voxels are not square ({voxel[:2]} mm)")
    minutes, minutes_from = _scan_minutes(obj, job.minutes)
    got = denoise_volume(
        vol,
        job.net,
        job.device,
        job.mode,
        tuple(float(v) for v in voxel),
        refuse_ood=job.refuse_ood,
        minutes=minutes,
        members=spread is not None,
    )
    result, info, each = got if spread is not None else (*got, None)
    if spread is None:
        info["uncertainty"], info["uncertainty_reason"] = None, why_not
    info["minutes_from"] = minutes_from
    info["warnings"] = [*item.notes, *info["warnings"]]
    version = f"FastDaT {fastdat.__version__}"

    def nifti_writer(volume, what: str):
        img = nib.Nifti1Image(image.to_native(volume), image.native_affine)
        img.header["descrip"] = f"{version} {what}"[:79].encode()
        return lambda p: nib.save(img, p)

    if nifti:
        write_new(target, nifti_writer(result, "denoised"))
    else:
        desc = f"Denoised by {version} with {job.label}; {info['mode']} mode"
        _write_dicom(result, image, obj, target, desc, " " + _OUR_SUFFIX)
    written = [target]
    try:
        if spread is not None:
            sd = uncertainty_map(each)
            if nifti:
                write_new(spread, nifti_writer(sd, "uncertainty (ensemble SD)"))
            else:
                k = info["uncertainty"]["members"]
                desc = (
                    f"Uncertainty of the restoration by {version} with {job.label} (series "
                    f"{target.name}): per-voxel SD of its {k} ensemble members, image units"
                )
                _write_dicom(sd, image, obj, spread, desc, _UNCERTAINTY_SUFFIX)
                ds = pydicom.dcmread(spread, stop_before_pixels=True)
                info["uncertainty"]["series"] = {
                    "uid": str(ds.SeriesInstanceUID),
                    "description": str(ds.SeriesDescription),
                }
            written.append(spread)
            info["uncertainty"]["file"] = str(spread.resolve())
        info["sbr"] = None
        if sbr_path is not None:
            sbr = _sbr(result, each, image, name, job)
            sbr = {"image": str(target.resolve()), "model_label": job.label} | sbr
            write_new(sbr_path, lambda p: p.write_text(json.dumps(sbr, indent=1)))
            written.append(sbr_path)
            info["warnings"] += [f"SBR: {w}" for w in sbr["warnings"]]
            info["sbr"] = {
                "file": str(sbr_path.resolve()),
                "status": sbr["status"],
                "calibrated": sbr.get("level") is not None,
            }
        files = [obj] if nifti else obj.files
        doc = {
            **job.provenance,
            "inputs": [str(Path(p).resolve()) for p in files],
            "output": str(target.resolve()),
            "voxel_mm": [float(v) for v in voxel],
            **info,
        }
        write_new(sidecar, lambda p: p.write_text(json.dumps(doc, indent=1)))
    except BaseException:  # an output without its uncertainty or provenance is not left behind
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return target, tuple(info["warnings"]), tuple(str(p) for p in written[1:])


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
    force: bool = False,
    refuse_ood: bool = False,
    minutes: float | None = None,
    sbr: bool = False,
) -> list[DenoiseResult]:
    """Denoise a DICOM series folder, an NM multi-frame file, a NIfTI file or a folder of studies.

    DICOM in, DICOM out (a new series in the same study, :func:`write_derived_series`); NIfTI in,
    NIfTI out with the input's affine. ``out`` is a folder (``<name>_denoised.dcm`` /
    ``.nii.gz`` and a provenance ``<name>_denoised.json`` beside each), or a ``.nii(.gz)`` path
    for one NIfTI input. Before any work ``out`` is checked and created (not an existing file, not
    the input nor inside an input folder, writable). Outputs are written under a temporary name
    and renamed; an existing one is never replaced, and a failed write leaves nothing behind.
    Inputs are only read.

    A folder input always gets ``out/denoise_summary.csv`` (``denoise_summary_2.csv``... when
    one exists): every file under it, denoised, failed or skipped, with its output or reason.
    Series FastDaT wrote itself are skipped (already denoised) unless ``force``. Of several
    multi-frame objects of one series, the newest usable one is denoised and the rest reported.

    Every input goes through the safety checks (:mod:`fastdat.inference.safety`): an input unlike
    the model's training data is flagged in the provenance and the summary (refused with
    ``refuse_ood``), and a restoration that would add structure is refused, nothing written.

    The scan time of each input is ``minutes`` when given, else its DICOM header's (Actual
    Frame Duration x Number of Frames in Rotation); a count-aware model needs one (a NIfTI
    input records none), and it is checked against the scan times the model was trained on.

    A deep ensemble of volume networks also writes ``<name>_uncertainty.nii.gz`` (same affine
    and header as the output) or, for DICOM, ``<name>_uncertainty.dcm``, a new series whose
    Series Description ends in "uncertainty (ensemble SD)": the per-voxel SD of its members in
    the image's units (:func:`fastdat.inference.denoise.uncertainty_map`). A single network
    writes none (provenance ``"uncertainty": null`` and ``uncertainty_reason``).

    With ``sbr``, ``<name>_sbr.json`` holds the SBRs of the restored image (VOIs placed on it)
    with, for an ensemble, the SD ``sigma`` of its members' SBRs in the same VOIs and, if the
    model's sidecar holds ``sbr_intervals``, the calibrated interval on each
    (:func:`fastdat.quantification.intervals.sbr_with_intervals`); otherwise ``lower`` /
    ``upper`` are ``null`` and a warning says why. Striata not found: a warning, the image is
    still written.

    Raises:
        DicomInputError, ValueError: The one input (a file, or a folder holding one series or
            volume) cannot be denoised (a folder's summary is written first); nothing usable found.
        FileExistsError: An output exists (one input), or ``out`` is an existing file.
        OutputError: An output cannot be created or written (a full disk, no permission, a file
            where a folder must be); the run stops there.
    """
    src, out = Path(input), Path(out)
    _check_paths(src, out)
    folder = out.parent if _is_nifti(out) else out
    created = make_folder(folder)
    try:
        return _run(
            src, out, folder, model, device, mode, progress, force, refuse_ood, minutes, sbr
        )
    except BaseException:
        remove_empty(created)  # nothing written: leave no empty output folder either
        raise


def _intervals(meta: dict):
    """The sidecar's calibrated SBR intervals, or ``None`` if it has none."""
    from fastdat.quantification.intervals import SBRIntervals

    doc = meta.get("sbr_intervals")
    if not doc:
        return None
    try:
        return SBRIntervals.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        where = meta.get("path", "the model")
        raise ValueError(f"{where}: malformed 'sbr_intervals' in its sidecar ({err!r})") from err


def _run(
    src, out, folder, model, device, mode, progress, force, refuse_ood, minutes=None, sbr=False
) -> list[DenoiseResult]:
    from tqdm.auto import tqdm

    from fastdat.config import provenance

    items, left = _inputs(src, force)
    from_folder = src.is_dir()
    if not items:
        if from_folder:
            _summary(folder, left)
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in left[:5])
        raise ValueError(f"{src}: no reconstructed NM series or NIfTI volume found ({reasons})")
    if _is_nifti(out) and not (len(items) == 1 and isinstance(items[0].obj, Path)):
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
    intervals = _intervals(meta) if sbr else None
    job = _Job(net, meta, str(device), mode, label, doc, refuse_ood, minutes, sbr, intervals)
    single = len(items) == 1
    results: list[DenoiseResult] = []
    error: BaseException | None = None
    bar = tqdm(items, desc="denoise", unit="study", disable=not progress or single)
    for n, item in enumerate(bar):
        t0 = time.perf_counter()
        try:
            target, warns, extras = _one(item, out, single, job)
        except OutputError as err:  # the next outputs would meet the same folder or disk
            results.append(DenoiseResult(item.source, "failed", reason=describe(err)))
            results += [
                DenoiseResult(i.source, "skipped", reason=f"not attempted: {describe(err)}")
                for i in items[n + 1 :]
            ]
            if from_folder:
                with contextlib.suppress(OSError):
                    _summary(folder, results + left)
            raise
        except (ValueError, OSError, RuntimeError) as err:  # DicomInputError is a ValueError
            if single and not from_folder:
                raise
            if not single:
                log.error("%s: %s", item.source, describe(err))
            results.append(DenoiseResult(item.source, "failed", reason=describe(err)))
            error = err
            continue
        seconds = time.perf_counter() - t0
        results.append(DenoiseResult(item.source, "ok", str(target), "", seconds, warns, extras))
    results += left
    if from_folder:
        _summary(folder, results)
        if single and error is not None:
            raise error
    return results


def _summary(folder: Path, results: list[DenoiseResult]) -> Path:
    """Write the run's summary CSV in ``folder`` under a name not taken yet; returns its path."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "status", "output", "reason", "seconds", "warnings"])
    for r in results:
        w.writerow(
            [r.source, r.status, r.output, r.reason, f"{r.seconds:.2f}", "; ".join(r.warnings)]
        )
    path, n = folder / SUMMARY, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = folder / f"{Path(SUMMARY).stem}_{n}.csv"
    write_new(path, lambda p: p.write_text(buf.getvalue()))
    log.info("%s: what became of every input", path)
    return path
