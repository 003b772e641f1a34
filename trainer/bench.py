"""Benchmarks: the generator's forward pass against the machine's own GEMM peak.

The generator's FLOPs are counted analytically (2 x multiply-accumulates of every
convolution, done directly, and fully connected layer: mapping MLP, style affines, 3x3
convs, to_rgb; element-wise work such as noise, normalisation and activations is not
counted). The limit it is measured against is the machine's peak for the same precision:
the best ``torch.mm`` rate on large square matrices (a few sizes, best of a few runs,
sampled again after every row), in float32 and in bfloat16. ``vs_peak`` is the achieved
rate over that peak; it is an efficiency only up to 1: a Winograd or FFT convolution does
fewer FLOPs than the direct count, so its rate by that count can pass the peak, and then
the row says so instead.
"""

from __future__ import annotations

import ctypes
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

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
    "precision",
    "ms_per_image",
    "gflops_per_image",
    "achieved_gflops",
    "peak_gflops",
    "vs_peak",
    "efficiency",
)

#: Precisions the generator is timed in, and the dtype of each one's GEMM peak.
PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16}

#: Sides of the square matrices the GEMM peak is measured on.
GEMM_SIZES = (1024, 2048, 4096)
#: The side of the first, cheap product that estimates the speed before the large ones.
GEMM_PROBE = 256
#: Longest one product may take (s): sizes beyond it are left out of the peak.
GEMM_CALL_BUDGET_S = 5.0


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


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic units (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes
        return False


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


def gemm_gflops(n: int, dtype: torch.dtype = torch.float32, *, repeats: int = 3) -> float:
    """The best GFLOP/s of ``torch.mm`` on two ``n x n`` matrices of ``dtype`` (2 n^3
    FLOPs) over ``repeats`` calls after one warm-up: the best, not the median, because a
    peak is what the machine can do, and a busy moment only ever slows a call down."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def gemm_peak(
    dtype: torch.dtype,
    sizes: Sequence[int] = GEMM_SIZES,
    *,
    repeats: int = 3,
    call_budget_s: float = GEMM_CALL_BUDGET_S,
) -> tuple[float, list[int]]:
    """The machine's peak GFLOP/s in ``dtype``: the best :func:`gemm_gflops` over the
    matrix ``sizes``, and the sizes it was measured on. A size whose one call would take
    more than ``call_budget_s`` at the rate found so far is left out (bf16 on a CPU
    without bf16 units is emulated, a hundred times slower than float32: a 4096 product
    would take minutes); where every size would, the rate of a 256 x 256 product, which
    first estimates the speed, is the peak."""
    best, used = gemm_gflops(GEMM_PROBE, dtype, repeats=1), []
    for n in sorted(sizes):
        if 2.0 * n**3 / (best * 1e9) > call_budget_s:
            break  # the larger ones take longer still
        best = max(best, gemm_gflops(n, dtype, repeats=repeats))
        used.append(n)
    return best, used or [GEMM_PROBE]


def gemm_peaks(
    sizes: Sequence[int] = GEMM_SIZES, *, repeats: int = 3
) -> tuple[dict[str, float], dict[str, list[int]]]:
    """:func:`gemm_peak` per precision (keys of :data:`PRECISIONS`): the peaks in GFLOP/s
    and the matrix sizes each was measured on."""
    measured = {
        name: gemm_peak(dtype, sizes, repeats=repeats) for name, dtype in PRECISIONS.items()
    }
    return {k: v[0] for k, v in measured.items()}, {k: v[1] for k, v in measured.items()}


def against_peak(achieved_gflops: float, peak_gflops: float) -> dict[str, float | None]:
    """``{"vs_peak": achieved / peak, "efficiency": the same, or None above 1}``: a rate
    past the peak means fewer FLOPs were done than counted (Winograd, FFT), not an
    efficiency over 100 %."""
    ratio = achieved_gflops / peak_gflops
    return {"vs_peak": ratio, "efficiency": ratio if ratio <= 1.0 else None}


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
    precisions: Sequence[str] = ("float32",),
    repeats: int = 5,
    warmup: int = 2,
    gemm_sizes: Sequence[int] = GEMM_SIZES,
    gemm_repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``G(z)`` (mapping + synthesis, eval, no grad, random noise) per config, batch
    and precision ("float32", or "bf16": bfloat16 autocast) against the GEMM peaks.

    Returns ``{"threads", "bf16_units", "peak_gflops": {"float32", "bf16"}, "gemm_sizes":
    {"float32", "bf16"} (the sizes each peak was measured on), "rows"}``, one row per
    (config, batch, precision) with the keys in ``ROW_KEYS``; times are medians, a row's
    ``peak_gflops`` is the peak of its precision.
    """
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown precision {unknown[0]!r} (float32 or bf16)")
    configs = default_generator_configs() if configs is None else configs
    if progress:
        progress(f"GEMM peaks ({', '.join(map(str, gemm_sizes))})")
    peaks, peak_sizes = gemm_peaks(gemm_sizes, repeats=gemm_repeats)
    timed: list[tuple[str, int, str, float, float]] = []  # name, batch, precision, FLOPs, s
    for bc in configs:
        torch.manual_seed(0)
        G = Generator(bc.cfg).eval()
        flops = generator_flops_per_image(bc.cfg)
        for precision in precisions:
            autocast = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16")
            for batch in batches:
                if progress:
                    progress(f"{bc.name} batch {batch} {precision}")
                z = torch.randn(batch, bc.cfg.z_dim)
                with torch.inference_mode(), autocast:
                    seconds = median_seconds(partial(G, z), repeats=repeats, warmup=warmup)
                timed.append((bc.name, batch, precision, flops, seconds))
                # the peak is the best rate of the whole run: sampled again after every
                # row, so a machine that was busy when it was first measured (and idle
                # while the generator ran) does not leave it too low
                again = gemm_gflops(peak_sizes[precision][-1], PRECISIONS[precision], repeats=1)
                peaks[precision] = max(peaks[precision], again)
    rows = []
    for name, batch, precision, flops, seconds in timed:
        achieved = flops * batch / seconds / 1e9
        rows.append(
            {
                "config": name,
                "batch": batch,
                "precision": precision,
                "ms_per_image": 1e3 * seconds / batch,
                "gflops_per_image": flops / 1e9,
                "achieved_gflops": achieved,
                "peak_gflops": peaks[precision],
                **against_peak(achieved, peaks[precision]),
            }
        )
    return {
        "threads": torch.get_num_threads(),
        "bf16_units": cpu_has_bf16(),
        "peak_gflops": peaks,
        "gemm_sizes": peak_sizes,
        "rows": rows,
    }


def format_rows(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`bench_generator`'s result."""
    peaks, sizes = result["peak_gflops"], result["gemm_sizes"]

    def peak(name: str, note: str = "") -> str:
        return f"{name} {peaks[name]:.1f} GFLOP/s ({', '.join(map(str, sizes[name]))}{note})"

    no_units = "" if result["bf16_units"] else "; no bf16 units here"
    lines = [
        f"GEMM peak (torch.mm, the best rate at N x N): {peak('float32')}, "
        f"{peak('bf16', no_units)}; {result['threads']} threads",
        f"{'config':<16} {'batch':>5} {'precision':>9} {'ms/image':>9} {'GFLOP/img':>9} "
        f"{'GFLOP/s':>8} {'peak':>7} {'of peak':>8}",
    ]
    above = False
    for r in result["rows"]:
        if r["efficiency"] is None:
            share, above = f"{r['vs_peak']:.2f}x *", True
        else:
            share = f"{100 * r['efficiency']:.0f} %"
        lines.append(
            f"{r['config']:<16} {r['batch']:>5} {r['precision']:>9} {r['ms_per_image']:>9.1f} "
            f"{r['gflops_per_image']:>9.2f} {r['achieved_gflops']:>8.1f} "
            f"{r['peak_gflops']:>7.1f} {share:>8}"
        )
    lines.append(
        "FLOPs counted analytically (2 x MACs of the convolutions, done directly, and "
        "the linears); medians; 'of peak' against the GEMM peak of the row's precision"
    )
    if above:
        lines.append(
            "* past the peak: the convolutions did fewer FLOPs than counted (a Winograd or "
            "FFT algorithm), so this is a speed-up over direct convolution, not an efficiency"
        )
    return "\n".join(lines)
