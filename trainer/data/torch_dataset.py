"""A torch ``Dataset`` over an HDF5 slice dataset (see :mod:`trainer.data.dataset`).

The label columns (a few bytes per slice) are read once into memory; images are
read one slice at a time from a file handle that each process opens for itself on
first use, so the dataset is safe with ``DataLoader(num_workers > 0)`` (an HDF5
handle must not be shared across a fork).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.data.dataset import MODALITY_CODES, open_dataset, read_labels
from trainer.errors import DatasetError


class SliceDataset(Dataset):
    """Slices of a built dataset, optionally only some modalities or patients.

    Args:
        path: a slice dataset written by :func:`trainer.data.dataset.build_dataset`.
        modality: ``"CT"``, ``"MR"``, a list of them, or ``None`` for both.
        patients: patient ids to keep (one id or several), or ``None`` for all.

    Items are ``(image, labels)``: ``image`` a ``[1, N, N]`` float32 tensor in [-1, 1]
    (the dataset's normalisation), ``labels`` a dict of 0-d tensors ``modality``
    (0 MR, 1 CT), ``sex`` (0 F, 1 M, -1 unknown), ``slice_norm`` (0 inferior,
    1 superior), ``slice_index``, ``z_mm``, ``patient`` (index into
    :attr:`patient_ids`), ``pair_index`` (row of the paired slice, -1 if none) and
    ``row`` (this slice's row in the file).

    Raises:
        DatasetError: not a slice dataset, an unknown modality or patient id, or a
            selection with no slices.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        modality: str | Iterable[str] | None = None,
        patients: Iterable[str] | None = None,
    ) -> None:
        self.path = Path(path)
        labels = read_labels(self.path)
        self.patient_ids: list[str] = [str(p) for p in labels["patients"]]
        with open_dataset(self.path) as f:
            self.size = int(f["images"].shape[-1])

        keep = np.ones(labels["modality"].shape, dtype=bool)
        if modality is not None:
            wanted = [modality] if isinstance(modality, str) else list(modality)
            unknown = [m for m in wanted if m not in MODALITY_CODES]
            if unknown:
                raise DatasetError(f"unknown modality {unknown[0]!r} (CT or MR)", self.path)
            keep &= np.isin(labels["modality"], [MODALITY_CODES.index(m) for m in wanted])
        if patients is not None:
            wanted = [patients] if isinstance(patients, str) else [str(p) for p in patients]
            unknown = [p for p in wanted if p not in self.patient_ids]
            if unknown:
                shown = ", ".join(self.patient_ids[:12])
                more = len(self.patient_ids) - 12
                raise DatasetError(
                    f"has no patient '{unknown[0]}'; it holds {shown}"
                    + (f" and {more} more" if more > 0 else ""),
                    self.path,
                )
            keep &= np.isin(labels["patient"], [self.patient_ids.index(p) for p in wanted])
        if not keep.any():
            raise DatasetError("has no slices for this choice of modality and patients", self.path)

        #: File rows of the selected slices, in file order.
        self.rows = np.flatnonzero(keep)
        self.labels = {name: labels[name][self.rows] for name in _LABEL_TYPES}
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} out of range for {len(self)} slices")
        index = int(index) % len(self)
        row = int(self.rows[index])
        image = torch.from_numpy(self._images()[row][None])
        labels = {
            name: torch.tensor(self.labels[name][index], dtype=dtype)
            for name, dtype in _LABEL_TYPES.items()
        }
        labels["row"] = torch.tensor(row, dtype=torch.int64)
        return image, labels

    def _images(self) -> h5py.Dataset:
        """The ``images`` dataset from this process's own handle (reopened after a fork)."""
        if self._file is None or self._pid != os.getpid():
            self._file = open_dataset(self.path)
            self._pid = os.getpid()
        return self._file["images"]

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next item)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        # A worker started by 'spawn' gets a pickled copy: without the open handle.
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to close
            pass


#: Label columns returned with each image, and their tensor types.
_LABEL_TYPES = {
    "modality": torch.int64,
    "sex": torch.int64,
    "patient": torch.int64,
    "slice_index": torch.int64,
    "slice_norm": torch.float32,
    "z_mm": torch.float32,
    "pair_index": torch.int64,
}
