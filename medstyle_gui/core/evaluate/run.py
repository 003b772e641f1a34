"""``evaluate``: run the paper's experiments on a model and write REPORT_DIR.

REPORT_DIR (written atomically: a temporary sibling folder, renamed when complete)::

    report.md              header, what is not comparable, per experiment "ours | paper"
    summary.json           the headline numbers and the run's facts, for machines
    modality.csv           modality sweep: per translation and alpha        modality.png
    slice_matrix.csv       main x sought mean error per modality             slice_walk.png
    slice_distance.csv     error against offset / distance (cm)              slice_distance.png
    slice_factors.csv      factor sweep: error per factor and sought slice
    slice_best_factors.csv the best factor per sought slice
    slice_summary.csv      units per slice, distance under threshold
    slice_volumes.csv      the volumes walked through
    mixing.csv             style transfer per layer and mode                 mixing.png
    curvature.csv          per direction                                     curvature.png
    curvature_points.csv   mean curvature at every surface point

The same model, data, options and seed give the same numbers (only the date differs).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

import trainer
from medstyle_gui.core.embed import REFINE_LR, REFINE_STEPS, refinement_settings
from medstyle_gui.core.evaluate import figures, report
from medstyle_gui.core.evaluate.curvature import curvature_table
from medstyle_gui.core.evaluate.data import EvalData, open_eval_data
from medstyle_gui.core.evaluate.mixing import style_transfer
from medstyle_gui.core.evaluate.modality import get_direction, modality_sweep
from medstyle_gui.core.evaluate.slice_walk import slice_walk
from medstyle_gui.core.model import Model, load_model
from trainer.errors import ConfigError
from trainer.files import atomic_folder, ensure_can_write

EXPERIMENTS = ("modality", "slice", "mixing", "curvature")


@dataclass(frozen=True)
class EvalSettings:
    """Sizes of the experiments: the paper's (``full``) or a smoke test (``quick``)."""

    modality_n: int  # source slices of the modality sweep (paper 1,000)
    alpha_steps: int  # alphas over [0.01, 100], log scale (paper 31 over [1, 100])
    slice_volumes: int | None  # volumes walked through (None: all; paper 200 = 100 x 2)
    slice_central: int  # central slices per volume (paper 51)
    slice_factors: int  # factors over [-0.8, 0.8] (paper: not said)
    mixing_n: int  # source slices of the style transfer (paper 1,000)
    curvature_points: int  # surface points (paper 1,000)
    curvature_tangents: int  # tangents per point (paper 512)
    curvature_samples: int  # embedded slices the surface points are sought between
    refine_steps: int  # refinement steps when slices are embedded here (paper 350)
    name: str = "custom"  # how the report names these sizes


FULL = EvalSettings(1000, 31, None, 51, 161, 1000, 1000, 512, 1000, 350, "full")
#: About a tenth of the paper's sizes: a first estimate in tens of minutes on a CPU.
MEDIUM = EvalSettings(100, 31, 6, 31, 33, 100, 100, 64, 200, 100, "medium")
QUICK = EvalSettings(12, 7, 2, 9, 9, 12, 16, 16, 32, 100, "quick")
#: The named sizes (``medstyle evaluate --sizes``).
SIZES = {s.name: s for s in (QUICK, MEDIUM, FULL)}


def parse_experiments(experiments: str | Sequence[str]) -> list[str]:
    """``"all"``, one name, a comma list or a sequence -> names in the canonical order."""
    items = [experiments] if isinstance(experiments, str) else list(experiments)
    names = {p.strip().lower() for item in items for p in str(item).split(",") if p.strip()}
    if "all" in names:
        return list(EXPERIMENTS)
    unknown = sorted(names - set(EXPERIMENTS))
    if unknown or not names:
        raise ConfigError(
            f"unknown experiment {unknown[0] if unknown else '(none)'!r}: use "
            f"{', '.join(EXPERIMENTS)} or all"
        )
    return [e for e in EXPERIMENTS if e in names]


def _not_comparable(model: Model, data: EvalData, quick: bool, s: EvalSettings) -> list[str]:
    notes = []
    if data.phantom:
        notes.append(
            "The slices are procedural phantoms (`medstyle phantom`), not the paper's 100 "
            "patients' pelvic CT and T2 MR (Umeå; not available here)."
        )
    else:
        notes.append(
            "The data are not the paper's cohort (100 patients' pelvic CT and T2 MR, Umeå); "
            f"{'their origin is unknown to medstyle' if data.phantom is None else 'real scans'}."
        )
    if model.resolution != 512:
        notes.append(
            f"The model makes {model.resolution} x {model.resolution} slices (the paper: 512 x "
            "512): it has no layers past its size, and its errors average over larger pixels."
        )
    if model.w_dim != 512:
        notes.append(
            f"W has {model.w_dim} dimensions (the paper: 512): distances along a unit normal "
            "(alpha, units per slice, factors, curvatures) are on another scale."
        )
    if data.refine_steps != REFINE_STEPS or data.refine_lr != REFINE_LR:
        notes.append(
            f"Slices were embedded with {data.refine_steps} refinement steps at learning rate "
            f"{data.refine_lr:g} (the paper: {REFINE_STEPS} at {REFINE_LR:g})."
        )
    if s != FULL:
        what = (
            "a smoke test, not an estimate"
            if s.name == "quick"
            else "estimates with wider intervals"
        )
        notes.append(
            f"{s.name.capitalize()} sizes: {s.modality_n} and {s.mixing_n} slices (the paper: "
            f"1,000), {s.alpha_steps} alphas (31), {s.slice_volumes} volumes x "
            f"{s.slice_central} central slices (200 x 51), {s.curvature_points} points x "
            f"{s.curvature_tangents} tangents (1,000 x 512): {what}."
        )
    notes.append(
        "The paper reports errors over the whole image only; the body-mask errors here "
        "have no counterpart there."
    )
    notes.append(
        "Normals here are unit length (in W, or in a dense net's last hidden layer); the "
        "paper does not say whether the normal it scaled by alpha was."
    )
    return notes


