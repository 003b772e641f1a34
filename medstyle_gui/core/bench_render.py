"""How fast the renderer answers: a full render, a cached re-render, a slider move.

``bench_render(model, repeats)`` times three things through :class:`Renderer`, each
as the GUI meets it (latents in, numpy images and metrics out, so a GPU is synchronised
by the copy back):

- full: a render with the cache cleared (every style layer runs);
- cached: a style-mixing change from the 32x32 layer on (the mix target alternates
  between two latents), which resumes at the first 32x32 style layer from its cached
  pre-AdaIN activation, so it skips the 4..16 blocks and the first 32x32 conv;
- slider: a slider change to result, a move along a direction (the "modality" one if
  the model has it, else the first; tau when it has none) with a ground truth to score,
  so every layer changes and the metrics are computed as in the GUI.

Times are wall-clock milliseconds: median and 95th percentile over ``repeats`` calls
after one warm-up call each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medstyle_gui.core.render import Renderer, RenderRequest, RenderResult
from trainer.bench import generator_flops_per_image
from trainer.errors import ConfigError

if TYPE_CHECKING:
    from medstyle_gui.core.model import Model

#: The re-render resumes at this layer (the spec's benchmark: a mix from 32x32 on).
CACHED_FROM = 32


def _times_ms(fn: Callable[[int], RenderResult], repeats: int) -> list[float]:
    fn(-1)  # warm-up: first-call allocations and kernel selection are not what we time
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        result = fn(i)
        times.append(1e3 * (time.perf_counter() - start))
        if result.error is not None:
            raise ConfigError(f"render benchmark: {result.error}")
    return times


def _summary(prefix: str, times: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_ms_median": float(np.median(times)),
        f"{prefix}_ms_p95": float(np.percentile(times, 95)),
    }


def bench_render(model: Model, repeats: int = 20, *, seed: int = 0) -> dict[str, Any]:
    """Time full renders, cached re-renders from 32x32 on, and slider moves for ``model``.

    Returns ``{"device", "resolution", "repeats", "threads", "cached_from",
    "full_ms_median", "full_ms_p95", "cached_ms_median", "cached_ms_p95", "speedup"
    (full / cached medians), "slider", "slider_ms_median", "slider_ms_p95"}``.
    Latents are mapped from z drawn with ``seed``.
    """
    if repeats < 1:
        raise ConfigError(f"render benchmark: repeats must be at least 1, not {repeats}")
    cfg = model.G.cfg
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(3, cfg.z_dim, generator=gen).to(model.device)
    with torch.no_grad():
        w_source, w_a, w_b = model.G.mapping(z).cpu()
    renderer = Renderer(model)

    def full(i: int) -> RenderResult:
        renderer.clear_cache()
        return renderer.render(RenderRequest(w=w_source, stamp=i))

    # the first cached call (the warm-up) renders everything; later ones flip the target
    layers = (f"{CACHED_FROM}+",)

    def cached(i: int) -> RenderResult:
        target = w_a if i % 2 == 0 else w_b
        return renderer.render(RenderRequest(w=w_source, mix_w=target, mix_layers=layers, stamp=i))

    # a slider step changes every layer's style, so nothing is cached; it is scored like
    # the GUI scores it, against a truth (here the source's own image)
    truth = full(-1).image_native
    name = None
    if model.directions:
        name = "modality" if "modality" in model.directions else sorted(model.directions)[0]
    slider = "tau" if name is None else f"direction {name}"

    def move(i: int) -> RenderResult:
        step = 0.1 * (i % 10 + 1)  # never the same value twice in a row
        if name is None:
            request = RenderRequest(w=w_source, tau=1.0 - 0.5 * step, ground_truth=truth)
        else:
            request = RenderRequest(w=w_source, moves=((name, step),), ground_truth=truth)
        return renderer.render(request)

    full_ms = _times_ms(full, repeats)
    renderer.clear_cache()
    cached_ms = _times_ms(cached, repeats)
    # check the timed path really resumed where it should (it is what is being measured):
    # at the first style layer of the CACHED_FROM block
    resumed = cached(repeats).restart_layer
    if resumed != 2 * cfg.block_index(CACHED_FROM):
        raise ConfigError(f"render benchmark: the cached re-render restarted at layer {resumed}")
    slider_ms = _times_ms(move, repeats)
    out: dict[str, Any] = {
        "device": str(model.device),
        "resolution": cfg.img_resolution,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "cached_from": f"{CACHED_FROM}x{CACHED_FROM}",
    }
    out.update(_summary("full", full_ms))
    out.update(_summary("cached", cached_ms))
    out["speedup"] = out["full_ms_median"] / out["cached_ms_median"]
    # Why the speed-up is what it is: the share of the synthesis arithmetic that a restart
    # at CACHED_FROM still runs bounds the speed-up at 1 / share. The restart skips the
    # blocks below CACHED_FROM and, as it starts from the cached pre-AdaIN activation, the
    # first 3x3 conv at CACHED_FROM (2 x MACs, as generator_flops_per_image counts).
    r = CACHED_FROM
    first_conv = model.G.synthesis.blocks[cfg.block_index(r)].layer0.conv
    first_conv_flops = 2.0 * first_conv.macs(r, r)
    full_flops = generator_flops_per_image(cfg)
    skipped_flops = generator_flops_per_image(cfg, r // 2) + first_conv_flops
    out["rerun_flop_share"] = 1.0 - skipped_flops / full_flops
    out["slider"] = slider
    out.update(_summary("slider", slider_ms))
    return out


def format_bench_render(result: dict[str, Any]) -> str:
    """A few plain-text lines of a :func:`bench_render` result."""
    rows = [
        ("full render", "full", ""),
        (f"re-render from {result['cached_from']}", "cached", f"  ({result['speedup']:.2f}x)"),
        (f"slider ({result['slider']})", "slider", ""),
    ]
    lines = [
        f"render benchmark: {result['resolution']} px on {result['device']}, "
        f"{result['repeats']} repeats, {result['threads']} threads"
    ]
    for label, key, extra in rows:
        lines.append(
            f"  {label:<28} {result[key + '_ms_median']:9.2f} ms median "
            f"{result[key + '_ms_p95']:9.2f} ms p95{extra}"
        )
    if "rerun_flop_share" in result:
        share = result["rerun_flop_share"]
        lines.append(
            f"  the layers after the first {result['cached_from']} conv hold {100 * share:.0f}% "
            f"of the generator's arithmetic: a restart there can be at most "
            f"{1 / share:.2f}x faster"
        )
    return "\n".join(lines)
