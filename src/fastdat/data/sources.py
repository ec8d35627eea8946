"""Where a dataset's studies come from: one of a simulated cohort, NIfTI, DICOM or projections.

``fastdat dataset build`` takes exactly one of ``--from SIMDIR``, ``--nifti ROOT_OR_CSV``,
``--dicom ROOT`` or ``--projections ROOT``; :func:`pick_source` checks that choice,
:func:`choose_sources` lists the studies of the chosen source (with the description recorded in
the dataset's ``config.yaml``) and :func:`build_from_source` builds the dataset from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastdat.data.dataset import (
    DatasetConfig,
    StudySource,
    build_dataset,
    sources_from_nifti,
    sources_from_simulation,
)

if TYPE_CHECKING:
    from fastdat.tomo.reconstruct import ReconSettings

SOURCE_KINDS = ("simulation", "nifti", "dicom", "projections")


@dataclass(frozen=True)
class ChosenSources:
    """The studies of one source and what they came from.

    Attributes:
        sources: The studies to cut.
        desc: What they came from (``kind``, ``path``, ...), recorded in the dataset's
            ``config.yaml``.
        skipped: Files or series left out while finding the studies, with reasons (DICOM only).
    """

    sources: list[StudySource]
    desc: dict[str, Any]
    skipped: list[dict[str, str]] | None = None


def pick_source(
    sim: str | Path | None = None,
    nifti: str | Path | None = None,
    dicom: str | Path | None = None,
    projections: str | Path | None = None,
) -> tuple[str, Path]:
    """The one source given among the four options, as ``(kind, path)``.

    Args:
        sim: A simulated cohort directory (``--from``).
        nifti: NIfTI study folders or a CSV of pairs (``--nifti``).
        dicom: A folder of DICOM exports (``--dicom``).
        projections: A folder of archived acquisitions (``--projections``).

    Returns:
        ``(kind, path)`` with ``kind`` one of :data:`SOURCE_KINDS`.

    Raises:
        ValueError: Unless exactly one is given.
    """
    given = [
        (kind, path)
        for kind, path in zip(SOURCE_KINDS, (sim, nifti, dicom, projections), strict=True)
        if path
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of --from SIMDIR, --nifti ROOT_OR_CSV, --dicom ROOT, "
            "--projections ROOT"
        )
    kind, path = given[0]
    return kind, Path(path)


def default_recon_dir(out_dir: str | Path) -> Path:
    """Where reconstructions of ``--projections`` are kept by default: ``OUT.recon`` beside OUT."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".recon")


def choose_sources(
    kind: str,
    path: str | Path,
    kinds: tuple[str, ...],
    *,
    reference: str | None = None,
    pairs: str | Path | None = None,
    recon_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    settings: ReconSettings | None = None,
    attenuation: str = "auto",
    device: str = "cpu",
) -> ChosenSources:
    """The studies of source ``kind`` at ``path`` and their description.

    Args:
        kind: One of :data:`SOURCE_KINDS` (:func:`pick_source`).
        path: The source's folder (or CSV for NIfTI).
        kinds: Image kinds to pair (``DatasetConfig.durations``).
        reference: DICOM: the kind the striata are located on.
        pairs: DICOM: optional CSV pairing series with kinds (study, series, kind).
        recon_dir: Projections: where reconstructions are kept; default
            :func:`default_recon_dir` of ``out_dir``.
        out_dir: Projections: the dataset directory (for the default ``recon_dir``).
        settings: Projections: reconstruction settings (default :class:`ReconSettings`).
        attenuation: Projections: attenuation correction (see ``fastdat recon``).
        device: Projections: torch device of the reconstructions.

    Returns:
        The studies, their description and (DICOM) what was left out.

    Raises:
        ValueError: For an unknown ``kind``, or projections without ``recon_dir`` or ``out_dir``.
        FileNotFoundError: When the source is missing.
    """
    resolved = str(Path(path).resolve())
    if kind == "simulation":
        return ChosenSources(
            sources_from_simulation(path, kinds), {"kind": "simulation", "path": resolved}
        )
    if kind == "nifti":
        return ChosenSources(sources_from_nifti(path, kinds), {"kind": "nifti", "path": resolved})
    if kind == "projections":
        from fastdat.data.projections import sources_from_projections
        from fastdat.tomo.reconstruct import ReconSettings, settings_dict

        if recon_dir:
            recon = Path(recon_dir)
        elif out_dir:
            recon = default_recon_dir(out_dir)
        else:
            raise ValueError("projections: give recon_dir or out_dir (for OUT.recon)")
        settings = settings or ReconSettings()
        sources = sources_from_projections(path, recon, kinds, settings, attenuation, device)
        desc = {
            "kind": "projections",
            "path": resolved,
            "recon_dir": str(recon.resolve()),
            "attenuation": attenuation,
            "recon": settings_dict(settings),
        }
        return ChosenSources(sources, desc)
    if kind == "dicom":
        from fastdat.data.dicom import sources_from_dicom

        sources, skipped = sources_from_dicom(path, kinds, reference, pairs)
        return ChosenSources(sources, {"kind": "dicom", "path": resolved}, skipped)
    raise ValueError(f"unknown source kind {kind!r} (known: {', '.join(SOURCE_KINDS)})")


def read_splits(path: str | Path) -> dict[str, str]:
    """The patient -> split mapping of a dataset's ``splits.json`` (to reuse its splits).

    Raises:
        ValueError: When the file is not a ``splits.json`` (no ``patients`` mapping).
        OSError: When it cannot be read.
    """
    text = Path(path).read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("patients"), dict):
        raise ValueError(f"{path}: not a dataset's splits.json (no 'patients' mapping)")
    return doc["patients"]


def build_from_source(
    kind: str,
    path: str | Path,
    out_dir: str | Path,
    cfg: DatasetConfig,
    *,
    pairs: str | Path | None = None,
    recon_dir: str | Path | None = None,
    settings: ReconSettings | None = None,
    attenuation: str = "auto",
    device: str = "cpu",
    splits_from: str | Path | None = None,
) -> Path:
    """Build a dataset in ``out_dir`` from one source (:func:`choose_sources`).

    Args:
        kind: One of :data:`SOURCE_KINDS` (:func:`pick_source`).
        path: The source's folder (or CSV for NIfTI).
        out_dir: Dataset directory.
        cfg: Resolved dataset config (:func:`fastdat.config.resolve`).
        pairs: DICOM: optional CSV pairing series with kinds.
        recon_dir: Projections: where reconstructions are kept (default ``OUT.recon``).
        settings: Projections: reconstruction settings.
        attenuation: Projections: attenuation correction.
        device: Projections: torch device of the reconstructions.
        splits_from: Another dataset's ``splits.json`` whose patient splits are reused.

    Returns:
        ``out_dir`` (:func:`fastdat.data.dataset.build_dataset`).
    """
    chosen = choose_sources(
        kind,
        path,
        tuple(cfg.durations),
        reference=cfg.reference,
        pairs=pairs,
        recon_dir=recon_dir,
        out_dir=out_dir,
        settings=settings,
        attenuation=attenuation,
        device=device,
    )
    splits = read_splits(splits_from) if splits_from else None
    return build_dataset(
        chosen.sources, out_dir, cfg, chosen.desc, splits=splits, skipped=chosen.skipped
    )
