"""The slices an evaluation runs on: labels of every row, images read on demand, latents.

The experiments need two things per slice: its ground-truth image (to score a generated
slice against) and its latent ``w`` (to generate from). Images come from a slice dataset
(``DATA.h5``, or a phantom cohort folder built into a temporary one at the model's
size); latents come from ``LATENTS.h5`` (``medstyle embed``) when given, else the rows an
experiment asks for are embedded here with :func:`embed_images` and cached, so a slice
used by several experiments is embedded once.

Only the rows an experiment uses are read or embedded: a paper-sized dataset (17,542
slices of 512 x 512) does not fit in memory whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from medstyle_gui.core.embed import MAX_REFINE_STEPS, REFINE_LR, REFINE_STEPS, embed_images
from medstyle_gui.core.latents import check_latents_model, read_latents
from medstyle_gui.core.model import Model
from trainer.data.dataset import (
    LABELS,
    MODALITY_CODES,
    build_dataset,
    dataset_normalisation,
    is_slice_dataset,
    open_dataset,
)
from trainer.data.latents_file import LABEL_COLUMNS, LatentsError
from trainer.errors import ConfigError, DatasetError

#: Slices embedded per refinement batch; bounds memory at 512 px.
BATCH = 16


@dataclass
class EvalData:
    """Slices to evaluate on (one row per slice of the dataset).

    ``labels``: every column of :data:`LABEL_COLUMNS` as ``[N]`` arrays (``volume`` =
    the dataset's series row). ``available [N]`` bool: rows that have a latent (all
    rows when latents are embedded here). ``path`` is None when only latents were given
    (then only experiments that need no images can run).
    """

    model: Model
    path: Path | None
    labels: dict[str, np.ndarray]
    available: np.ndarray
    source: str
    phantom: bool | None
    refine_steps: int
    refine_lr: float = REFINE_LR
    latents_path: Path | None = None
    _latents: np.ndarray | None = None  # [N, w_dim] from LATENTS.h5, rows as the dataset
    _cache: dict[int, np.ndarray] = field(default_factory=dict)
    _convert: bool = False  # dataset normalisation differs from the model's
    embedded: int = 0  # slices embedded here so far
    progress: Callable[[str], None] | None = None
    bf16: bool = False  # refine in bfloat16 (see embed_images)

    def __len__(self) -> int:
        return len(self.available)

    def modality(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """``"CT"``/``"MR"`` of each row."""
        return [MODALITY_CODES[int(m)] for m in self.labels["modality"][np.asarray(rows)]]

    def paired_rows(self, modality: str) -> np.ndarray:
        """Rows of ``modality`` whose paired slice exists and both have a latent."""
        pair = self.labels["pair_index"]
        code = MODALITY_CODES.index(modality)
        ok = (self.labels["modality"] == code) & (pair >= 0) & self.available
        rows = np.flatnonzero(ok)
        return rows[self.available[pair[rows]]]

    def volumes(self) -> dict[int, np.ndarray]:
        """``{volume: rows}`` of the available slices of each volume, inferior first."""
        out: dict[int, np.ndarray] = {}
        vol, index = self.labels["volume"], self.labels["slice_index"]
        for v in np.unique(vol[self.available & (vol >= 0)]):
            rows = np.flatnonzero((vol == v) & self.available)
            out[int(v)] = rows[np.argsort(index[rows], kind="stable")]
        return out

    def images(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Ground-truth slices ``[k, R, R]`` float32 on [-1, 1] (the model's normalisation)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.path is None:
            raise ConfigError(
                "this experiment compares with the slices themselves: give --data "
                "(the slice dataset or phantom cohort the latents came from)"
            )
        unique, inverse = np.unique(rows, return_inverse=True)
        with open_dataset(self.path) as f:
            images = f["images"][unique.tolist()].astype(np.float32)[inverse]
            norm = dataset_normalisation(f)
        if self._convert:
            for i, modality in enumerate(self.modality(rows)):
                native = norm.to_native(images[i], modality)
                images[i] = self.model.normalisation.to_unit(native, modality)
        return images

    def latents(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Latents ``[k, w_dim]`` float32 of ``rows`` (from LATENTS.h5, or embedded now)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.available[rows].all():
            raise ConfigError(f"{self.latents_path}: some slices asked for have no latent")
        if self._latents is not None:
            return self._latents[rows]
        missing = sorted({int(r) for r in rows} - set(self._cache))
        for start in range(0, len(missing), 4 * BATCH):
            chunk = missing[start : start + 4 * BATCH]
            if self.progress is not None:
                self.progress(
                    f"embedding slices {start + 1}-{start + len(chunk)} of {len(missing)} "
                    f"({self.refine_steps} refinement steps)"
                )
            result = embed_images(
                self.model,
                self.images(chunk),
                self.modality(chunk),
                steps=self.refine_steps,
                lr=self.refine_lr,
                batch=BATCH,
                bf16=self.bf16,
            )
            for row, w in zip(chunk, result.w, strict=True):
                self._cache[row] = w.astype(np.float32)
            self.embedded += len(chunk)
        return np.stack([self._cache[int(r)] for r in rows]) if len(rows) else self._empty()

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.model.w_dim), np.float32)

    def spacing_mm(self, rows: np.ndarray) -> float:
        """Median slice spacing (mm) of one volume's rows (inferior first); NaN if unknown."""
        z = self.labels["z_mm"][rows].astype(np.float64)
        steps = np.abs(np.diff(z)) / np.maximum(np.diff(self.labels["slice_index"][rows]), 1)
        steps = steps[np.isfinite(steps) & (steps > 0)]
        return float(np.median(steps)) if steps.size else math.nan


