"""DICOM pixel padding: stored values that mark "no data" and must not be read as tissue.

Scanners pad outside the reconstruction circle (or around a rectangular image) with a
value no tissue has: GE, for one, stores -2000, which a CT rescale turns into -3024 HU.
DICOM names it in Pixel Padding Value (0028,0120) and, for a range of such values,
Pixel Padding Range Limit (0028,0121): both are stored (raw) values, compared before
Rescale Slope/Intercept, and the range runs between the two inclusive, in either order
(PS3.3 C.7.5.1.1.2). Padded voxels become air: -1024 HU for CT, 0 for MR.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from trainer.data.volume import AIR_VALUE


def padding_range(ds: Dataset) -> tuple[int, int] | None:
    """``(low, high)`` stored values (inclusive) that are padding, ``None`` if the file
    declares none (or an unreadable value)."""
    value = _stored(ds, "PixelPaddingValue")
    if value is None:
        return None
    limit = _stored(ds, "PixelPaddingRangeLimit")
    limit = value if limit is None else limit
    return min(value, limit), max(value, limit)


def fill_padding(array: np.ndarray, padded: np.ndarray, modality: str | None) -> float:
    """Set the ``padded`` voxels of ``array`` (native units, changed in place) to air;
    returns the value used: -1024 HU for CT, 0 for MR, else the lowest value that is
    not padding (air is the darkest thing in any scan)."""
    if modality in AIR_VALUE:
        air = AIR_VALUE[modality]
    else:
        rest = array[~padded]
        air = float(rest.min()) if rest.size else 0.0
    array[padded] = air
    return air


def padding_facts(
    count: int, total: int, bounds: tuple[int, int], air: float, units: str
) -> dict[str, int | str]:
    """What ``medstyle info`` says about padding: ``padding_voxels`` and a one-line
    ``padding_note``."""
    low, high = bounds
    what = f"pixel padding value {low}" if low == high else f"pixel padding range {low} to {high}"
    if count == 0:
        note = f"{what} (stored) declared; no voxel holds it"
    else:
        note = (
            f"{count} voxels ({100.0 * count / total:.1f} %) held the {what} (stored) "
            f"and were set to air ({air:g} {units})"
        )
    return {"padding_voxels": count, "padding_note": note}


def _stored(ds: Dataset, keyword: str) -> int | None:
    """A padding attribute as the stored value it names, ``None`` if absent or unreadable.

    The attribute is US or SS as Pixel Representation says; a value written as US for
    signed pixels is read back as the two's complement it stands for."""
    try:
        value = int(ds.get(keyword))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    bits = int(ds.get("BitsAllocated", 16) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and value >= 2 ** (bits - 1):
        value -= 2**bits
    return value
