"""The generator benchmark: its rows, the GEMM peaks they are measured against and the
command (on a tiny network and small matrices, so it stays fast)."""

from __future__ import annotations

import json

import pytest

from medstyle_gui import cli
from trainer import bench
from trainer.bench import ROW_KEYS, BenchConfig, bench_generator, format_rows
from trainer.networks import StyleGANConfig

TINY = StyleGANConfig(
    img_resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16
)


def test_bench_generator_rows_against_the_peak_of_their_precision() -> None:
    result = bench_generator(
        [BenchConfig("tiny", TINY)],
        batches=(1, 2),
        precisions=("float32", "bf16"),
        repeats=2,
        warmup=1,
        gemm_sizes=(64, 128),
        gemm_repeats=1,
    )
    peaks = result["peak_gflops"]
    assert set(peaks) == {"float32", "bf16"} and all(v > 0 for v in peaks.values())
    assert result["gemm_sizes"] == {"float32": [64, 128], "bf16": [64, 128]}
    assert result["threads"] >= 1
    rows = result["rows"]
    assert [(r["batch"], r["precision"]) for r in rows] == [
        (1, "float32"), (2, "float32"), (1, "bf16"), (2, "bf16"),
    ]  # fmt: skip
    for row in rows:
        assert tuple(row) == ROW_KEYS and row["config"] == "tiny"
        assert row["gflops_per_image"] == pytest.approx(bench.generator_flops_per_image(TINY) / 1e9)
        assert row["achieved_gflops"] == pytest.approx(
            row["gflops_per_image"] / (row["ms_per_image"] / 1e3)
        )
        assert row["peak_gflops"] == peaks[row["precision"]]
        assert row["vs_peak"] == pytest.approx(row["achieved_gflops"] / row["peak_gflops"])
        assert row["efficiency"] in (row["vs_peak"], None)
    text = format_rows(result)
    assert "tiny" in text and f"float32 {peaks['float32']:.1f} GFLOP/s" in text
    assert f"bf16 {peaks['bf16']:.1f} GFLOP/s" in text


def test_the_gemm_peak_is_the_best_rate_over_the_sizes_it_can_afford(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The best rate over the sizes; a size whose one product would take longer than the
    budget at the rate found so far is left out (emulated bf16: a 4096 product takes
    minutes), down to the 256 x 256 product that first estimated the speed."""
    import torch

    f32 = {256: 5.0, 1024: 20.0, 2048: 30.0, 4096: 28.0}  # GFLOP/s
    bf16 = {256: 0.2, 1024: 0.2}  # no bf16 units: 1024 would take 11 s
    rates = {(n, torch.float32): r for n, r in f32.items()}
    rates.update({(n, torch.bfloat16): r for n, r in bf16.items()})
    monkeypatch.setattr(bench, "gemm_gflops", lambda n, dtype, repeats: rates[n, dtype])
    peaks, sizes = bench.gemm_peaks((1024, 2048, 4096))
    assert peaks == {"float32": 30.0, "bf16": 0.2}
    # 4096 at 30 GFLOP/s is 4.6 s: within the 5 s budget
    assert sizes == {"float32": [1024, 2048, 4096], "bf16": [256]}
    assert bench.gemm_peak(torch.float32, (1024, 2048, 4096), call_budget_s=1.0) == (
        30.0,
        [1024, 2048],
    )
    monkeypatch.undo()  # and the real measurement gives a rate in bf16 too
    assert bench.gemm_gflops(64, torch.bfloat16, repeats=2) > 0


def test_a_rate_past_the_peak_is_not_called_an_efficiency() -> None:
    """A Winograd convolution does fewer FLOPs than the direct count: 1.5x the GEMM peak
    is a speed-up over direct convolution, said as such, never '150 %'."""
    assert bench.against_peak(60.0, 100.0) == {"vs_peak": 0.6, "efficiency": 0.6}
    assert bench.against_peak(150.0, 100.0) == {"vs_peak": 1.5, "efficiency": None}
    row = {"config": "x", "batch": 1, "precision": "float32", "ms_per_image": 1.0}
    row.update(gflops_per_image=0.15, achieved_gflops=150.0, peak_gflops=100.0)
    result = {"threads": 2, "gemm_sizes": {"float32": [64], "bf16": [64]}, "bf16_units": True}
    result["peak_gflops"] = {"float32": 100.0, "bf16": 200.0}
    result["rows"] = [{**row, **bench.against_peak(150.0, 100.0)}]
    text = format_rows(result)
    assert "1.50x *" in text and "150 %" not in text
    assert "not an efficiency" in text.splitlines()[-1]
    result["rows"] = [{**row, "achieved_gflops": 60.0, **bench.against_peak(60.0, 100.0)}]
    text = format_rows(result)
    assert " 60 %" in text and "not an efficiency" not in text


def test_bench_generator_command_json(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(bench, "default_generator_configs", lambda: [BenchConfig("tiny", TINY)])
    argv = ["bench", "generator", "--json", "--repeats", "2", "--gemm-sizes", "64", "128"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["peak_gflops"]) == {"float32", "bf16"}
    assert [r["batch"] for r in result["rows"]] == [1, 8]
    assert all(tuple(r) == ROW_KEYS and r["precision"] == "float32" for r in result["rows"])


def test_bench_train_reports_images_per_second(gan_data, capsys):
    import json

    from medstyle_gui.cli import main

    argv = ["bench", "train", "--data", str(gan_data), "--network", "slim", "--device", "cpu"]
    argv += ["--batch", "4", "--steps", "2", "--warmup", "1", "--json"]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["resolution"] == 32 and row["batch"] == 4 and row["device"] == "cpu"
    assert row["images_per_s"] > 0 and row["ms_per_step"] > 0
