"""A simulated cohort's acquisitions as projection DICOM, the way a site archives its studies.

:func:`export_projections` writes, for every study of a cohort, its longest acquisition (the
"archived 25-min scan") as NM TOMO projection DICOM in a camera vendor's layout, beside the study's
attenuation map, plus a ``studies.csv`` with patients and grades::

    OUT/<study_id>/*.dcm         projection DICOM (fastdat.io.projection_write layouts)
    OUT/<study_id>/mu_map.nii.gz the simulator's mu map (1/cm at 159 keV), same patient frame
    OUT/studies.csv              study_id, patient_id, grade_left, grade_right

which is exactly what ``fastdat dataset build --projections OUT`` and ``fastdat recon`` read.

The simulated camera (:func:`projection_set`): two heads opposed (H mode), each covering 180
degrees, head 1 from anterior (0) in the projector's direction; the views, radii, bin size and
counts are the simulator's own, so reading the export back gives the simulator's projections.
The photopeak window is 159 keV +/- 10 %; the simulator models no scatter windows.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from fastdat.io.atomic import write_text
from fastdat.io.projections import EnergyWindow, ProjectionSet
from fastdat.simulate.acquisition import AcquisitionConfig

#: 123I photopeak window of the simulated camera: 159 keV +/- 10 % (keV).
PHOTOPEAK_KEV = (143.1, 174.9)
#: Radionuclide and collimator names as the simulated camera writes them.
RADIONUCLIDE = "^123^Iodine"


def _uid(*parts: object) -> str:
    """A deterministic DICOM UID (same cohort and study, same UID)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def projection_set(
    counts: np.ndarray | torch.Tensor,
    minutes: float,
    cfg: AcquisitionConfig,
    bin_mm: float,
    grid: tuple[int, int],
    header=None,
) -> ProjectionSet:
    """The simulator's projections of one acquisition as a :class:`ProjectionSet`.

    Args:
        counts: ``(V, D, D)`` counts (view, lateral, axial) as :func:`simulate_acquisition`
            returns them, or the cohort's ``proj_*.nii.gz`` array transposed back.
        minutes: Acquisition time (min).
        cfg: The acquisition config that made them (views, orbit, collimator).
        bin_mm: Bin (= voxel) size (mm).
        grid: ``(size, slices)`` of the object grid, embedded at the detector's centre.
        header: A DICOM dataset with the patient and study, or ``None``.
    """
    c = torch.as_tensor(np.asarray(counts), dtype=torch.float32)
    v, d, _ = c.shape
    size, slices = grid
    if (d - size) % 2:
        raise ValueError(f"a {size}-voxel grid on {d} bins is not centred on a bin boundary")
    if v % 2:
        raise ValueError(f"{v} views cannot be split over two heads")
    first_slice = (d - slices) // 2
    angles = torch.arange(v, dtype=torch.float64) * 360.0 / v
    return ProjectionSet(
        counts=c[None],
        windows=(EnergyWindow("EM", *PHOTOPEAK_KEV, "photopeak"),),
        angles_deg=angles,
        radii_mm=torch.full((v,), float(cfg.orbit_radius_mm), dtype=torch.float64),
        frame_s=torch.full((v,), 60.0 * minutes / (v // 2), dtype=torch.float64),
        detectors=(torch.arange(v) >= v // 2).long() + 1,
        bin_mm=(bin_mm, bin_mm),
        axis_origin_mm=(0.0, 0.0, -((slices - 1) / 2 + first_slice) * bin_mm),
        collimator=cfg.collimator,
        radionuclide=RADIONUCLIDE,
        header=header,
    )


def _header(cohort_seed: int, row: dict[str, str]):
    import pydicom

    ds = pydicom.Dataset()
    ds.PatientID = row["patient_id"]
    ds.PatientName = row["patient_id"]
    ds.PatientSex = row.get("sex", "") or ""
    ds.StudyInstanceUID = _uid("fastdat-sim", cohort_seed, row["study_id"], "study")
    ds.FrameOfReferenceUID = _uid("fastdat-sim", cohort_seed, row["study_id"], "frame")
    ds.StudyID = row["study_id"][:16]
    ds.StudyDescription = "FastDaT simulated DaTscan"
    ds.SeriesDescription = "DaTscan SPECT 25 min"
    return ds


def export_projections(
    cohort: str | Path, out: str | Path, layout: str, duration: str | None = None
) -> Path:
    """Write every study of ``cohort`` as projection DICOM under ``out`` (module docstring).

    Args:
        cohort: A simulated cohort folder (``fastdat simulate``).
        out: The export folder; studies already exported are kept (resumable).
        layout: A vendor layout of :func:`fastdat.io.projection_write.write_projections`.
        duration: The acquisition to export (``"25min"``); the longest when ``None``.

    Returns:
        ``out``.
    """
    import nibabel as nib
    import yaml

    from fastdat.io.projection_dicom import LAYOUTS
    from fastdat.io.projection_write import write_projections
    from fastdat.simulate.cohort import resolve_config

    cohort, out = Path(cohort), Path(out)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: known layouts are {', '.join(LAYOUTS)}")
    manifest = cohort / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: not found; is {cohort} a simulated cohort?")
    resolved = (yaml.safe_load((cohort / "config.yaml").read_text()) or {})["config"]
    cfg = resolve_config(resolved, [])
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    minutes = (
        max(cfg.acquisition.durations_min)
        if duration is None
        else float(duration.removesuffix("min"))
    )
    name = f"proj_{minutes:g}min"
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        final = out / row["study_id"]
        if final.exists():
            continue
        tmp = out / f".{row['study_id']}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        img = nib.load(cohort / row[name])
        counts = np.asarray(img.dataobj).transpose(2, 0, 1)  # (lateral, axial, view) -> (V, S, Z)
        bin_mm = float(img.affine[0, 0])
        ps = projection_set(
            counts,
            minutes,
            cfg.acquisition,
            bin_mm,
            (cfg.grid.size, cfg.grid.n_slices),
            _header(cfg.cohort.seed, row),
        )
        write_projections(ps, tmp, layout=layout)
        shutil.copyfile(cohort / row["mu_map"], tmp / "mu_map.nii.gz")
        os.replace(tmp, final)
    keys = ("study_id", "patient_id", "grade_left", "grade_right")
    text = ",".join(keys) + "\n" + "".join(",".join(r[k] for k in keys) + "\n" for r in rows)
    write_text(out / "studies.csv", text)
    return out
