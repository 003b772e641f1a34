"""LATENTS.h5: embedded slices, one row each (written by ``medstyle embed``).

Layout (``format = "medstyle-latents"``, ``format_version = 1``)::

    w                   [N, w_dim] float32  refined latent (directions are fitted on it)
    w_encoder           [N, w_dim] float32  the encoder's guess (refinement's start)
    error_encoder       [N] float32  MAE in HU (CT) / RMSE on [-1, 1] (MR), whole image
    error_refined       [N] float32  the same after refinement
    error_encoder_body  [N] float32  inside the body mask of the input slice
    error_refined_body  [N] float32
    modality, sex, patient, slice_index, slice_norm, z_mm, pair_index
                        [N]  the slice dataset's label columns, same codes (modality 0 MR
                             1 CT; sex 0 F 1 M -1 unknown); -1 where a scan does not say
    volume              [N] int32  which CT or MR volume the slice came from (series row)

Root attributes: ``format``, ``format_version``, ``model_sha256`` (generator.pt),
``w_dim``, ``num_ws``, ``refine_steps``, ``refine_lr`` (written since it became an
option; files without it used the paper's 1e-3), ``source``, ``created_utc``, ``software``.

The file lives in ``trainer`` because direction fitting reads it; the application's
embedding writes it through :func:`write_latents_file`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import trainer
from trainer.data.dataset import LABELS, MODALITY_CODES, SEX_CODES
from trainer.errors import ConfigError, MedstyleError
from trainer.files import atomic_file

FORMAT = "medstyle-latents"
FORMAT_VERSION = 1
#: Per-slice columns beside the latents: the dataset's labels and the volume row.
LABEL_COLUMNS = {**LABELS, "volume": "i4"}
ERROR_COLUMNS = ("error_encoder", "error_refined", "error_encoder_body", "error_refined_body")


class LatentsError(MedstyleError):
    """A LATENTS.h5 file is missing, malformed or from a newer version."""


@dataclass
class Latents:
    """A LATENTS.h5 file in memory: ``w [N, w_dim]``, the other columns ``[N]`` (or
    ``[N, w_dim]`` for ``w_encoder``) and the root attributes."""

    w: np.ndarray
    columns: dict[str, np.ndarray]
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return len(self.w)

    @property
    def modalities(self) -> list[str]:
        return [MODALITY_CODES[int(m)] for m in self.columns["modality"]]


def write_latents_file(
    path: str | PathLike[str],
    *,
    w: np.ndarray,
    w_encoder: np.ndarray,
    errors: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a LATENTS.h5 atomically. ``errors`` holds :data:`ERROR_COLUMNS`, ``labels``
    :data:`LABEL_COLUMNS`; ``attrs`` (model_sha256, w_dim, num_ws, refine_steps, refine_lr, source)
    join the format attributes."""
    path = Path(path)
    if path.suffix not in (".h5", ".hdf5"):
        raise ConfigError(f"{path}: latents are written as HDF5 (.h5 or .hdf5)")
    n = len(w)
    with atomic_file(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("w", data=np.asarray(w, np.float32))
        f.create_dataset("w_encoder", data=np.asarray(w_encoder, np.float32))
        for name in ERROR_COLUMNS:
            f.create_dataset(name, data=np.asarray(errors[name], np.float32).reshape(n))
        for name, dtype in LABEL_COLUMNS.items():
            f.create_dataset(name, data=np.asarray(labels[name]).astype(dtype).reshape(n))
        f["modality"].attrs["names"] = list(MODALITY_CODES)
        f["sex"].attrs["names"] = list(SEX_CODES)
        f["error_encoder"].attrs["units"] = "MAE in HU for CT rows, RMSE on [-1, 1] for MR rows"
        f.attrs.update(dict(attrs))
        f.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "software": f"medstyle {trainer.__version__}",
            }
        )
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") else value


def read_latents_file(path: str | PathLike[str]) -> Latents:
    """Read a LATENTS.h5 (LatentsError naming the file when it is missing, not a latents
    file, newer than this version, or lacks a column)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise LatentsError(f"{what} (expected a LATENTS.h5 from 'medstyle embed')", path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise LatentsError("is not a readable HDF5 file", path) from None
    with f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise LatentsError("is not a medstyle latents file (run 'medstyle embed')", path)
        if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise LatentsError(
                f"has format version {attrs.get('format_version')}; this medstyle reads up "
                f"to {FORMAT_VERSION} (update medstyle)",
                path,
            )
        names = ["w", "w_encoder", *ERROR_COLUMNS, *LABEL_COLUMNS]
        missing = [n for n in names if n not in f]
        if missing:
            raise LatentsError(f"is damaged: '{missing[0]}' is missing", path)
        w = np.asarray(f["w"][()])
        columns = {n: np.asarray(f[n][()]) for n in names if n != "w"}
    n = len(w)
    if w.ndim != 2 or any(len(c) != n for c in columns.values()):
        raise LatentsError("has columns of different lengths (w must be [N, w_dim])", path)
    return Latents(w, columns, attrs)
