"""``--gpus N`` through :mod:`trainer.launch` (torchrun) on CPU: two gloo processes end
with one line, not a traceback, when one fails or when Stop (SIGTERM) ends them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_failing_process_ends_the_launch_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no_bundle"
    launch = [sys.executable, "-m", "trainer.launch", "--standalone", "--nproc_per_node", "2"]
    worker = ["-m", "trainer", "train", "encoder", "--model", str(missing), "--out", "r"]
    done = subprocess.run(
        [*launch, *worker],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 1
    assert f"{missing}: is not a model bundle folder" in done.stderr  # the process's own error
    assert "medstyle: training process 0 ended with exit code 1" in done.stderr
    assert "Traceback" not in done.stderr


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def test_stop_saves_both_processes_work_without_a_traceback(
    tiny_gan_bundle: Path, tmp_path: Path
) -> None:
    """What the training monitor's Stop does: SIGTERM to the whole process group."""
    bundle = shutil.copytree(tiny_gan_bundle, tmp_path / "bundle")
    run = tmp_path / "run"
    args = ["--model", str(bundle), "--out", str(run), "--gpus", "2", "--kimg", "50"]
    args += ["--batch", "4", "--tick-kimg", "0.008", "--device", "cpu", "--quiet"]
    job = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "encoder", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(r["event"] == "tick" for r in _log(run)) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGTERM)
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    records = _log(run)
    assert records[-1]["event"] == "stopped", output[-3000:]
    assert (run / "checkpoints" / "latest.pt").is_file()
    assert "saved where it was (continue with --resume)" in output
    assert "Traceback" not in output, output[-3000:]
