"""The GAN training loop end to end on CPU: a tiny StyleGAN on a few hundred phantom
slices at 32 px, progressive growing from 16 px through one fade-in, snapshots,
checkpoints, the bundle, exact resume after SIGKILL, and the config layering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.errors import ConfigError
from trainer.loops.gan_config import GANTrainConfig, parse_batch_sizes

#: A tiny run: 16 px for 32 images, fade to 32 px over 64, 32 px for 64 more (20 steps).
TINY = {
    "network": "slim",
    "network_overrides": {"z_dim": 32, "w_dim": 32, "mapping_layers": 2, "channel_max": 32},
    "start_resolution": 16,
    "stabilise_kimg": 0.032,
    "fade_kimg": 0.064,
    "kimg": 0.16,
    "batch_sizes": {"16": 8},
    "tick_kimg": 0.016,
    "snapshot_kimg": 0.08,
    "checkpoint_kimg": 0.016,
    "metric_images": 32,
    "workers": 0,
    "device": "cpu",
}


def write_config(folder: Path, **changes) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps({**TINY, **changes}))
    return path


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "gan", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(gan_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, trained once in this process (the reference for resume)."""
    from trainer.loops.gan import train_gan

    folder = tmp_path_factory.mktemp("tiny_run")
    cfg = GANTrainConfig.resolve(
        {"data": str(gan_data), "out": str(folder / "run")}, write_config(folder)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the subprocess runs below
    try:
        return train_gan(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)


# -- config -------------------------------------------------------------------------------


def test_schedule_fades_in_each_resolution_after_the_first() -> None:
    cfg = GANTrainConfig(start_resolution=8, fade_kimg=1.0, stabilise_kimg=2.0)
    at = lambda images: cfg.phase_at(images, 32)  # noqa: E731
    assert (at(0).resolution, at(0).alpha, at(0).name) == (8, 1.0, "stabilise")
    assert (at(1999).resolution, at(1999).name) == (8, "stabilise")
    assert (at(2000).resolution, at(2000).alpha, at(2000).name) == (16, 0.0, "fade")
    assert at(2500).alpha == pytest.approx(0.5)
    assert (at(3000).resolution, at(3000).name) == (16, "stabilise")
    assert (at(5000).resolution, at(5000).name) == (32, "fade")
    assert (at(10**9).resolution, at(10**9).alpha) == (32, 1.0)  # the last one never ends


def test_batch_sizes_follow_the_paper_and_parse_from_flags() -> None:
    cfg = GANTrainConfig()
    assert [cfg.batch_size(r) for r in (8, 32, 256, 512)] == [256, 64, 8, 8]
    assert parse_batch_sizes("8:256,32:64") == {8: 256, 32: 64}
    assert GANTrainConfig(batch_sizes=parse_batch_sizes("12")).batch_size(256) == 12
    with pytest.raises(ConfigError, match="RES:N"):
        parse_batch_sizes("8=256")


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"lr": 0.002, "loss": "r1", "batch_sizes": {"32": 4}}))
    cfg = GANTrainConfig.resolve({"data": "d.h5", "out": "run", "loss": "wgan-gp"}, file)
    assert (cfg.lr, cfg.loss, cfg.batch_size(64), cfg.ema_decay) == (0.002, "wgan-gp", 4, 0.999)
    assert GANTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    file.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        GANTrainConfig.resolve({"data": "d.h5", "out": "run"}, file)
    with pytest.raises(ConfigError, match="inception-weights"):
        GANTrainConfig.resolve({"data": "d.h5", "out": "run", "metric": "fid"})


# -- a run end to end ---------------------------------------------------------------------


