"""Imaging physics applied to the painted phantom: tissue texture, CT noise, MR bias
field and Rician noise, and a rigid CT-to-MR misalignment.

Arrays are ``[z, y, x]`` float32 on the study grid; CT in HU, MR first as signal
relative to urine and then in scanner-like units.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from trainer.data.phantom.tissues import LABEL, MR_FLUID_UNITS, TISSUES

_N = max(t.label for t in TISSUES) + 1
CT_SD = np.zeros(_N, np.float32)
MR_SD = np.zeros(_N, np.float32)
for _t in TISSUES:
    CT_SD[_t.label], MR_SD[_t.label] = _t.ct_sd, _t.mr_sd


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_px: tuple[float, ...]
) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation, float32."""
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma_px, mode="wrap"
    )
    field /= max(float(field.std()), 1e-6)
    return field


def add_texture(
    ct: np.ndarray,
    mr: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    marbling: float = 0.3,
    fat_values: tuple[float, float] = (-100.0, 0.75),
) -> None:
    """Give each tissue its inner texture, in place.

    One random field (fine trabeculae / fat lobules plus coarser patches) drives both
    modalities, since the texture is anatomy, scaled per tissue by the table's
    ``ct_sd`` (HU) and ``mr_sd`` (relative signal). Stool gets gas bubbles where the
    coarse field is high; muscle gets fatty streaks (``marbling`` 0..1, more with
    age), blended towards ``fat_values`` (HU, relative T2).
    """
    fine = smooth_noise(rng, labels.shape, (0.4, 0.8, 0.8))
    coarse = smooth_noise(rng, labels.shape, (0.8, 2.5, 2.5))
    texture = 0.75 * fine + 0.66 * coarse
    ct += CT_SD[labels] * texture
    mr += MR_SD[labels] * texture
    muscle = labels == LABEL["muscle"]
    streaks = smooth_noise(rng, labels.shape, (1.2, 0.6, 0.6))[muscle]
    fat_share = marbling * np.clip((streaks - 1.2) / 1.2, 0.0, 1.0)
    ct[muscle] += fat_share * (fat_values[0] - ct[muscle])
    mr[muscle] += fat_share * (fat_values[1] - mr[muscle])
    bubbles = (labels == LABEL["stool"]) & (coarse > 1.3)
    ct[bubbles] = -850.0 + 80.0 * fine[bubbles]
    mr[bubbles] = 0.02


def ct_noise_sd(body_width_mm: float) -> float:
    """Image noise of a pelvic CT (HU) for a body this wide: about 8 HU for a slim
    patient, up to about 20 HU for a large one (dose modulation only partly
    compensates)."""
    return float(np.clip(8.0 * (body_width_mm / 340.0) ** 2, 6.0, 18.0))


def ct_acquire(ct: np.ndarray, rng: np.random.Generator, noise_sd: float) -> np.ndarray:
    """Scanner blur (0.4 px) and mildly correlated noise (in-plane Gaussian kernel,
    independent slices as in axial reconstruction); values clipped at -1024 HU."""
    out = ndimage.gaussian_filter(ct, (0.0, 0.4, 0.4))
    out += noise_sd * smooth_noise(rng, ct.shape, (0.0, 0.7, 0.7))
    np.maximum(out, -1024.0, out=out)
    return out


def bias_field(
    shape: tuple[int, int, int], rng: np.random.Generator, strength: float = 0.12
) -> np.ndarray:
    """A smooth multiplicative receive-coil field ``[z, y, x]`` within 0.74..1.35: a
    random low-order polynomial in (x, y, z) inside an exponential, plus more signal
    near the anterior and posterior coil arrays than in the centre."""
    z, y, x = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    terms = [xx, yy, zz, xx * yy, xx * zz, yy * zz, xx**2 - 0.33, yy**2 - 0.33, zz**2 - 0.33]
    log_b = sum(rng.normal(0.0, strength / 2.0) * t for t in terms)
    log_b = log_b + strength * (yy**2 - 0.33)  # nearer the coils, brighter
    # tanh keeps the extremes (field corners, far from the body) within bounds, smoothly
    return np.exp(0.3 * np.tanh(log_b / 0.3)).astype(np.float32)


def mr_acquire(
    mr_relative: np.ndarray, bias: np.ndarray, rng: np.random.Generator, snr: float
) -> np.ndarray:
    """Relative T2 signal -> scanner units: slight blur (0.5 px), the multiplicative
    ``bias`` field, Rician noise of standard deviation ``MR_FLUID_UNITS / snr``
    (magnitude of complex Gaussian noise, so air is Rayleigh-distributed, never
    negative)."""
    signal = ndimage.gaussian_filter(mr_relative, (0.0, 0.5, 0.5)) * MR_FLUID_UNITS
    signal *= bias
    sigma = MR_FLUID_UNITS / snr
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


# -- misalignment ----------------------------------------------------------------------


def random_rigid(
    rng: np.random.Generator, misalign_mm: float, center_lps_mm: tuple[float, float, float]
) -> sitk.Euler3DTransform:
    """A rigid transform with a translation of length ``misalign_mm`` in a random
    direction and rotations about x, y, z of up to ``min(3, misalign_mm / 2)``
    degrees each, about ``center_lps_mm``."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    max_deg = min(3.0, misalign_mm / 2.0)
    angles = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in center_lps_mm))
    t.SetRotation(*(float(a) for a in angles))
    t.SetTranslation(tuple(float(d) for d in direction * misalign_mm))
    return t


def transform_record(t: sitk.Euler3DTransform) -> dict[str, object]:
    """The transform as recorded in ``study.json``."""
    return {
        "moved": "CT",
        "convention": (
            "SimpleITK Euler3DTransform mapping an MR physical point p (LPS mm) to the CT "
            "physical point showing the same anatomy: p_ct = R (p - center) + center + "
            "translation, R = Rz Rx Ry (SimpleITK's default order); the transform "
            "trainer.data.register.register_rigid(fixed=MR, moving=CT) estimates"
        ),
        "center_lps_mm": [round(c, 4) for c in t.GetCenter()],
        "rotation_deg_xyz": [round(math.degrees(a), 5) for a in t.GetParameters()[:3]],
        "translation_mm_lps": [round(v, 5) for v in t.GetParameters()[3:]],
        "matrix": [round(m, 8) for m in t.GetMatrix()],
    }


def transform_from_record(record: dict[str, object]) -> sitk.Euler3DTransform:
    """Inverse of :func:`transform_record`."""
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(record["center_lps_mm"]))  # type: ignore[arg-type]
    t.SetRotation(*(math.radians(a) for a in record["rotation_deg_xyz"]))  # type: ignore[union-attr]
    t.SetTranslation(tuple(record["translation_mm_lps"]))  # type: ignore[arg-type]
    return t


def move_ct(
    ct_extended: sitk.Image, reference: sitk.Image, mr_to_ct: sitk.Euler3DTransform
) -> np.ndarray:
    """Resample the CT painted in MR coordinates (on a grid extended above and below)
    so that it shows the anatomy at ``mr_to_ct(p)`` for every point ``p`` of the MR
    grid: the returned CT ``[z, y, x]`` on ``reference``'s grid is misaligned by
    exactly ``mr_to_ct``."""
    # Resample maps each output point through the transform into the input: a CT voxel
    # at q shows the anatomy at mr_to_ct^-1(q).
    moved = sitk.Resample(ct_extended, reference, mr_to_ct.GetInverse(), sitk.sitkLinear, -1000.0)
    return sitk.GetArrayFromImage(moved).astype(np.float32)
