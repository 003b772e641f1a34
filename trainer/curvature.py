"""Curvature of a direction's decision surface in W (Fetty et al. 2020, "Analysis of the
decision surface").

At a point ``p`` on the surface ``f(w) = 0`` (``f`` the model's decision function) and a unit
tangent ``t`` (orthogonal to ``grad f(p)``), the curve cut from the surface by the plane
spanned by ``t`` and the normal has curvature

    kappa(t) = -t^T H t / |grad f|,     H = the Hessian of f at p,

the normal curvature with respect to the unit normal ``n = grad f / |grad f|``, which points
to class 1. Sign convention: kappa > 0 where the surface bends towards class 1 (the class-1
side is locally convex: a ball of radius r holding class 1 has kappa = +1/r everywhere),
kappa < 0 where it bends towards class 0 (class 1 outside the ball: -1/r). ``kappa`` does
not depend on how ``f`` is scaled (logit, signed distance). The mean curvature at ``p`` is
estimated as the mean of ``kappa`` over random tangent directions; a linear (logistic)
surface has ``H = 0`` and so exactly 0.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from trainer.directions.model import Direction, DirectionError

#: D'Agostino-Pearson needs 8 values (its skewness test); below 20 its kurtosis test warns.
MIN_NORMALTEST = 8
RELIABLE_NORMALTEST = 20


def _decision_function(direction: Direction, model: str) -> Callable[[Tensor], Tensor]:
    """``f: w [N, w_dim] float64 -> [N]``, > 0 for class 1, on float64 copies of the nets
    (second derivatives in float32 lose digits)."""
    if model == "selected":
        forward = None if direction.forward_net is None else copy.deepcopy(direction.forward_net)
        normal = direction.normal.double()
        offset = direction.offset
        if forward is not None:
            forward.double()

        def f(w: Tensor) -> Tensor:
            h = w if forward is None else forward(w)
            return h @ normal - offset

        return f
    if model == "dense":
        if direction.dense is None:
            raise DirectionError(f"direction {direction.name!r} has no dense prediction net")
        return copy.deepcopy(direction.dense).double()
    raise DirectionError(f"model must be 'selected' or 'dense', not {model!r}")


def surface_points(
    f: Callable[[Tensor], Tensor],
    w: Tensor,
    points: int,
    rng: np.random.Generator,
    steps: int = 60,
) -> Tensor:
    """``[points, w_dim]`` points on ``f = 0``: bisection on the segments between random pairs
    of samples ``w [N, w_dim]`` on opposite sides (one crossing per segment)."""
    with torch.no_grad():
        side = f(w) > 0
    neg, pos = torch.nonzero(~side).ravel(), torch.nonzero(side).ravel()
    if neg.numel() == 0 or pos.numel() == 0:
        raise DirectionError(
            f"all {len(w)} samples fall on one side of the decision surface; "
            "curvature needs samples of both predicted classes"
        )
    lo = w[neg[torch.as_tensor(rng.integers(neg.numel(), size=points))]]
    hi = w[pos[torch.as_tensor(rng.integers(pos.numel(), size=points))]]
    with torch.no_grad():
        for _ in range(steps):  # f(lo) <= 0 < f(hi) throughout; 60 halvings reach float64
            mid = (lo + hi) / 2
            up = (f(mid) > 0).unsqueeze(1)
            hi = torch.where(up, mid, hi)
            lo = torch.where(up, lo, mid)
    return (lo + hi) / 2


def mean_curvatures(
    direction: Direction,
    w_samples: np.ndarray | Tensor,
    *,
    points: int = 1000,
    tangents: int = 512,
    seed: int = 0,
    model: str = "selected",
    chunk_rows: int = 8192,
) -> np.ndarray:
    """``[points]`` mean curvatures of the decision surface at random surface points.

    Args:
        direction: whose surface; ``model="selected"`` uses the selected model (a logistic
            direction gives exactly 0), ``"dense"`` the best dense prediction net of the fit
            (kept even when logistic regression was selected: the paper's analysis).
        w_samples: ``[N, w_dim]`` latents (e.g. the embedded training slices); surface points
            are found between pairs of them predicted to be in opposite classes.
        points: surface points (paper: 1,000). tangents: random unit tangents per point
            (paper: 512). seed: seeds the pairs and the tangents.
        chunk_rows: point-tangent pairs evaluated per batched Hessian-vector product.

    Returns float64 values in 1/W units (see the module doc for the sign); NaN at a point
    where the gradient vanishes.
    """
    if points < 1 or tangents < 1:
        raise DirectionError(f"points ({points}) and tangents ({tangents}) must be at least 1")
    f = _decision_function(direction, model)
    device = direction.device
    w = torch.as_tensor(w_samples, dtype=torch.float64, device=device)
    if w.ndim != 2 or w.shape[1] != direction.w_dim or w.shape[1] < 2:
        raise DirectionError(
            f"w_samples has shape {list(w.shape)}; expected [N, {direction.w_dim}] (w_dim >= 2)"
        )
    rng = np.random.default_rng(seed)
    surface = surface_points(f, w, points, rng)
    out = np.empty(points, dtype=np.float64)
    per_chunk = max(1, chunk_rows // tangents)
    for start in range(0, points, per_chunk):
        p = surface[start : start + per_chunk]
        k, d = p.shape
        x = p.repeat_interleave(tangents, dim=0).requires_grad_(True)  # [k * tangents, d]
        (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
        g = grad.detach()
        g_norm = g.norm(dim=1, keepdim=True)
        n = g / g_norm
        t = torch.as_tensor(rng.standard_normal((k * tangents, d)), device=device)
        t = t - (t * n).sum(dim=1, keepdim=True) * n  # project onto the tangent space
        t = t / t.norm(dim=1, keepdim=True)
        hv = None
        if grad.requires_grad:  # a linear f has a constant gradient: no graph, H = 0
            (hv,) = torch.autograd.grad((grad * t).sum(), x, allow_unused=True)
        t_h_t = torch.zeros(k * tangents, dtype=torch.float64, device=device)
        if hv is not None:
            t_h_t = (t * hv).sum(dim=1)
        kappa = -t_h_t / g_norm.squeeze(1)
        out[start : start + k] = kappa.view(k, tangents).mean(dim=1).detach().cpu().numpy()
    return out


def curvature_summary(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean, standard deviation (ddof 1) and D'Agostino-Pearson normality test of mean
    curvatures (non-finite values are dropped and counted).

    Returns ``{"n", "dropped", "mean", "std", "statistic", "p", "message"}``; ``p`` and
    ``statistic`` are None (and ``message`` says why) with fewer than 8 values or when all
    values are equal (a flat surface); with 8-19 values ``message`` warns that ``p`` is rough.
    """
    raw = np.asarray(values, dtype=np.float64).ravel()
    v = raw[np.isfinite(raw)]
    out: dict[str, Any] = {
        "n": int(v.size),
        "dropped": int(raw.size - v.size),
        "mean": float(v.mean()) if v.size else None,
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "statistic": None,
        "p": None,
        "message": "",
    }
    if v.size < MIN_NORMALTEST:
        out["message"] = (
            f"the D'Agostino-Pearson normality test needs at least {MIN_NORMALTEST} "
            f"curvature values, got {v.size}: p not computed"
        )
    elif np.ptp(v) == 0.0:
        out["message"] = "all curvature values are equal (a flat surface): p not computed"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kurtosistest's small-sample warning: said below
            statistic, p = stats.normaltest(v)
        out["statistic"], out["p"] = float(statistic), float(p)
        if not math.isfinite(out["p"]):
            out["p"] = None
            out["message"] = "the normality test is undefined for these values"
        elif v.size < RELIABLE_NORMALTEST:
            out["message"] = (
                f"only {v.size} values: the normality test's p is rough below {RELIABLE_NORMALTEST}"
            )
    return out