def test_run_writes_config_log_samples_checkpoints_and_bundle(tiny_run: Path) -> None:
    from trainer.bundle import read_bundle_manifest
    from trainer.checkpoint import load_checkpoint

    config = json.loads((tiny_run / "config.json").read_text())
    assert config["kimg"] == 0.16 and config["network_config"]["img_resolution"] == 32
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == [
        "images-000000080.png",
        "images-000000160.png",
    ]
    names = {p.name for p in (tiny_run / "checkpoints").iterdir()}
    assert {"latest.pt", "best.pt", "images-000000080.pt", "images-000000160.pt"} <= names
    latest = load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    assert latest["progress"]["images_seen"] == 160
    assert latest["config"] == GANTrainConfig.from_dict(latest["config"]).to_dict()
    assert set(latest) >= {"G", "D", "G_ema", "opt_G", "opt_D", "rng", "network_config"}
    manifest = read_bundle_manifest(tiny_run / "bundle")
    assert manifest["resolution"] == 32 and manifest["training"]["images_seen"] == 160
    assert manifest["normalisation"]["CT"] == {"low": -1024.0, "high": 1500.0}


def test_losses_are_finite_and_growing_passes_a_fade_in(tiny_run: Path) -> None:
    ticks = [r for r in read_log(tiny_run) if r["event"] == "tick"]
    assert [t["images_seen"] for t in ticks] == list(range(16, 161, 16))
    for t in ticks:
        for key in ("loss_D", "loss_G", "gp", "images_per_s"):
            assert torch.isfinite(torch.tensor(t[key])), (key, t)
    fade = [t["alpha"] for t in ticks if t["phase"] == "fade"]
    assert fade == sorted(fade) and fade[0] < 0.5 < fade[-1] < 1.0
    assert ticks[0]["resolution"] == 16 and ticks[-1]["resolution"] == 32
    assert ticks[-1]["alpha"] == 1.0
    snaps = [r for r in read_log(tiny_run) if r["event"] == "snapshot"]
    # the best model is chosen only at the final resolution after its fade-in
    assert [s.get("best", False) for s in snaps] == [False, True]
    assert all(s["swd"] > 0 for s in snaps)


def test_r1_loss_trains_too(gan_data: Path, tmp_path: Path) -> None:
    from trainer.loops.gan import train_gan

    changes = {"loss": "r1", "kimg": 0.016, "snapshot_kimg": 0.016, "start_resolution": 32}
    cfg = GANTrainConfig.resolve(
        {"data": str(gan_data), "out": str(tmp_path / "run")}, write_config(tmp_path, **changes)
    )
    ticks = [r for r in read_log(train_gan(cfg, progress=False)) if r["event"] == "tick"]
    assert len(ticks) == 1 and ticks[0]["resolution"] == 32
    assert all(np.isfinite(ticks[0][k]) for k in ("loss_D", "loss_G", "r1"))
    assert ticks[0]["r1"] >= 0


def test_sample_grid_is_a_png_of_fixed_seed_images(tiny_run: Path) -> None:
    from PIL import Image

    with Image.open(tiny_run / "samples" / "images-000000160.png") as img:
        assert img.size == (4 * 64, 4 * 64) and img.mode == "L"
        assert len(np.unique(np.asarray(img))) > 10  # not a blank grid


# -- resume -------------------------------------------------------------------------------


