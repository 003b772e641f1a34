"""Operations on latents: style layers by name, truncation, eq. 3 manipulation, mixing.

Fetty et al. 2020, eq. 3 moves a latent along a learned direction in the direction's
hidden space and pulls it toward the mean:

    w~ = Reverse(h_mean + tau (Forward(w) - h_mean) + alpha n),   h_mean = Forward(w_mean)

with ``n`` the unit normal of the decision surface in the hidden space, ``alpha`` the
signed step in normal units and ``tau`` in [0, 1] the truncation (1: none). For a
logistic direction the hidden space is W itself (Forward = Reverse = identity).

Style layers are named by resolution ("4x4", "8x8", ..., "RxR"); block b (resolution
4 * 2**b) reads ws[:, 2b] and ws[:, 2b + 1]. Nothing here imports Qt or reads files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trainer.errors import ConfigError

if TYPE_CHECKING:
    from trainer.directions import Direction
    from trainer.networks.stylegan import Generator, StyleGANConfig

#: Named groups of style layers, as resolution ranges (None: up to the model's size).
#: Karras et al. 2019 call 4-8 px coarse (pose, shape), 16-32 middle, 64+ fine (texture).
PRESETS: dict[str, tuple[int, int | None]] = {
    "coarse": (4, 8),
    "middle": (16, 32),
    "fine": (64, None),
    "all": (4, None),
}

#: Random latents averaged for the mean latent (the paper: 1,000).
MEAN_LATENT_SAMPLES = 1000


# -- style layers by name -------------------------------------------------------------------


def layer_names(g_cfg: StyleGANConfig) -> list[str]:
    """The model's style layers by resolution: ``["4x4", "8x8", ..., "RxR"]`` (one a block)."""
    return [f"{r}x{r}" for r in g_cfg.resolutions]


def _layer_error(g_cfg: StyleGANConfig, token: str, why: str) -> ConfigError:
    names = layer_names(g_cfg)
    return ConfigError(
        f"style layer {token!r} {why}; use {names[0]}..{names[-1]} (or 8, 8-32, 32+) "
        f"or a preset ({', '.join(PRESETS)})"
    )


def _resolution(g_cfg: StyleGANConfig, part: str, token: str) -> int:
    """``"32x32"`` or ``"32"`` -> 32, checked against the model's resolutions."""
    sides = part.split("x")
    if len(sides) > 2 or not all(s.strip().isdigit() for s in sides):
        raise _layer_error(g_cfg, token, "is not a layer name")
    if len(sides) == 2 and int(sides[0]) != int(sides[1]):
        raise _layer_error(g_cfg, token, "is not square")
    r = int(sides[0])
    if r not in g_cfg.resolutions:
        raise _layer_error(g_cfg, token, "is not a layer of this model")
    return r


def _token_range(g_cfg: StyleGANConfig, token: str) -> tuple[int, int]:
    """One layer name, range or preset -> inclusive resolution range ``(low, high)``."""
    top = g_cfg.img_resolution
    if token in PRESETS:
        low, high = PRESETS[token]
        return low, top if high is None else high
    if token.endswith("+"):
        return _resolution(g_cfg, token[:-1], token), top
    if "-" in token:
        first, _, second = token.partition("-")
        low, high = _resolution(g_cfg, first, token), _resolution(g_cfg, second, token)
        if low > high:
            raise _layer_error(g_cfg, token, f"runs downward (write {high}-{low})")
        return low, high
    r = _resolution(g_cfg, token, token)
    return r, r


def parse_layers(g_cfg: StyleGANConfig, names: str | Iterable[str]) -> Tensor:
    """Style-layer names -> mask ``bool [num_ws]`` (True: both AdaIN inputs of the block).

    Accepts resolutions ("8x8" or "8"), inclusive ranges ("8-32", "8x8-32x32"), open
    ranges ("32+": 32x32 and finer) and presets ("coarse" 4-8, "middle" 16-32, "fine"
    64+, "all"); a string may list several, comma-separated. A preset takes the layers
    the model has (a 32 px model has no "fine" layer). Anything else: ConfigError.
    """
    tokens = [names] if isinstance(names, str) else list(names)
    mask = torch.zeros(g_cfg.num_ws, dtype=torch.bool)
    for item in tokens:
        for raw in str(item).split(","):
            token = raw.strip().lower()
            if not token:
                continue
            low, high = _token_range(g_cfg, token)
            for b, r in enumerate(g_cfg.resolutions):
                if low <= r <= high:
                    mask[2 * b : 2 * b + 2] = True
    return mask


def mask_layer_names(g_cfg: StyleGANConfig, mask: Tensor) -> list[str]:
    """Inverse of :func:`parse_layers`: the names of the blocks a mask selects (either input)."""
    mask = torch.as_tensor(mask, dtype=torch.bool).view(-1, 2).any(dim=1)
    return [name for name, on in zip(layer_names(g_cfg), mask.tolist(), strict=True) if on]


# -- latents --------------------------------------------------------------------------------


def broadcast(w: Tensor, num_ws: int) -> Tensor:
    """``w [N, w_dim] -> ws [N, num_ws, w_dim]``: the same w for every style layer (a copy)."""
    return w.unsqueeze(1).repeat(1, num_ws, 1)


