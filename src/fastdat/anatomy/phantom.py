"""Parametric DaT SPECT head phantoms: activity, attenuation and region labels, seeded.

Anatomy is built in *anatomical* coordinates (mm, RAS: +x right, +y anterior, +z superior, origin at
the anterior commissure, as in MNI space; positions and sizes from ``domain.md``) and placed in the
*scanner* frame (the rotation axis along z through the grid centre) by a per-subject similarity
transform::

    p_scanner = diag(scale) @ R(yaw, pitch, roll) @ (a - brain_centre) + shift

Structures (uptake relative to occipital grey matter = 1):

- brain: ellipsoid, a cortical grey ribbon of ``cortex_mm`` over white matter (``white_uptake``),
  lateral ventricles (``csf_uptake``), thalami (``thalamus_uptake``, ioflupane binds SERT there),
  cerebellum and brainstem;
- striata per side: putamen, a thin lens tilted antero-medial to postero-lateral and split into
  anterior and posterior halves along its long axis; caudate, an ellipsoidal head with a tapering,
  curved body running posteriorly (two tube segments);
- skull (``skull_mm`` thick, mu of bone) and scalp for attenuation, with low non-specific uptake.

Striatal concentration = 1 + SBR_true, with SBR_true drawn around ``striatum_ratio - 1`` (8 : 1,
``domain.md``), lowered with age (per decade, faster in putamen), higher in women, and multiplied
per region by the fraction of binding that remains for the hemisphere's disease grade (posterior
putamen first, then anterior putamen, caudate last; a smooth posterior -> anterior gradient inside
the putamen). A smooth multiplicative texture (``texture_sd``, ``texture_fwhm_mm``) varies uptake
within every tissue.

Label lookup table (:data:`LABELS`): 0 background, 1 left caudate, 2 right caudate, 3 left anterior
putamen, 4 right anterior putamen, 5 left posterior putamen, 6 right posterior putamen, 7 occipital
cortex (reference region).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

BRAIN_CENTRE = np.array([0.0, -17.0, 14.0])
"""Centre of the brain ellipsoid in anatomical coordinates (mm); placed at the scanner origin."""

# Remaining fraction of specific binding per visual grade: (posterior putamen, anterior putamen,
# caudate), each a uniform range. Grade 1: putamen reduced (posterior most); grade 2: putamen
# nearly absent, caudate partly kept; grade 3: caudate greatly reduced too (Benamer / Catafau).
# Magnitudes follow the losses in domain.md: early PD putamen -40..-52 %, caudate -23..-29 %
# (Heng 2023); advanced disease putamen -80..-95 %, caudate -55..-75 %.
GRADE_FRACTIONS: dict[int, tuple[tuple[float, float], ...]] = {
    0: ((0.90, 1.00), (0.92, 1.00), (0.95, 1.00)),
    1: ((0.35, 0.60), (0.60, 0.85), (0.75, 0.95)),
    2: ((0.08, 0.22), (0.18, 0.38), (0.55, 0.80)),
    3: ((0.02, 0.12), (0.05, 0.20), (0.25, 0.45)),
}


@dataclass(frozen=True)
class PhantomConfig:
    """Population parameters of the phantom generator (defaults from ``domain.md``).

    Attributes:
        striatum_ratio: Mean true striatum : occipital concentration of a 60-year-old man (6-10).
        striatum_ratio_sd: Between-subject SD of that ratio.
        putamen_loss_per_decade: Fractional loss of putamen specific binding per decade of age.
        caudate_loss_per_decade: Same for the caudate.
        female_gain: Fractional increase of specific binding in women.
        volume_loss_per_year: Fractional striatal volume loss per year of age (reference 60 y).
        volume_sd: Between-subject SD of striatal volume (fraction).
        head_scale_sd: SD of the overall head scale (fraction); per-axis shape adds half of it.
        yaw_deg, pitch_deg, roll_deg: Pose rotation limits (uniform +/-), degrees.
        shift_mm: Head-position limit (uniform +/-) in x, y, z, mm.
        cortex_mm: Thickness of the cortical grey ribbon (mm).
        white_uptake, csf_uptake, thalamus_uptake, cerebellum_uptake: Relative uptakes.
        skull_mm: Skull thickness (mm); scalp_mm: scalp thickness (mm).
        skull_uptake, scalp_uptake: Non-specific uptake of skull and scalp.
        mu_brain, mu_bone, mu_scalp: Narrow-beam linear attenuation at 159 keV (1/cm).
        texture_sd: SD of the multiplicative uptake texture.
        texture_fwhm_mm: Correlation length (FWHM) of the texture (mm).
        supersample: Sub-voxel sampling per axis for partial-volume-correct voxel values.
    """

    striatum_ratio: float = 8.0
    striatum_ratio_sd: float = 0.8
    putamen_loss_per_decade: float = 0.06
    caudate_loss_per_decade: float = 0.045
    female_gain: float = 0.10
    volume_loss_per_year: float = 0.005
    volume_sd: float = 0.07
    head_scale_sd: float = 0.04
    yaw_deg: float = 5.0
    pitch_deg: float = 8.0
    roll_deg: float = 3.0
    shift_mm: float = 4.0
    cortex_mm: float = 10.0
    white_uptake: float = 0.7
    csf_uptake: float = 0.15
    thalamus_uptake: float = 1.3
    cerebellum_uptake: float = 0.95
    skull_mm: float = 6.0
    scalp_mm: float = 5.0
    skull_uptake: float = 0.2
    scalp_uptake: float = 0.4
    mu_brain: float = 0.15
    mu_bone: float = 0.26
    mu_scalp: float = 0.15
    texture_sd: float = 0.10
    texture_fwhm_mm: float = 8.0
    supersample: int = 2

    def __post_init__(self) -> None:
        if not 1.0 < self.striatum_ratio <= 20.0:
            raise ValueError(
                f"phantom.striatum_ratio must be in (1, 20], got {self.striatum_ratio}"
            )
        for name in ("striatum_ratio_sd", "volume_sd", "head_scale_sd", "texture_sd", "shift_mm"):
            if getattr(self, name) < 0:
                raise ValueError(f"phantom.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mu_brain", "mu_bone", "mu_scalp", "white_uptake", "csf_uptake"):
            if getattr(self, name) < 0:
                raise ValueError(f"phantom.{name} must be >= 0, got {getattr(self, name)}")
        if self.supersample < 1:
            raise ValueError(f"phantom.supersample must be >= 1, got {self.supersample}")
        if self.cortex_mm <= 0 or self.skull_mm <= 0 or self.scalp_mm < 0:
            raise ValueError("phantom.cortex_mm and skull_mm must be > 0, scalp_mm >= 0")


@dataclass(frozen=True)
class Subject:
    """One simulated subject: demographics, disease and the drawn anatomy and uptake.

    Attributes:
        age: Years. sex: ``"F"`` or ``"M"``. grade_left, grade_right: Visual grades 0-3.
        sbr: True specific binding ratio per striatal label name before texture.
        volume_scale: Striatal volume factor; head_scale: Per-axis head scale (x, y, z).
        angles_deg: Yaw (about z), pitch (about x), roll (about y), degrees.
        shift_mm: Head position in the scanner frame (mm).
        texture_seed: Seed of the uptake texture field.
    """

    age: float
    sex: str
    grade_left: int
    grade_right: int
    sbr: dict[str, float] = field(default_factory=dict)
    volume_scale: float = 1.0
    head_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    texture_seed: int = 0


def sample_subject(
    rng: np.random.Generator,
    cfg: PhantomConfig,
    grade_left: int,
    grade_right: int,
    age: float,
    sex: str,
) -> Subject:
    """Draw a subject's anatomy and uptake for given grades and demographics."""
    for g in (grade_left, grade_right):
        if g not in GRADE_FRACTIONS:
            raise ValueError(f"grade must be 0, 1, 2 or 3, got {g}")
    base = max(cfg.striatum_ratio - 1 + cfg.striatum_ratio_sd * rng.standard_normal(), 1.0)
    sex_gain = 1 + cfg.female_gain if sex == "F" else 1.0
    decades = (age - 60.0) / 10.0
    put_age = max(1 - cfg.putamen_loss_per_decade * decades, 0.3)
    cau_age = max(1 - cfg.caudate_loss_per_decade * decades, 0.3)
    sbr = {}
    for side, grade in (("left", grade_left), ("right", grade_right)):
        post, ant, cau = (rng.uniform(*r) for r in GRADE_FRACTIONS[grade])
        ant = max(ant, post)  # loss runs posterior -> anterior
        side_var = 1 + 0.03 * rng.standard_normal()  # small left/right asymmetry in health
        sbr[f"caudate_{side}"] = base * sex_gain * cau_age * cau * side_var
        sbr[f"putamen_anterior_{side}"] = base * sex_gain * put_age * ant * side_var
        sbr[f"putamen_posterior_{side}"] = base * sex_gain * put_age * post * side_var
    vol = (1 - cfg.volume_loss_per_year * (age - 60.0)) * (
        1 + cfg.volume_sd * rng.standard_normal()
    )
    # clipped (+/-10 %, shape +/-4 %) so every head stays inside the default grid's field of view
    overall = float(np.clip(1 + cfg.head_scale_sd * rng.standard_normal(), 0.90, 1.10))
    head = tuple(
        overall * float(np.clip(1 + 0.5 * cfg.head_scale_sd * rng.standard_normal(), 0.96, 1.04))
        for _ in "xyz"
    )
    lim = np.array([cfg.yaw_deg, cfg.pitch_deg, cfg.roll_deg])
    return Subject(
        age=float(age),
        sex=sex,
        grade_left=int(grade_left),
        grade_right=int(grade_right),
        sbr={k: float(v) for k, v in sbr.items()},
        volume_scale=float(np.clip(vol, 0.6, 1.4)),
        head_scale=head,
        angles_deg=tuple(float(a) for a in rng.uniform(-lim, lim)),
        shift_mm=tuple(float(s) for s in rng.uniform(-cfg.shift_mm, cfg.shift_mm, 3)),
        texture_seed=int(rng.integers(2**31)),
    )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix for yaw about z, pitch about x, roll about y (degrees), applied z-x-y."""
    cz, sz = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    cx, sx = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    cy, sy = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


def _ellipsoid(a: np.ndarray, centre, semi, grow: float = 0.0) -> np.ndarray:
    """Inside test of an axis-aligned ellipsoid with semi-axes enlarged by ``grow`` (mm)."""
    q = sum(((a[..., i] - centre[i]) / (semi[i] + grow)) ** 2 for i in range(3))
    return q <= 1.0


def _tube(a: np.ndarray, p0, p1, r0: float, r1: float) -> np.ndarray:
    """Inside test of a capsule from ``p0`` to ``p1`` whose radius tapers from ``r0`` to ``r1``."""
    p0, d = np.asarray(p0, float), np.asarray(p1, float) - np.asarray(p0, float)
    t = np.clip(((a - p0) @ d) / (d @ d), 0.0, 1.0)
    dist = np.linalg.norm(a - p0 - t[..., None] * d, axis=-1)
    return dist <= r0 + (r1 - r0) * t


def _putamen(a: np.ndarray, side: int, vs: float) -> tuple[np.ndarray, np.ndarray]:
    """Putamen mask and its normalized position along the long axis (-1 posterior, +1 anterior).

    A thin lens (semi-axes 3.5 x 22 x 16 mm, 5.2 mL) at (+/-26, 1, 0) whose long axis runs
    antero-medially at 20 degrees to the y axis, so its bounding box is ~22 x 44 x 32 mm (width x
    length x height, ``domain.md``: ~21 x 44 x 32 mm, 4.5-5.2 mL).
    """
    alpha = np.radians(20.0)
    s = vs ** (1 / 3)
    centre = np.array([26.0 * side, 1.0, 0.0])
    long_ax = np.array([-side * np.sin(alpha), np.cos(alpha), 0.0])
    wide_ax = np.array([np.cos(alpha), side * np.sin(alpha), 0.0])
    d = a - centre
    u, w, h = d @ long_ax, d @ wide_ax, d[..., 2]
    semi = np.array([22.0, 3.5, 16.0]) * s
    inside = (u / semi[0]) ** 2 + (w / semi[1]) ** 2 + (h / semi[2]) ** 2 <= 1.0
    return inside, np.clip(u / semi[0], -1.0, 1.0)


def _caudate(a: np.ndarray, side: int, vs: float) -> np.ndarray:
    """Caudate head (semi-axes 7 x 10 x 9 mm at (+/-12, 14, 7)) and a tapering curved body."""
    s = vs ** (1 / 3)
    head = _ellipsoid(a, (12.0 * side, 14.0, 7.0), (7.0 * s, 10.0 * s, 9.0 * s))
    mid = (15.0 * side, -6.0, 17.0)
    body1 = _tube(a, (13.0 * side, 6.0, 11.0), mid, 5.0 * s, 3.5 * s)
    body2 = _tube(a, mid, (18.0 * side, -24.0, 20.0), 3.5 * s, 1.8 * s)
    return head | body1 | body2


def _grade_fraction(pos: np.ndarray, post: float, ant: float) -> np.ndarray:
    """Remaining-binding fraction along the putamen: posterior value below -0.5, anterior above
    +0.5, linear between."""
    t = np.clip((pos + 0.5), 0.0, 1.0)
    return post + (ant - post) * t


def anatomy(a: np.ndarray, subject: Subject, cfg: PhantomConfig):
    """Evaluate uptake, mu (1/cm) and labels at anatomical points ``a`` of shape ``(..., 3)``."""
    brain_c, brain_s = BRAIN_CENTRE, (65.0, 82.0, 60.0)
    cereb_c, cereb_s = (0.0, -60.0, -32.0), (48.0, 28.0, 20.0)
    in_brain = _ellipsoid(a, brain_c, brain_s) | _ellipsoid(a, cereb_c, cereb_s)
    inner = _ellipsoid(a, brain_c, brain_s, -cfg.cortex_mm)
    gap = 2.0  # CSF between brain and skull (mm)
    in_csf = _ellipsoid(a, brain_c, brain_s, gap) | _ellipsoid(a, cereb_c, cereb_s, gap)
    g2 = gap + cfg.skull_mm
    in_skull = _ellipsoid(a, brain_c, brain_s, g2) | _ellipsoid(a, cereb_c, cereb_s, g2)
    g3 = g2 + cfg.scalp_mm
    in_head = _ellipsoid(a, brain_c, brain_s, g3) | _ellipsoid(a, cereb_c, cereb_s, g3)

    uptake = np.zeros(a.shape[:-1])
    mu = np.zeros(a.shape[:-1])
    labels = np.zeros(a.shape[:-1], dtype=np.uint8)
    uptake[in_head] = cfg.scalp_uptake
    mu[in_head] = cfg.mu_scalp
    uptake[in_skull] = cfg.skull_uptake
    mu[in_skull] = cfg.mu_bone
    uptake[in_csf] = cfg.csf_uptake
    mu[in_csf] = cfg.mu_brain
    uptake[in_brain] = 1.0
    mu[in_brain] = cfg.mu_brain
    uptake[inner & ~_ellipsoid(a, cereb_c, cereb_s)] = cfg.white_uptake
    uptake[_ellipsoid(a, cereb_c, cereb_s)] = cfg.cerebellum_uptake
    uptake[_ellipsoid(a, (0.0, -26.0, -28.0), (10.0, 12.0, 22.0))] = cfg.white_uptake  # brainstem
    for side in (-1, 1):
        uptake[_ellipsoid(a, (10.0 * side, -18.0, 6.0), (8.0, 14.0, 8.0))] = cfg.thalamus_uptake
        uptake[_ellipsoid(a, (5.0 * side, -4.0, 16.0), (3.5, 26.0, 8.0))] = cfg.csf_uptake
    occ = in_brain & ~inner & (a[..., 1] < -68.0) & (a[..., 2] > -8.0) & (a[..., 2] < 30.0)
    labels[occ] = 7
    for side, name in ((-1, "left"), (1, "right")):
        cau = _caudate(a, side, subject.volume_scale)
        put, pos = _putamen(a, side, subject.volume_scale)
        post_sbr = subject.sbr[f"putamen_posterior_{name}"]
        ant_sbr = subject.sbr[f"putamen_anterior_{name}"]
        uptake[put] = 1.0 + _grade_fraction(pos[put], post_sbr, ant_sbr)
        uptake[cau] = 1.0 + subject.sbr[f"caudate_{name}"]
        off = 0 if side == -1 else 1
        labels[cau] = 1 + off
        labels[put & (pos >= 0)] = 3 + off
        labels[put & (pos < 0)] = 5 + off
    return uptake, mu, labels


@dataclass(frozen=True)
class Phantom:
    """Voxelized phantom on the scanner grid, arrays ``(nx, ny, nz)``.

    Attributes:
        activity: Relative activity concentration (occipital grey = 1 before texture).
        mu: Linear attenuation coefficient at 159 keV (1/cm).
        labels: Region labels, see :data:`LABELS`.
        affine: 4 x 4 voxel -> scanner-frame (RAS, mm) matrix, as in NIfTI.
    """

    activity: np.ndarray
    mu: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def grid_affine(shape: tuple[int, int, int], voxel_mm: float) -> np.ndarray:
    """NIfTI affine of a grid centred on the rotation axis: voxel (i, j, k) -> mm (RAS)."""
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = [-(s - 1) / 2 * voxel_mm for s in shape]
    return aff


def make_phantom(
    subject: Subject, shape: tuple[int, int, int], voxel_mm: float, cfg: PhantomConfig
) -> Phantom:
    """Voxelize a subject on a scanner grid centred on the rotation axis.

    Activity and mu are averages over ``cfg.supersample ** 3`` sub-voxel points (partial volume);
    labels are taken at voxel centres.

    Args:
        subject: Drawn subject (see :func:`sample_subject`).
        shape: Grid size ``(nx, ny, nz)``.
        voxel_mm: Isotropic voxel size (mm).
        cfg: Phantom parameters.
    """
    aff = grid_affine(shape, voxel_mm)
    rot = _rotation(*subject.angles_deg)
    scale = np.asarray(subject.head_scale)
    shift = np.asarray(subject.shift_mm)

    def to_anatomy(points: np.ndarray) -> np.ndarray:
        # a = R^T diag(1/scale) (p - shift) + brain_centre (rows are points)
        return ((points - shift) / scale) @ rot + BRAIN_CENTRE

    k = cfg.supersample
    offs = (np.arange(k) + 0.5) / k - 0.5
    axes = [
        aff[i, 3] + voxel_mm * (np.arange(n)[:, None] + offs[None, :]).ravel()
        for i, n in enumerate(shape)
    ]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    uptake, mu, labels = anatomy(to_anatomy(pts), subject, cfg)
    nx, ny, nz = shape
    uptake = uptake.reshape(nx, k, ny, k, nz, k).mean((1, 3, 5))
    mu = mu.reshape(nx, k, ny, k, nz, k).mean((1, 3, 5))
    if k > 1:  # with one sample per voxel the samples are the centres already
        centres = np.stack(
            np.meshgrid(
                *[aff[i, 3] + voxel_mm * np.arange(n) for i, n in enumerate(shape)],
                indexing="ij",
            ),
            -1,
        )
        _, _, labels = anatomy(to_anatomy(centres), subject, cfg)
    if cfg.texture_sd > 0:
        rng = np.random.default_rng(subject.texture_seed)
        sigma = cfg.texture_fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / voxel_mm
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
        noise /= noise.std() + 1e-12
        uptake = uptake * np.clip(1.0 + cfg.texture_sd * noise, 0.2, None)
    return Phantom(
        activity=uptake.astype(np.float32),
        mu=mu.astype(np.float32),
        labels=labels,
        affine=aff,
    )
