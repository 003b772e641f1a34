"""The Training menu: its dialogs build the right command lines, and a tiny GAN run
started from the menu streams its log, plots its losses, stops, resumes and offers its
model at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QDialogButtonBox, QMenu

from medstyle_gui.gui.panels.training import TrainingMonitor, install_training_menu


@pytest.fixture
def training_menu(qtbot):
    menu = QMenu()
    opened: list[Path] = []
    controller = install_training_menu(menu, None, None, open_bundle=opened.append)
    yield controller, opened
    for monitor in controller.monitors:
        if monitor.runner.running:
            monitor.runner.stop(grace_s=1.0)
            qtbot.waitUntil(lambda m=monitor: not m.runner.running, timeout=10000)
        monitor.deleteLater()


def _click_start(dialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_prepare_dataset_arguments(training_menu, qtbot, tmp_path: Path) -> None:
    controller, _ = training_menu
    controller.actions["dataset"].trigger()
    dialog = controller.dialog
    qtbot.addWidget(dialog)
    assert dialog.isVisible() and dialog.windowTitle() == "Prepare a training dataset"
    # nothing filled in: Start refuses with one line, the dialog stays open
    _click_start(dialog)
    assert dialog.isVisible() and "study folder" in dialog.error_label.text()
    studies = [tmp_path / "cohort", tmp_path / "more"]
    for s in studies:
        s.mkdir()
        dialog.add_source(s)
    dialog.out.setText(tmp_path / "data.h5")
    dialog.matrix.setCurrentIndex(dialog.matrix.findData(64))
    dialog.n4.setChecked(False)
    out = str(tmp_path / "data.h5")
    assert dialog.commands() == [[
        "dataset", "build", str(studies[0]), str(studies[1]), "--out", out, "--size", "64",
        "--no-n4",
    ]]  # fmt: skip
    dialog.register.setChecked(False)
    dialog.overwrite.setChecked(True)
    assert dialog.commands()[0][-3:] == ["--no-register", "--no-n4", "--overwrite"]
    # an existing dataset is not replaced unless asked
    (tmp_path / "data.h5").write_bytes(b"")
    dialog.overwrite.setChecked(False)
    _click_start(dialog)
    assert dialog.isVisible() and "already exists" in dialog.error_label.text()


def test_gan_encoder_and_directions_arguments(training_menu, qtbot, tmp_path: Path) -> None:
    controller, _ = training_menu
    data = tmp_path / "data.h5"
    data.write_bytes(b"")
    controller.actions["gan"].trigger()
    gan = controller.dialog
    qtbot.addWidget(gan)
    gan.data.setText(data)
    gan.out.setText(tmp_path / "run")
    gan.kimg.setValue(500)
    gan.gpus.setValue(4)
    gan.resolution.setCurrentIndex(gan.resolution.findData(128))
    gan.batch.setText("64:32,128:16")
    argv = gan.commands()[0]
    assert argv[:2] == ["train", "gan"]
    pairs = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert pairs["--data"] == str(data) and pairs["--out"] == str(tmp_path / "run")
    assert pairs["--resolution"] == "128" and pairs["--kimg"] == "500"
    assert pairs["--batch"] == "64:32,128:16" and argv[-2:] == ["--gpus", "4"]
    assert "--tick-kimg" not in argv  # left to the trainer's default
    # continuing a bundle's training
    gan.init_from.setText(tmp_path)
    pairs = dict(zip(gan.commands()[0][2::2], gan.commands()[0][3::2], strict=False))
    assert pairs["--init-from"] == str(tmp_path)
    gan.init_from.setText("")
    # resume: only what may change on a resume is passed
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"kimg": 700, "workers": 0, "data": "x"}')
    gan.resume.setChecked(True)
    assert not gan.data.isEnabled() and not gan.init_from.isEnabled()
    assert gan.kimg.value() == 700
    argv = gan.commands()[0]
    assert "--data" not in argv and "--batch" not in argv and argv[-1] == "--resume"
    gan.reject()

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    controller.actions["encoder"].trigger()
    enc = controller.dialog
    qtbot.addWidget(enc)
    enc.model.setText(bundle)
    enc.out.setText(tmp_path / "enc_run")
    enc.kimg.setValue(10)
    run = str(tmp_path / "enc_run")
    assert enc.commands() == [[
        "train", "encoder", "--model", str(bundle), "--out", run, "--kimg", "10", "--batch",
        "8", "--truncation", "0.7",
    ]]  # fmt: skip
    enc.reject()

    controller.actions["directions"].trigger()
    fit = controller.dialog
    qtbot.addWidget(fit)
    fit.model.setText(bundle)
    fit.latents.setText(tmp_path / "latents.h5")
    fit.embed_first.setChecked(True)
    fit.embed_from.setText(data)
    fit.refine_steps.setValue(20)
    fit.refine_lr.setValue(0.03)
    embed, directions = fit.commands()
    latents = str(tmp_path / "latents.h5")
    assert embed == [
        "embed", str(data), "--model", str(bundle), "--out", latents, "--refine-steps", "20",
        "--refine-lr", "0.03", "--device", "cpu",
    ]  # fmt: skip
    assert directions[:6] == ["directions", "fit", "--model", str(bundle), "--latents", latents]
    fit.reject()


def _loss_points(monitor: TrainingMonitor) -> int:
    curve = monitor._curves.get("loss_D")
    return 0 if curve is None or curve.xData is None else len(curve.xData)


def test_tiny_gan_run_stop_resume(
    training_menu, qtbot, gan_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """Start from the menu's dialog, watch the log and the plot fill, stop, resume to the end."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    controller, opened = training_menu
    controller.actions["gan"].trigger()
    dialog = controller.dialog
    qtbot.addWidget(dialog)
    run = tmp_path / "run"
    dialog.data.setText(gan_data)
    dialog.out.setText(run)
    dialog.network.setCurrentIndex(dialog.network.findData("slim"))
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.workers.setValue(0)
    dialog.kimg.setValue(0.12)
    dialog.batch.setText("8")
    dialog.start_resolution.setCurrentIndex(dialog.start_resolution.findData(32))
    dialog.tick_kimg.setValue(0.016)
    dialog.snapshot_kimg.setValue(0.04)
    dialog.checkpoint_kimg.setValue(0.016)
    dialog.metric_images.setValue(16)
    _click_start(dialog)
    assert not dialog.isVisible()
    monitor = controller.monitors[-1]
    qtbot.addWidget(monitor)
    assert monitor.runner.running and monitor.command.text().startswith("medstyle train gan")

    # the log view fills and the loss plot gets points as ticks arrive
    qtbot.waitUntil(lambda: _loss_points(monitor) >= 2, timeout=90000)
    assert "$ medstyle train gan" in monitor.log_view.toPlainText()
    assert monitor.watcher.log.can_resume()
    before = monitor.watcher.log.kimg
    assert before < 0.12

    # Stop ends it (the run stops at its next step; how fast is for benchmarks, not for a
    # test on a shared machine), and Resume becomes possible
    monitor.stop_button.click()
    qtbot.waitUntil(lambda: not monitor.runner.running, timeout=30000)
    assert monitor.outcome == "stopped" and "stopped" in monitor.status.text()
    assert monitor.resume_button.isEnabled()

    # Resume continues from the checkpoint to the end; the model is offered
    monitor.resume_button.click()
    assert monitor.runner.running and "--resume" in monitor.command.text()
    qtbot.waitUntil(lambda: monitor.outcome == "done", timeout=120000)
    log = monitor.watcher.log
    assert log.kimg >= 0.12 and log.ticks[-1]["images_seen"] >= 120
    assert "-- resuming --" in monitor.log_view.toPlainText()
    assert monitor.watcher.log.metric_key() == "swd"
    assert monitor._curves["metric"].xData is not None
    assert monitor.sample.pixmap() is not None and not monitor.sample.pixmap().isNull()
    assert monitor.open_button.isEnabled() and monitor.offer.isVisible()
    monitor.open_button.click()
    assert opened == [run / "bundle"]

    # any snapshot becomes a model of its own: listed newest first with its metric
    controller.actions["snapshot"].trigger()
    pack = controller.dialog
    qtbot.addWidget(pack)
    pack.run.setText(run)
    labels = [pack.snapshot.itemText(i) for i in range(pack.snapshot.count())]
    assert labels[0].startswith("0.12 kimg") and labels[-1].startswith("0.04 kimg  ·  SWD")
    assert sum(label.endswith("(best)") for label in labels) == 1
    pack.snapshot.setCurrentIndex(pack.snapshot.count() - 1)
    pack.out.setText(tmp_path / "at40")
    _click_start(pack)
    packed = controller.monitors[-1]
    qtbot.addWidget(packed)
    qtbot.waitUntil(lambda: packed.outcome == "done", timeout=60000)
    packed.open_button.click()
    assert opened[-1] == tmp_path / "at40" and (tmp_path / "at40" / "bundle.json").is_file()


