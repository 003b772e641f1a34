"""Paired CT/MR studies: rigid CT-to-MR registration, N4 bias correction of the MR,
and resampling of both onto the model's N x N matrix.

The paper (Fetty et al. 2020) bias-corrected the T2 MR with N4ITK, registered the CT
rigidly to the MR (Elastix, standard settings) and resampled both to one matrix.
This module does the same with SimpleITK:

- :func:`n4_correct`: N4 on a shrunk copy inside an Otsu body mask, bias field
  applied at full resolution, mean level inside the body kept.
- :func:`register_rigid`: Euler 3-D transform, Mattes mutual information (works
  across modalities), multi-resolution gradient descent.
- :func:`prepare_pair`: both, then CT onto the MR grid, then both onto N x N, and
  a check that the result is a plausible pair (:mod:`trainer.data.pair_check`).

Resampling itself lives in :mod:`trainer.data.resample` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from trainer.data.pair_check import PairingCheck, check_pairing
from trainer.data.resample import check_matrix_size, resample_to, resample_to_matrix
from trainer.data.volume import Volume
from trainer.errors import ConfigError, InvalidScanError, RegistrationError

__all__ = [
    "PairedStudy",
    "PairingCheck",
    "RigidRegistration",
    "n4_correct",
    "prepare_pair",
    "register_rigid",
    "resample_to",
    "resample_to_matrix",
]

#: Fewer fixed-image points than this inside the moving scan after registration
#: means the scans do not overlap enough to trust the result.
MIN_OVERLAP_FRACTION = 0.2

#: Multi-resolution schedule: shrink factors and Gaussian smoothing (voxels) per level.
SHRINK_FACTORS = (4, 2, 1)
SMOOTHING_SIGMAS_VOXELS = (2.0, 1.0, 0.0)

#: Random samples of the fixed scan per level for the mutual information: enough
#: for a 50-bin joint histogram, few enough to keep a level to about a second.
METRIC_SAMPLES = 50_000

#: N4 fits its bias field on a shrunk copy: each axis keeps at least this many voxels
#: (an axis shrunk to one voxel gives ITK a zero-length B-spline lattice and a
#: "Zero-valued spacing" error; a 32 px, 8-slice phantom did that).
N4_MIN_SHRUNK_VOXELS = 8

#: N4 needs a 3-D neighbourhood: below this many voxels along an axis (one slice)
#: or this many in all, it is skipped, with a warning.
N4_MIN_AXIS_VOXELS = 2
N4_MIN_VOXELS = 1000

log = logging.getLogger(__name__)


@dataclass
class RigidRegistration:
    """The result of :func:`register_rigid`.

    Attributes:
        transform: maps a fixed (MR) point, LPS mm, to the moving (CT) point that
            lies there; pass it to :func:`resample_to` to bring the CT onto the MR.
        final_metric: Mattes mutual information at the end (ITK's sign: more
            negative is better).
        rotation_deg: ITK's Euler angles about the x (L), y (P), z (S) axes in degrees
            (the rotation turns about y first, then x, then z).
        translation_mm: translation along L, P, S in mm: a fixed point p goes to
            ``R (p - centre) + centre + translation``, the centre being the fixed
            scan's middle; it includes the offset between the two scans' middles.
        iterations: optimiser iterations over all resolution levels.
        stop_condition: the optimiser's own words for why it stopped.
        overlap_fraction: share of the fixed scan's voxels that land inside the
            moving scan.
    """

    transform: sitk.Euler3DTransform
    final_metric: float
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    iterations: int
    stop_condition: str
    overlap_fraction: float = 1.0

    @property
    def converged(self) -> bool:
        """False when the optimiser ran out of iterations on the last level: look at
        the result before trusting it."""
        return "maximum number of iterations" not in self.stop_condition.lower()

    def describe(self) -> str:
        """One line for a terminal or a status bar."""
        rot = ", ".join(f"{a:+.2f}" for a in self.rotation_deg)
        shift = ", ".join(f"{t:+.1f}" for t in self.translation_mm)
        state = "converged" if self.converged else "NOT converged: check the result"
        return (
            f"rotation ({rot}) deg, translation ({shift}) mm, Mattes MI {self.final_metric:.4f}, "
            f"{self.iterations} iterations, overlap {self.overlap_fraction:.0%}, {state}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, as ``medstyle`` reports it."""
        return {
            "method": "rigid (Euler 3-D), Mattes mutual information, CT moved onto MR",
            "rotation_deg_xyz": [round(a, 4) for a in self.rotation_deg],
            "translation_mm_lps": [round(t, 4) for t in self.translation_mm],
            "center_lps_mm": [round(c, 4) for c in self.transform.GetCenter()],
            "final_metric": round(self.final_metric, 6),
            "iterations": self.iterations,
            "converged": self.converged,
            "stop_condition": self.stop_condition,
            "overlap_fraction": round(self.overlap_fraction, 4),
        }


