"""Refinement throughput: slices per second at several batch sizes (``medstyle bench
embed``). Batching pays because one batched generator and discriminator pass costs
far less than the same number of single passes on a CPU's wide vector units."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from medstyle_gui.core.embed import embed_images
from medstyle_gui.core.model import Model


def bench_embed(
    model: Model, *, batches: Sequence[int] = (1, 16), steps: int = 20, seed: int = 0
) -> list[dict[str, Any]]:
    """Time ``steps`` refinement steps of ``batch`` generated slices for each batch size.

    Rows: batch, seconds, slices_per_s (counting a slice as ``steps`` steps, scaled to
    the paper's 350: the throughput of whole embeddings), and ``speedup`` per slice
    against the first batch size.
    """
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    for batch in batches:
        z = torch.randn(batch, model.config.z_dim, generator=gen).to(model.device)
        with torch.no_grad():
            images = model.G.synthesise(model.G.map(z, truncation_psi=0.7), noise_mode="const")
        images = images[:, 0].cpu().numpy()
        embed_images(model, images, ["MR"] * batch, steps=1, batch=batch)  # warm-up
        start = time.perf_counter()
        embed_images(model, images, ["MR"] * batch, steps=steps, batch=batch)
        seconds = time.perf_counter() - start
        per_step_per_slice = seconds / (steps * batch)
        rows.append(
            {
                "resolution": model.resolution,
                "batch": batch,
                "steps": steps,
                "seconds": seconds,
                "ms_per_step_per_slice": 1000 * per_step_per_slice,
                "slices_per_s_at_350_steps": 1.0 / (350 * per_step_per_slice),
                "threads": torch.get_num_threads(),
            }
        )
    base = rows[0]["ms_per_step_per_slice"]
    for row in rows:
        row["speedup_per_slice"] = base / row["ms_per_step_per_slice"]
    return rows


def format_bench_embed(rows: list[dict[str, Any]]) -> str:
    lines = [f"refinement at {rows[0]['resolution']} px, {rows[0]['threads']} threads"]
    for r in rows:
        lines.append(
            f"  batch {r['batch']:>3}: {r['ms_per_step_per_slice']:.2f} ms per step per slice, "
            f"{r['slices_per_s_at_350_steps']:.3f} slices/s at 350 steps, "
            f"{r['speedup_per_slice']:.2f}x per slice vs batch {rows[0]['batch']}"
        )
    return "\n".join(lines)
