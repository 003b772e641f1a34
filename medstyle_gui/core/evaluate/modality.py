"""Modality by latent manipulation (Fetty et al. 2020, "Modality", Fig. 3).

Paired slices are moved along the "modality" direction toward the other modality with
eq. 3 (tau = 1) by alpha normal units, alpha on a log scale over [0.01, 100] (the paper:
31 steps over [1, 100]), and every generated slice is scored against the paired slice of the other
modality: MAE in HU for generated CT (MR->CT), RMSE on [-1, 1] for generated MR (CT->MR).
The paper's least mean errors: 73.6 HU (MR->CT) and 0.35 (CT->MR) over 1,000 slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from medstyle_gui.core.evaluate.data import EvalData, choose_paired
from medstyle_gui.core.evaluate.scoring import Truths, error_unit, mean_ci, render
from medstyle_gui.core.latent import manipulate
from medstyle_gui.core.model import Model
from trainer.errors import ConfigError

#: The paper's least mean error per direction (Results, "Manipulating the modality").
PAPER_BEST = {"MR->CT": 73.6, "CT->MR": 0.35}
#: Alpha range, log scale. The paper swept [1, 100] times its normal; a unit normal in a
#: model's W may put the other modality well inside 1 (the classes of a 64-d W sit within
#: about +-1 of the surface), so the sweep starts two decades lower and still ends at 100.
ALPHA_RANGE = (0.01, 100.0)
#: Source slices scored together (the truths of one chunk are held in memory).
CHUNK = 64


@dataclass
class ModalityResult:
    """Mean error per translation direction and alpha.

    ``rows``: one dict per (direction, alpha): ``direction`` ("MR->CT"/"CT->MR"),
    ``alpha`` (normal units), ``distance`` (mean signed distance from the decision
    surface reached, > 0 on the CT side), ``mean``, ``sd``, ``ci_low``, ``ci_high``
    (approximate 95 % CI of the mean), ``mean_body`` (inside the truth's body mask),
    ``n``, ``unit``. ``errors``: ``{direction: [alphas, n]}`` per-slice errors.
    """

    rows: list[dict]
    alphas: np.ndarray
    direction: str
    kind: str
    source_rows: dict[str, np.ndarray]
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    def best(self, translation: str) -> dict | None:
        """The row with the least mean error of one translation (None if it has none)."""
        rows = [r for r in self.rows if r["direction"] == translation and r["n"] > 0]
        return min(rows, key=lambda r: r["mean"]) if rows else None


def _sign_toward(direction, target: str) -> float:
    """+1 when the normal points to ``target`` (its class 1), -1 when away from it."""
    if target == direction.classes[1]:
        return 1.0
    if target == direction.classes[0]:
        return -1.0
    raise ConfigError(f"direction {direction.name!r} separates {direction.classes}, not MR and CT")


def get_direction(model: Model, name: str):
    """The bundle's direction ``name`` or a one-line ConfigError saying how to get one."""
    if name not in model.directions:
        have = ", ".join(sorted(model.directions)) or "none"
        raise ConfigError(
            f"{model.folder}: the model has no {name!r} direction (it has: {have}); "
            "fit the directions on this model's latents first"
        )
    return model.directions[name]


def modality_sweep(
    model: Model,
    data: EvalData,
    *,
    n: int = 1000,
    steps: int = 31,
    alphas: np.ndarray | None = None,
    tau: float = 1.0,
    seed: int = 0,
    direction: str = "modality",
    progress: Callable[[str], None] | None = None,
) -> ModalityResult:
    """Move ``n`` paired slices (half MR, half CT) toward the other modality and score them.

    Args:
        model: the bundle, with a ``direction`` whose classes are MR and CT.
        data: the slices (:func:`open_eval_data`).
        n: source slices (the paper: 1,000).
        steps: alphas in ``logspace(-2, 2, steps)`` (the paper: 31 over [1, 100]);
            ignored if ``alphas``.
        alphas: explicit step sizes in normal units (positive: toward the other modality).
        tau: eq. 3's truncation (the paper: 1, none).
        seed: chooses the slices.
    """
    d = get_direction(model, direction)
    if alphas is None:
        if steps < 1:
            raise ConfigError(f"modality sweep: {steps} alpha steps; use 1 or more")
        alphas = np.logspace(np.log10(ALPHA_RANGE[0]), np.log10(ALPHA_RANGE[1]), steps)
    alphas = np.asarray(alphas, np.float64)
    sources = choose_paired(data, n, seed)
    rows: list[dict] = []
    errors: dict[str, np.ndarray] = {}
    for translation, src in sources.items():
        target = translation.split("->")[1]
        sign = _sign_toward(d, target)
        err = np.full((len(alphas), len(src)), np.nan)
        body = np.full_like(err, np.nan)
        dist = np.full_like(err, np.nan)
        for start in range(0, len(src), CHUNK):
            chunk = src[start : start + CHUNK]
            if progress is not None:
                progress(f"modality {translation}: slices {start + 1}-{start + len(chunk)}")
            w = torch.from_numpy(data.latents(chunk)).to(model.device)
            pairs = data.labels["pair_index"][chunk]
            truth = Truths(data.images(pairs), [target] * len(chunk), model.normalisation)
            index = np.arange(len(chunk))
            part = slice(start, start + len(chunk))
            for a, alpha in enumerate(alphas):
                with torch.no_grad():
                    moved = manipulate(w, d, sign * float(alpha), tau, model.w_mean)
                    dist[a, part] = d.signed_distance(moved).cpu().numpy()
                images = render(model, moved)
                err[a, part], body[a, part] = truth.score(images, index)
        errors[translation] = err
        for a, alpha in enumerate(alphas):
            stats = mean_ci(err[a])
            rows.append(
                {
                    "direction": translation,
                    "alpha": float(alpha),
                    "distance": float(np.mean(dist[a])) if len(src) else float("nan"),
                    **stats,
                    "mean_body": mean_ci(body[a])["mean"],
                    "unit": error_unit(target),
                }
            )
    return ModalityResult(rows, alphas, d.name, d.kind, sources, errors)
