"""Slices to embed (from a scan or a slice dataset) and the LATENTS.h5 file they become
(the layout is in :mod:`trainer.data.latents_file`)."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from medstyle_gui.core.embed import EmbedResult
from medstyle_gui.core.model import Model
from trainer.data.dataset import LABELS, MODALITY_CODES, SEX_CODES, is_slice_dataset, open_dataset
from trainer.data.latents_file import (
    ERROR_COLUMNS,
    Latents,
    LatentsError,
    read_latents_file,
    write_latents_file,
)
from trainer.data.read import read_volume
from trainer.data.resample import resample_to_matrix
from trainer.data.volume import Volume
from trainer.errors import ConfigError, DatasetError, InvalidScanError


@dataclass
class SliceSet:
    """Slices ready for the model: ``images [N, R, R]`` on [-1, 1] with their labels.

    ``labels`` holds every column of :data:`LABEL_COLUMNS` as ``[N]`` arrays;
    ``volume`` is the scan on the model matrix when the slices came from one scan
    (its geometry lets a result be written back as a volume), else None.
    """

    images: np.ndarray
    labels: dict[str, np.ndarray]
    source: str
    volume: Volume | None = None

    @property
    def modalities(self) -> list[str]:
        return [MODALITY_CODES[int(m)] for m in self.labels["modality"]]

    def subset(self, rows: np.ndarray) -> SliceSet:
        labels = {k: v[rows] for k, v in self.labels.items()}
        return SliceSet(self.images[rows], labels, self.source, None)


def slices_from_volume(model: Model, volume: Volume) -> SliceSet:
    """Every slice of ``volume`` on the model's matrix, normalised with the model's
    constants. The volume must say its modality (CT or MR) and hold some structure
    (:func:`check_embeddable`)."""
    if volume.modality not in MODALITY_CODES:
        raise ConfigError(
            f"{volume.source}: the modality is unknown; say it with --modality CT or MR"
        )
    check_embeddable(volume)
    on_matrix = resample_to_matrix(volume, model.resolution)
    images = model.normalisation.to_unit(on_matrix.array, volume.modality).astype(np.float32)
    n = on_matrix.num_slices
    sex = SEX_CODES.index(volume.sex) if volume.sex in SEX_CODES else -1
    labels = {
        "modality": np.full(n, MODALITY_CODES.index(volume.modality), np.uint8),
        "sex": np.full(n, sex, np.int8),
        "patient": np.zeros(n, np.int32),
        "slice_index": np.arange(n, dtype=np.int32),
        "slice_norm": on_matrix.normalised_slice_index.astype(np.float32),
        "z_mm": on_matrix.slice_positions_mm.astype(np.float32),
        "pair_index": np.full(n, -1, np.int64),
        "volume": np.zeros(n, np.int32),
    }
    return SliceSet(images, labels, str(volume.source), on_matrix)


def check_embeddable(volume: Volume) -> None:
    """Raise :class:`InvalidScanError` for a scan with nothing to embed: a single voxel,
    or the same value everywhere (a blank scan). Its slices would have no body to
    measure (errors of NaN) and the latents would describe no anatomy."""
    if volume.array.size == 1:
        raise InvalidScanError(
            "holds a single voxel; embedding needs slices of a scan", volume.source or None
        )
    low, high = float(volume.array.min()), float(volume.array.max())
    if low == high:
        raise InvalidScanError(
            f"every voxel is {low:g} {volume.units} (a blank scan): there is nothing to embed",
            volume.source or None,
        )


def slices_from_dataset(model: Model, path: str | PathLike[str]) -> SliceSet:
    """Every slice of a slice dataset (its matrix must be the model's)."""
    with open_dataset(path) as f:
        size = int(f.attrs["size"])
        if size != model.resolution:
            raise DatasetError(
                f"has {size} x {size} slices; the model needs {model.resolution} x "
                f"{model.resolution} (build the dataset with --size {model.resolution})",
                path,
            )
        images = f["images"][()]
        labels = {name: f[name][()] for name in LABELS}
        first, count = f["series/first_row"][()], f["series/num_slices"][()]
    volume = np.full(len(images), -1, np.int32)
    for row, (a, k) in enumerate(zip(first, count, strict=True)):
        volume[a : a + k] = row
    labels["volume"] = volume
    return SliceSet(images.astype(np.float32), labels, str(Path(path).resolve()))


def load_slices(
    model: Model,
    path: str | PathLike[str],
    *,
    series_uid: str | None = None,
    modality: str | None = None,
) -> SliceSet:
    """Slices from a scan (any format :func:`read_volume` reads) or a slice dataset."""
    if is_slice_dataset(path) and series_uid is None:
        return slices_from_dataset(model, path)
    return slices_from_volume(model, read_volume(path, series_uid=series_uid, modality=modality))


def parse_rows(text: str | None, n: int, what: str = "--slices") -> np.ndarray:
    """Rows ``[0, n)`` chosen by ``"a:b"``, ``"a:b:step"`` or ``"i,j,k"`` (None: all)."""
    if text is None:
        return np.arange(n)
    try:
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            rows = np.arange(n)[slice(*parts)]
        else:
            rows = np.array([int(p) for p in text.split(",")])
    except (ValueError, TypeError):
        raise ConfigError(f"{what} {text!r}: use a:b, a:b:step or i,j,k") from None
    if len(rows) == 0 or rows.min() < -n or rows.max() >= n:
        raise ConfigError(f"{what} {text!r} selects no slices of the {n} there are")
    return rows % n


def write_latents(
    path: str | PathLike[str],
    model: Model,
    slices: SliceSet,
    result: EmbedResult,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``result`` for ``slices`` as LATENTS.h5 (atomically)."""
    return write_latents_file(
        path,
        w=result.w,
        w_encoder=result.w_encoder,
        errors={name: getattr(result, name) for name in ERROR_COLUMNS},
        labels=slices.labels,
        attrs={
            "model_sha256": model.sha256,
            "w_dim": model.w_dim,
            "num_ws": model.num_ws,
            "refine_steps": result.steps,
            "refine_lr": result.lr,
            "source": slices.source,
        },
        overwrite=overwrite,
    )


def read_latents(path: str | PathLike[str]) -> Latents:
    """Read a LATENTS.h5 written by :func:`write_latents`."""
    return read_latents_file(path)


def check_latents_model(latents: Latents, model: Model, path: str | PathLike[str]) -> None:
    """Refuse latents embedded with another model (their W is another space)."""
    if latents.attrs.get("model_sha256") != model.sha256:
        raise LatentsError(
            f"was embedded with another model (generator hash "
            f"{str(latents.attrs.get('model_sha256'))[:12]}, this bundle "
            f"{model.sha256[:12]}); embed again with this model",
            path,
        )