@dataclass
class PairedStudy:
    """A CT and an MR of one patient on exactly the same grid.

    Attributes:
        ct: the CT in HU, resampled onto the MR's slices and the N x N matrix.
        mr: the MR in MR units (bias-corrected when ``n4_applied``), N x N.
        registration: how the CT was moved onto the MR, ``None`` when the scans'
            own coordinates were used.
        n4_applied: whether the MR was N4 bias-corrected.
        check: whether the pair is plausible (:mod:`trainer.data.pair_check`).
    """

    ct: Volume
    mr: Volume
    registration: RigidRegistration | None
    n4_applied: bool
    check: PairingCheck

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of how the pair was made."""
        return {
            "shape_zyx": list(self.mr.shape),
            "spacing_mm_zyx": [round(s, 6) for s in self.mr.spacing_mm],
            "n4_applied": self.n4_applied,
            "registration": None if self.registration is None else self.registration.to_dict(),
        }


# -- N4 -------------------------------------------------------------------------------


def n4_correct(mr: Volume, *, shrink: int = 4) -> Volume:
    """N4 bias-field correction of an MR volume.

    N4 runs on a copy shrunk ``shrink`` times in-plane (and along z only as far as
    keeps the voxels no longer than they are wide), inside an Otsu body mask; the
    smooth log bias field it finds is then evaluated on the full-resolution grid and
    divided out. The result is scaled so the mean inside the body mask is what it
    was, so MR units stay MR units.

    Args:
        mr: MR volume ``[z, y, x]`` in scanner units (non-negative).
        shrink: in-plane shrink factor for fitting (1 = full resolution, slow).

    Returns:
        The corrected volume (same grid), ``meta["n4"]`` describing what was done.

    Raises:
        InvalidScanError: the volume has no body to correct (empty Otsu mask) or is
            too small for N4 (:func:`n4_unsuitable` says why).
        RegistrationError: ITK's N4 failed (the message names the MR).
        ConfigError: ``shrink`` below 1.
    """
    if isinstance(shrink, bool) or not isinstance(shrink, int) or shrink < 1:
        raise ConfigError(f"N4 shrink factor must be a whole number >= 1, got {shrink!r}")
    unsuitable = n4_unsuitable(mr)
    if unsuitable:
        raise InvalidScanError(f"N4 bias correction cannot run: {unsuitable}", mr.source or None)
    image = mr.to_sitk()
    # Otsu splits body from background; N4 takes logs, so only positive voxels count.
    mask = sitk.OtsuThreshold(image, 0, 1, 200) & sitk.Cast(image > 0, sitk.sitkUInt8)
    mask_array = sitk.GetArrayViewFromImage(mask).astype(bool)
    if mask_array.sum() < 100:
        raise InvalidScanError("N4 bias correction found no body in the MR", mr.source or None)

    factors = _shrink_factors(mr, shrink)
    small_image = sitk.Shrink(image, factors)
    small_mask = sitk.Shrink(mask, factors)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([50, 50, 50, 50])
    try:
        corrector.Execute(small_image, small_mask)
        log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image))
    except RuntimeError as err:  # ITK's text is for its developers: say what failed
        raise RegistrationError(
            f"N4 bias correction failed on this {mr.shape} voxel (z, y, x) MR "
            f"(ITK: {_last_line(err)}); pass --no-n4 to skip it",
            mr.source or None,
        ) from err

    corrected = mr.array / np.exp(log_bias)
    # The bias field's overall scale is arbitrary: restore the mean level in the body.
    corrected *= mr.array[mask_array].mean() / corrected[mask_array].mean()
    return mr.with_array(
        corrected.astype(np.float32),
        meta={
            **mr.meta,
            "n4": {
                "shrink_xyz": list(factors),
                "fitting_levels": len(corrector.GetMaximumNumberOfIterations()),
                "mask_voxels": int(mask_array.sum()),
            },
        },
    )


def n4_unsuitable(mr: Volume) -> str | None:
    """Why N4 cannot correct ``mr`` (too few voxels for a 3-D bias field), or ``None``."""
    if min(mr.shape) < N4_MIN_AXIS_VOXELS:
        return f"the MR has {mr.shape} voxels (z, y, x); N4 needs {N4_MIN_AXIS_VOXELS} along each"
    if mr.array.size < N4_MIN_VOXELS:
        return f"the MR has only {mr.array.size} voxels; N4 needs {N4_MIN_VOXELS}"
    return None


def _shrink_factors(volume: Volume, shrink: int) -> list[int]:
    """Shrink factors ``(x, y, z)``: ``shrink`` in-plane; along z only while the
    shrunk z voxel stays no longer than the shrunk in-plane pixel (thick MR slices
    are not shrunk at all); and on every axis no more than leaves
    :data:`N4_MIN_SHRUNK_VOXELS` voxels (a short axis is not shrunk)."""
    sz, sy, sx = volume.spacing_mm
    nz, ny, nx = volume.shape
    in_plane_mm = shrink * min(sx, sy)
    fz = max(1, int(in_plane_mm // sz))
    return [
        max(1, min(factor, n // N4_MIN_SHRUNK_VOXELS))
        for factor, n in ((shrink, nx), (shrink, ny), (fz, nz))
    ]


# -- registration ---------------------------------------------------------------------


def register_rigid(fixed: Volume, moving: Volume, *, seed: int = 0) -> RigidRegistration:
    """Rigidly register ``moving`` (CT) to ``fixed`` (MR).

    SimpleITK's registration framework: Mattes mutual information (50 bins, random
    sampling with a fixed ``seed`` so a run can be repeated), an Euler 3-D transform
    started at the image centres (as Elastix's standard settings do), three
    resolution levels (shrink 4, 2, 1 with smoothing 2, 1, 0 voxels), regular-step
    gradient descent with scales from physical shifts, linear interpolation.

    Args:
        fixed: the MR (its grid is where the metric is sampled).
        moving: the CT.
        seed: seed of the random metric sampling.

    Returns:
        The transform from fixed to moving points and how it went.

    Raises:
        RegistrationError: the optimiser fails or the scans do not overlap.
        ConfigError: a negative ``seed``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"registration seed must be a whole number >= 0, got {seed!r}")
    names = f"{moving.source or 'moving scan'} onto {fixed.source or 'fixed scan'}"
    for volume in (fixed, moving):
        _check_registrable(volume, names)
    fixed_image = fixed.to_sitk()
    moving_image = moving.to_sitk()
    initial = sitk.CenteredTransformInitializer(
        fixed_image,
        moving_image,
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # The same number of random samples at every level: a fixed percentage leaves too
    # few points on the coarse level of a small scan (the optimiser then wanders off)
    # and more than needed at full resolution.
    method.SetMetricSamplingPercentagePerLevel(
        _sampling_fractions(fixed.shape, SHRINK_FACTORS, METRIC_SAMPLES),
        # ITK reads seed 0 as "seed from the wall clock": shift by one so every seed,
        # 0 included, repeats.
        seed + 1,
    )
    method.SetInterpolator(sitk.sitkLinear)
    # With scales from physical shifts a step is in mm (rotations: mm at the image
    # edge); halving the step on every turn settles well below a millimetre.
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-3,
        numberOfIterations=200,
        relaxationFactor=0.5,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_SIGMAS_VOXELS))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)

    iterations = 0

    def count() -> None:
        nonlocal iterations
        iterations += 1

    method.AddCommand(sitk.sitkIterationEvent, count)
    try:
        result = method.Execute(fixed_image, moving_image)
    except RuntimeError as err:
        reason = _last_line(err)
        if "outside" in reason.lower() or "samples" in reason.lower():
            reason = "the scans do not overlap"
        raise RegistrationError(f"registering {names} failed: {reason}") from err

    transform = sitk.Euler3DTransform(_innermost(result))
    params = transform.GetParameters()
    if not all(math.isfinite(p) for p in params):
        raise RegistrationError(f"registering {names} failed: the transform diverged")
    overlap = _overlap_fraction(fixed, moving, transform)
    if overlap < MIN_OVERLAP_FRACTION:
        raise RegistrationError(
            f"registering {names} failed: the scans do not overlap "
            f"(only {overlap:.0%} of the fixed scan lies inside the moving scan)"
        )
    return RigidRegistration(
        transform=transform,
        final_metric=float(method.GetMetricValue()),
        rotation_deg=tuple(math.degrees(a) for a in params[:3]),  # type: ignore[arg-type]
        translation_mm=tuple(float(t) for t in params[3:]),  # type: ignore[arg-type]
        iterations=iterations,
        stop_condition=method.GetOptimizerStopConditionDescription(),
        overlap_fraction=overlap,
    )


