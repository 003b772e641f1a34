"""RunLog: log.jsonl read incrementally while a run appends to it (and rewrites it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from medstyle_gui.core.run_log import RunLog


def _tick(images: int, **losses: float) -> dict:
    return {"event": "tick", "images_seen": images, "kimg": images / 1000, **losses}


def _append(path: Path, *records: dict | str) -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(r if isinstance(r, str) else json.dumps(r) + "\n")


def test_missing_folder_is_quiet(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "not-yet")
    assert not log.poll()
    assert log.kind is None and log.newest_sample() is None and log.bundle() is None
    assert not log.can_resume() and log.kimg == 0.0 and log.metric_key() is None


def test_incremental_reads_and_torn_lines(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"kimg": 0.2, "data": "d.h5"}))
    path = tmp_path / "log.jsonl"
    _append(path, _tick(16, loss_D=2.0, loss_G=0.5, gp=0.8))
    log = RunLog(tmp_path)
    assert log.poll() and len(log.ticks) == 1
    assert not log.poll()  # nothing new
    # a line being written: only the whole lines count, the rest waits
    _append(path, _tick(32, loss_D=1.5, loss_G=0.7, gp=0.6), '{"event": "snap')
    assert log.poll() and len(log.ticks) == 2 and not log.snapshots
    _append(path, 'shot", "images_seen": 40, "swd": 900.5, "best": true}\n', "not json\n")
    assert log.poll() and len(log.snapshots) == 1
    assert log.kind == "gan" and log.total_kimg == 0.2
    assert log.loss_keys() == ["loss_D", "loss_G", "gp"]
    assert log.metric_key() == "swd"
    x, y = log.series("loss_D")
    np.testing.assert_allclose(x, [0.016, 0.032])
    np.testing.assert_allclose(y, [2.0, 1.5])
    x, y = log.series("swd")
    np.testing.assert_allclose(x, [0.04])
    np.testing.assert_allclose(y, [900.5])
    assert log.best_snapshot()["images_seen"] == 40
    assert log.kimg == 0.04
    summary = log.summary()
    assert "0.04 of 0.2 kimg" in summary and "swd 900.5" in summary


def test_replaced_log_is_read_again(tmp_path: Path) -> None:
    """A resumed run drops the ticks after its checkpoint and replaces the file."""
    path = tmp_path / "log.jsonl"
    _append(path, *(_tick(i * 16, loss_D=float(i)) for i in range(1, 5)))
    log = RunLog(tmp_path)
    log.poll()
    assert len(log.ticks) == 4
    tmp = tmp_path / ".log.tmp"
    _append(tmp, *(_tick(i * 16, loss_D=float(i)) for i in range(1, 3)))
    os.replace(tmp, path)  # a new inode, as atomic_file writes it
    assert log.poll()
    assert [t["images_seen"] for t in log.ticks] == [16, 32]
    # a truncated file (same inode, shorter) starts over too
    path.write_text(json.dumps(_tick(16, loss_D=9.0)) + "\n")
    assert log.poll() and [t["loss_D"] for t in log.ticks] == [9.0]


def test_encoder_run(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": str(bundle), "encoder_config": {}}))
    _append(
        run / "log.jsonl",
        {"event": "validation", "images_seen": 0, "val_loss": 3.0},
        _tick(8, loss=2.0, loss_w=1.5, loss_img=0.5, val_loss=2.5),
        {"event": "done", "images_seen": 8, "val_loss": 2.4},
    )
    log = RunLog(run)
    log.poll()
    assert log.kind == "encoder"
    assert log.loss_keys() == ["loss", "loss_w", "loss_img"]
    assert log.metric_key() == "val_loss"
    assert log.bundle() == bundle
    assert [e["event"] for e in log.events] == ["validation", "done"]


def test_samples_bundle_and_resume(tmp_path: Path) -> None:
    (tmp_path / "samples").mkdir()
    for name in ("images-000000056.png", "images-000000104.png", "images-000000008.png"):
        (tmp_path / "samples" / name).write_bytes(b"")
    (tmp_path / "samples" / ".images-000000200.png.tmp1.png").write_bytes(b"")  # half written
    log = RunLog(tmp_path)
    assert log.newest_sample().name == "images-000000104.png"
    assert log.bundle() is None and not log.can_resume()
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "bundle.json").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"")
    assert log.bundle() == tmp_path / "bundle" and log.can_resume()


def test_describe_makes_one_log_line() -> None:
    tick = _tick(32, loss_D=1.23456, loss_G=-0.5, gp=0.8)
    tick.update(resolution=32, images_per_s=21.0)
    assert RunLog.describe(tick) == "tick      0.032 kimg  32 px  loss_D 1.23  loss_G -0.5  gp 0.8"
    snap = {"event": "snapshot", "images_seen": 56, "swd": 872.16, "best": True}
    assert RunLog.describe(snap) == "snapshot  0.056 kimg  swd 872  best so far: bundle/ updated"
