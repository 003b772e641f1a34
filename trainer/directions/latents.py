"""Fit the standard directions from a LATENTS.h5 (written by ``medstyle embed``).

LATENTS.h5 (:mod:`trainer.data.latents_file`): ``w [N, w_dim]`` refined latents, and the
slice dataset's label columns ``modality``, ``sex``, ``patient``, ``slice_index``,
``slice_norm``, ``z_mm``, ``volume`` (``[N]``; -1 where unknown), among others.

Extra labels come from a CSV: a ``row`` column (the LATENTS.h5 row) and one column of 0/1
per label (e.g. ``tumour``); an empty cell or a row not in the CSV leaves that slice out.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.latents_file import read_latents_file
from trainer.directions.calibrate import calibrate_slice
from trainer.directions.fit import fit_direction
from trainer.directions.model import Direction, DirectionError, conditional_direction, slice_classes
from trainer.errors import ConfigError, DatasetError

BUILT_IN = {"modality": ("MR", "CT"), "sex": ("F", "M"), "slice": ("inferior", "superior")}


def read_latents(path: str | PathLike[str]) -> dict[str, np.ndarray]:
    """``w`` and the label columns of a LATENTS.h5 as numpy arrays (see
    :mod:`trainer.data.latents_file`; LatentsError naming the file when it is bad)."""
    latents = read_latents_file(path)
    return {"w": latents.w, **latents.columns}


def read_label_csv(path: str | PathLike[str], n_rows: int) -> dict[str, np.ndarray]:
    """Extra labels: ``{column: [n_rows] int8}`` with 0, 1, or -1 where not given.

    Raises DatasetError naming the file (and the line) for a missing or unreadable file, no
    ``row`` column, a row that is not an integer in ``[0, n_rows)`` or is repeated, or a
    value other than 0, 1 or empty.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DatasetError(f"{what} (expected a label CSV: row,<label>,...)", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            labels = [h for h in header if h != "row"]
            if "row" not in header or not labels:
                raise DatasetError("needs a 'row' column and at least one label column", path)
            if len(set(header)) != len(header) or any(not h for h in header):
                raise DatasetError("has empty or repeated column names", path)
            clash = sorted(set(labels) & set(BUILT_IN))
            if clash:
                raise DatasetError(f"label {clash[0]!r} clashes with a built-in direction", path)
            out = {name: np.full(n_rows, -1, dtype=np.int8) for name in labels}
            seen: set[int] = set()
            for record in reader:
                line = reader.line_num
                cells = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
                try:
                    row = int(cells["row"])
                except ValueError:
                    raise DatasetError(
                        f"line {line}: row {cells['row']!r} is not an integer", path
                    ) from None
                if not 0 <= row < n_rows:
                    raise DatasetError(
                        f"line {line}: row {row} is not in the latents file (0..{n_rows - 1})",
                        path,
                    )
                if row in seen:
                    raise DatasetError(f"line {line}: row {row} appears twice", path)
                seen.add(row)
                for name in labels:
                    value = cells.get(name, "")
                    if value not in ("", "0", "1"):
                        raise DatasetError(
                            f"line {line}: {name} is {value!r}, not 0, 1 or empty", path
                        )
                    if value:
                        out[name][row] = int(value)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot be read as CSV ({exc})", path) from None
    return out


def patient_groups(patient: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """``[N]`` group ids for the split: the patient; where unknown (-1) the volume (its slices
    are as alike as one patient's); where both are unknown, the slice alone."""
    patient = np.asarray(patient, dtype=np.int64)
    volume = np.asarray(volume, dtype=np.int64)
    groups = patient.copy()
    base = int(patient.max(initial=-1)) + 1
    by_volume = (patient < 0) & (volume >= 0)
    groups[by_volume] = base + volume[by_volume]
    base += int(volume.max(initial=-1)) + 1
    alone = (patient < 0) & (volume < 0)
    groups[alone] = base + np.flatnonzero(alone)
    return groups


def fit_directions(
    latents_path: str | PathLike[str],
    *,
    extra_labels_csv: str | PathLike[str] | None = None,
    trials: int = 20,
    seed: int = 0,
    max_epochs: int = 150,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Direction]:
    """Fit "modality" (MR=0, CT=1), "sex" (F=0, M=1, unknown left out), "slice"
    (:func:`slice_classes`, then :func:`calibrate_slice`), one direction per column of
    ``extra_labels_csv``, and the conditional "modality|slice".

    A built-in feature whose labelled slices hold one class only (a CT-only study, unknown
    sex) is skipped with a message to ``log``; a CSV label that cannot be fitted raises.
    """
    if trials < 0:
        raise ConfigError(f"--trials {trials}: must be 0 (logistic regression only) or more")
    if not 0 <= seed < 2**32:  # numpy's and torch's seeds
        raise ConfigError(f"--seed {seed}: must be from 0 to 2^32 - 1")
    say = log or (lambda _msg: None)
    data = read_latents(latents_path)
    w = data["w"].astype(np.float32)
    extra = {} if extra_labels_csv is None else read_label_csv(extra_labels_csv, len(w))
    groups = patient_groups(data["patient"], data["volume"])
    search = {"trials": trials, "seed": seed}
    out: dict[str, Direction] = {}
    for name, (labels, classes) in direction_labels(data, extra).items():
        present = np.unique(labels[labels >= 0])
        if present.size < 2 and name in BUILT_IN:
            say(f"{name}: skipped (the labelled slices hold {present.size} class(es))")
            continue
        try:
            direction = fit_direction(
                name, w, labels, groups, classes, **search, max_epochs=max_epochs, device=device
            )
        except DirectionError as exc:
            source = latents_path if name in BUILT_IN else extra_labels_csv
            raise DirectionError(f"direction {name!r}: {exc.reason}", source) from None
        m = direction.metrics
        say(
            f"{name}: {direction.kind} (logistic {m['logistic_accuracy']:.3f}, dense "
            f"{_fmt(m['dense_accuracy'])}, reverse R2 {_fmt(m['reverse_r2'])})"
        )
        out[name] = direction
    if "slice" in out:
        try:
            cal = calibrate_slice(
                out["slice"], w, data["volume"], data["slice_index"], data["z_mm"]
            )
        except DirectionError as exc:
            say(f"slice: not calibrated ({exc})")
        else:
            n = cal["n_volumes"]
            say(f"slice: {cal['units_per_slice']:.4g} units per slice (median of {n} volumes)")
    if "modality" in out and "slice" in out:
        both = conditional_direction(out["modality"], [out["slice"]])
        truth = _binary(data["modality"])
        pred = both.predict(w[truth >= 0]).numpy()
        both.metrics["accuracy_all_rows"] = float((pred == truth[truth >= 0]).mean())
        out[both.name] = both
    return out


def direction_labels(
    data: dict[str, np.ndarray], extra: dict[str, np.ndarray] | None = None
) -> dict[str, tuple[np.ndarray, tuple[str, str]]]:
    """Each direction's ``[N]`` int64 labels (0, 1; -1 left out) and its class names, from a
    LATENTS.h5's columns (:func:`read_latents`) and extra CSV labels: "modality" MR=0 CT=1,
    "sex" F=0 M=1, "slice" the paper's classes (:func:`slice_classes`), then each extra."""
    out = {
        "modality": (_binary(data["modality"]), BUILT_IN["modality"]),
        "sex": (_binary(data["sex"]), BUILT_IN["sex"]),
        "slice": (slice_classes(data["slice_norm"]).astype(np.int64), BUILT_IN["slice"]),
    }
    for name, labels in (extra or {}).items():
        out[name] = (np.asarray(labels, dtype=np.int64), (f"not {name}", name))
    return out


def score_directions(
    directions: dict[str, Direction],
    latents_path: str | PathLike[str],
    *,
    extra_labels_csv: str | PathLike[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """How well each direction classifies the slices of another LATENTS.h5 (e.g. held-out
    patients): ``{name: {"accuracy", "n", "per_class": {class: accuracy}, "kind"}}``.

    A conditional direction ("modality|slice") is scored on its base feature's labels. A
    direction whose labels the file lacks (no labelled slice) is left out; where the
    labelled slices hold one class only (one MR scan: all "MR"), ``per_class`` names that
    class alone and the accuracy is its share of slices classified so.
    """
    data = read_latents(latents_path)
    w = data["w"].astype(np.float32)
    extra = {} if extra_labels_csv is None else read_label_csv(extra_labels_csv, len(w))
    labels_of = direction_labels(data, extra)
    out: dict[str, dict[str, Any]] = {}
    for name, direction in directions.items():
        base = name.split("|")[0]
        if base not in labels_of:
            continue
        labels, classes = labels_of[base]
        rows = labels >= 0
        if not rows.any():
            continue
        with torch.no_grad():
            pred = direction.predict(w[rows]).cpu().numpy().astype(np.int64)
        truth = labels[rows]
        out[name] = {
            "kind": direction.kind,
            "accuracy": float((pred == truth).mean()),
            "n": int(rows.sum()),
            "per_class": {
                classes[c]: float((pred[truth == c] == c).mean()) for c in np.unique(truth)
            },
        }
    return out


def _binary(codes: np.ndarray) -> np.ndarray:
    """0/1 codes as int64, anything else (-1, 255 in a uint8 column) -1: left out."""
    codes = np.asarray(codes).astype(np.int64)
    return np.where(np.isin(codes, (0, 1)), codes, -1)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"
