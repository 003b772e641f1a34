"""Refuse a scan whose header declares more voxel data than its file could hold.

A damaged or hostile header (a NIfTI of 1.3 kB declaring 30000^3 voxels) would
otherwise make the reader allocate the declared size first and fail late, with a
MemoryError or after gigabytes of zero-filled memory. The bound is cheap: file sizes
and a few header lines, never the voxel data.

For compressed data the uncompressed size is not stored reliably (gzip's ISIZE trailer
is the size modulo 2^32, and only of the last member of a multi-member file such as
bgzip writes), so the bound is deflate's largest possible ratio instead: one 258-byte
match per two bits, 1032:1. It never refuses a valid file, and catches every header
that declares more than a thousand times its file's size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from trainer.errors import ScanReadError

#: The most bytes one compressed byte of a deflate stream (gzip, zlib) can stand for.
DEFLATE_MAX_RATIO = 1032
#: How much of a MetaImage or NRRD file is searched for the end of its text header.
_HEADER_LIMIT = 1 << 16


def check_declared_size(path: Path, kind: str, reader: sitk.ImageFileReader) -> None:
    """Raise :class:`ScanReadError` naming ``path`` when the image size ``reader`` has read
    from the header (``ReadImageInformation``) cannot fit in the file's data.

    Args:
        path: the NIfTI, MetaImage or NRRD file.
        kind: its format name, as :data:`trainer.data.read.ITK_FORMATS` gives it.
        reader: a reader on ``path`` whose image information has been read.
    """
    size, itemsize = reader.GetSize(), _bytes_per_component(reader)
    capacity = None if itemsize is None else _data_capacity(path, kind, itemsize)
    if itemsize is None or capacity is None:
        return
    declared = math.prod(size) * itemsize * reader.GetNumberOfComponents()
    data_file, stored, ratio = capacity
    if declared <= stored * ratio:
        return
    voxels = " x ".join(map(str, size))
    held = f"{data_file.name} holds {_bytes(stored)}" if data_file != path else _bytes(stored)
    if ratio == DEFLATE_MAX_RATIO:
        why = f"but {held} of compressed data, at most {_bytes(stored * ratio)} unpacked"
    else:
        why = f"but {held} of data"
    raise ScanReadError(
        f"declares {voxels} voxels ({_bytes(declared)}) {why}: the file is truncated or its "
        "header is damaged",
        path,
    )


def _bytes_per_component(reader: sitk.ImageFileReader) -> int | None:
    """Bytes of one voxel component of the pixel type the header declares (None for a
    type SimpleITK cannot hold, which its reader then reports)."""
    try:
        probe = sitk.Image([1, 1], reader.GetPixelID())
        return np.dtype(sitk.GetArrayViewFromImage(probe).dtype).itemsize
    except (RuntimeError, TypeError, ValueError):
        return None


def _data_capacity(path: Path, kind: str, itemsize: int) -> tuple[Path, int, float] | None:
    """``(file holding the data, its bytes of data, most bytes of voxels per byte)``, or
    None where no cheap bound is known (bzip2, data split over several files)."""
    if kind == "NIfTI":  # by content: ITK reads gzip data under either name
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        return path, path.stat().st_size, DEFLATE_MAX_RATIO if gzipped else 1
    if kind == "MetaImage":
        return _metaimage_capacity(path)
    if kind == "NRRD":
        return _nrrd_capacity(path, itemsize)
    return None


def _metaimage_capacity(path: Path) -> tuple[Path, int, float] | None:
    """MetaImage: ``Key = Value`` lines up to ``ElementDataFile``, then (``LOCAL``) the
    data in the same file, or the name of a data file beside it."""
    fields, header_bytes = _header_fields(path, "=", last_key="elementdatafile")
    data_name = fields.get("elementdatafile")
    if header_bytes is None or data_name is None:
        return None
    ratio = DEFLATE_MAX_RATIO if fields.get("compresseddata", "").lower() == "true" else 1
    if data_name.upper() == "LOCAL":
        return path, path.stat().st_size - header_bytes, ratio
    return _detached(path, data_name, ratio)


def _nrrd_capacity(path: Path, itemsize: int) -> tuple[Path, int, float] | None:
    """NRRD: ``key: value`` lines up to a blank line, then the data (or a ``data file``)."""
    fields, header_bytes = _header_fields(path, ":", last_key=None)
    if header_bytes is None:
        return None
    encoding = fields.get("encoding", "raw").lower()
    # ascii: at least one character per voxel; bzip2's ratio has no useful bound
    ratios = {"raw": 1, "hex": 1, "gzip": DEFLATE_MAX_RATIO, "gz": DEFLATE_MAX_RATIO}
    ratios.update(dict.fromkeys(("ascii", "text", "txt"), itemsize))
    ratio = ratios.get(encoding)
    if ratio is None:
        return None
    data_name = fields.get("data file", fields.get("datafile"))
    if data_name is None:
        return path, path.stat().st_size - header_bytes, ratio
    return _detached(path, data_name, ratio)


def _detached(header: Path, data_name: str, ratio: float) -> tuple[Path, int, float] | None:
    """A data file named in a header: one plain name, relative to the header's folder
    (lists and numbered patterns of slice files are left to the reader)."""
    if data_name.upper().startswith("LIST") or "%" in data_name or " " in data_name.strip():
        return None
    data = header.parent / data_name
    if not data.is_file():
        return None  # the reader says the data file is missing
    return data, data.stat().st_size, ratio


def _header_fields(path: Path, sep: str, last_key: str | None) -> tuple[dict[str, str], int | None]:
    """The text header's ``key sep value`` lines, keys lower-cased, and its length in
    bytes (None when its end is not within the first :data:`_HEADER_LIMIT` bytes).

    It ends after the line whose key is ``last_key`` (MetaImage) or at the first blank
    line (NRRD; a detached ``.nhdr`` header is the whole file)."""
    with open(path, "rb") as f:
        head = f.read(_HEADER_LIMIT)
    whole_file = len(head) < _HEADER_LIMIT
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.splitlines(keepends=True):
        if not raw.endswith(b"\n") and not whole_file:  # cut by the read, not a line
            return fields, None
        offset += len(raw)
        line = raw.decode("latin-1").strip()
        if last_key is None and not line:
            return fields, offset
        key, found, value = line.partition(sep)
        if found:
            fields[key.strip().lower()] = value.strip()
        if last_key is not None and key.strip().lower() == last_key:
            return fields, offset
    return fields, offset if whole_file else None


def _bytes(n: float) -> str:
    """``n`` bytes in the largest fitting unit: '480 bytes', '2.1 GB', '54 TB'."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
