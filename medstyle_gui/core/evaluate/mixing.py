"""Modality by style transfer, per injection layer (Fetty et al. 2020, "Style transfer", Fig. 5).

For a paired slice (source) and its partner in the other modality (target), the target's
w is injected into the generator's style inputs at one resolution layer and the result,
rendered with the source's w everywhere else, is scored against the target slice.
"Injecting in a location" can be read two ways, and both are measured:

* ``from``: the target's w drives that layer and every finer one (a crossover point, as
  in Karras et al.'s style mixing and the paper's mixing regularisation). From 4x4 the
  image is the target's own reconstruction.
* ``only``: the target's w drives that layer alone.

The paper's table (1,000 slices): MR->CT 68.6, 58.6, 58.7, 58.9, 60.4, 459.1, 461.4,
460.6 HU and CT->MR 0.344, 0.340, 0.340, 0.340, 0.339, 0.380, 0.377, 0.377 RMSE for
4x4 .. 512x512. The paper does not say which reading it used. Its numbers are set
beside ``from``: they jump at 128x128 and stay there, as when the coarse layers keep the
source's styles; but its 4x4 value is worse than its 8x8 one and it describes a 4x4
injection as mixing features of both slices, which fits ``only`` better (with ``from``,
4x4 is the target's own reconstruction). Both are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medstyle_gui.core.evaluate.data import EvalData, choose_paired
from medstyle_gui.core.evaluate.scoring import Truths, error_unit, mean_ci, render
from medstyle_gui.core.latent import layer_names, mix, parse_layers
from medstyle_gui.core.model import Model
from trainer.errors import ConfigError

LAYERS = ("4x4", "8x8", "16x16", "32x32", "64x64", "128x128", "256x256", "512x512")
#: The paper's mean errors per injection layer (Results, "Style transfer").
PAPER = {
    "MR->CT": dict(zip(LAYERS, (68.6, 58.6, 58.7, 58.9, 60.4, 459.1, 461.4, 460.6), strict=True)),
    "CT->MR": dict(
        zip(LAYERS, (0.344, 0.340, 0.340, 0.340, 0.339, 0.380, 0.377, 0.377), strict=True)
    ),
}
MODES = ("from", "only")
CHUNK = 64


@dataclass
class MixingResult:
    """Mean error per translation, injection mode and layer.

    ``rows``: ``direction``, ``mode`` ("from"/"only", or "none": the source's own
    reconstruction against the target, i.e. no injection), ``layer`` ("4x4"..),
    ``mean``, ``sd``, ``ci_low``, ``ci_high``, ``mean_body``, ``n``, ``unit``, ``paper``
    (the paper's value for the ``from`` mode, else empty).
    """

    rows: list[dict]
    layers: list[str]
    source_rows: dict[str, np.ndarray]

    def row(self, direction: str, mode: str, layer: str) -> dict:
        for r in self.rows:
            if (r["direction"], r["mode"], r["layer"]) == (direction, mode, layer):
                return r
        raise KeyError((direction, mode, layer))


def layer_masks(model: Model, layers: Sequence[str], mode: str) -> dict[str, torch.Tensor]:
    """``{layer: bool mask [num_ws]}`` of the style inputs the target drives in ``mode``.

    Names are checked against the model's layers (:func:`parse_layers`): a layer the model
    does not have (64x64 in a 32 px model) is a ConfigError.
    """
    if mode not in MODES:
        raise ConfigError(f"style transfer mode {mode!r}: use one of {', '.join(MODES)}")
    cfg = model.config
    return {name: parse_layers(cfg, f"{name}+" if mode == "from" else name) for name in layers}


def style_transfer(
    model: Model,
    data: EvalData,
    *,
    n: int = 1000,
    layers: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> MixingResult:
    """Inject each paired slice's partner into each layer and score it (module docstring).

    Args:
        n: source slices, about half MR and half CT (the paper: 1,000).
        layers: layer names (default: every layer of the model, :func:`layer_names`).
        modes: "from" and/or "only".
        seed: chooses the slices (the same ones as the modality sweep's for one seed).
    """
    layers = list(layer_names(model.config) if layers is None else layers)
    masks = {mode: layer_masks(model, layers, mode) for mode in modes}
    sources = choose_paired(data, n, seed)
    rows: list[dict] = []
    for translation, src in sources.items():
        target = translation.split("->")[1]
        keys = [("none", "")] + [(mode, name) for mode in modes for name in layers]
        err = {key: np.full(len(src), np.nan) for key in keys}
        body = {key: np.full(len(src), np.nan) for key in keys}
        for start in range(0, len(src), CHUNK):
            chunk = src[start : start + CHUNK]
            if progress is not None:
                progress(f"style transfer {translation}: slices {start + 1}-{start + len(chunk)}")
            pairs = data.labels["pair_index"][chunk]
            ws_src = model.broadcast(torch.from_numpy(data.latents(chunk)).to(model.device))
            ws_tgt = model.broadcast(torch.from_numpy(data.latents(pairs)).to(model.device))
            truths = Truths(data.images(pairs), [target] * len(chunk), model.normalisation)
            index = np.arange(len(chunk))
            part = slice(start, start + len(chunk))
            for mode, name in keys:
                ws = ws_src if mode == "none" else mix(ws_src, ws_tgt, masks[mode][name])
                err[mode, name][part], body[mode, name][part] = truths.score(
                    render(model, ws), index
                )
        for mode, name in keys:
            paper = PAPER[translation].get(name, "") if mode == "from" else ""
            rows.append(
                {
                    "direction": translation,
                    "mode": mode,
                    "layer": name,
                    **mean_ci(err[mode, name]),
                    "mean_body": mean_ci(body[mode, name])["mean"],
                    "unit": error_unit(target),
                    "paper": paper,
                }
            )
    return MixingResult(rows, layers, sources)
