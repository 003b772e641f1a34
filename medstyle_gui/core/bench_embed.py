"""Refinement throughput: slices per second at several batch sizes, in float32 and in
bfloat16 (``medstyle bench embed``). Batching pays because one batched generator and
discriminator pass costs far less than the same number of single passes on a CPU's wide
vector units; bf16 pays on CPUs (and GPUs) with bf16 units."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from medstyle_gui.core.embed import embed_images
from medstyle_gui.core.model import Model
from trainer.bench import cpu_has_bf16
from trainer.errors import ConfigError

PRECISIONS = ("float32", "bf16")


def bench_embed(
    model: Model,
    *,
    batches: Sequence[int] = (1, 16),
    steps: int = 20,
    seed: int = 0,
    precisions: Sequence[str] = PRECISIONS,
) -> list[dict[str, Any]]:
    """Time ``steps`` refinement steps of ``batch`` generated slices for each batch size
    and precision ("float32", "bf16").

    Rows: precision, batch, seconds, slices_per_s (counting a slice as ``steps`` steps,
    scaled to the paper's 350: the throughput of whole embeddings), ``speedup_per_slice``
    against the first batch size of the same precision, and for bf16 ``vs_float32`` (per
    slice, the same batch size).
    """
    if steps < 1:  # the rates divide by it
        raise ConfigError(f"--steps {steps}: must be 1 or more")
    if any(b < 1 for b in batches):
        raise ConfigError(f"--batches {min(batches)}: must be 1 or more")
    rows: list[dict[str, Any]] = []
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        gen = torch.Generator().manual_seed(seed)
        bf16 = precision == "bf16"
        first = len(rows)
        for batch in batches:
            z = torch.randn(batch, model.config.z_dim, generator=gen).to(model.device)
            with torch.no_grad():
                w = model.G.map(z, truncation_psi=0.7)
                images = model.G.synthesise(w, noise_mode="const")
            images = images[:, 0].cpu().numpy()
            modalities = ["MR"] * batch
            embed_images(model, images, modalities, steps=1, batch=batch, bf16=bf16)  # warm-up
            start = time.perf_counter()
            embed_images(model, images, modalities, steps=steps, batch=batch, bf16=bf16)
            seconds = time.perf_counter() - start
            per_step_per_slice = seconds / (steps * batch)
            rows.append(
                {
                    "precision": precision,
                    "resolution": model.resolution,
                    "batch": batch,
                    "steps": steps,
                    "seconds": seconds,
                    "ms_per_step_per_slice": 1000 * per_step_per_slice,
                    "slices_per_s_at_350_steps": 1.0 / (350 * per_step_per_slice),
                    "threads": torch.get_num_threads(),
                }
            )
        base = rows[first]["ms_per_step_per_slice"]
        for row in rows[first:]:
            row["speedup_per_slice"] = base / row["ms_per_step_per_slice"]
    fp32 = {r["batch"]: r for r in rows if r["precision"] == "float32"}
    for row in rows:
        if row["precision"] == "bf16" and row["batch"] in fp32:
            row["vs_float32"] = (
                fp32[row["batch"]]["ms_per_step_per_slice"] / row["ms_per_step_per_slice"]
            )
    return rows


def format_bench_embed(rows: list[dict[str, Any]]) -> str:
    lines = [f"refinement at {rows[0]['resolution']} px, {rows[0]['threads']} threads"]
    for precision in dict.fromkeys(r["precision"] for r in rows):
        group = [r for r in rows if r["precision"] == precision]
        note = "" if precision == "float32" or cpu_has_bf16() else " (no bf16 units here)"
        lines.append(f" {precision}{note}")
        for r in group:
            extra = f", {r['vs_float32']:.2f}x vs float32" if "vs_float32" in r else ""
            lines.append(
                f"  batch {r['batch']:>3}: {r['ms_per_step_per_slice']:.2f} ms per step per "
                f"slice, {r['slices_per_s_at_350_steps']:.3f} slices/s at 350 steps, "
                f"{r['speedup_per_slice']:.2f}x per slice vs batch {group[0]['batch']}{extra}"
            )
    return "\n".join(lines)
