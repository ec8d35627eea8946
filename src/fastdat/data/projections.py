"""Paired studies from archived acquisitions: each projection set reconstructed at full counts and
thinned to every shorter duration, with the same reconstruction settings.

A site rarely has a 5-min and a 25-min scan of one patient, but binomial thinning of the 25-min
projections to ``5 / 25`` of their counts is an exact 5-min acquisition. So a folder of archived
acquisitions becomes a paired dataset::

    ROOT/<study_id>/*          the projection DICOM of one acquisition (one or several files)
    ROOT/<study_id>/mu_map.nii.gz   optional attenuation map (1/cm at 159 keV, patient frame)
    ROOT/<study_id>/CT/        optional CT series of the same Frame of Reference
    ROOT/studies.csv           optional: study_id, patient_id, grade_left, grade_right

With ``attenuation="auto"`` each study uses its mu map, else its CT, else Chang's method. Every
reconstruction is written to ``RECON/<study_id>/<kind>.nii.gz`` beside ``RECON/<study_id>/
recon.json`` (settings, thinning fraction and seed, provenance); a rerun reuses the ones made with
the same settings and refuses different ones, so a killed build resumes. Duration ``m`` minutes of
an acquisition of ``T`` minutes is the acquisition thinned by ``m / T`` (seeded per study and
duration); a duration longer than the acquisition (by more than 1 %) makes the study unusable,
with the reason.

Self-supervised pairs need no longer scan: kind ``rest5min`` is the rest of the acquisition
after the ``5min`` thinning (the same draw's other counts, a ``T - 5``-min scan). The two are
disjoint and, the acquisition being Poisson, independent scans of the same patient; both are in
counts / s, so the rest is a Noise2Noise target of the 5-min input as it is
(``fastdat train --set input_kind=5min --set target_kind=rest5min``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from fastdat.data.dataset import StudySource, load_nifti
from fastdat.data.kinds import REST
from fastdat.data.kinds import thinned_minutes as minutes
from fastdat.io.atomic import write_json
from fastdat.tomo.reconstruct import ReconSettings, settings_dict

log = logging.getLogger(__name__)

#: A requested duration may exceed the acquisition's by this share (rounding of frame times).
DURATION_RTOL = 0.01


def thinning_seed(seed: int, study_id: str, kind: str) -> int:
    """The seed of one study's thinning to one duration (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}:{study_id}:{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _study_rows(root: Path) -> dict[str, dict[str, str]]:
    path = root / "studies.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "study_id" not in rows[0]:
        raise ValueError(f"{path}: needs a study_id column")
    return {r["study_id"]: r for r in rows}


def _projection_files(study: Path) -> list[Path]:
    return sorted(
        p
        for p in study.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".nii", ".nii.gz"))
    )


def _patient_id(study: Path) -> str:
    """Patient ID of a study's acquisition (headers only), or ``""`` if it cannot be read."""
    from fastdat.io.projection_dicom import ProjectionError, read_projection_header

    for p in _projection_files(study):
        try:
            return str(getattr(read_projection_header(p), "PatientID", "") or "")
        except (ProjectionError, OSError):
            continue
    return ""


