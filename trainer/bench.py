"""Benchmarks: the generator's forward pass beside the machine's own sgemm speed.

``efficiency = achieved GFLOP/s / sgemm GFLOP/s``, where the achieved rate counts the
generator's FLOPs analytically (2 x multiply-accumulates of every convolution and
fully connected layer: mapping MLP, style affines, 3x3 convs, to_rgb; element-wise work such
as noise, normalisation and activations is not counted) and sgemm is ``torch.mm`` of two large
float32 matrices measured in the same run, alternating with the generator's calls, so a busy
machine slows both sides alike.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from trainer.networks.stylegan import Generator, StyleGANConfig

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator() -> bool:
    """Let glibc keep and reuse freed large blocks instead of returning them to the system.

    By default every tensor over 32 MiB is a fresh ``mmap`` whose pages fault in one by one
    on first touch; for the generator at 512 px that costs more time than the element-wise
    work itself (measured: 0.35 -> 0.24 s per image at batch 8 on one core). This turns
    ``mmap`` allocation off and raises the trim threshold, the same effect as running under
    jemalloc or tcmalloc. Process-wide; call once at start-up. Returns False where it cannot
    (not glibc), which is harmless.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1 and ok
    except (OSError, AttributeError):
        return False
    return ok


ROW_KEYS = (
    "config",
    "batch",
    "ms_per_image",
    "gflops_per_image",
    "achieved_gflops",
    "sgemm_gflops",
    "efficiency",
)


@dataclass(frozen=True)
class BenchConfig:
    """A named network configuration to time."""

    name: str  # shown in the table and the JSON "config" key
    cfg: StyleGANConfig  # the network's sizes


def default_generator_configs() -> list[BenchConfig]:
    """The paper's network (512 px, full width) and the demo network (``slim(128)``)."""
    return [
        BenchConfig("paper-512", StyleGANConfig.paper(512)),
        BenchConfig("demo-slim-128", StyleGANConfig.slim(128)),
    ]


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_gflops(n: int = 2048, *, repeats: int = 5, warmup: int = 2) -> float:
    """GFLOP/s of ``torch.mm`` on two ``n x n`` float32 matrices (2 n^3 FLOPs), median."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    seconds = median_seconds(lambda: torch.mm(a, b), repeats=repeats, warmup=warmup)
    return 2.0 * n**3 / seconds / 1e9


def generator_flops_per_image(cfg: StyleGANConfig, resolution: int | None = None) -> float:
    """FLOPs (2 x MACs) of one image through mapping + synthesis at ``resolution`` (full size)."""
    macs = cfg.z_dim * cfg.w_dim + (cfg.mapping_layers - 1) * cfg.w_dim * cfg.w_dim
    last = cfg.block_index(resolution)
    for b, r in enumerate(cfg.resolutions[: last + 1]):
        c_out = cfg.channels(r)
        c_in = cfg.channels(max(r // 2, 4))
        macs += 2 * 2 * cfg.w_dim * c_out  # two AdaINs, each a scale and a shift affine
        convs = [(c_out, c_out)] if b == 0 else [(c_in, c_out), (c_out, c_out)]
        macs += sum(9 * ci * co * r * r for ci, co in convs)
    r = cfg.resolutions[last]
    macs += cfg.channels(r) * cfg.img_channels * r * r  # to_rgb, 1x1
    return 2.0 * macs


def bench_generator(
    configs: Sequence[BenchConfig] | None = None,
    *,
    batches: Sequence[int] = (1, 8),
    repeats: int = 5,
    warmup: int = 2,
    sgemm_n: int = 2048,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, float | int | str]]:
    """Time ``G(z)`` (mapping + synthesis, eval, no grad, random noise) per config and batch.

    Returns one dict per (config, batch) with the keys in ``ROW_KEYS``; times are medians.
    """
    configs = default_generator_configs() if configs is None else configs
    rows: list[dict[str, float | int | str]] = []
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(sgemm_n, sgemm_n, generator=gen)
    b = torch.randn(sgemm_n, sgemm_n, generator=gen)
    for bc in configs:
        torch.manual_seed(0)
        G = Generator(bc.cfg).eval()
        flops = generator_flops_per_image(bc.cfg)
        for batch in batches:
            if progress:
                progress(f"{bc.name} batch {batch}")
            z = torch.randn(batch, bc.cfg.z_dim)
            sgemm_times, g_times = [], []
            with torch.inference_mode():
                # sgemm and generator alternate, so both see the same share of a busy machine
                for i in range(warmup + repeats):
                    s = median_seconds(lambda: torch.mm(a, b), repeats=1, warmup=int(i == 0))
                    g = median_seconds(partial(G, z), repeats=1, warmup=int(i == 0))
                    if i >= warmup:
                        sgemm_times.append(s)
                        g_times.append(g)
            seconds = statistics.median(g_times)
            sgemm = 2.0 * sgemm_n**3 / statistics.median(sgemm_times) / 1e9
            achieved = flops * batch / seconds / 1e9
            rows.append(
                {
                    "config": bc.name,
                    "batch": batch,
                    "ms_per_image": 1e3 * seconds / batch,
                    "gflops_per_image": flops / 1e9,
                    "achieved_gflops": achieved,
                    "sgemm_gflops": sgemm,
                    "efficiency": achieved / sgemm,
                }
            )
    return rows


def format_rows(rows: Sequence[dict[str, float | int | str]]) -> str:
    """A plain-text table of ``bench_generator`` rows."""
    header = f"{'config':<16} {'batch':>5} {'ms/image':>9} {'GFLOP/img':>9} "
    header += f"{'GFLOP/s':>8} {'sgemm':>8} {'effic.':>6}"
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['config']:<16} {r['batch']:>5} {r['ms_per_image']:>9.1f} "
            f"{r['gflops_per_image']:>9.2f} {r['achieved_gflops']:>8.1f} "
            f"{r['sgemm_gflops']:>8.1f} {r['efficiency']:>6.2f}"
        )
    lines.append(
        f"threads: {torch.get_num_threads()}; FLOPs counted analytically (2 x MACs of convs "
        "and linears); medians"
    )
    return "\n".join(lines)
