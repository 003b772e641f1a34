"""Scoring shared by the experiments: rendering latents, the paper's per-slice errors
against a set of truths, and means with approximate 95 % confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from medstyle_gui.core.model import Model
from trainer.metrics import mae, rmse, truth_body_mask

#: Slices rendered per forward pass; bounds memory at 512 px.
BATCH = 16


@torch.no_grad()
def render(model: Model, w_or_ws: torch.Tensor | np.ndarray, batch: int = BATCH) -> np.ndarray:
    """``w [N, w_dim]`` or ``ws [N, num_ws, w_dim]`` -> images ``[N, R, R]`` float32 on
    [-1, 1] (const noise: the same latent always gives the same image)."""
    x = torch.as_tensor(np.asarray(w_or_ws) if isinstance(w_or_ws, np.ndarray) else w_or_ws)
    x = x.to(torch.float32)
    out = []
    for start in range(0, x.shape[0], batch):
        part = x[start : start + batch].to(model.device)
        ws = model.broadcast(part) if part.ndim == 2 else part
        out.append(model.G.synthesise(ws, noise_mode="const")[:, 0].cpu())
    r = model.resolution
    return torch.cat(out).numpy() if out else np.zeros((0, r, r), np.float32)


class Truths:
    """Ground-truth slices scored against many generated ones.

    The paper's errors exactly as :func:`trainer.metrics.slice_error` computes them (MAE
    in HU for CT, RMSE on [-1, 1] for MR, each also inside the truth's body mask), with
    each truth's body mask found once: the slice walk compares every truth with up to
    51 + 161 generated slices, and the mask (a connected-component search) dominates
    the cost of an error at 512 px.
    """

    def __init__(self, images: np.ndarray, modalities: Sequence[str], normalisation) -> None:
        self.images = np.asarray(images, np.float32)  # [k, R, R] on [-1, 1]
        self.modalities = list(modalities)
        self.normalisation = normalisation
        pairs = list(zip(self.images, self.modalities, strict=True))
        self.native = [normalisation.to_native(img, m) for img, m in pairs]
        self.masks = [
            truth_body_mask(t, m) for t, m in zip(self.native, self.modalities, strict=True)
        ]

    def score(
        self, generated: np.ndarray, index: Sequence[int] | np.ndarray, *, body: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Errors of ``generated [m, R, R]`` (on [-1, 1]) against truths ``index [m]``:
        ``(error [m], error_body [m])``; a truth with no body gives NaN inside it, and
        ``body=False`` skips the body errors (all NaN)."""
        index = np.asarray(index, np.int64)
        whole = np.empty(len(index), np.float64)
        inside = np.full(len(index), np.nan)
        for k, t in enumerate(index):
            modality, mask = self.modalities[t], self.masks[t]
            if modality == "CT":
                a = self.normalisation.to_native(np.asarray(generated[k], np.float32), "CT")
                b, fn = self.native[t], mae
            else:
                a, b, fn = generated[k], self.images[t], rmse
            whole[k] = fn(a, b)
            if body and mask.any():
                inside[k] = fn(a, b, mask)
        return whole, inside


def mean_ci(values: np.ndarray) -> dict[str, float]:
    """Mean, sample sd, approximate 95 % CI of the mean (mean +- 1.96 sd / sqrt(n)) and n,
    over the finite values (a body error is NaN where the truth has no body)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def error_unit(modality: str) -> str:
    """The paper's error measure for a generated slice of ``modality``."""
    return "MAE (HU)" if modality == "CT" else "RMSE ([-1, 1])"