def evaluate(
    model: Model | str | PathLike[str],
    experiments: str | Sequence[str],
    *,
    data: str | PathLike[str] | None = None,
    latents: str | PathLike[str] | None = None,
    out: str | PathLike[str],
    quick: bool = False,
    seed: int = 0,
    refine_steps: int | None = None,
    refine_lr: float | None = None,
    progress: Callable[[str], None] | None = None,
    overwrite: bool = False,
    settings: EvalSettings | None = None,
    bf16: bool = False,
) -> Path:
    """Run ``experiments`` ("modality", "slice", "mixing", "curvature" or "all") and
    write the report folder ``out``; returns ``out``.

    Args:
        model: a loaded :class:`Model` or a bundle folder.
        data: slice dataset (.h5) at the model's size or a phantom cohort folder.
        latents: LATENTS.h5 embedded with this model (else slices are embedded here).
        quick: the small sizes of :data:`QUICK` instead of the paper's (:data:`FULL`); the
            phantom pairs are not registered then (they need no registration).
        seed: chooses slices and volumes and seeds the curvature points.
        refine_steps: refinement steps when embedding here (default: the settings').
        refine_lr: refinement learning rate when embedding here (default: the rate the
            model's directions were fitted with, else the paper's; see ``refinement_settings``).
        progress: called with a line of text as work proceeds.
        overwrite: replace an existing ``out`` (only once the new report is complete).
        settings: explicit sizes, e.g. :data:`MEDIUM` (overrides ``quick``'s choice).
        bf16: refine in bfloat16 when embedding here (see ``embed_images``).

    Raises:
        ScanWriteError: ``out`` exists and ``overwrite`` is false (checked first).
        ConfigError, DatasetError, LatentsError, BundleError: one-line reasons.
    """
    out = ensure_can_write(out, overwrite)
    names = parse_experiments(experiments)
    if seed < 0:  # numpy's generators take no negative seeds
        raise ConfigError(f"--seed {seed}: a seed is a whole number from 0 up")
    s = settings or (QUICK if quick else FULL)
    if refine_steps is not None:
        s = replace(s, refine_steps=int(refine_steps))
    if not isinstance(model, Model):
        model = load_model(model)
    if refine_lr is None:  # embed where the directions were learnt
        refine_lr = refinement_settings(model)[1]
    # fail on a missing direction before any embedding
    for name, needs in (("modality", "modality"), ("slice", "slice")):
        if name in names:
            get_direction(model, needs)
    if "curvature" in names and not model.directions:
        raise ConfigError(f"{model.folder}: the model has no directions to measure")
    say = progress or (lambda _line: None)
    started = _dt.datetime.now(_dt.timezone.utc)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".medstyle-eval-", dir=out.parent) as work:
        ev = open_eval_data(
            model,
            data=data,
            latents=latents,
            workdir=work,
            quick=quick,
            refine_steps=s.refine_steps,
            refine_lr=refine_lr,
            progress=say,
            bf16=bf16,
        )
        if ev.path is None and set(names) - {"curvature"}:
            raise ConfigError(
                "the modality, slice and mixing experiments compare with the slices "
                "themselves: give --data (the slice dataset or cohort the latents came from)"
            )
        results: dict[str, Any] = {}
        for name in names:
            t0 = time.perf_counter()
            say(f"experiment: {name}")
            if name == "modality":
                results[name] = modality_sweep(
                    model, ev, n=s.modality_n, steps=s.alpha_steps, seed=seed, progress=say
                )
            elif name == "slice":
                results[name] = slice_walk(
                    model,
                    ev,
                    volumes=s.slice_volumes,
                    central=s.slice_central,
                    factors=s.slice_factors,
                    seed=seed,
                    progress=say,
                )
            elif name == "mixing":
                results[name] = style_transfer(model, ev, n=s.mixing_n, seed=seed, progress=say)
            else:
                results[name] = curvature_table(
                    model,
                    ev,
                    points=s.curvature_points,
                    tangents=s.curvature_tangents,
                    samples=s.curvature_samples,
                    seed=seed,
                    progress=say,
                )
            timings[name] = round(time.perf_counter() - t0, 2)
        info = _header(model, ev, names, quick, seed, s, started, timings)
        with atomic_folder(out, overwrite) as tmp:
            _write(tmp, results, info)
    say(f"report written to {out}")
    return out