def _check_registrable(volume: Volume, names: str) -> None:
    """Raise a plain :class:`RegistrationError` for scans the framework cannot take."""
    what = volume.source or "a scan"
    if min(volume.shape) < 4:
        raise RegistrationError(
            f"cannot register {names}: {what} has {volume.shape} voxels (z, y, x); "
            "it needs at least 4 along each axis"
        )
    values = volume.array
    if not np.isfinite(values).all():
        raise RegistrationError(f"cannot register {names}: {what} has NaN or infinite values")
    if float(values.max()) == float(values.min()):
        raise RegistrationError(
            f"cannot register {names}: {what} is one constant value, nothing to match"
        )


def _sampling_fractions(
    shape: tuple[int, int, int], shrink_factors: tuple[int, ...], samples: int
) -> list[float]:
    """Fraction of the voxels of each shrunk level that gives about ``samples`` points."""
    fractions = []
    for factor in shrink_factors:
        voxels = math.prod(max(1, n // factor) for n in shape)
        fractions.append(min(1.0, samples / voxels))
    return fractions


def _innermost(transform: sitk.Transform) -> sitk.Transform:
    """The Euler transform inside the composite one ``Execute`` returns."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        return composite.GetNthTransform(composite.GetNumberOfTransforms() - 1)
    return transform


def _overlap_fraction(fixed: Volume, moving: Volume, transform: sitk.Transform) -> float:
    """Share of the fixed voxels whose mapped point lies inside ``moving``."""
    moving_image = moving.to_sitk()
    mask = sitk.Image(moving_image.GetSize(), sitk.sitkUInt8) + 1
    mask.CopyInformation(moving_image)
    inside = sitk.Resample(mask, fixed.to_sitk(), transform, sitk.sitkNearestNeighbor, 0)
    return float(sitk.GetArrayViewFromImage(inside).mean())


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


# -- the pair -------------------------------------------------------------------------


def prepare_pair(
    ct: Volume,
    mr: Volume,
    *,
    size: int = 256,
    register: bool = True,
    n4: bool = True,
    compare_patients: bool = True,
) -> PairedStudy:
    """Make one paired study: N4 on the MR, the CT registered and resampled onto the
    MR's slices, then both onto the ``size`` x ``size`` model matrix.

    Args:
        ct: the CT in HU (modality ``"CT"`` or unknown).
        mr: the T2 MR in scanner units (modality ``"MR"`` or unknown).
        size: model matrix, a power of two from 4 to 512.
        register: register the CT to the MR; ``False`` trusts the scans' own
            coordinates (same frame of reference).
        n4: N4 bias-correct the MR first (skipped, with a warning, for an MR too
            small for it: ``n4_applied`` then says false).
        compare_patients: fail the check when the scans name different patients or
            sexes (off where a manifest has paired them on purpose).

    Returns:
        A :class:`PairedStudy` whose ``ct`` and ``mr`` have the same shape
        ``[z, size, size]``, spacing, origin and direction (the MR's slices), and
        whose ``check`` says whether the pair is plausible (also in both volumes'
        ``meta["pairing_check"]``). A failed check is not an error here: the
        caller decides (``medstyle pair`` refuses it unless forced).

    Raises:
        ConfigError: bad ``size``.
        InvalidScanError: ``ct`` is labelled MR or ``mr`` labelled CT.
        RegistrationError: registration failed.
    """
    check_matrix_size(size)  # before the slow steps
    ct = _as_modality(ct, "CT")
    mr = _as_modality(mr, "MR")
    unsuitable = n4_unsuitable(mr) if n4 else None
    if unsuitable:
        log.warning("%s: N4 bias correction skipped: %s", mr.source or "MR", unsuitable)
        n4 = False
    if n4:
        mr = n4_correct(mr)
    registration = register_rigid(mr, ct) if register else None
    transform = registration.transform if registration else None
    paired_ct = resample_to_matrix(resample_to(ct, mr, transform), size)
    paired_mr = resample_to_matrix(mr, size)
    mattes_mi = registration.final_metric if registration else None
    check = check_pairing(
        ct, mr, paired_ct, paired_mr, transform, mattes_mi, compare_patients=compare_patients
    )
    for volume in (paired_ct, paired_mr):  # so a slot made from either carries the verdict
        volume.meta = {**volume.meta, "pairing_check": check.to_dict()}
    return PairedStudy(
        ct=paired_ct, mr=paired_mr, registration=registration, n4_applied=n4, check=check
    )


def _as_modality(volume: Volume, modality: str) -> Volume:
    """``volume`` labelled ``modality`` (it decides the padding value), or an error
    when it already carries the other label."""
    if volume.modality == modality:
        return volume
    if volume.modality is not None:
        raise InvalidScanError(
            f"is {volume.modality}, but it was given as the {modality} of the pair",
            volume.source or None,
        )
    return dataclasses.replace(volume, modality=modality, modality_source="option")