def truncate(w: Tensor, w_avg: Tensor, psi: float) -> Tensor:
    """The truncation trick: ``w_avg + psi (w - w_avg)``; ``w [..., w_dim]``, ``w_avg [w_dim]``.

    ``psi`` 1 leaves w alone, 0 gives ``w_avg`` for every w.
    """
    return w_avg.to(w).lerp(w, psi)


@torch.no_grad()
def mean_latent(G: Generator, n: int = MEAN_LATENT_SAMPLES, seed: int = 0) -> Tensor:
    """Mean ``[w_dim]`` of ``n`` mapped random z, on G's device.

    z is drawn on the CPU from its own seeded generator, so the result depends only on
    ``(G, n, seed)``, not on the global RNG or the device.
    """
    if n < 1:
        raise ConfigError(f"mean latent: needs at least one sample, not {n}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.cfg.z_dim, generator=gen).to(G.w_avg.device)
    return G.mapping(z).mean(dim=0)


def manipulate(
    w: Tensor,
    direction: Direction,
    alpha: float,
    tau: float = 1.0,
    w_mean: Tensor | None = None,
    *,
    paper_exact: bool = False,
) -> Tensor:
    """Eq. 3: move ``w [N, w_dim]`` (or ``[w_dim]``) ``alpha`` normal units along
    ``direction`` and truncate it by ``tau`` toward ``w_mean [w_dim]``; same shape out.

    A dense direction's reverse net cannot reproduce every w, so by default the part
    it misses, the residual ``r(w) = w - Reverse(Forward(w))``, is added back,
    truncated like the hidden point (``r_mean + tau (r(w) - r_mean)``, r_mean =
    r(w_mean)): alpha = 0, tau = 1 then gives w exactly, and tau = 0 gives w_mean (plus
    the move). ``paper_exact=True`` drops the residual (eq. 3 as printed). For a
    logistic direction both are the same: ``w_mean + tau (w - w_mean) + alpha n``.
    ``w_mean`` (the model's mean latent, ``Model.w_mean``) is needed when tau != 1.
    """
    if not (math.isfinite(alpha) and math.isfinite(tau)):
        raise ConfigError(
            f"direction {direction.name!r}: alpha {alpha} and tau {tau} must be finite"
        )
    single = w.ndim == 1
    w = w.unsqueeze(0) if single else w
    h = direction.to_hidden(w)
    normal = direction.normal.to(h)
    if normal.shape != h.shape[1:]:
        raise ConfigError(
            f"direction {direction.name!r}: normal has {tuple(normal.shape)} entries but "
            f"its hidden space has {h.shape[1]}"
        )
    if tau == 1.0:
        # no mean needed, and h + 0 * n is h bit for bit: alpha 0 is the identity
        h_new = h + alpha * normal
        h_mean = None
    else:
        if w_mean is None:
            raise ConfigError(f"direction {direction.name!r}: tau {tau} needs the mean latent")
        w_mean = w_mean.to(w).reshape(1, -1)
        h_mean = direction.to_hidden(w_mean)
        h_new = h_mean + tau * (h - h_mean) + alpha * normal
    w_new = direction.from_hidden(h_new)
    if direction.kind != "dense" or paper_exact:
        return w_new[0] if single else w_new
    if h_mean is None:
        # w + (R(h') - R(h)) rather than R(h') + (w - R(h)): exact when h' == h
        out = w + (w_new - direction.from_hidden(h))
    else:
        assert w_mean is not None
        residual = w - direction.from_hidden(h)
        residual_mean = w_mean - direction.from_hidden(h_mean)
        out = w_new + residual_mean + tau * (residual - residual_mean)
    return out[0] if single else out


def apply_directions(
    w: Tensor,
    moves: Sequence[tuple[Direction, float]],
    tau: float = 1.0,
    w_mean: Tensor | None = None,
    *,
    paper_exact: bool = False,
) -> Tensor:
    """Several moves at once: ``w [N, w_dim]`` -> ``[N, w_dim]``.

    The first direction applies eq. 3 with ``tau``; the others follow with tau = 1, so
    truncation happens once (for logistic directions the result is
    ``w_mean + tau (w - w_mean) + sum_i alpha_i n_i`` in any order). With no moves,
    tau truncates in W toward ``w_mean``.
    """
    if not moves:
        if tau == 1.0:
            return w
        if w_mean is None:
            raise ConfigError(f"tau {tau} needs the mean latent")
        return truncate(w, w_mean, tau)
    for i, (direction, alpha) in enumerate(moves):
        w = manipulate(w, direction, alpha, tau if i == 0 else 1.0, w_mean, paper_exact=paper_exact)
    return w


def mix(ws_source: Tensor, ws_target: Tensor, layers: Tensor) -> Tensor:
    """Style mixing: ``ws_source, ws_target [N, num_ws, w_dim]`` (target may have N = 1),
    ``layers`` bool ``[num_ws]`` -> ``ws [N, num_ws, w_dim]`` whose selected layers carry
    the target's styles (none selected: the source; all: the target)."""
    layers = torch.as_tensor(layers, dtype=torch.bool, device=ws_source.device)
    if layers.shape != (ws_source.shape[1],) or ws_target.shape[1:] != ws_source.shape[1:]:
        raise ConfigError(
            f"style mixing: source {tuple(ws_source.shape)}, target {tuple(ws_target.shape)} "
            f"and layer mask {tuple(layers.shape)} do not fit together"
        )
    return torch.where(layers.view(1, -1, 1), ws_target.to(ws_source), ws_source)