def test_sigkill_then_resume_continues_the_same_curve(
    tiny_run: Path, gan_data: Path, tmp_path: Path
) -> None:
    """Kill a run mid-training, check every checkpoint loads, resume: the resumed run
    ends with the uninterrupted run's weights and the same logged losses."""
    from trainer.checkpoint import load_checkpoint

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer", "train", "gan", "--quiet", "--data", str(gan_data)]
    cmd += ["--out", str(run), "--config", str(write_config(tmp_path))]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    latest = run / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 240
    try:
        while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # into the next steps (and perhaps the next checkpoint write)
    finally:
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed, "the run ended before it could be killed"
    for pt in (run / "checkpoints").glob("*.pt"):
        if not pt.name.startswith("."):  # a temporary file cut short is never a .pt name
            load_checkpoint(pt)
    seen = load_checkpoint(latest)["progress"]["images_seen"]
    assert 0 < seen < 160

    run_cli("--out", str(run), "--resume")
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())
    log, reference = read_log(run), read_log(tiny_run)
    ticks = [r for r in log if r["event"] == "tick"]
    ref = [r for r in reference if r["event"] == "tick"]
    assert [t["images_seen"] for t in ticks] == [t["images_seen"] for t in ref]  # none lost
    for key in ("loss_D", "loss_G"):
        assert [t[key] for t in ticks] == pytest.approx([t[key] for t in ref], rel=1e-5, abs=1e-6)
    resumed = load_checkpoint(latest)
    uninterrupted = load_checkpoint(tiny_run / "checkpoints" / "latest.pt")
    assert resumed["progress"]["images_seen"] == 160
    for name, tensor in uninterrupted["G_ema"].items():
        torch.testing.assert_close(resumed["G_ema"][name], tensor, rtol=1e-5, atol=1e-6)