def _header(
    model: Model,
    ev: EvalData,
    names: list[str],
    quick: bool,
    seed: int,
    s: EvalSettings,
    started: _dt.datetime,
    timings: dict[str, float],
) -> dict[str, Any]:
    kind = {True: "phantom", False: "not phantom", None: "unknown origin"}[ev.phantom]
    latents = (
        f"{ev.latents_path} ({int(ev.available.sum())} slices)"
        if ev.latents_path
        else f"embedded here: {ev.embedded} slices, {ev.refine_steps} refinement steps "
        f"at learning rate {ev.refine_lr:g}" + (" (bf16)" if ev.bf16 else "")
    )
    facts = {
        "model": f"{model.name} ({model.folder})",
        "generator sha256": model.sha256,
        "resolution": f"{model.resolution} x {model.resolution}, w_dim {model.w_dim}, "
        f"num_ws {model.num_ws}",
        "directions": ", ".join(f"{k} ({d.kind})" for k, d in sorted(model.directions.items()))
        or "none",
        "data": f"{ev.source} ({kind}, {len(ev)} slices, {len(ev.volumes())} volumes)",
        "latents": latents,
        "mode": {
            "quick": "quick (smoke test sizes)",
            "medium": "medium (about a tenth of the paper's sizes)",
            "full": "full (the paper's sizes)",
        }.get(s.name, s.name),
        "sizes (n)": f"modality {s.modality_n} slices x {s.alpha_steps} alphas; slice "
        f"{'all' if s.slice_volumes is None else s.slice_volumes} volumes x "
        f"{s.slice_central} central slices, {s.slice_factors} factors; mixing "
        f"{s.mixing_n} slices; curvature {s.curvature_points} points x "
        f"{s.curvature_tangents} tangents between {s.curvature_samples} slices",
        "experiments": ", ".join(f"{n} ({timings.get(n, 0):.1f} s)" for n in names),
        "seed": seed,
        "date (UTC)": started.strftime("%Y-%m-%d %H:%M:%S"),
        "software": f"medstyle {trainer.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        "device": str(model.device),
    }
    return {
        "model": model.name,
        "facts": facts,
        "settings": asdict(s),
        "not_comparable": _not_comparable(model, ev, quick, s),
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _write(folder: Path, results: dict[str, Any], info: dict[str, Any]) -> None:
    """Every CSV, PNG, report.md and summary.json of the results into ``folder``."""
    sections = [report.header_section(info)]
    summary: dict[str, Any] = {"facts": info["facts"], "settings": info["settings"]}
    if "modality" in results:
        r = results["modality"]
        report.write_csv(folder / "modality.csv", r.rows)
        figures.modality_figure(r, folder / "modality.png")
        sections.append(report.modality_section(r, "modality.png"))
        summary["modality"] = {t: r.best(t) for t in ("MR->CT", "CT->MR")}
    if "slice" in results:
        r = results["slice"]
        report.write_csv(folder / "slice_matrix.csv", r.matrix_rows())
        report.write_csv(folder / "slice_distance.csv", r.distance_rows)
        report.write_csv(folder / "slice_factors.csv", _factor_matrix_rows(r))
        report.write_csv(folder / "slice_best_factors.csv", r.factor_rows)
        report.write_csv(folder / "slice_summary.csv", r.summary_rows)
        report.write_csv(folder / "slice_volumes.csv", r.volume_rows)
        figures.slice_walk_figure(r, folder / "slice_walk.png")
        figures.slice_distance_figure(r, folder / "slice_distance.png")
        sections.append(report.slice_section(r, ["slice_walk.png", "slice_distance.png"]))
        summary["slice"] = r.summary_rows
    if "mixing" in results:
        r = results["mixing"]
        report.write_csv(folder / "mixing.csv", r.rows)
        figures.mixing_figure(r, folder / "mixing.png")
        sections.append(report.mixing_section(r, "mixing.png"))
        summary["mixing"] = r.rows
    if "curvature" in results:
        r = results["curvature"]
        report.write_csv(folder / "curvature.csv", r.rows)
        points = [
            {"direction": n, "point": i, "mean_curvature": float(c)}
            for n, v in r.values.items()
            for i, c in enumerate(v)
        ]
        report.write_csv(
            folder / "curvature_points.csv", points, ["direction", "point", "mean_curvature"]
        )
        figures.curvature_figure(r, folder / "curvature.png")
        sections.append(report.curvature_section(r, "curvature.png"))
        summary["curvature"] = r.rows
    (folder / "report.md").write_text("\n".join(sections))
    (folder / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")


def _factor_matrix_rows(r) -> list[dict]:
    half = r.k // 2
    return [
        {"modality": m, "factor": float(f), "sought": j, "offset": j - half, "error": float(e)}
        for m, fac in r.factor_errors.items()
        for f, line in zip(r.factors, fac, strict=True)
        for j, e in enumerate(line)
    ]