def reconstruct_study(
    study: Path,
    recon_dir: Path,
    kinds: tuple[str, ...],
    settings: ReconSettings,
    attenuation: str = "auto",
    device: str = "cpu",
) -> dict[str, Path]:
    """Reconstruct one archived acquisition at every duration in ``kinds`` (module docstring).

    Returns:
        Kind -> NIfTI path (existing ones reused when made with the same settings).
    """
    from fastdat.config import provenance
    from fastdat.io.atomic import write_new
    from fastdat.io.projection_dicom import read_projections
    from fastdat.tomo.files import read_mu_map
    from fastdat.tomo.reconstruct import reconstruct

    files = _projection_files(study)
    if not files:
        raise ValueError(f"{study}: no projection files")
    from fastdat.tomo.files import attenuation_source

    source = attenuation_source(study, attenuation)
    wanted = {
        "settings": settings_dict(settings),
        "attenuation": source,
        "kinds": list(kinds),
    }
    out = recon_dir / study.name
    record = out / "recon.json"
    paths = {k: out / f"{k}.nii.gz" for k in kinds}
    if record.exists():
        old = json.loads(record.read_text())
        if {k: old.get(k) for k in wanted} != wanted:
            raise FileExistsError(
                f"{out}: reconstructed with other settings; remove it or choose another folder"
            )
        if all(p.exists() for p in paths.values()):
            return paths
    ps = read_projections(files)
    acquired = ps.acquisition_s / 60.0
    fractions = {}
    for k in kinds:
        m = minutes(k)
        if m > acquired * (1 + DURATION_RTOL):
            raise ValueError(
                f"{study}: acquired {acquired:.3g} min, shorter than the {k} asked for"
            )
        fractions[k] = min(1.0, m / acquired)
        if k.startswith(REST) and fractions[k] == 1.0:
            raise ValueError(f"{study}: acquired {acquired:.3g} min; nothing is left for {k}")
    kind = source if source in ("none", "chang", "uniform") else "map"
    mu = None
    if kind == "map":
        vol, aff, _ = read_mu_map(source, ps)
        mu = (vol, aff)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {}
    import nibabel as nib

    for k in kinds:
        # a rest kind draws the same split as its subset and keeps the other counts
        seed = thinning_seed(settings.seed, study.name, k.removeprefix(REST))
        cfg = ReconSettings(
            **{
                **settings_dict(settings),
                "attenuation": kind,
                "fraction": fractions[k],
                "seed": seed,
                "complement": k.startswith(REST),
                "grid": settings.grid,
            }
        )
        if not paths[k].exists():
            rec = reconstruct(ps, cfg, mu, device)
            img = nib.Nifti1Image(rec.volume, rec.affine)
            img.header.set_xyzt_units("mm")
            write_new(paths[k], lambda p, img=img: nib.save(img, p))
            done[k] = {"fraction": fractions[k], "seed": seed, "info": rec.info}
    doc = {
        **wanted,
        "acquired_min": acquired,
        "files": [str(p) for p in files],
        "patient_id": str(getattr(ps.header, "PatientID", "") or ""),
        "reconstructions": done,
        "provenance": provenance(),
    }
    write_json(record, doc)
    return paths


def sources_from_projections(
    root: str | Path,
    recon_dir: str | Path,
    kinds: tuple[str, ...],
    settings: ReconSettings,
    attenuation: str = "auto",
    device: str = "cpu",
) -> list[StudySource]:
    """The studies of a folder of archived acquisitions, reconstructed on first use.

    Args:
        root: ``ROOT/<study_id>/`` folders (module docstring).
        recon_dir: Where the reconstructions are kept (reused on a rerun).
        kinds: Durations to pair (``"5min"``, ``"25min"``...).
        settings: Reconstruction settings shared by every duration and study.
        attenuation: ``auto`` (per study), ``chang``, ``uniform`` or ``none``.
        device: Where to reconstruct.

    Returns:
        One source per study folder; a study that cannot be used fails when the dataset builder
        loads it, and is listed with its reason.
    """
    root, recon_dir = Path(root), Path(recon_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of acquisitions")
    for k in kinds:
        minutes(k)
    meta = _study_rows(root)
    studies = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not studies:
        raise ValueError(f"{root}: no study folders (expected ROOT/<study_id>/<projection files>)")
    out = []
    for study in studies:
        cache: dict[str, dict[str, Path]] = {}

        def paths(study: Path = study, cache: dict = cache) -> dict[str, Path]:
            if not cache:
                cache.update(
                    reconstruct_study(study, recon_dir, kinds, settings, attenuation, device)
                )
            return cache

        def loader(kind: str, paths=paths):
            return lambda: load_nifti(paths()[kind])

        row = meta.get(study.name, {})
        patient = row.get("patient_id") or _patient_id(study) or study.name
        grades = {
            s: int(row[f"grade_{s}"]) if row.get(f"grade_{s}") else None for s in ("left", "right")
        }
        out.append(
            StudySource(
                study_id=study.name,
                patient_id=patient,
                loaders={k: loader(k) for k in kinds},
                grade_left=grades["left"],
                grade_right=grades["right"],
                origin=str(study),
            )
        )
    return out
