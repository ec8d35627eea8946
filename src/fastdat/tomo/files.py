"""``fastdat recon``: projection DICOM in, a reconstruction (NIfTI and / or DICOM) out.

:func:`recon_path` checks that the output folder can be written before any work, reads the
acquisition (:func:`fastdat.io.projection_dicom.read_projections`), the attenuation source (a mu
map, a CT series of the same frame of reference, or Chang's uniform map) and reconstructs
(:func:`fastdat.tomo.reconstruct.reconstruct`). The folder then holds::

    recon.nii.gz   float32 RAS volume, counts / s per voxel (when "nifti" is asked for)
    recon.dcm      a derived NM RECON TOMO series of the acquisition's study ("dicom")
    recon.json     settings, what was resolved (collimator, mu, grid), input files, provenance

Every file is written under a temporary name and appears only when complete; an existing file is
never replaced (:mod:`fastdat.io.atomic`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastdat.io.atomic import make_folder, remove_empty, write_new
from fastdat.io.projections import ProjectionSet
from fastdat.tomo.reconstruct import ReconSettings, Reconstruction, reconstruct, settings_dict

FORMATS = ("nifti", "dicom")
#: A mu map above this (1/cm) is not a 159 keV attenuation map (Hounsfield units? 1/mm?).
MU_MAX_PER_CM = 1.0


@dataclass(frozen=True)
class ReconResult:
    """What :func:`recon_path` wrote (``outputs``) and the reconstruction itself."""

    outputs: tuple[Path, ...]
    recon: Reconstruction


ATTENUATION_FILES = ("mu_map.nii.gz", "mu_map.nii")


def attenuation_source(folder: Path, choice: str) -> str:
    """``choice``, or for ``"auto"`` the acquisition folder's ``mu_map.nii[.gz]``, else its
    ``CT/`` folder, else ``"chang"``."""
    if choice != "auto":
        return choice
    for name in ATTENUATION_FILES:
        if (folder / name).is_file():
            return str(folder / name)
    if (folder / "CT").is_dir():
        return str(folder / "CT")
    return "chang"


def read_mu_map(source: str | Path, ps: ProjectionSet) -> tuple[np.ndarray, np.ndarray, str]:
    """The attenuation map named by ``source``, in the projections' patient frame.

    Args:
        source: A NIfTI mu map (1/cm at 159 keV) or a folder holding one CT series whose Frame of
            Reference is the acquisition's.
        ps: The acquisition (its header gives the Frame of Reference UID).

    Returns:
        ``(mu (X, Y, Z) 1/cm, voxel -> RAS mm affine, description)``.
    """
    from fastdat.tomo import attenuation as att

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: attenuation source not found")
    if path.is_file():
        from fastdat.io.nifti import read_volume

        mu, affine = read_volume(path, "mu map")
        if not np.isfinite(mu).all() or mu.min() < 0 or mu.max() > MU_MAX_PER_CM:
            raise ValueError(
                f"{path}: a mu map needs finite values in [0, {MU_MAX_PER_CM}] 1/cm at 159 keV, "
                f"got {mu.min():.3g}..{mu.max():.3g} (Hounsfield units? give the CT folder)"
            )
        return mu, affine, f"mu map {path}"
    hu, affine, ct = read_ct_series(path)
    ours = None if ps.header is None else getattr(ps.header, "FrameOfReferenceUID", None)
    theirs = getattr(ct, "FrameOfReferenceUID", None)
    if not ours or not theirs or ours != theirs:
        raise ValueError(
            f"{path}: the CT's Frame of Reference UID ({theirs or 'missing'}) is not the "
            f"acquisition's ({ours or 'missing'}); the CT cannot be placed on the SPECT without a "
            "registration, which FastDaT does not do"
        )
    kvp = float(getattr(ct, "KVP", 0) or 0)
    if kvp <= 0:
        raise ValueError(f"{path}: the CT series has no KVP; HU -> mu needs the tube voltage")
    return att.ct_to_mu(hu, kvp), affine, f"CT {path} ({kvp:g} kVp)"


def read_ct_series(folder: Path):
    """The one CT series in ``folder``: ``(HU (X, Y, Z), RAS affine, first header)``."""
    from fastdat.io.dicom import Series, raw_header, series_volume

    groups: dict[str, Series] = {}
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        try:
            ds, rest = raw_header(p)
        except Exception:  # noqa: BLE001 - not DICOM, unreadable: not a CT image of the series
            continue
        if rest != "pixels":
            continue
        if str(getattr(ds, "Modality", "")) != "CT":
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", ""))
        s = groups.setdefault(
            uid,
            Series(
                str(getattr(ds, "PatientID", "")),
                str(getattr(ds, "StudyInstanceUID", "")),
                uid,
                str(getattr(ds, "SeriesDescription", "")),
            ),
        )
        s.files.append(p)
        s.headers.append(ds)
    if not groups:
        raise ValueError(f"{folder}: no CT images found")
    if len(groups) > 1:
        raise ValueError(
            f"{folder}: {len(groups)} CT series ({', '.join(sorted(groups))}); give the folder "
            "of one"
        )
    series = next(iter(groups.values()))
    hu, affine = series_volume(series)
    return hu, affine, series.headers[0]


def recon_path(
    proj: str | Path,
    out: str | Path,
    settings: ReconSettings,
    attenuation: str = "chang",
    formats: tuple[str, ...] = FORMATS,
    device: str = "cpu",
) -> ReconResult:
    """Reconstruct the projection DICOM at ``proj`` into the folder ``out``.

    Args:
        proj: A projection file, or a folder of one acquisition's files (one per head / window).
        out: A new or empty folder.
        settings: Reconstruction settings; their ``attenuation`` is overridden by ``attenuation``.
        attenuation: ``none``, ``chang``, ``uniform``, a NIfTI mu map, a CT folder, or ``auto``
            (:func:`attenuation_source` of the projections' folder).
        formats: Any of :data:`FORMATS`.
        device: Where to compute.

    Raises:
        ValueError: Bad input, named. FileExistsError: ``out`` holds files.
        OutputError: ``out`` cannot be created or written.
    """
    from fastdat.config import provenance
    from fastdat.io.projection_dicom import read_projections

    proj, out = Path(proj), Path(out)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"--format must be some of {', '.join(FORMATS)}, got {formats}")
    if not proj.exists():
        raise FileNotFoundError(f"{proj}: projections not found")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder; not overwritten")
    created = make_folder(out)
    try:
        ps = read_projections(proj)
        attenuation = attenuation_source(proj if proj.is_dir() else proj.parent, attenuation)
        kind = attenuation if attenuation in ("none", "chang", "uniform") else "map"
        mu = None
        mu_desc = kind
        if kind == "map":
            vol, aff, mu_desc = read_mu_map(attenuation, ps)
            mu = (vol, aff)
        if "dicom" in formats and ps.header is None:
            raise ValueError(f"{proj}: no DICOM header to derive a series from; use --format nifti")
        cfg = ReconSettings(
            **{**settings_dict(settings), "attenuation": kind, "grid": settings.grid}
        )
        rec = reconstruct(ps, cfg, mu, device)
    except BaseException:
        remove_empty(created)
        raise
    outputs = []
    doc = {
        "settings": settings_dict(cfg),
        "attenuation_source": mu_desc,
        "resolved": rec.info,
        "inputs": [str(p) for p in ps.source] or [str(proj)],
        "affine_ras": rec.affine.tolist(),
        "units": "counts / s per voxel",
        "provenance": provenance(),
    }
    if "nifti" in formats:
        import nibabel as nib

        img = nib.Nifti1Image(rec.volume.astype(np.float32), rec.affine)
        img.header.set_xyzt_units("mm")
        path = out / "recon.nii.gz"
        write_new(path, lambda p: nib.save(img, p))
        outputs.append(path)
    if "dicom" in formats:
        from fastdat import __version__
        from fastdat.io.dicom_write import write_recon_series

        path = out / "recon.dcm"
        derivation = (
            f"FastDaT {__version__} OSEM {cfg.iterations} x {cfg.subsets}, attenuation {mu_desc}"
            f", scatter {cfg.scatter}, collimator {rec.info['collimator']}, post-filter "
            f"{cfg.postfilter_mm:g} mm, counts kept {cfg.fraction:g} (seed {cfg.seed})"
        )
        write_new(
            path,
            lambda p: write_recon_series(
                rec.volume,
                rec.affine,
                ps.header,
                p,
                derivation=derivation,
                software_version=f"FastDaT {__version__}",
            ),
        )
        outputs.append(path)
    sidecar = out / "recon.json"
    write_new(sidecar, lambda p: p.write_text(json.dumps(doc, indent=1)))
    outputs.append(sidecar)
    return ReconResult(tuple(outputs), rec)
