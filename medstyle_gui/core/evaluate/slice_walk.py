"""Longitudinal slice position by latent manipulation (Fetty et al. 2020, Fig. 4).

Within each volume (a patient's CT or MR), over its central K slices (the paper: 51):

* the matrix: main slice i is moved along the "slice" direction by
  ``(j - i) * units_per_slice`` (eq. 3, tau 1) and compared with slice j, for every
  pair (i, j); the errors are averaged over the volumes of each modality. Its diagonal
  (no move) is the reconstruction error of the slices themselves.
* error against distance: the matrix entries grouped by offset ``j - i``, in cm.
* the factor sweep: the centre slice is moved by factors in [-0.8, 0.8] (normal units)
  and compared with every sought slice; the factor that fits each offset best gives an
  estimate of the normal units per slice independent of the calibration.

The paper: about 0.031 (MR) / 0.029 (CT) normal units per slice, and errors below 75 HU
(CT) and 0.3 RMSE (MR) within 4 cm of the main slice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from medstyle_gui.core.evaluate.data import EvalData
from medstyle_gui.core.evaluate.modality import get_direction
from medstyle_gui.core.evaluate.scoring import Truths, error_unit, mean_ci, render
from medstyle_gui.core.latent import manipulate
from medstyle_gui.core.model import Model
from trainer.directions import calibrate_slice
from trainer.errors import ConfigError

#: The paper's normal units per slice and error thresholds.
PAPER_UNITS_PER_SLICE = {"MR": 0.031, "CT": 0.029}
THRESHOLD = {"CT": 75.0, "MR": 0.3}
PAPER_DISTANCE_CM = 4.0
#: The paper's factor range, normal units.
FACTOR_RANGE = 0.8


@dataclass
class SliceWalkResult:
    """Everything of the slice experiment (see the module docstring).

    ``matrix[m]`` / ``matrix_body[m]``: ``[K, K]`` mean error of main slice i moved to
    sought slice j (index relative to the first central slice) over the volumes of
    modality m. ``factor_errors[m]``: ``[F, K]`` mean error of the centre slice moved by
    ``factors[f]`` against sought slice j. ``distance_rows``: modality, offset (slices),
    distance_cm, mean, sd, ci_low, ci_high, n. ``summary_rows``: per modality the units
    per slice (used, measured from the signed distances, fitted from the factor sweep)
    and the largest distance with the error under the paper's threshold.
    """

    k: int
    units_per_slice: float
    calibration_source: str
    factors: np.ndarray
    widened: bool  # the factor range was widened to reach the outer sought slices
    matrix: dict[str, np.ndarray] = field(default_factory=dict)
    matrix_body: dict[str, np.ndarray] = field(default_factory=dict)
    factor_errors: dict[str, np.ndarray] = field(default_factory=dict)
    distance_rows: list[dict] = field(default_factory=list)
    factor_rows: list[dict] = field(default_factory=list)
    summary_rows: list[dict] = field(default_factory=list)
    volume_rows: list[dict] = field(default_factory=list)
    volume_matrices: list[np.ndarray] = field(default_factory=list)  # [K, K] per volume

    def matrix_rows(self) -> list[dict]:
        """The matrices as CSV rows: modality, main, sought (0 = first central slice), error."""
        out = []
        for m, mat in self.matrix.items():
            for i in range(self.k):
                for j in range(self.k):
                    out.append(
                        {
                            "modality": m,
                            "main": i,
                            "sought": j,
                            "offset": j - i,
                            "error": float(mat[i, j]),
                            "error_body": float(self.matrix_body[m][i, j]),
                            "unit": error_unit(m),
                        }
                    )
        return out


def choose_volumes(data: EvalData, count: int | None, seed: int) -> list[tuple[int, np.ndarray]]:
    """Volumes to walk through: all (``count`` None) or ``count`` drawn with ``seed``,
    alternating MR and CT so that a small run covers both. Each volume contributes its
    longest run of consecutive slices with latents (all of it when every slice has one);
    runs under 3 slices are skipped. Returns ``[(volume, rows inferior first)]``."""
    vols = {}
    for v, rows in data.volumes().items():
        run = _longest_run(rows, data.labels["slice_index"][rows])
        if run.size >= 3:
            vols[v] = run
    if not vols:
        raise ConfigError(f"{data.source}: no volume with 3 or more slices that have latents")
    if count is None or count >= len(vols):
        return sorted(vols.items())
    rng = np.random.default_rng([seed, 2])
    by_mod: dict[str, list[int]] = {"MR": [], "CT": []}
    for v, rows in vols.items():
        by_mod[data.modality(rows[:1])[0]].append(v)
    order = {m: list(rng.permutation(sorted(vs))) for m, vs in by_mod.items()}
    chosen: list[int] = []
    while len(chosen) < count:
        for m in ("MR", "CT"):
            if order[m] and len(chosen) < count:
                chosen.append(int(order[m].pop(0)))
    return sorted((v, vols[v]) for v in chosen)


def _longest_run(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The longest stretch of ``rows`` whose slice ``index`` goes up by one each step (the
    walk's offsets count slices, so a gap would break them)."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    runs = np.split(rows, breaks)
    return max(runs, key=len)


def _parabolic_min(errors: np.ndarray, xs: np.ndarray) -> tuple[float, bool]:
    """The x of the least error, refined by a parabola through its neighbours; and whether
    the minimum is inside the range (an edge minimum only bounds the estimate)."""
    k = int(np.nanargmin(errors))
    if k == 0 or k == len(xs) - 1:
        return float(xs[k]), False
    y0, y1, y2 = errors[k - 1 : k + 2]
    denom = y0 - 2 * y1 + y2
    step = xs[k + 1] - xs[k]
    shift = 0.5 * (y0 - y2) / denom if denom > 0 else 0.0
    return float(xs[k] + np.clip(shift, -1, 1) * step), True


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y against x (with intercept); NaN for fewer than 2 points."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def slice_walk(
    model: Model,
    data: EvalData,
    *,
    volumes: int | None = None,
    central: int = 51,
    factors: int = 161,
    factor_range: float = FACTOR_RANGE,
    seed: int = 0,
    direction: str = "slice",
    progress: Callable[[str], None] | None = None,
) -> SliceWalkResult:
    """The slice experiment over ``volumes`` volumes (None: all of them).

    Args:
        central: central slices per volume (the paper: 51); fewer when the shortest
            chosen volume is shorter.
        factors: factors in the sweep, evenly spaced over ``[-factor_range,
            factor_range]`` (the paper: 0.8), widened when the units per slice put the
            outer sought slices beyond it.
        direction: the bundle's slice direction (normal toward superior slices).
    """
    d = get_direction(model, direction)
    chosen = choose_volumes(data, volumes, seed)
    k = min(int(central), min(rows.size for _, rows in chosen))
    centre_rows = [rows[(rows.size - k) // 2 :][:k] for _, rows in chosen]
    if progress is not None:
        progress(f"slice walk: embedding {k} central slices of {len(chosen)} volumes")
    w_all = [data.latents(rows) for rows in centre_rows]

    # units per slice: the direction's calibration, else calibrated on these slices
    cal = d.calibration or {}
    if cal.get("units_per_slice") is not None:
        ups, cal_source = float(cal["units_per_slice"]), "the direction's calibration"
    else:
        rows = np.concatenate(centre_rows)
        cal = calibrate_slice(
            d,
            torch.from_numpy(np.concatenate(w_all)),
            data.labels["volume"][rows],
            data.labels["slice_index"][rows],
            data.labels["z_mm"][rows],
        )
        ups, cal_source = float(cal["units_per_slice"]), "calibrated on these slices"
    if not math.isfinite(ups) or ups == 0:
        raise ConfigError(f"direction {d.name!r}: units per slice {ups} cannot move a slice")
    half = k // 2
    reach = max(float(factor_range), 1.25 * abs(ups) * half)
    factor_values = np.linspace(-reach, reach, max(int(factors), 2))
    result = SliceWalkResult(k, ups, cal_source, factor_values, reach > factor_range)

    per_mod: dict[str, dict[str, list]] = {}
    for (vol, rows), crow, w_np in zip(chosen, centre_rows, w_all, strict=True):
        modality = data.modality(crow[:1])[0]
        if progress is not None:
            progress(f"slice walk: volume {vol} ({modality}), {k} x {k} slices")
        truths = Truths(data.images(crow), [modality] * k, model.normalisation)
        w = torch.from_numpy(w_np).to(model.device)
        mat = np.full((k, k), np.nan)
        mat_body = np.full((k, k), np.nan)
        for off in range(-(k - 1), k):
            main = np.arange(max(0, -off), min(k, k - off))
            with torch.no_grad():
                moved = manipulate(w[main], d, off * ups, 1.0, model.w_mean)
            mat[main, main + off], mat_body[main, main + off] = truths.score(
                render(model, moved), main + off
            )
        with torch.no_grad():
            moved = torch.cat(
                [
                    manipulate(w[half : half + 1], d, float(f), 1.0, model.w_mean)
                    for f in factor_values
                ]
            )
        gen = render(model, moved)
        fac = np.stack(
            [truths.score(gen, np.full(len(gen), j), body=False)[0] for j in range(k)], axis=1
        )
        with torch.no_grad():
            sd = d.signed_distance(w).cpu().numpy().astype(np.float64)
        acc = per_mod.setdefault(modality, {"mat": [], "body": [], "fac": [], "ups": [], "mm": []})
        acc["mat"].append(mat)
        acc["body"].append(mat_body)
        acc["fac"].append(fac)
        acc["ups"].append(_slope(data.labels["slice_index"][crow].astype(np.float64), sd))
        acc["mm"].append(data.spacing_mm(crow))
        result.volume_matrices.append(mat)
        result.volume_rows.append(
            {
                "volume": vol,
                "modality": modality,
                "patient": int(data.labels["patient"][crow[0]]),
                "slices": int(rows.size),
                "first_central_index": int(data.labels["slice_index"][crow[0]]),
                "spacing_mm": acc["mm"][-1],
                "units_per_slice_measured": acc["ups"][-1],
                "reconstruction_error": float(np.mean(np.diag(mat))),
            }
        )

    for modality in ("MR", "CT"):
        if modality not in per_mod:
            continue
        acc = per_mod[modality]
        stack = np.stack(acc["mat"])  # [V, K, K]
        result.matrix[modality] = stack.mean(axis=0)
        with warnings.catch_warnings():
            # a pair whose truth has no body in any volume stays NaN, said by the CSV
            warnings.simplefilter("ignore", RuntimeWarning)
            result.matrix_body[modality] = np.nanmean(np.stack(acc["body"]), axis=0)
        result.factor_errors[modality] = np.mean(acc["fac"], axis=0)
        spacing_cm = float(np.nanmedian(acc["mm"])) / 10.0
        below = _distance_rows(result, modality, stack, spacing_cm)
        fitted = _factor_rows(result, modality, half)
        result.summary_rows.append(
            {
                "modality": modality,
                "volumes": len(acc["mat"]),
                "central_slices": k,
                "spacing_mm": spacing_cm * 10.0,
                "units_per_slice_used": ups,
                "units_per_slice_measured": float(np.nanmean(acc["ups"])),
                "units_per_slice_factor_fit": fitted,
                "paper_units_per_slice": PAPER_UNITS_PER_SLICE[modality],
                "threshold": THRESHOLD[modality],
                "unit": error_unit(modality),
                "max_distance_cm_below_threshold": below,
                "paper_distance_cm": PAPER_DISTANCE_CM,
                "reconstruction_error": float(np.mean(np.diagonal(stack, axis1=1, axis2=2))),
            }
        )
    return result


def _distance_rows(result: SliceWalkResult, modality: str, stack: np.ndarray, cm: float) -> float:
    """Append the error-against-offset rows of one modality; return the largest distance
    (cm) up to which the mean error at every offset (both signs) is under the threshold."""
    k = stack.shape[1]
    means = {}
    for off in range(-(k - 1), k):
        main = np.arange(max(0, -off), min(k, k - off))
        stats = mean_ci(stack[:, main, main + off].ravel())
        means[off] = stats["mean"]
        result.distance_rows.append(
            {"modality": modality, "offset": off, "distance_cm": off * cm, **stats}
        )
    below = -1
    for step in range(k):
        if means[step] < THRESHOLD[modality] and means[-step] < THRESHOLD[modality]:
            below = step
        else:
            break
    return below * cm if below >= 0 else math.nan


def _factor_rows(result: SliceWalkResult, modality: str, half: int) -> float:
    """Append the factor-sweep rows (best factor per sought slice) of one modality and
    return the units per slice fitted to them (slope of best factor against offset)."""
    fac = result.factor_errors[modality]
    offsets, best = [], []
    for j in range(result.k):
        factor, inside = _parabolic_min(fac[:, j], result.factors)
        result.factor_rows.append(
            {
                "modality": modality,
                "sought": j,
                "offset": j - half,
                "best_factor": factor,
                "best_inside_range": inside,
                "error_at_best": float(np.nanmin(fac[:, j])),
                "expected_factor": (j - half) * result.units_per_slice,
            }
        )
        if inside:
            offsets.append(j - half)
            best.append(factor)
    return _slope(np.asarray(offsets, np.float64), np.asarray(best, np.float64))
