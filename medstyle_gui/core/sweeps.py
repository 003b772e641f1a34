"""Error curves of one slice, for the explorer's plots: the paper's experiments in miniature.

* :func:`error_vs_alpha`: the error of the rendered slice against its truth while one
  direction's alpha runs over a range (Fetty et al. 2020, Fig. 3 for the modality
  direction and Fig. 4's row for the slice direction, for this one slice).
* :func:`error_per_layer`: the error when a second latent's styles are injected at each
  resolution layer in turn (the paper's style-transfer table, for this one slice).
* :func:`slider_range` / :func:`alpha_grid`: the alphas a direction's slider (and so its
  curve) spans, from what the model knows about the direction.

Nothing is re-implemented here: each point's latent comes from
:meth:`Renderer.latents` (the live view's moves, truncation and mixing), the masks of
an injection from :func:`evaluate.layer_masks`, images from :func:`evaluate.render`
(batched) and errors from :class:`evaluate.Truths` (the paper's MAE in HU for CT, RMSE on
[-1, 1] for MR, each also inside the truth's body mask). A generated slice is scored as
the modality of its truth, as the experiments do. Qt-free: the GUI runs these on a
worker thread with ``progress`` and ``cancel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from medstyle_gui.core import explore
from medstyle_gui.core.evaluate.mixing import MODES, layer_masks
from medstyle_gui.core.evaluate.scoring import BATCH, Truths, error_unit, render
from medstyle_gui.core.latent import layer_names, mix
from medstyle_gui.core.model import Model
from medstyle_gui.core.render import Renderer, RenderRequest
from trainer.errors import ConfigError, MedstyleError

#: Points on an error-against-alpha curve (the paper's modality sweep has 31).
CURVE_POINTS = 31
#: A direction's slider spans this many standard deviations of the signed distances of
#: random latents on either side (enough to carry a typical latent across the surface).
RANGE_SDS = 4.0
#: Random latents whose signed distances set a slider's range (seeded: the same model
#: always gives the same range).
RANGE_SAMPLES = 1000
#: The slice slider's half range in mm when no scan bounds it (about a pelvis's extent).
SLICE_HALF_RANGE_MM = 60.0

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


class SweepCancelled(MedstyleError):
    """The user (or a newer request) stopped a sweep before it finished."""


@dataclass
class ErrorCurve:
    """Errors of one slice at K points (alphas or injection layers).

    ``error`` / ``error_body``: ``[K]`` whole image and inside the truth's body mask, NaN
    where a point has no truth. ``unit``: the paper's measure of the truth's modality
    (``"MAE (HU)"`` or ``"RMSE ([-1, 1])"``; ``"mixed"`` when the truths differ in
    modality). ``reference``: the error with no injection (per layer) or None.
    """

    x: np.ndarray  # [K] alpha in normal units, or 0..K-1 for layers
    labels: list[str]  # [K] what each point is ("4x4", ...; alphas as text)
    error: np.ndarray  # [K]
    error_body: np.ndarray  # [K]
    unit: str
    truth_modality: list[str | None]  # [K]
    reference: float | None = None
    reference_body: float | None = None


# -- ranges ----------------------------------------------------------------------------------


def _nice(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``x`` (> 0): a range a user reads."""
    k = math.floor(math.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10.0**k >= x * (1 - 1e-9):
            return m * 10.0**k
    return 10.0 ** (k + 1)  # pragma: no cover - the loop always returns


#: slider_range results by direction object (kept alive with it, so an id is never reused)
_RANGES: dict[int, tuple[object, float]] = {}


@torch.no_grad()
def slider_range(model: Model, name: str) -> float:
    """Half range (normal units) of direction ``name``'s slider: ``RANGE_SDS`` standard
    deviations of the signed distances of ``RANGE_SAMPLES`` seeded random latents,
    rounded up to a readable number. The slice direction is usually shown in mm
    (:func:`slice_units_per_mm`), but this is its range in normal units all the same."""
    if name not in model.directions:
        raise ConfigError(f"this model has no direction {name!r}")
    direction = model.directions[name]
    cached = _RANGES.get(id(direction))
    if cached is not None and cached[0] is direction:
        return cached[1]
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(RANGE_SAMPLES, model.config.z_dim, generator=gen).to(model.device)
    sd = float(direction.signed_distance(model.G.mapping(z)).std())
    half = _nice(RANGE_SDS * sd) if math.isfinite(sd) and sd > 0 else 1.0
    if len(_RANGES) > 64:  # a few models' worth; a long session opens few
        _RANGES.clear()
    _RANGES[id(direction)] = (direction, half)
    return half


def slice_units_per_mm(model: Model, name: str = "slice") -> float | None:
    """Normal units per mm of a slice direction: its own calibration, else the "slice"
    direction's (conditional directions carry none); None when uncalibrated."""
    for key in (name, "slice"):
        direction = model.directions.get(key)
        cal = (direction.calibration or {}) if direction is not None else {}
        value = cal.get("units_per_mm")
        if value is not None and math.isfinite(float(value)) and abs(float(value)) > 1e-12:
            return float(value)
    return None


def slice_mm_per_slice(model: Model, name: str = "slice") -> float | None:
    """Slice spacing (mm) the slice direction was calibrated on (None when unknown)."""
    for key in (name, "slice"):
        direction = model.directions.get(key)
        value = ((direction.calibration or {}) if direction is not None else {}).get("mm_per_slice")
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    return None


def slider_half_range(model: Model, name: str, num_slices: int | None = None) -> float:
    """Half range (normal units) of direction ``name``'s slider and error curve.

    A slice direction calibrated in mm spans the scan's length either way (``num_slices``
    slices; :data:`SLICE_HALF_RANGE_MM` without a scan), so every sought slice is in
    reach; any other direction spans :func:`slider_range`."""
    direction = model.directions.get(name)
    if direction is not None and explore.is_slice_direction(direction):
        per_mm = slice_units_per_mm(model, name)
        mm_per_slice = slice_mm_per_slice(model, name)
        if per_mm is not None and mm_per_slice is not None:
            if num_slices is not None and num_slices > 1:
                half_mm = (num_slices - 1) * mm_per_slice
            else:
                half_mm = SLICE_HALF_RANGE_MM
            return abs(per_mm) * half_mm
    return slider_range(model, name)


def alpha_grid(low: float, high: float, current: float | None = None, n: int = CURVE_POINTS):
    """``n`` evenly spaced alphas over ``[low, high]``, plus 0 and ``current`` (so the
    curve passes exactly through the unmoved slice and the slider's position); sorted."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ConfigError(f"alpha range [{low}, {high}] is empty")
    values = np.linspace(low, high, max(int(n), 2))
    extra = [0.0] if low <= 0.0 <= high else []
    if current is not None and math.isfinite(current):
        extra.append(float(current))
    return np.unique(np.concatenate([values, np.asarray(extra, np.float64)]))


# -- scoring ---------------------------------------------------------------------------------


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise SweepCancelled("stopped")


def _score(
    model: Model,
    ws: torch.Tensor,
    truths: Sequence[np.ndarray | None],
    modalities: Sequence[str | None],
    progress: Progress | None,
    cancel: Cancel | None,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``ws [K, num_ws, w_dim]`` in batches and score point k against
    ``truths[k]`` (native units) as ``modalities[k]``: ``(error [K], error_body [K])``."""
    k_total = ws.shape[0]
    error = np.full(k_total, np.nan)
    body = np.full(k_total, np.nan)
    scored = {k for k in range(k_total) if truths[k] is not None}
    # one Truths over the distinct truth slices (their body masks are found once)
    ids: dict[tuple[int, str], int] = {}
    images, mods, index = [], [], np.zeros(k_total, np.int64)
    for k in sorted(scored):
        key = (id(truths[k]), str(modalities[k]))
        if key not in ids:
            ids[key] = len(images)
            truth = np.asarray(truths[k], np.float32)
            images.append(model.normalisation.to_unit(truth, modalities[k]))
            mods.append(str(modalities[k]))
        index[k] = ids[key]
    table = Truths(np.stack(images), mods, model.normalisation) if images else None
    for start in range(0, k_total, BATCH):
        _check(cancel)
        stop = min(start + BATCH, k_total)
        if progress is not None:
            progress(start / k_total, f"{what}: points {start + 1}-{stop} of {k_total}")
        generated = render(model, ws[start:stop])
        rows = [k for k in range(start, stop) if k in scored]
        if rows and table is not None:
            local = np.asarray(rows) - start
            error[rows], body[rows] = table.score(generated[local], index[rows])
    if progress is not None:
        progress(1.0, f"{what}: done")
    return error, body


def _unit(modalities: Sequence[str | None]) -> str:
    known = {m for m in modalities if m is not None}
    if len(known) == 1:
        return error_unit(known.pop())
    return "mixed" if known else ""


def _modality(renderer: Renderer, request: RenderRequest, w: torch.Tensor) -> str:
    try:
        return renderer.modality(request, w)
    except MedstyleError:
        return "MR"


def error_vs_alpha(
    model: Model,
    requests: Sequence[RenderRequest],
    alphas: Sequence[float],
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ErrorCurve:
    """Score one render request per alpha (built by the caller with the state's moves,
    the swept alpha and that alpha's truth, e.g. :func:`core.explore.build_request`).

    A request without ``ground_truth`` gives NaN; its ``modality`` (or the "modality"
    direction's prediction for the moved latent) says how the slice is scored.
    """
    if len(requests) != len(alphas):
        raise ConfigError(f"{len(requests)} requests for {len(alphas)} alphas")
    if not requests:
        raise ConfigError("an error curve needs at least one alpha")
    renderer = Renderer(model)
    ws_all, mods = [], []
    for request in requests:
        _check(cancel)
        with torch.no_grad():
            w, ws = renderer.latents(request)
        ws_all.append(ws)
        mods.append(request.modality or _modality(renderer, request, w))
    truths = [r.ground_truth for r in requests]
    truth_mods = [m if t is not None else None for m, t in zip(mods, truths, strict=True)]
    error, body = _score(model, torch.cat(ws_all), truths, mods, progress, cancel, "error curve")
    x = np.asarray(alphas, np.float64)
    return ErrorCurve(x, [f"{a:+.3g}" for a in x], error, body, _unit(truth_mods), truth_mods)


def error_per_layer(
    model: Model,
    request: RenderRequest,
    target_w: np.ndarray | torch.Tensor,
    truth: np.ndarray | None,
    truth_modality: str,
    *,
    layers: Sequence[str] | None = None,
    mode: str = "only",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ErrorCurve:
    """Inject ``target_w [w_dim]`` into each style layer of ``request``'s latent (after its
    moves and truncation; its own mix is ignored) and score against ``truth [R, R]``
    (native units) as ``truth_modality``.

    ``mode`` as in :func:`evaluate.style_transfer`: "only" (that layer alone) or "from"
    (that layer and every finer one). ``reference`` is the error with no injection.
    """
    if mode not in MODES:
        raise ConfigError(f"injection mode {mode!r}: use one of {', '.join(MODES)}")
    names = list(layer_names(model.config) if layers is None else layers)
    masks = layer_masks(model, names, mode)
    renderer = Renderer(model)
    with torch.no_grad():
        _, ws_source = renderer.latents(replace(request, mix_w=None, mix_layers=()))
        target = torch.as_tensor(np.asarray(target_w, np.float32)).reshape(1, -1)
        ws_target = model.broadcast(target.to(model.device))
        ws = torch.cat([ws_source] + [mix(ws_source, ws_target, masks[n]) for n in names])
    k = ws.shape[0]
    truths = [truth] * k
    mods: list[str | None] = [truth_modality] * k
    error, body = _score(model, ws, truths, mods, progress, cancel, "error per layer")
    return ErrorCurve(
        np.arange(len(names), dtype=np.float64),
        names,
        error[1:],
        body[1:],
        _unit(mods if truth is not None else []),
        mods[1:] if truth is not None else [None] * len(names),
        reference=float(error[0]) if truth is not None else None,
        reference_body=float(body[0]) if truth is not None else None,
    )


def alpha_requests(
    state: explore.ExplorerState, model: Model, name: str, alphas: Sequence[float]
) -> list[RenderRequest]:
    """One request per alpha: ``state`` with direction ``name`` set to that alpha, built and
    scored as the live view does (:func:`explore.build_request`), except that a modality
    direction with a paired scan is scored against the paired slice at every alpha, as
    the paper's Fig. 3 is (the generated slice decoded as the paired modality). Call it
    on a worker: it maps and moves latents."""
    if name not in model.directions:
        raise ConfigError(f"this model has no direction {name!r}")
    figure3 = explore.is_modality_direction(model.directions[name]) and state.paired is not None
    requests = []
    for alpha in alphas:
        moved = replace(state, moves={**state.moves, name: float(alpha)})
        request = explore.build_request(moved, model, stamp=0)
        if request is None:
            raise ConfigError("there is no latent to sweep (embed a slice or draw a seed)")
        if figure3:
            assert state.paired is not None
            sought = explore.sought_slice(moved, model)
            index = state.index if sought is None else sought
            truth = None
            if 0 <= index < state.paired.num_slices:
                truth = state.paired.native(index)
            request = replace(request, ground_truth=truth, modality=state.paired.modality)
        requests.append(request)
    return requests
