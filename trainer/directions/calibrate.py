"""Calibrating the slice direction: how far along its normal one slice (and one mm) is.

The paper found about 0.03 normal units per slice ("to obtain the next superior slice ...
move in the direction of the normal a distance of about 0.031"). Here each volume's signed
distances are regressed on its slice index; the median slope over volumes is robust to the
odd badly embedded volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainer.directions.model import Direction, DirectionError


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).ravel()


def calibrate_slice(
    direction: Direction,
    w: np.ndarray | torch.Tensor,
    volume_ids: np.ndarray,
    slice_index: np.ndarray,
    z_mm: np.ndarray,
) -> dict[str, Any]:
    """Normal units per slice and per mm of ``direction``; stored in ``direction.calibration``.

    Args:
        w: ``[N, w_dim]`` latents of slices.
        volume_ids: ``[N]`` volume of each slice (< 0: unknown, left out).
        slice_index: ``[N]`` slice number in its volume (0 the most inferior).
        z_mm: ``[N]`` slice position along the slice normal in mm (NaN: unknown).

    Returns ``{"units_per_slice", "units_per_mm", "mm_per_slice", "n_volumes",
    "slopes_iqr"}``: the median over volumes (with at least two distinct slices) of the
    least-squares slope of ``signed_distance`` against ``slice_index``; ``mm_per_slice`` is the
    median over volumes of the median z spacing between consecutive slices (per index step),
    and ``units_per_mm = units_per_slice / mm_per_slice`` (both None when no volume has two
    distinct finite z positions).
    """
    volume_ids = _numpy(volume_ids, np.int64)
    slice_index = _numpy(slice_index, np.float64)
    z_mm = _numpy(z_mm, np.float64)
    n = volume_ids.size
    if slice_index.size != n or z_mm.size != n or len(w) != n:
        raise DirectionError(
            f"calibrate_slice: w [{len(w)}], volume_ids [{n}], slice_index "
            f"[{slice_index.size}] and z_mm [{z_mm.size}] must have the same length"
        )
    with torch.no_grad():
        distance = direction.signed_distance(w).double().cpu().numpy()
    slopes, spacings = [], []
    for volume in np.unique(volume_ids[volume_ids >= 0]):
        rows = np.flatnonzero(volume_ids == volume)
        index = slice_index[rows]
        if np.unique(index).size < 2:
            continue
        slopes.append(float(np.polyfit(index, distance[rows], 1)[0]))
        order = np.argsort(index)
        steps = np.diff(index[order])
        dz = np.abs(np.diff(z_mm[order]))
        ok = (steps > 0) & np.isfinite(dz) & (dz > 0)
        if ok.any():
            spacings.append(float(np.median(dz[ok] / steps[ok])))
    if not slopes:
        raise DirectionError(
            f"cannot calibrate {direction.name!r}: no volume has two or more distinct slices"
        )
    units_per_slice = float(np.median(slopes))
    mm_per_slice = float(np.median(spacings)) if spacings else None
    q1, q3 = np.percentile(slopes, [25, 75])
    calibration = {
        "units_per_slice": units_per_slice,
        "units_per_mm": None if mm_per_slice is None else units_per_slice / mm_per_slice,
        "mm_per_slice": mm_per_slice,
        "n_volumes": len(slopes),
        "slopes_iqr": [float(q1), float(q3)],
    }
    direction.calibration = calibration
    return calibration
