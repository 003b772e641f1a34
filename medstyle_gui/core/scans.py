"""Scan-level actions a user can take without a window: describe and convert.

The CLI's ``info`` and ``convert`` and the GUI's scan panel call these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainer.data.provenance import conversion
from trainer.data.read import read_volume
from trainer.data.write import write_volume


def describe_scan(
    path: str | os.PathLike[str], *, series_uid: str | None = None, modality: str | None = None
) -> dict[str, Any]:
    """Facts about a scan: modality (and how it was decided), shape, spacing in mm,
    geometry, value range in native units, series and transfer syntax for DICOM."""
    return read_volume(path, series_uid=series_uid, modality=modality).summary()


def convert_scan(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    series_uid: str | None = None,
    modality: str | None = None,
) -> Path:
    """Read ``src`` and write it to ``dst`` (format from ``fmt`` or ``dst``'s name).

    The array is written in LPS orientation, so converting a NIfTI gives what
    SimpleITK's ``DICOMOrient(image, "LPS")`` gives. Patient identity is not carried
    over. ``dst`` is checked before ``src`` is read so an existing target fails fast.
    """
    from trainer.data.write import output_format
    from trainer.files import ensure_can_write

    dst = Path(dst)
    fmt = output_format(dst, fmt)
    ensure_can_write(dst, overwrite)
    volume = read_volume(src, series_uid=series_uid, modality=modality)
    return write_volume(
        volume, dst, fmt=fmt, overwrite=overwrite, provenance=conversion(Path(src).name)
    )
