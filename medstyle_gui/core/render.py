"""One latent recipe in, one slice out: ``Renderer.render(RenderRequest) -> RenderResult``.

The recipe is a latent ``w``, moves along the model's directions (eq. 3), a truncation
``tau``, optionally a second latent whose styles replace some layers (style mixing), and
optionally the ground-truth slice to score against. The result carries the image on
[-1, 1] and in native units (HU for CT, MR units), the paper's error against the truth
(CT: MAE in HU, MR: RMSE on [-1, 1], each also inside the truth's body mask) and the
difference map.

Rendering is pure apart from a cache: the renderer keeps, for its last image, every
style layer's activation just before the AdaIN (the only place a layer's style enters),
and when a request changes only the styles of later layers (a mix from 32x32 on, say) it
resumes at the first changed layer: that layer's AdaIN with the new style on the kept
activation, then the rest. Every earlier layer and the first changed layer's own conv
are skipped, and the image is the same to float rounding. A request with no changed
style returns the last image again. User mistakes (unknown
direction, bad layer name, a ground truth of the wrong size) come back as
``RenderResult.error``, never as an exception, so a GUI worker can show them and carry
on. A Renderer is not thread-safe: give each worker thread its own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from medstyle_gui.core.latent import apply_directions, broadcast, mix, parse_layers
from trainer.errors import ConfigError, MedstyleError
from trainer.metrics import slice_error

if TYPE_CHECKING:
    from medstyle_gui.core.model import Model

MODALITIES = ("CT", "MR")


@dataclass(frozen=True, eq=False)
class RenderRequest:
    """What to render. Arrays compare by identity (``eq=False``): requests are messages."""

    w: np.ndarray | Tensor  # [w_dim] the slice's latent (e.g. from embedding)
    moves: tuple[tuple[str, float], ...] = ()  # (direction name, alpha in normal units)
    tau: float = 1.0  # truncation toward the model's mean latent (1: none)
    mix_w: np.ndarray | Tensor | None = None  # [w_dim] latent whose styles are mixed in
    mix_layers: tuple[str, ...] = ()  # layers taking mix_w's styles ("8x8", "8-32", "fine")
    modality: str | None = None  # "CT" | "MR"; None: predicted by the "modality" direction
    ground_truth: np.ndarray | None = None  # [R, R] truth slice in native units (HU / MR)
    stamp: int = 0  # passed through, so a caller can drop stale results


@dataclass
class RenderResult:
    """A rendered slice, its error against the truth, or the reason it failed."""

    image_native: np.ndarray | None  # [R, R] float32, HU for CT, MR units for MR
    image_unit: np.ndarray | None  # [R, R] float32 on [-1, 1] (not clamped)
    modality: str | None  # "CT" | "MR": how image_native was decoded
    metrics: dict[str, float] = field(default_factory=dict)  # mae_hu(_body) / rmse(_body)
    difference: np.ndarray | None = None  # [R, R] generated - truth, native units
    render_ms: float = 0.0  # wall time of render(), milliseconds
    stamp: int = 0  # the request's stamp
    error: str | None = None  # one-line MedstyleError message, None when all went well
    w_final: np.ndarray | None = None  # [w_dim] the latent after the moves (before mixing)
    # first style layer run: 0 full, k > 0 resumed from the cache at layer k (block k // 2),
    # num_ws nothing changed and the cached image was returned
    restart_layer: int = 0


def _as_tensor(x: np.ndarray | Tensor, what: str, shape: tuple[int, ...]) -> Tensor:
    """A float32 CPU tensor of ``shape`` (a leading 1 is dropped), or ConfigError."""
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    t = t.to(torch.float32)
    if t.ndim == len(shape) + 1 and t.shape[0] == 1:
        t = t[0]
    if tuple(t.shape) != shape:
        raise ConfigError(f"{what} has shape {tuple(t.shape)}, expected {list(shape)}")
    if not torch.isfinite(t).all():
        raise ConfigError(f"{what} contains NaN or infinite values")
    return t


class Renderer:
    """Renders requests with one model, caching the last image's pre-AdaIN activations."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._ws: Tensor | None = None  # [1, num_ws, w_dim] of the cached image
        self._img: Tensor | None = None  # [1, C, R, R] the cached image
        # one per style layer k, before its AdaIN: [1, C_b, r_b, r_b] of block b = k // 2
        self._pre_adain: list[Tensor] = []

    def clear_cache(self) -> None:
        """Forget the cached image and activations: the next render runs every layer."""
        self._ws, self._img, self._pre_adain = None, None, []

    def render(self, request: RenderRequest) -> RenderResult:
        """Render ``request``; never raises for a user mistake (see ``RenderResult.error``)."""
        start = time.perf_counter()
        try:
            with torch.no_grad():
                result = self._render(request)
        except MedstyleError as exc:
            result = RenderResult(image_native=None, image_unit=None, modality=None)
            result.error = str(exc)
        result.stamp = request.stamp
        result.render_ms = 1e3 * (time.perf_counter() - start)
        return result

    # -- the steps -----------------------------------------------------------------------

    def latents(self, request: RenderRequest) -> tuple[Tensor, Tensor]:
        """The request's final latents: ``w [1, w_dim]`` after the moves and truncation,
        and ``ws [1, num_ws, w_dim]`` after mixing, on the model's device."""
        model = self.model
        w = _as_tensor(request.w, "the latent w", (model.w_dim,)).to(model.device)[None]
        moves = []
        for name, alpha in request.moves:
            if name not in model.directions:
                known = ", ".join(sorted(model.directions)) or "none"
                raise ConfigError(f"this model has no direction {name!r} (it has: {known})")
            if not math.isfinite(float(alpha)):
                raise ConfigError(f"direction {name!r}: alpha {alpha} is not a finite number")
            moves.append((model.directions[name], float(alpha)))
        if not math.isfinite(float(request.tau)):
            raise ConfigError(f"tau {request.tau} is not a finite number")
        w = apply_directions(w, moves, float(request.tau), model.w_mean)
        ws = broadcast(w, model.num_ws)
        # layer names are checked even without a mix target, so a typo shows at once
        layers = parse_layers(model.G.cfg, request.mix_layers)
        if request.mix_w is not None and bool(layers.any()):
            target = _as_tensor(request.mix_w, "the mix latent", (model.w_dim,))
            ws = mix(ws, broadcast(target.to(model.device)[None], model.num_ws), layers)
        return w, ws

    def modality(self, request: RenderRequest, w: Tensor) -> str:
        """The request's modality, or the "modality" direction's class of ``w [1, w_dim]``
        (the latent after the moves; a mix does not change it), or "MR" without one."""
        if request.modality is not None:
            if request.modality not in MODALITIES:
                raise ConfigError(f"modality {request.modality!r} is not CT or MR")
            return request.modality
        direction = self.model.directions.get("modality")
        if direction is None:
            return "MR"
        label = direction.classes[int(direction.predict(w)[0])]
        if label not in MODALITIES:
            raise ConfigError(
                f"the model's modality direction has classes {direction.classes}, not MR and CT"
            )
        return label

    def synthesise(self, ws: Tensor) -> tuple[Tensor, int]:
        """``ws [1, num_ws, w_dim] -> (img [1, C, R, R], first style layer run)``.

        Resumes at the first style layer whose style changed, from its cached pre-AdaIN
        activation; with no change it returns the cached image (first layer run: num_ws).
        """
        G = self.model.G
        start = 0
        if self._ws is not None and self._ws.shape == ws.shape:
            changed = (self._ws != ws).any(dim=-1)[0]  # [num_ws]
            if not bool(changed.any()):
                assert self._img is not None
                # a copy, so a caller writing into the image cannot alter the cache
                return self._img.clone(), G.num_ws
            start = int(changed.nonzero()[0])
        pre = self._pre_adain[start] if start > 0 else None
        img, fresh = G.synthesise_with_activations(
            ws, start_layer=start, pre=pre, noise_mode="const"
        )
        self._pre_adain = self._pre_adain[:start] + fresh
        self._ws, self._img = ws.clone(), img.clone()
        return img, start

    def _render(self, request: RenderRequest) -> RenderResult:
        model = self.model
        w, ws = self.latents(request)
        modality = self.modality(request, w)
        try:
            img, start = self.synthesise(ws)
        except BaseException:
            self.clear_cache()  # a half-updated cache must not serve the next request
            raise
        image_unit = img[0, 0].float().cpu().numpy()
        result = RenderResult(
            image_native=model.normalisation.to_native(image_unit, modality),
            image_unit=image_unit,
            modality=modality,
            w_final=w[0].cpu().numpy(),
            restart_layer=start,
        )
        if request.ground_truth is not None:
            # the image stands even when the truth is unusable: report, do not discard
            try:
                result.metrics, result.difference = self.score(result, request.ground_truth)
            except MedstyleError as exc:
                result.error = str(exc)
        return result

    def score(
        self, result: RenderResult, ground_truth: np.ndarray | Tensor
    ) -> tuple[dict[str, float], np.ndarray]:
        """The paper's error of a rendered result against a truth slice ``[R, R]`` in native
        units, and the difference map (generated - truth, native units)."""
        model = self.model
        r = model.resolution
        truth = _as_tensor(ground_truth, "the ground-truth slice", (r, r)).numpy()
        assert result.image_native is not None and result.modality is not None
        truth_unit = model.normalisation.to_unit(truth, result.modality)
        metrics = slice_error(result.image_unit, truth_unit, result.modality, model.normalisation)
        return metrics, result.image_native - truth
