"""Resampling volumes: onto another scan's grid, and onto the model's N x N matrix.

Every function keeps physical positions: a point of the patient has the same LPS
coordinates (in mm) before and after, only the voxel grid changes. Values are
interpolated linearly; voxels that fall outside the source are filled with air
(-1024 HU for CT, 0 for MR, see :attr:`Volume.air_value`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from trainer.data.volume import Volume
from trainer.errors import ConfigError, RegistrationError

#: Matrix sizes a model can be trained at: the generator grows 4, 8, ..., 512.
MATRIX_SIZES = tuple(2**k for k in range(2, 10))


def resample_to(
    moving: Volume, reference: Volume, transform: sitk.Transform | None = None
) -> Volume:
    """Resample ``moving`` onto the voxel grid of ``reference``.

    Args:
        moving: the volume whose values are wanted.
        reference: gives the grid: shape ``[z, y, x]``, ``spacing_mm``, origin and
            direction of the result.
        transform: maps a point of the reference (LPS mm) to the point of ``moving``
            to read there, as :func:`register_rigid` returns it; ``None`` keeps
            the scans' own physical coordinates (identity).

    Returns:
        A Volume on the reference grid with ``moving``'s modality, patient and
        source; linear interpolation, air outside ``moving``.
    """
    transform = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    try:
        image = sitk.Resample(
            moving.to_sitk(),
            reference.to_sitk(),
            transform,
            sitk.sitkLinear,
            moving.air_value,
            sitk.sitkFloat32,
        )
    except RuntimeError as err:  # a transform that cannot be applied, say
        lines = str(err).strip().splitlines() or ["unknown error"]
        raise RegistrationError(
            f"could not resample onto the grid of {reference.source or 'the reference'}: "
            f"{lines[-1].strip()}",
            moving.source or None,
        ) from err
    array = sitk.GetArrayFromImage(image)
    return dataclasses.replace(
        moving,
        array=array,
        spacing_mm=reference.spacing_mm,
        origin_lps_mm=reference.origin_lps_mm,
        direction=reference.direction.copy(),
        # The slices are the reference's now: the source's slice thickness is no more.
        meta={
            **{k: v for k, v in moving.meta.items() if k != "slice_thickness_mm"},
            "resampled_to": reference.source or "reference grid",
        },
    )


def matrix_geometry(
    volume: Volume, size: int
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Spacing ``(z, y, x)`` in mm and LPS origin in mm of the ``size`` x ``size`` grid
    that :func:`resample_to_matrix` puts ``volume`` on.

    The in-plane pixel is square, ``max(field of view y, x) / size`` mm, so the
    longer side of the scan just fits and the aspect ratio is kept; the grid is
    centred on the scan's in-plane centre; slices keep their spacing and position;
    the direction cosines are the scan's.

    Raises:
        ConfigError: ``size`` is not a power of two in 4..512.
    """
    check_matrix_size(size)
    _, ny, nx = volume.shape
    sz, sy, sx = volume.spacing_mm
    pixel_mm = max(ny * sy, nx * sx) / size
    # Columns of `steps`: the LPS mm moved by one index step along x, y and z.
    old_steps = volume.direction * np.array([sx, sy, sz])
    new_steps = volume.direction * np.array([pixel_mm, pixel_mm, sz])
    # Voxel centres sit at integer indices, so the middle of n voxels is (n - 1) / 2:
    # put the middle of the new slice 0 where the middle of the old slice 0 is.
    centre = np.asarray(volume.origin_lps_mm) + old_steps @ [(nx - 1) / 2, (ny - 1) / 2, 0]
    origin = centre - new_steps @ [(size - 1) / 2, (size - 1) / 2, 0]
    return (sz, pixel_mm, pixel_mm), (float(origin[0]), float(origin[1]), float(origin[2]))


def resample_to_matrix(volume: Volume, size: int) -> Volume:
    """Put every slice of ``volume`` on a ``size`` x ``size`` in-plane matrix.

    Args:
        volume: any volume (its slice axis z is kept: same number of slices, same
            slice spacing and positions).
        size: the model's matrix, a power of two from 4 to 512.

    Returns:
        A Volume of shape ``[z, size, size]`` with square pixels of
        ``max(in-plane field of view) / size`` mm, centred on the scan, aspect ratio
        kept, the short side padded with air. Where the pixels grow, the slices are
        first smoothed in-plane so the new grid does not alias (as scikit-image's
        ``resize(anti_aliasing=True)`` does).

    Raises:
        ConfigError: ``size`` is not a power of two in 4..512.
    """
    spacing_mm, origin = matrix_geometry(volume, size)
    sigma_px = [0.0] + [
        max(0.0, (new / old - 1.0) / 2.0)
        for new, old in zip(spacing_mm[1:], volume.spacing_mm[1:], strict=True)
    ]
    source = volume
    if any(s > 0 for s in sigma_px):
        smoothed = ndimage.gaussian_filter(volume.array, sigma=sigma_px, mode="nearest")
        source = volume.with_array(smoothed.astype(np.float32, copy=False))
    reference = Volume(
        array=np.zeros((volume.num_slices, size, size), dtype=np.float32),
        spacing_mm=spacing_mm,
        origin_lps_mm=origin,
        direction=volume.direction,
        source=f"{size}x{size} matrix",
    )
    result = resample_to(source, reference)
    result.meta = {**volume.meta, "matrix": size, "matrix_pixel_mm": round(spacing_mm[1], 6)}
    return result


def check_matrix_size(size: int) -> None:
    """Raise :class:`ConfigError` unless ``size`` is a power of two from 4 to 512."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size not in MATRIX_SIZES:
        raise ConfigError(
            f"matrix size must be a power of two from 4 to 512 "
            f"({', '.join(map(str, MATRIX_SIZES))}), got {size!r}"
        )