def _study_is_phantom(record: dict, base: Path) -> bool | None:
    """Whether a dataset's source study is a medstyle phantom (its study.json says so).
    A relative folder is looked for from here, then from ``base`` (the dataset's folder:
    datasets record study folders as they were given to ``dataset build``)."""
    folder = Path(str(record.get("folder", "")))
    for manifest in (folder / "study.json", base / folder / "study.json"):
        try:
            return bool(json.loads(manifest.read_text()).get("phantom", False))
        except (OSError, ValueError):
            continue
    return None


def _dataset_is_phantom(path: Path) -> bool | None:
    """True when every source study is a phantom, False when any is not, None if unknown."""
    with open_dataset(path) as f:
        raw = f.attrs.get("sources", "[]")
    try:
        records = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    flags = [_study_is_phantom(r, path.parent) for r in records if isinstance(r, dict)]
    if any(flag is False for flag in flags):
        return False
    return True if flags and all(flags) else None


def _read_labels(model: Model, path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """Label columns (plus ``volume``) of a slice dataset, and whether its intensity
    normalisation differs from the model's."""
    with open_dataset(path) as f:
        size = int(f.attrs["size"])
        if size != model.resolution:
            raise DatasetError(
                f"has {size} x {size} slices; the model needs {model.resolution} x "
                f"{model.resolution} (build the dataset with --size {model.resolution})",
                path,
            )
        labels = {name: f[name][()] for name in LABELS}
        first, count = f["series/first_row"][()], f["series/num_slices"][()]
        convert = dataset_normalisation(f).to_dict() != model.normalisation.to_dict()
    volume = np.full(len(labels["modality"]), -1, np.int32)
    for row, (a, k) in enumerate(zip(first, count, strict=True)):
        volume[a : a + k] = row
    labels["volume"] = volume
    return labels, convert


def _match_latents(labels: dict[str, np.ndarray], columns: dict, path: Path) -> np.ndarray:
    """Latents row of each dataset row (-1: none), matched by (volume, slice_index) and
    checked against the modality (latents of a subset of the dataset are fine)."""
    n = len(labels["modality"])
    same = len(columns["modality"]) == n and all(
        np.array_equal(columns[c], labels[c]) for c in ("modality", "volume", "slice_index")
    )
    if same:
        return np.arange(n)
    key = {
        (int(v), int(s)): i
        for i, (v, s) in enumerate(zip(columns["volume"], columns["slice_index"], strict=True))
        if v >= 0
    }
    index = np.array(
        [
            key.get((int(v), int(s)), -1)
            for v, s in zip(labels["volume"], labels["slice_index"], strict=True)
        ],
        np.int64,
    )
    hit = index >= 0
    if not hit.any():
        raise LatentsError("none of its slices belong to the given --data", path)
    if not np.array_equal(columns["modality"][index[hit]], labels["modality"][hit]):
        raise LatentsError("does not match the given --data (slice modalities differ)", path)
    return index


def _check_latents_source(lat: Any, data: Path, latents: Any) -> None:
    """Refuse latents embedded from another slice dataset: rows are matched by volume and
    slice number, which another dataset reuses for other patients."""
    if lat is None:
        return
    source = Path(str(lat.attrs.get("source", "")))
    if source.suffix in (".h5", ".hdf5") and source.is_file() and not source.samefile(data):
        raise LatentsError(
            f"was embedded from {source}, not from --data {data} (embed that dataset, or "
            "leave out --latents)",
            latents,
        )


def open_eval_data(
    model: Model,
    *,
    data: str | PathLike[str] | None = None,
    latents: str | PathLike[str] | None = None,
    workdir: str | PathLike[str] | None = None,
    quick: bool = False,
    refine_steps: int | None = None,
    refine_lr: float | None = None,
    bf16: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EvalData:
    """The slices to evaluate on.

    Args:
        model: the loaded bundle.
        data: a slice dataset (``.h5``) at the model's size, or a folder of paired
            studies (a phantom cohort), built into ``workdir`` at the model's size
            (quick: without registration and N4, as the phantoms need neither to pair).
            None: the dataset LATENTS.h5 was embedded from, when it is still there.
        latents: LATENTS.h5 from ``medstyle embed`` with this model; None: the rows the
            experiments use are embedded with ``refine_steps`` steps.
        workdir: an existing folder for a dataset built from a study folder.
        refine_steps: refinement steps when embedding (None: the paper's 350).
        refine_lr: refinement learning rate when embedding (None: the paper's 1e-3).
        bf16: refine in bfloat16 when embedding (faster on CPUs with bf16 units).
        progress: called with a line of text while building or embedding.
    """
    steps = REFINE_STEPS if refine_steps is None else int(refine_steps)
    if not 0 <= steps <= MAX_REFINE_STEPS:
        raise ConfigError(f"--refine-steps {steps}: must be from 0 to {MAX_REFINE_STEPS}")
    lr = REFINE_LR if refine_lr is None else float(refine_lr)
    if not lr > 0:
        raise ConfigError(f"--refine-lr {lr:g}: must be more than 0")
    if data is None and latents is None:
        raise ConfigError("evaluate needs --data (a slice dataset or a phantom cohort folder)")
    lat = None
    if latents is not None:
        lat = read_latents(latents)
        check_latents_model(lat, model, latents)
        source = str(lat.attrs.get("source", ""))
        if data is None and source and is_slice_dataset(source):
            data = source
    path, source_text, phantom = None, "latents only (no slice images)", None
    if data is not None:
        data = Path(data)
        if data.is_dir():
            if workdir is None:
                raise ConfigError("a study folder needs a work folder to build its slices in")
            if progress is not None:
                progress(f"building {model.resolution} px slices from {data}")
            path = build_dataset(
                [data],
                Path(workdir) / "slices.h5",
                size=model.resolution,
                register=not quick,
                n4=not quick,
                progress=False,
            )
            phantom = _dataset_is_phantom(path)
        elif is_slice_dataset(data):
            path = data
            phantom = _dataset_is_phantom(path)
            _check_latents_source(lat, path, latents)
        else:
            open_dataset(data)  # raises the precise DatasetError (missing, not HDF5...)
            raise DatasetError("is not a slice dataset", data)
        source_text = str(data)
    if path is not None:
        labels, convert = _read_labels(model, path)
    else:
        assert lat is not None
        labels = {c: lat.columns[c] for c in LABEL_COLUMNS}
        convert = False
    n = len(labels["modality"])
    w_rows = None
    if lat is not None:
        index = _match_latents(labels, lat.columns, Path(latents)) if path else np.arange(n)
        available = index >= 0
        w_rows = np.zeros((n, model.w_dim), np.float32)
        w_rows[available] = lat.w[index[available]]
        steps = int(lat.attrs.get("refine_steps", steps))
        lr = float(lat.attrs.get("refine_lr", REFINE_LR))
    else:
        available = np.ones(n, bool)
    return EvalData(
        model=model,
        path=path,
        labels=labels,
        available=available,
        source=source_text,
        phantom=phantom,
        refine_steps=steps,
        refine_lr=lr,
        latents_path=None if latents is None else Path(latents),
        _latents=w_rows,
        _convert=convert,
        progress=progress,
        bf16=bf16,
    )


# -- choosing slices ----------------------------------------------------------------------


def choose_paired(data: EvalData, n: int, seed: int) -> dict[str, np.ndarray]:
    """Source rows for a translation experiment: ``{"MR->CT": MR rows, "CT->MR": CT rows}``,
    about ``n / 2`` each (the paper drew 1,000 at random from both modalities), drawn with
    ``seed`` and sorted. Raises ConfigError when the data hold no paired slices."""
    rng = np.random.default_rng([seed, 1])
    out = {}
    for i, (source, target) in enumerate((("MR", "CT"), ("CT", "MR"))):
        rows = data.paired_rows(source)
        want = (n + 1) // 2 if i == 0 else n // 2
        k = min(want, rows.size)
        out[f"{source}->{target}"] = np.sort(rng.choice(rows, size=k, replace=False))
    if not any(r.size for r in out.values()):
        raise ConfigError(
            f"{data.source}: no paired CT/MR slices with latents (pair_index is -1 everywhere)"
        )
    return out