def test_cli_refuses_to_overwrite_a_run_or_change_it_on_resume(
    tiny_run: Path, gan_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.train_cli import main

    assert main(["train", "gan", "--data", str(gan_data), "--out", str(tiny_run)]) == 1
    assert "already holds a run (pass --resume" in capsys.readouterr().err
    assert main(["train", "gan", "--out", str(tiny_run), "--resume", "--lr", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "--lr differs" in err and len(err.strip().splitlines()) == 1


def test_resume_keeps_the_network_a_run_started_with_when_its_preset_changes(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started before its preset changed (as "paper" once had half the paper's
    feature maps) resumes with the network in its checkpoint, not the preset's new one."""
    import dataclasses
    import shutil

    from trainer.checkpoint import load_checkpoint
    from trainer.networks import StyleGANConfig
    from trainer.train_cli import main

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = load_checkpoint(run / "checkpoints" / "latest.pt")["network_config"]
    slim = StyleGANConfig.slim

    def narrower(cls, r: int = 32) -> StyleGANConfig:
        return dataclasses.replace(slim(r), channel_base=slim(r).channel_base // 2)

    monkeypatch.setattr(StyleGANConfig, "slim", classmethod(narrower))
    assert main(["train", "gan", "--quiet", "--out", str(run), "--resume", "--kimg", "0.176"]) == 0
    after = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert after["progress"]["images_seen"] == 176 and after["network_config"] == before


def test_medstyle_train_gan_shares_the_options_and_the_torchrun_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medstyle_gui.cli import build_parser, main
    from trainer.train_cli import torchrun_command, train_gan_argv

    missing = tmp_path / "none.h5"
    assert main(["train", "gan", "--data", str(missing), "--out", str(tmp_path / "r")]) == 1
    assert f"{missing}: does not exist" in capsys.readouterr().err
    args = build_parser().parse_args(
        ["train", "gan", "--data", "d.h5", "--out", "r", "--gpus", "4", "--bf16", "--batch", "8"]
    )
    cmd = torchrun_command(args.gpus, ["train", "gan", *train_gan_argv(args)])
    assert cmd[1:6] == ["-m", "trainer.launch", "--standalone", "--nproc_per_node", "4"]
    expected = "-m trainer train gan --data d.h5 --out r --bf16 --batch 8"
    assert cmd[6:] == expected.split()


@pytest.mark.parametrize("whole_job", [False, True], ids=["process", "process-group"])
def test_sigterm_saves_latest_and_stops_cleanly(
    gan_data: Path, tmp_path: Path, whole_job: bool
) -> None:
    """What a GUI's Stop button sends (to the process) or a scheduler (to every process of
    the job, data-loader workers too): the run saves latest.pt at the step it was on,
    logs "stopped", exits 0, and --resume continues from there."""
    import signal
    import time

    from trainer.checkpoint import load_checkpoint

    workers = 1 if whole_job else 0
    config = write_config(
        tmp_path, kimg=50.0, tick_kimg=0.016, checkpoint_kimg=40.0, workers=workers
    )
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--quiet", "--data", str(gan_data), "--config", str(config), "--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "gan", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a scheduler's job has
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.jsonl").is_file() or '"tick"' not in (run / "log.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        if whole_job:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stopped = [r for r in read_log(run) if r["event"] == "stopped"]
    assert len(stopped) == 1
    latest = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert latest["progress"]["images_seen"] == stopped[0]["images_seen"] < 50_000
    more = str(stopped[0]["images_seen"] / 1000 + 0.016)
    # the arithmetic may change on resume (bf16 on a CPU or GPU that has it), not the model
    run_cli("--out", str(run), "--resume", "--kimg", more, *(["--bf16"] if whole_job else []))
    ticks = [r for r in read_log(run) if r["event"] == "tick"]
    assert ticks[-1]["images_seen"] > stopped[0]["images_seen"]
    assert json.loads((run / "config.json").read_text())["bf16"] is whole_job


# -- continuing a bundle ------------------------------------------------------------------


def test_init_from_a_bundle_starts_from_its_weights_and_counts_its_images(
    tiny_run: Path, gan_data: Path, tmp_path: Path
) -> None:
    """``--init-from`` continues a model whose run folder is gone: G, G_ema and D start
    from the bundle, and the new bundle adds its images to the old ones."""
    from trainer import distributed
    from trainer.bundle import read_bundle_generator, read_bundle_manifest
    from trainer.loops.gan import _Run, train_gan
    from trainer.loops.gan_bundle import bundle_from_checkpoint

    bundle = tiny_run / "bundle"
    cfg = GANTrainConfig.resolve(
        {
            "data": str(gan_data),
            "out": str(tmp_path / "more"),
            "init_from": str(bundle),
            "start_resolution": 32,
            "kimg": 0.032,
            "snapshot_kimg": 0.032,
        },
        write_config(tmp_path),
    )
    saved = read_bundle_generator(bundle)
    run = _Run(cfg, distributed.init("cpu"), resume=False)
    for name, net in (("G_ema", run.G), ("G_ema", run.G_ema), ("D", run.D)):
        for key, value in net.state_dict().items():
            assert torch.equal(value, saved[name][key]), (name, key)
    distributed.cleanup()

    out = train_gan(
        GANTrainConfig.from_dict({**cfg.to_dict(), "out": str(tmp_path / "run")}), progress=False
    )
    training = read_bundle_manifest(out / "bundle")["training"]
    assert training["images_seen"] == 32
    assert training["init_from"]["bundle"] == str(bundle.resolve())
    assert training["init_from"]["kimg"] == 0.16
    assert training["kimg_total"] == pytest.approx(0.192)
    assert read_log(out)[0]["resolution"] == 32  # no progressive growing
    # the start is recorded when the run starts: replacing that bundle later (with this
    # run's own result, say) changes neither the count nor a resume
    moved = tmp_path / "moved"
    bundle.rename(moved)
    try:
        more = GANTrainConfig.from_dict({**cfg.to_dict(), "out": str(out), "kimg": 0.048})
        train_gan(more, resume=True, progress=False)
        again = bundle_from_checkpoint(out / "checkpoints" / "latest.pt", tmp_path / "latest")
    finally:
        moved.rename(bundle)
    assert read_bundle_manifest(again)["training"]["kimg_total"] == pytest.approx(0.208)


def test_init_from_refuses_growing_or_another_network(
    tiny_run: Path, gan_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.train_cli import main

    common = ["train", "gan", "--data", str(gan_data), "--config", str(write_config(tmp_path))]
    bundle = str(tiny_run / "bundle")
    assert main([*common, "--out", str(tmp_path / "a"), "--init-from", bundle]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("pass --start-resolution 32 (no progressive growing)")
    assert len(err.splitlines()) == 1
    wider = ["--start-resolution", "32", "--init-from", bundle]
    path = write_config(tmp_path, network_overrides={"channel_max": 16})
    args = ["train", "gan", "--data", str(gan_data), "--config", str(path)]
    assert main([*args, "--out", str(tmp_path / "b"), *wider]) == 1
    assert "holds another network than this run's" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_that_ends_before_its_final_resolution_says_so_and_how_to_pack_it(
    tiny_run: Path, gan_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--kimg too small for the schedule: the run has no bundle/ (no snapshot at its final
    resolution), and its last line says where it ended and names 'train bundle'."""
    from trainer.bundle import verify_bundle
    from trainer.train_cli import ended_early_note, main

    run = tmp_path / "short"
    config = write_config(tmp_path, kimg=0.024)  # 16 px stabilises for 32 images
    assert main(["train", "gan", "--quiet", "--data", str(gan_data), "--config", str(config),
                 "--out", str(run)]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == f"wrote {run}" and len(out) == 2
    assert out[1].startswith("note: --kimg 0.024 ended the run at 16 px, before its final 32 px")
    assert "fully faded in (at 0.096 kimg), so it wrote no bundle/" in out[1]
    latest = run / "checkpoints" / "latest.pt"
    assert f"'medstyle train bundle {latest} --out BUNDLE'" in out[1]
    assert "--resume --kimg K' (K above 0.096)" in out[1]
    assert not (run / "bundle").exists()
    # what it names works
    assert main(["train", "bundle", str(latest), "--out", str(tmp_path / "b")]) == 0
    verify_bundle(tmp_path / "b")
    # mid fade-in at the final resolution: still not a result, and the line says so
    config = write_config(tmp_path, kimg=0.064)
    faded = tmp_path / "fading"
    assert main(["train", "gan", "--quiet", "--data", str(gan_data), "--config", str(config),
                 "--out", str(faded)]) == 0  # fmt: skip
    assert "ended the run at 32 px (fading in, alpha 0.48)" in capsys.readouterr().out
    # a run that reached its final resolution has nothing to add
    assert ended_early_note(tiny_run) is None


def test_any_snapshot_can_become_a_bundle(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train bundle``: the run keeps a bundle of its best snapshot; any other one can
    be packed the same way, with its own metric and images seen."""
    from trainer.bundle import read_bundle_generator, read_bundle_manifest, verify_bundle
    from trainer.checkpoint import load_checkpoint
    from trainer.train_cli import main

    snapshot = tiny_run / "checkpoints" / "images-000000080.pt"
    out = tmp_path / "at80"
    assert main(["train", "bundle", str(snapshot), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    manifest = verify_bundle(out)
    logged = [r for r in read_log(tiny_run) if r["event"] == "snapshot"]
    assert manifest["training"]["images_seen"] == 80
    assert manifest["training"]["metric_value"] == logged[0]["swd"]
    assert (
        manifest["training"]["geometry"]
        == read_bundle_manifest(tiny_run / "bundle")["training"]["geometry"]
    )
    saved = load_checkpoint(snapshot)
    packed = read_bundle_generator(out)
    assert all(torch.equal(packed["G_ema"][k], v) for k, v in saved["G_ema"].items())
    # the run folder itself means its best snapshot, as the run's own bundle/
    best = tmp_path / "best"
    assert main(["train", "bundle", str(tiny_run), "--out", str(best)]) == 0
    ours, runs = read_bundle_generator(best), read_bundle_generator(tiny_run / "bundle")
    assert all(torch.equal(ours["G_ema"][k], v) for k, v in runs["G_ema"].items())
    # nothing is overwritten unasked, and a wrong file is one line
    assert main(["train", "bundle", str(snapshot), "--out", str(out)]) == 1
    assert main(["train", "bundle", str(tiny_run / "log.jsonl"), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "exists" in err[0] and not (tmp_path / "x").exists()
