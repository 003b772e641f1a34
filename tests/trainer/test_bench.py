"""The generator benchmark: its rows and the command (on a tiny network, so it stays fast)."""

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


def test_bench_generator_rows() -> None:
    rows = bench_generator(
        [BenchConfig("tiny", TINY)], batches=(1, 2), repeats=2, warmup=1, sgemm_n=128
    )
    assert [(r["config"], r["batch"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
    for row in rows:
        assert tuple(row) == ROW_KEYS
        for key in ROW_KEYS[2:]:
            assert row[key] > 0, key
        assert row["gflops_per_image"] == pytest.approx(bench.generator_flops_per_image(TINY) / 1e9)
        assert row["efficiency"] == pytest.approx(row["achieved_gflops"] / row["sgemm_gflops"])
        assert row["achieved_gflops"] == pytest.approx(
            row["gflops_per_image"] / (row["ms_per_image"] / 1e3)
        )
    assert "tiny" in format_rows(rows)


def test_sgemm_gflops_is_positive() -> None:
    assert bench.sgemm_gflops(64, repeats=2, warmup=1) > 0


def test_bench_generator_command_json(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(bench, "default_generator_configs", lambda: [BenchConfig("tiny", TINY)])
    assert cli.main(["bench", "generator", "--json", "--repeats", "2", "--sgemm-size", "128"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in rows] == [1, 8]
    assert all(tuple(r) == ROW_KEYS for r in rows)


def test_bench_train_reports_images_per_second(gan_data, capsys):
    import json

    from medstyle_gui.cli import main

    argv = ["bench", "train", "--data", str(gan_data), "--network", "slim", "--device", "cpu"]
    argv += ["--batch", "4", "--steps", "2", "--warmup", "1", "--json"]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["resolution"] == 32 and row["batch"] == 4 and row["device"] == "cpu"
    assert row["images_per_s"] > 0 and row["ms_per_step"] > 0
