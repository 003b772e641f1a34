"""The encoder training loop on CPU against the tiny GAN bundle: the loss falls, the
encoder lands in the bundle with its hash, exact resume, a clean stop, refusals with one
line, and the command line in one process and as two gloo processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.bundle import (
    ENCODER_FILE,
    BundleError,
    read_bundle_encoder,
    read_bundle_manifest,
    sha256_file,
    verify_bundle,
)
from trainer.checkpoint import CheckpointError, load_checkpoint
from trainer.errors import ConfigError, MedstyleError
from trainer.loops.encoder import train_encoder
from trainer.loops.encoder_config import EncoderTrainConfig
from trainer.networks.encoder import Encoder

#: Short runs: the tiny bundle's 32 px generator, 32-d w. The learning rate is 10x the
#: default so that 125 steps (the paper trains 28,000) move the loss measurably.
QUICK = {"batch": 8, "lr": 1e-3, "device": "cpu", "val_images": 32}


def copy_bundle(bundle: Path, folder: Path) -> Path:
    return Path(shutil.copytree(bundle, folder / "bundle"))


def config(bundle: Path, out: Path, **changes) -> EncoderTrainConfig:
    return EncoderTrainConfig.resolve({**QUICK, "model": str(bundle), "out": str(out), **changes})


def run(cfg: EncoderTrainConfig, **kw) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in every run of this file
    try:
        return train_encoder(cfg, progress=False, **kw)
    finally:
        torch.set_num_threads(threads)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "encoder", "--quiet", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def trained(tiny_gan_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 kimg (125 steps of 8) on a copy of the tiny bundle; returns the run folder."""
    folder = tmp_path_factory.mktemp("encoder_run")
    bundle = copy_bundle(tiny_gan_bundle, folder)
    return run(config(bundle, folder / "run", kimg=1.0, tick_kimg=0.25))


# -- a run --------------------------------------------------------------------------------


def test_validation_loss_of_the_ema_encoder_falls(trained: Path) -> None:
    """Measured: held-out loss 4.84 -> 3.91 (w: 3.91 -> 3.22, image l1: 0.93 -> 0.69)."""
    log = read_log(trained)
    start, ticks, done = log[0], log[1:-1], log[-1]
    assert start["event"] == "validation" and start["images_seen"] == 0
    assert [t["event"] for t in ticks] == ["tick"] * 4 and done["event"] == "done"
    assert [t["images_seen"] for t in ticks] == [256, 504, 752, 1000]
    for t in ticks:
        assert all(torch.isfinite(torch.tensor(t[k])) for k in ("loss", "loss_w", "loss_img"))
        assert t["images_per_s"] > 0
    end = ticks[-1]
    assert end["val_loss"] < 0.9 * start["val_loss"], (start, end)
    assert end["val_loss_w"] < start["val_loss_w"] and end["val_loss_img"] < start["val_loss_img"]
    assert done["val_loss"] == end["val_loss"] and done["world_size"] == 1


def test_encoder_is_added_to_the_bundle_with_its_hash(trained: Path) -> None:
    bundle = trained.parent / "bundle"
    manifest = verify_bundle(bundle)  # every hash, encoder.pt's included
    assert manifest["files"][ENCODER_FILE]["sha256"] == sha256_file(trained / ENCODER_FILE)
    state = load_checkpoint(bundle / ENCODER_FILE)
    assert (state["format"], state["format_version"]) == ("medstyle-encoder", 1)
    training = state["training"]
    assert training["images_seen"] == 1000 and training["steps"] == 125
    assert training["generator_sha256"] == manifest["files"]["generator.pt"]["sha256"]
    assert state["config"]["w_dim"] == 32 and state["config"]["backbone"] == "mirror"
    latest = load_checkpoint(trained / "checkpoints" / "latest.pt")
    for name, tensor in latest["E_ema"].items():
        assert torch.equal(state["E"][name], tensor)


