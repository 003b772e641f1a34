"""The run folder both training loops keep: config.json, log.jsonl cut back to the
checkpoint on resume, leftovers of a torn save removed, TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.loops.run_folder import RunFolder


def test_a_resumed_run_drops_log_lines_after_its_checkpoint(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, {"kimg": 1}, resume=False, images_seen=0)
    for seen in (100, 200, 300):
        run.log({"event": "tick", "images_seen": seen, "loss": 0.5})
    run.close()
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"event": "tick", "images_se')  # torn by a crash
    (tmp_path / "checkpoints" / ".latest.pt.tmp123").write_bytes(b"half")

    RunFolder(tmp_path, {"kimg": 2}, resume=True, images_seen=200).close()
    lines = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["images_seen"] for r in lines] == [100, 200]
    assert json.loads((tmp_path / "config.json").read_text()) == {"kimg": 2}
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_numbers_go_to_tensorboard_against_images_seen(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunFolder(tmp_path, {}, resume=False, images_seen=0, subfolders=("samples",))
    run.log({"event": "tick", "images_seen": 64, "step": 4, "loss": 1.5, "name": "x"})
    run.log({"event": "tick", "images_seen": 128, "step": 8, "loss": 1.0})
    run.close()
    assert (tmp_path / "samples").is_dir()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["loss"]  # not the step, the count or text
    loss = events.Scalars("loss")
    assert [(e.step, e.value) for e in loss] == [(64, 1.5), (128, 1.0)]
