"""Checkpoints: round trip of everything a resume needs, atomic writes (even under
SIGKILL), and refusal of files that are not plain tensors - without running them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from trainer.errors import MedstyleError, ScanWriteError


def small_training_state() -> dict:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    net(torch.randn(2, 1, 8, 8)).square().mean().backward()
    opt.step()
    return {
        "format": "medstyle-checkpoint",
        "G": net.state_dict(),
        "G_opt": opt.state_dict(),
        "config": {"img_resolution": 32, "loss": "wgan-gp", "batch": [16, 8]},
        "progress": {"images_seen": 12_345, "alpha": 0.25, "phase": "fade-in 16"},
        "metrics": [{"kimg": 10.0, "swd_mean": np.float64(31.5)}],
        "rng": rng_state(),
    }


def test_round_trip_restores_weights_optimiser_and_progress(tmp_path):
    state = small_training_state()
    path = save_checkpoint(state, tmp_path / "latest.pt")
    back = load_checkpoint(path)

    assert back["progress"] == state["progress"] and back["config"] == state["config"]
    assert back["metrics"][0]["swd_mean"] == 31.5 and type(back["metrics"][0]["swd_mean"]) is float
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    net.load_state_dict(back["G"])
    for k, v in state["G"].items():
        torch.testing.assert_close(back["G"][k], v)
    opt = torch.optim.Adam(net.parameters())
    opt.load_state_dict(back["G_opt"])
    assert opt.param_groups[0]["betas"] == (0.0, 0.99)
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporaries left


def test_rng_state_restores_every_generator_through_a_file(tmp_path):
    # numpy's legacy global generator on purpose: it is the state being saved
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    random.gauss(0, 1)  # leave a cached gaussian in Python's state
    np.random.standard_normal()  # noqa: NPY002
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))  # noqa: NPY002

    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.rand(3), torch.rand(3))  # noqa: NPY002
    assert got[:2] == expected[:2]
    np.testing.assert_array_equal(got[2], expected[2])
    torch.testing.assert_close(got[3], expected[3])


def test_malformed_rng_state_is_a_clear_error():
    with pytest.raises(CheckpointError, match="random number state"):
        set_rng_state({"python": {}})


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = save_checkpoint({"step": 1}, tmp_path / "best.pt")
    with pytest.raises(ScanWriteError, match="already exists"):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint({"step": 2}, path, overwrite=True)
    assert load_checkpoint(path)["step"] == 2


def test_save_refuses_objects_it_could_not_load_back(tmp_path):
    with pytest.raises(TypeError, match=r"state\['extra'\]\['fn'\] is a function"):
        save_checkpoint({"extra": {"fn": lambda: 0}}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1, "w": torch.ones(1000)}, tmp_path / "latest.pt")

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, path, overwrite=True)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_sigkill_while_saving_never_leaves_half_a_checkpoint(tmp_path):
    # A child rewrites latest.pt (about 4 MB) as fast as it can; we kill it with
    # SIGKILL at some point mid-flight. latest.pt must load and be one whole state.
    script = textwrap.dedent(
        f"""
        import torch
        from trainer.checkpoint import save_checkpoint
        path = {str(tmp_path / "latest.pt")!r}
        step = 0
        while True:
            step += 1
            save_checkpoint({{"step": step, "w": torch.full((1_000_000,), float(step))}},
                            path, overwrite=step > 1)
            if step == 2:
                open({str(tmp_path / "ready")!r}, "w").close()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert child.poll() is None, "the saving process died"
            assert time.monotonic() < deadline, "the saving process never got going"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    state = load_checkpoint(tmp_path / "latest.pt")
    assert state["step"] >= 2
    assert torch.all(state["w"] == float(state["step"]))


class Payload:
    """Unpickling this would create ``marker`` (a stand-in for running any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "downloaded-model.pt"
    torch.save({"G": {"weight": torch.zeros(2)}, "x": Payload(marker)}, evil)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert message.startswith(f"{evil}: is not a plain-tensor checkpoint")
    assert "\n" not in message
    assert not marker.exists(), "the payload ran"

    # the control: an unsafe load really would have run it
    handle = torch.load(evil, weights_only=False)["x"]
    handle.close()
    assert marker.exists()


class Model:  # an arbitrary object pickled whole, as some training scripts do
    def __init__(self) -> None:
        self.weight = torch.zeros(3)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "whole-model.pt"
    torch.save({"model": Model()}, path)
    with pytest.raises(CheckpointError, match="not a plain-tensor checkpoint"):
        load_checkpoint(path)


def test_truncated_corrupt_and_odd_files_are_clear_errors(tmp_path):
    good = save_checkpoint({"w": torch.arange(10_000.0)}, tmp_path / "good.pt")
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "garbage.pt": bytes(range(256)) * 8,
        "text.pt": b"this is not a checkpoint\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="is not a readable checkpoint") as info:
            load_checkpoint(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)), name

    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a checkpoint dict"):
        load_checkpoint(tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    assert issubclass(CheckpointError, MedstyleError)