def test_read_bundle_encoder_loads_weights_only(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    E = read_bundle_encoder(trained.parent / "bundle")
    assert calls == [True]
    assert isinstance(E, Encoder) and not E.training
    assert E(torch.zeros(2, 1, 32, 32)).shape == (2, 32)
    reference = load_checkpoint(trained / ENCODER_FILE)["E"]
    assert all(torch.equal(t, reference[k]) for k, t in E.state_dict().items())


def test_read_bundle_encoder_without_one_or_with_a_bad_one(
    tiny_gan_bundle: Path, trained: Path, tmp_path: Path
) -> None:
    from trainer.bundle import add_bundle_file
    from trainer.checkpoint import save_checkpoint
    from trainer.networks.encoder import EncoderConfig, encoder_file_state

    assert read_bundle_encoder(tiny_gan_bundle) is None
    with pytest.raises(BundleError, match="not a model bundle folder") as err:
        read_bundle_encoder(tmp_path / "nowhere")
    assert len(str(err.value).splitlines()) == 1 and "nowhere" in str(err.value)

    bundle = copy_bundle(tiny_gan_bundle, tmp_path)
    shutil.copyfile(trained / ENCODER_FILE, bundle / ENCODER_FILE)  # by hand: no hash
    with pytest.raises(BundleError, match=r"not listed in bundle\.json"):
        read_bundle_encoder(bundle)
    (bundle / ENCODER_FILE).unlink()
    add_bundle_file(bundle, trained / ENCODER_FILE, ENCODER_FILE)
    with open(bundle / ENCODER_FILE, "r+b") as f:  # damaged after it was added
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(BundleError, match="does not match the hash"):
        read_bundle_encoder(bundle)
    shutil.copyfile(trained / ENCODER_FILE, bundle / ENCODER_FILE)  # repaired

    other = Encoder(EncoderConfig(img_resolution=32, w_dim=16, channel_base=256, channel_max=8))
    save_checkpoint(encoder_file_state(other, {}), tmp_path / "other.pt")
    add_bundle_file(bundle, tmp_path / "other.pt", ENCODER_FILE, overwrite=True)
    with pytest.raises(BundleError, match="to 16-d w, but the bundle's generator makes"):
        read_bundle_encoder(bundle)

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "medstyle-encoder", "E": Payload()}, evil)
    add_bundle_file(bundle, evil, ENCODER_FILE, overwrite=True)
    with pytest.raises(CheckpointError, match="not a plain-tensor checkpoint"):
        read_bundle_encoder(bundle)


# -- refusals -----------------------------------------------------------------------------


def test_refuses_a_bundle_that_has_an_encoder_unless_replace(trained: Path, tmp_path: Path) -> None:
    bundle = trained.parent / "bundle"
    before = read_bundle_manifest(bundle)["files"][ENCODER_FILE]
    with pytest.raises(BundleError, match=r"already has an encoder.pt \(pass --replace") as err:
        run(config(bundle, tmp_path / "again", kimg=0.008))
    assert len(str(err.value).splitlines()) == 1 and str(bundle) in str(err.value)
    assert not (tmp_path / "again").exists()  # refused before any work
    assert read_bundle_manifest(bundle)["files"][ENCODER_FILE] == before


def test_replace_puts_the_new_encoder_in_the_bundle(trained: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(trained.parent / "bundle", tmp_path / "bundle"))  # has one
    out = run(config(bundle, tmp_path / "new", kimg=0.008, replace_encoder=True))
    manifest = verify_bundle(bundle)
    assert manifest["files"][ENCODER_FILE]["sha256"] == sha256_file(out / ENCODER_FILE)
    assert sha256_file(out / ENCODER_FILE) != sha256_file(trained / ENCODER_FILE)