def test_failed_command_says_why(training_menu, qtbot, tmp_path: Path) -> None:
    """A command that fails shows the CLI's one error line, no traceback."""
    controller, _ = training_menu
    from medstyle_gui.gui.dialogs.process_runner import RunSpec

    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    spec = RunSpec("bad", [["dataset", "info", str(bad)]])
    monitor = controller.start(spec)
    qtbot.addWidget(monitor)
    qtbot.waitUntil(lambda: monitor.outcome == "failed", timeout=60000)
    assert str(bad) in monitor.status.text() and "Traceback" not in monitor.log_view.toPlainText()
    assert sys.executable  # the CLI ran with this interpreter


def test_panel_watches_a_run_folder(qtbot, tmp_path: Path) -> None:
    """The Training dock: a run started elsewhere shows in a tab, and closing it removes it."""
    import json

    from PIL import Image

    from medstyle_gui.gui.panels.training import TrainingPanel

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "bundle").mkdir()
    (run / "bundle" / "bundle.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"kimg": 0.048, "data": "d.h5"}))
    records = [
        {"event": "tick", "images_seen": n, "loss_D": 1.0 / n, "loss_G": 0.1, "resolution": 32}
        for n in (16, 32, 48)
    ] + [{"event": "snapshot", "images_seen": 48, "swd": 700.0, "best": True}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(run / "samples" / "images-000000048.png")

    opened: list[Path] = []
    panel = TrainingPanel(None)
    qtbot.addWidget(panel)
    panel.training.open_bundle = opened.append
    texts = [a.text() for a in panel.menu_actions()]
    assert texts == [
        "Prepare dataset...", "Train StyleGAN...", "Pack a snapshot...", "Train encoder...",
        "Fit directions...", "",
        "Watch a run folder...",
    ]  # fmt: skip
    monitor = panel.training.watch_folder(run)
    assert panel.tabs.count() == 2 and panel.tabs.currentWidget() is monitor
    qtbot.waitUntil(lambda: _loss_points(monitor) == 3, timeout=5000)
    assert "snapshot  0.048 kimg  swd 700" in monitor.log_view.toPlainText()
    assert monitor.progress.value() == 1000 and monitor.sample_caption.text().startswith("G_ema")
    assert monitor.result_bundle() == run / "bundle"
    monitor.take_offer()
    assert opened == [run / "bundle"]
    monitor.close()
    qtbot.waitUntil(lambda: panel.tabs.count() == 1, timeout=5000)
    assert panel.training.monitors == []
