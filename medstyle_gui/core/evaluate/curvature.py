"""Curvature of the directions' decision surfaces (Fetty et al. 2020, "Analysis of the
decision surface").

For each direction with a dense prediction net, the mean curvature at random points of
the net's decision surface in W (the paper: 1,000 points, each the mean over 512 random
tangent directions), their mean and sd and the D'Agostino-Pearson normality test
(:func:`trainer.curvature.mean_curvatures`, :func:`trainer.curvature.curvature_summary`).
The paper: sex mean -0.0013 (sd 0.0053, p < 4e-80), slice position mean -0.00039 (sd
0.00077, p < 1e-28). A direction with a logistic regression only has a plane for its
decision surface: its curvature is 0, which the table says instead of computing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medstyle_gui.core.evaluate.data import EvalData
from medstyle_gui.core.model import Model
from trainer.curvature import curvature_summary, mean_curvatures
from trainer.errors import ConfigError, MedstyleError

PAPER = {
    "sex": {"mean": -0.0013, "std": 0.0053, "p": 4e-80},
    "slice": {"mean": -0.00039, "std": 0.00077, "p": 1e-28},
}


@dataclass
class CurvatureResult:
    """``rows``: one per direction: ``direction``, ``selected`` (the direction's kind),
    ``surface`` (whose decision surface), ``points``, ``tangents``, ``mean``, ``std``,
    ``p`` (normality test), ``paper_mean``, ``paper_std``, ``paper_p``, ``note``.
    ``values``: ``{direction: [points]}`` mean curvature per surface point."""

    rows: list[dict]
    values: dict[str, np.ndarray]
    samples: int


def _surface_model(direction) -> str | None:
    """Which of the direction's models has a curved surface to measure: ``"dense"`` (the
    best dense prediction net of the fit, kept even when logistic regression was selected,
    as the paper measured), ``"selected"`` (a selected dense net), or None (logistic only)."""
    if getattr(direction, "dense", None) is not None:
        return "dense"
    return "selected" if direction.kind == "dense" else None


def _value(v) -> float:
    return math.nan if v is None else float(v)


def curvature_table(
    model: Model,
    data: EvalData,
    *,
    points: int = 1000,
    tangents: int = 512,
    samples: int = 1000,
    names: Sequence[str] | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CurvatureResult:
    """Mean curvatures of every direction's decision surface (or of ``names``).

    Args:
        points, tangents: surface points and random tangents per point (the paper:
            1,000 and 512).
        samples: latents of random slices between which surface points are sought
            (bisection between samples of opposite predicted class).
        seed: chooses the samples and seeds the points and tangents.
    """
    if not model.directions:
        raise ConfigError(f"{model.folder}: the model has no directions to measure")
    names = sorted(model.directions) if names is None else list(names)
    missing = [n for n in names if n not in model.directions]
    if missing:
        raise ConfigError(f"{model.folder}: the model has no {missing[0]!r} direction")
    rng = np.random.default_rng([seed, 4])
    avail = np.flatnonzero(data.available)
    rows_w = np.sort(rng.choice(avail, size=min(int(samples), avail.size), replace=False))
    w = torch.from_numpy(data.latents(rows_w))
    rows: list[dict] = []
    values: dict[str, np.ndarray] = {}
    for name in names:
        d = model.directions[name]
        paper = PAPER.get(name, {})
        row = {
            "direction": name,
            "selected": d.kind,
            "surface": "",
            "points": 0,
            "tangents": int(tangents),
            "mean": math.nan,
            "std": math.nan,
            "p": math.nan,
            "paper_mean": paper.get("mean", ""),
            "paper_std": paper.get("std", ""),
            "paper_p": paper.get("p", ""),
            "note": "",
        }
        surface = _surface_model(d)
        if surface is None:
            row.update(
                surface="logistic regression (a plane)",
                mean=0.0,
                std=0.0,
                note="logistic only: the decision surface is a plane, curvature 0",
            )
            rows.append(row)
            continue
        row["surface"] = "dense prediction net" + (
            "" if d.kind == "dense" else " (fitted beside the selected logistic regression)"
        )
        if progress is not None:
            progress(f"curvature: {name} ({points} points x {tangents} tangents)")
        try:
            v = mean_curvatures(
                d, w.to(d.device), points=points, tangents=tangents, seed=seed, model=surface
            )
        except MedstyleError as exc:
            # e.g. the samples hold one predicted class only: say so, keep the report
            row["note"] = f"not measured: {exc}"
            rows.append(row)
            continue
        values[name] = np.asarray(v, np.float64)
        summary = curvature_summary(values[name])
        row.update(
            points=int(summary["n"]),
            mean=_value(summary["mean"]),
            std=_value(summary["std"]),
            p=_value(summary["p"]),
            note=summary.get("message", ""),
        )
        rows.append(row)
    return CurvatureResult(rows, values, int(rows_w.size))