def test_a_bad_bundle_folder_is_one_line(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        with pytest.raises(MedstyleError) as err:
            run(config(folder, tmp_path / "out", kimg=0.008))
        message = str(err.value)
        assert len(message.splitlines()) == 1 and str(folder) in message
        assert "not a model bundle folder" in message


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--model"):
        EncoderTrainConfig.resolve({"out": "run"})
    with pytest.raises(ConfigError, match=r"truncation 1\.5"):
        EncoderTrainConfig.resolve({"model": "b", "out": "r", "truncation_psi": 1.5})
    with pytest.raises(ConfigError, match="backbone 'vgg'"):
        EncoderTrainConfig.resolve({"model": "b", "out": "r", "backbone": "vgg"})
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"lr": 3e-4, "batch": 4, "learning_rate": 1}))
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        EncoderTrainConfig.resolve({"model": "b", "out": "r"}, file)
    file.write_text(json.dumps({"lr": 3e-4, "batch": 4}))
    cfg = EncoderTrainConfig.resolve({"model": "b", "out": "r", "batch": 16}, file)
    assert (cfg.lr, cfg.batch, cfg.kimg, cfg.betas, cfg.truncation_psi) == (
        3e-4,
        16,
        224.0,
        (0.0, 0.99),
        0.7,
    )
    assert EncoderTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# -- resume and stop ----------------------------------------------------------------------


def test_resume_continues_exactly(tiny_gan_bundle: Path, tmp_path: Path) -> None:
    """4 steps, then resumed to 8, equals 8 steps in one go (weights, optimiser, losses)."""
    whole_bundle = copy_bundle(tiny_gan_bundle, tmp_path / "a")
    whole = run(config(whole_bundle, tmp_path / "a" / "run", kimg=0.064, tick_kimg=0.016))
    split_bundle = copy_bundle(tiny_gan_bundle, tmp_path / "b")
    first = config(split_bundle, tmp_path / "b" / "run", kimg=0.032, tick_kimg=0.016)
    split = run(first)
    assert load_checkpoint(split / "checkpoints" / "latest.pt")["progress"]["step"] == 4
    more = {**first.to_dict(), "kimg": 0.064, "replace_encoder": True}
    run(EncoderTrainConfig.from_dict(more), resume=True)

    a = load_checkpoint(whole / "checkpoints" / "latest.pt")
    b = load_checkpoint(split / "checkpoints" / "latest.pt")
    assert a["progress"] == b["progress"] == {"images_seen": 64, "step": 8}
    for net in ("E", "E_ema"):
        for name, tensor in a[net].items():
            torch.testing.assert_close(b[net][name], tensor, rtol=0, atol=1e-6)
    for key, state in a["opt"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(b["opt"]["state"][key][name], value, rtol=0, atol=1e-6)
    ticks = [[r for r in read_log(o) if r["event"] == "tick"] for o in (whole, split)]
    assert [t["images_seen"] for t in ticks[1]] == [16, 32, 48, 64]
    for key in ("loss", "val_loss"):
        assert [t[key] for t in ticks[1]] == pytest.approx([t[key] for t in ticks[0]], abs=1e-6)
    shipped = read_bundle_encoder(split_bundle).state_dict()
    assert all(torch.equal(t, b["E_ema"][k]) for k, t in shipped.items())


def test_stop_saves_a_checkpoint_and_leaves_the_bundle_alone(
    tiny_gan_bundle: Path, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_gan_bundle, tmp_path)
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) >= 3

    cfg = config(bundle, tmp_path / "run", kimg=0.08)
    out = run(cfg, stop=stop)
    assert read_log(out)[-1] == {"event": "stopped", "images_seen": 24}
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["progress"]["step"] == 3
    assert not (bundle / ENCODER_FILE).exists() and not (out / ENCODER_FILE).exists()
    with pytest.raises(ConfigError, match="already holds a run"):
        run(cfg)
    run(cfg, resume=True)  # finishes the run and adds the encoder
    assert read_log(out)[-1]["event"] == "done"
    assert read_bundle_encoder(bundle) is not None


# -- command line -------------------------------------------------------------------------


def test_cli_trains_an_encoder_into_the_bundle(tiny_gan_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_gan_bundle, tmp_path)
    out = tmp_path / "run"
    common = ["--model", str(bundle), "--out", str(out), "--device", "cpu"]
    done = run_cli(*common, "--kimg", "0.2", "--batch", "4")
    assert f"wrote {out}" in done.stdout
    assert read_log(out)[-1]["images_seen"] == 200
    assert read_bundle_encoder(bundle) is not None
    saved = json.loads((out / "config.json").read_text())
    assert (saved["kimg"], saved["batch"], saved["lr"]) == (0.2, 4, 1e-4)

    again = run_cli(*common, check=False)
    assert again.returncode == 1
    expected = f"trainer: error: {out}: already holds a run (pass --resume to continue it)"
    assert again.stderr.strip() == expected


