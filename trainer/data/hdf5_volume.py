"""One volume in one HDF5 file: the project's lossless native-units format.

Layout: dataset ``volume`` ``[z, y, x]`` float32 (gzip, one slice a chunk) in native
units and LPS orientation; root attributes ``format = "medstyle-volume"``,
``format_version``, ``spacing_mm`` (z, y, x), ``origin_lps_mm``, ``direction`` (3x3,
row-major), ``modality``, ``sex`` and ``provenance`` (JSON). No patient identity is
stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from trainer.data.provenance import Provenance
from trainer.data.volume import Volume
from trainer.errors import ScanReadError
from trainer.files import atomic_file

FORMAT = "medstyle-volume"
FORMAT_VERSION = 1


def open_hdf5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading, turning h5py's errors into one clear line."""
    try:
        return h5py.File(path, "r")
    except OSError:
        raise ScanReadError(
            "is not a readable HDF5 file (corrupt, truncated or another format)", path
        ) from None


def is_volume_file(path: Path) -> bool:
    with open_hdf5(path) as f:
        return f.attrs.get("format") == FORMAT


def read_h5_volume(path: Path) -> Volume:
    with open_hdf5(path) as f:
        try:
            array = f["volume"][()]
            attrs = dict(f.attrs)
            return Volume(
                array=array,
                spacing_mm=tuple(attrs["spacing_mm"]),
                origin_lps_mm=tuple(attrs["origin_lps_mm"]),
                direction=np.asarray(attrs["direction"]).reshape(3, 3),
                modality=attrs.get("modality") or None,
                modality_source="hdf5" if attrs.get("modality") else "unknown",
                sex=attrs.get("sex") or None,
                source=str(path),
                meta={"format": "HDF5 volume"},
            )
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise ScanReadError(f"is a damaged medstyle volume file ({exc})", path) from None


def write_h5_volume(
    volume: Volume, path: Path, *, provenance: Provenance, overwrite: bool = False
) -> Path:
    """Write ``volume`` to ``path`` atomically (never over an existing file unless asked)."""
    with atomic_file(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                "volume",
                data=volume.array,
                chunks=(1, *volume.array.shape[1:]),
                compression="gzip",
                compression_opts=4,
            )
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["spacing_mm"] = np.asarray(volume.spacing_mm)
            f.attrs["origin_lps_mm"] = np.asarray(volume.origin_lps_mm)
            f.attrs["direction"] = volume.direction.ravel()
            f.attrs["modality"] = volume.modality or ""
            f.attrs["sex"] = volume.sex or ""
            f.attrs["provenance"] = json.dumps(provenance.to_dict())
    return Path(path)
