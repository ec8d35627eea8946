"""The one reader of reconstructed volumes: NIfTI files and DICOM series, as RAS+ arrays.

Every stage that reads a reconstructed SPECT image (``fastdat dataset build --nifti`` and
``--dicom``, ``fastdat denoise``, ``fastdat quantify``, the simulator's realism report) reads it
through :func:`read_image` (a path) or :func:`read_series` (a DICOM series found by
:func:`scan_folder`, which lists the NM series under a folder from their headers), so that all
of them see the same array for the same file, whatever order the file stores its voxels in.

The array of an :class:`Image` is in nibabel's closest canonical orientation, RAS+: index ``i``
(axis 0) runs along ``+x`` of the RAS+ world frame, from the subject's left to the subject's
right; ``j`` (axis 1) from posterior to anterior; ``k`` (axis 2) from inferior to superior (the
convention of the phantom, :mod:`fastdat.anatomy.phantom`, and of the VOI template). This is what
:func:`nibabel.as_closest_canonical` gives and what :func:`fastdat.io.dicom.series_volume`
returns for DICOM; a stored array is only permuted and flipped (never resampled), so an oblique
affine stays oblique. The original storage order is kept (:attr:`Image.native_affine`,
:attr:`Image.ornt`) so that a result can be written back in the input's own orientation
(:meth:`Image.to_native`).

Raw, non-reoriented access (mu maps, user activity maps, whose arrays are used as stored) is
:func:`fastdat.io.nifti.read_volume`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fastdat.io.dicom import Series

NIFTI_SUFFIXES = (".nii", ".nii.gz")
RAS = np.array([[0, 1], [1, 1], [2, 1]])
"""nibabel orientation of an array already in RAS+ axes."""


def is_nifti(path: str | Path) -> bool:
    """Whether ``path`` is named as a NIfTI file (``.nii`` or ``.nii.gz``, any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


@dataclass(frozen=True, eq=False)
class Image:
    """A reconstructed volume in RAS+ axes, with where it came from.

    Attributes:
        data: ``(X, Y, Z)`` float64 image values in the file's own units (counts, counts / s,
            Bq / ml...), axes RAS+ (module docstring): ``data[:, :, k]`` is a transaxial slice.
        affine: ``(4, 4)`` voxel index of ``data`` -> RAS+ world mm.
        voxel_mm: Voxel size along ``(X, Y, Z)`` of ``data`` (mm).
        source: The path read (a NIfTI file, a DICOM file or folder), for messages.
        native_affine: ``(4, 4)`` voxel index of the array as stored -> RAS+ world mm (for a
            NIfTI file its affine; for DICOM the ``(column, row, slice)`` grid of the series).
        ornt: ``(3, 2)`` nibabel orientation taking the stored array to ``data``
            (:func:`nibabel.orientations.io_orientation` of ``native_affine``).
        series: The DICOM series read, or ``None`` for a NIfTI file.
    """

    data: np.ndarray
    affine: np.ndarray
    voxel_mm: tuple[float, float, float]
    source: str
    native_affine: np.ndarray
    ornt: np.ndarray
    series: Series | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` of :attr:`data`."""
        return tuple(int(n) for n in self.data.shape)

    def to_native(self, volume: np.ndarray) -> np.ndarray:
        """A volume on this image's RAS+ grid ``(X, Y, Z)`` in the stored array's axes.

        ``Nifti1Image(image.to_native(result), image.native_affine)`` is ``result`` in the
        input file's own orientation (voxel for voxel where the input had its values).
        """
        import nibabel as nib

        back = nib.orientations.ornt_transform(RAS, self.ornt)
        return nib.orientations.apply_orientation(np.asarray(volume), back)

    def isotropic_mm(self, rtol: float = 1e-3, why: str = "") -> float:
        """The voxel size (mm) of an image with cubic voxels.

        Args:
            rtol: Relative tolerance between the three sizes.
            why: What needs cubic voxels (``"for the VOI template"``), added to the message.

        Raises:
            ValueError: The voxels are not cubic; the message names :attr:`source`.
        """
        vox = np.asarray(self.voxel_mm)
        if not np.allclose(vox, vox[0], rtol=rtol):
            sizes = ", ".join(f"{v:.4g}" for v in vox)
            raise ValueError(
                f"{self.source}: voxels must be isotropic{' ' + why if why else ''}, got {sizes} mm"
            )
        return float(vox[0])


def _ras(
    data: np.ndarray, affine: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, affine)`` as stored -> RAS+ ``(data, affine)`` and the orientation used."""
    import nibabel as nib

    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"{name}: the voxel -> mm affine is not a finite 4 x 4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{name}: the voxel -> mm affine is singular ({affine[:3, :3].tolist()})")
    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.apply_orientation(data, ornt)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return np.ascontiguousarray(ras), ras_affine, ornt


def _image(data, affine, source, ornt, native_affine, series=None) -> Image:
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    return Image(
        data=np.asarray(data, dtype=np.float64),
        affine=np.asarray(affine, dtype=np.float64),
        voxel_mm=(float(voxel[0]), float(voxel[1]), float(voxel[2])),
        source=str(source),
        native_affine=np.asarray(native_affine, dtype=np.float64),
        ornt=np.asarray(ornt, dtype=np.float64),
        series=series,
    )


def _read_nifti(path: Path, what: str) -> Image:
    from fastdat.io.nifti import read_volume

    data, affine = read_volume(path, what)
    ras, ras_affine, ornt = _ras(data, affine, f"{what} {path}" if what else str(path))
    return _image(ras, ras_affine, path, ornt, affine)


def read_series(series: Series, what: str = "", source: str | Path | None = None) -> Image:
    """One DICOM series (multi-frame object or stack of slices) as an :class:`Image`.

    The pixels and geometry are :func:`fastdat.io.dicom.series_volume`'s (Rescale Slope /
    Intercept applied, slices sorted along their normal); the stored grid is
    :func:`fastdat.io.dicom.native_geometry`'s ``(column, row, slice)``.

    Args:
        series: The series (``scan_folder`` or a hand-built one on a multi-frame file).
        what: What the series should be, prefixed to error messages.
        source: The path to name in messages; default: the series' first file.

    Raises:
        DicomInputError: The series cannot be read (the message names the file and why).
    """
    from fastdat.io.dicom import LPS_TO_RAS, DicomInputError, native_geometry, series_volume

    try:
        vol, affine = series_volume(series)
        native = LPS_TO_RAS @ native_geometry(series).affine
    except DicomInputError as err:
        if what:
            raise DicomInputError(err.path, f"{what}: {err.reason}") from err
        raise
    import nibabel as nib

    ornt = nib.orientations.io_orientation(native)
    return _image(vol, affine, source or series.files[0], ornt, native, series)


def scan_folder(root: str | Path) -> tuple[list[Series], list[dict[str, str]]]:
    """All reconstructed NM series under ``root``, and the files left out with reasons.

    Every file under ``root`` (recursively) is read once, header only. Files that are not
    reconstructed NM tomograms are left out with their reason; the rest are grouped by Series
    Instance UID into a multi-frame object (frames = slices) or a stack of single-slice files.
    A second multi-frame object of one series is left out (``"second multi-frame object in
    series"``).

    Returns:
        ``(series, skipped)``: the series, and ``{"file", "reason"}`` of every file left out.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    from fastdat.io.dicom import DicomInputError, Series, acquisition_duration_s, read_header

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    series: dict[str, Series] = {}
    skipped = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds = read_header(path)
        except DicomInputError as err:
            skipped.append({"file": str(path), "reason": err.reason})
            continue
        uid = str(ds.SeriesInstanceUID)
        s = series.get(uid)
        if s is None:
            s = series[uid] = Series(
                patient_id=str(getattr(ds, "PatientID", "") or "unknown"),
                study_uid=str(ds.StudyInstanceUID),
                series_uid=uid,
                description=str(getattr(ds, "SeriesDescription", "") or ""),
                duration_s=acquisition_duration_s(ds),
            )
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1 or s.multiframe:
            if s.files:
                skipped.append({"file": str(path), "reason": "second multi-frame object in series"})
                continue
            s.multiframe = True
        s.files.append(path)
        s.headers.append(ds)
    return list(series.values()), skipped


def _dicom_series(path: Path, name: str) -> Series:
    """The one series a DICOM file or folder holds (a slice file: its whole stack)."""
    from fastdat.io.dicom import DicomInputError, Series, frame_count, read_header

    if path.is_file():
        try:
            ds = read_header(path)  # names the file if it is not usable NM recon
        except DicomInputError as err:
            if err.reason.startswith("not a readable DICOM file"):
                hint = "; a NIfTI file must be named .nii or .nii.gz"
                raise DicomInputError(path, err.reason + hint) from err
            raise
        if frame_count(ds) > 1:
            return Series(
                str(getattr(ds, "PatientID", "") or "unknown"),
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(getattr(ds, "SeriesDescription", "") or ""),
                [path],
                [ds],
                multiframe=True,
            )
        found, _ = scan_folder(path.parent)
        found = [s for s in found if path.resolve() in {Path(f).resolve() for f in s.files}]
        if len(found) != 1:
            raise ValueError(f"{name}: a single slice, and its series was not found beside it")
        return found[0]
    found, skipped = scan_folder(path)
    if not found:
        why = "; ".join(f"{r['file']}: {r['reason']}" for r in skipped[:3])
        raise ValueError(
            f"{name}: no reconstructed NM DICOM series found" + (f" ({why})" if why else "")
        )
    if len(found) > 1:
        uids = ", ".join(s.series_uid for s in found[:3])
        raise ValueError(
            f"{name}: holds {len(found)} DICOM series ({uids}...); give one series' file or folder"
        )
    return found[0]


def read_image(path: str | Path, what: str = "") -> Image:
    """A NIfTI file, or a DICOM file or folder holding one series, as a RAS+ :class:`Image`.

    Args:
        path: A ``.nii`` / ``.nii.gz`` file; an NM multi-frame DICOM file; one slice file of a
            DICOM stack (the stack is read from its folder); a folder holding one DICOM series.
        what: What the file should be (``"5min image"``), prefixed to error messages.

    Returns:
        The volume, its axes permuted and flipped to RAS+ (module docstring), float64.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        ValueError: Not a readable NIfTI or DICOM volume, not 3D (a 2D image, a 4D series), a
            singular affine, a folder holding no or several series. The message names the file
            and what is wrong (:class:`fastdat.io.dicom.DicomInputError` for DICOM).
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: file not found")
    if is_nifti(path):
        return _read_nifti(path, what)
    return read_series(_dicom_series(path, name), what, source=path)