def test_cli_resume_allows_only_some_changes(
    tiny_gan_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.train_cli import main

    bundle = copy_bundle(tiny_gan_bundle, tmp_path)
    out = tmp_path / "run"
    common = ["train", "encoder", "--model", str(bundle), "--out", str(out), "--quiet"]
    assert main([*common, "--kimg", "0.008", "--device", "cpu", "--truncation", "0.5"]) == 0
    assert main(["train", "encoder", "--out", str(out), "--resume", "--truncation", "0.7"]) == 1
    err = capsys.readouterr().err
    assert "--truncation differs from the saved run's" in err and "--replace" in err
    assert len(err.strip().splitlines()) == 1
    # a longer run replaces the encoder it added: --kimg and --replace may change
    assert main(["train", "encoder", "--out", str(out), "--resume", "--kimg", "0.016"]) == 1
    assert "already has an encoder.pt (pass --replace" in capsys.readouterr().err
    resumed = ["--out", str(out), "--resume", "--kimg", "0.016", "--replace", "--quiet"]
    assert main(["train", "encoder", *resumed]) == 0
    assert read_log(out)[-1]["images_seen"] == 16


def test_torchrun_command_for_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from trainer.train_cli import build_parser, torchrun_command, train_encoder_argv

    args = build_parser().parse_args(
        ["train", "encoder", "--model", "B", "--out", "r", "--gpus", "4", "--truncation", "0.5"]
    )
    assert args.train_command == "encoder" and args.model == "B"
    argv = ["train", "encoder", *train_encoder_argv(args)]
    cmd = torchrun_command(args.gpus, argv)
    assert cmd[1:6] == ["-m", "trainer.launch", "--standalone", "--nproc_per_node", "4"]
    assert cmd[6:] == "-m trainer train encoder --model B --out r --truncation 0.5".split()
    # a frozen program: torchrun starts the program itself, whose CLI takes the same words
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/medstyle/medstyle")
    frozen = torchrun_command(args.gpus, argv)
    assert frozen[:3] == ["/opt/medstyle/medstyle", "-m", "trainer.launch"]
    assert frozen[6:9] == ["--no-python", "/opt/medstyle/medstyle", "train"]
    assert frozen[8:] == argv


def test_two_gloo_processes_take_the_steps_of_one(tiny_gan_bundle: Path, tmp_path: Path) -> None:
    """``--gpus 2`` on CPU: torchrun starts two gloo processes that split each batch of 4;
    they end in sync and with the weights of one process on the whole batches, up to the
    rounding of the gradient all-reduce, which RAdam's per-weight scaling magnifies for
    weights with tiny gradients (measured after 8 steps: at most 1.2e-5; after 50 steps
    4e-3, with held-out losses 4.3855 and 4.3811)."""
    one_bundle = copy_bundle(tiny_gan_bundle, tmp_path / "one")
    one = run(config(one_bundle, tmp_path / "one" / "run", kimg=0.032, batch=4))
    two_bundle = copy_bundle(tiny_gan_bundle, tmp_path / "two")
    two = tmp_path / "two" / "run"
    args = ["--model", str(two_bundle), "--out", str(two), "--kimg", "0.032", "--batch", "4"]
    run_cli(*args, "--lr", "1e-3", "--device", "cpu", "--gpus", "2")
    done = read_log(two)[-1]
    assert done["event"] == "done" and done["world_size"] == 2
    ticks = [[r for r in read_log(o) if r["event"] == "tick"] for o in (one, two)]
    assert ticks[1][0]["loss"] == pytest.approx(ticks[0][0]["loss"], rel=1e-5)
    a = load_checkpoint(one / "checkpoints" / "latest.pt")["E_ema"]
    b = load_checkpoint(two / "checkpoints" / "latest.pt")["E_ema"]
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-4)
