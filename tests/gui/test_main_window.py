"""The main window with the tiny model and the real T2: first render, status bar, moves,
errors, settings, and ``medstyle gui --screenshot`` in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gui.conftest import WAIT_MS, wait_render

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(qtbot, app_state, settings):
    from medstyle_gui.gui.main_window import MainWindow

    win = MainWindow(app_state, settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_the_window_renders_the_t2_and_shows_model_device_and_time(
    qtbot, window, app_state, tiny_model, real_t2_nifti
):
    state = app_state
    with qtbot.waitSignal(state.rendered, timeout=WAIT_MS):
        state.set_model(tiny_model)
    with qtbot.waitSignal(state.rendered, timeout=WAIT_MS, check_params_cb=lambda r: r.stamp > 1):
        state.open_scan(real_t2_nifti)
    source = state.explore.source
    assert tiny_model.name in window.model_label.text()
    assert window.device_label.text() == "CPU"
    assert re.fullmatch(r"render \d+ ms", window.render_label.text())
    comparison = window.comparison
    np.testing.assert_array_equal(comparison.source.image, source.native(state.explore.index))
    np.testing.assert_array_equal(comparison.generated.image, state.last_result.image_native)
    assert comparison.truth.image is not None and comparison.difference.image is not None

    before = comparison.generated.image.copy()
    wait_render(qtbot, state, lambda: state.set_move("sex", 3.0))
    qtbot.waitUntil(lambda: not np.array_equal(comparison.generated.image, before), timeout=5000)

    index = state.explore.index
    window._step_slice(1)
    assert state.explore.index == index + 1
    qtbot.waitUntil(
        lambda: np.array_equal(comparison.source.image, source.native(index + 1)), timeout=5000
    )


def test_errors_are_one_line_and_the_window_stays_usable(
    qtbot, window, app_state, tiny_model, tmp_path
):
    state = app_state
    with qtbot.waitSignal(state.rendered, timeout=WAIT_MS):
        state.set_model(tiny_model)
    missing = tmp_path / "nowhere.nii.gz"
    with qtbot.waitSignal(state.errorRaised, timeout=WAIT_MS):
        window.open_recent(f"scan|{missing}")
    assert str(missing) in window.last_error and "\n" not in window.last_error
    assert window._error_box is not None and window._error_box.isVisible()
    assert not window._error_box.isModal()
    assert str(missing) in window.statusBar().currentMessage()
    result = wait_render(qtbot, state, lambda: state.sample_seed(7))
    assert result.error is None
    np.testing.assert_array_equal(window.comparison.generated.image, result.image_native)


def test_no_model_is_an_empty_usable_window(qtbot, window, app_state, real_t2_nifti):
    assert window.model_label.text() == "no model"
    with qtbot.waitSignal(app_state.errorRaised, timeout=1000):
        app_state.open_scan(real_t2_nifti)
    assert "open a model first" in window.last_error


def test_docks_menus_and_shortcuts(window):
    assert window.centralWidget() is window.comparison
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "View", "Training", "Help"]
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text().replace("&", "") for a in file_menu.actions() if a.text()]
    for wanted in ("Open scan…", "Open DICOM folder…", "Open paired study…", "Open model…"):
        assert wanted in texts
    for wanted in ("Recent files", "Save session…", "Open session…", "Export", "Quit"):
        assert wanted in texts
    shortcuts = {a.text().replace("&", ""): a.shortcut().toString() for a in file_menu.actions()}
    assert shortcuts["Open scan…"] == "Ctrl+O" and shortcuts["Save session…"] == "Ctrl+S"
    for key, dock in window.docks.items():
        assert dock.objectName() == f"dock_{key}" and dock.widget() is window.panels[key]


def test_settings_remember_layout_and_recent_files(qtbot, app_state, settings, tmp_path):
    from medstyle_gui.gui.main_window import MainWindow
    from medstyle_gui.gui.recent_files import RECENT_MAX

    win = MainWindow(app_state, settings=settings)
    qtbot.addWidget(win)
    for i in range(RECENT_MAX + 2):
        win.recent.add(f"scan|{tmp_path / f's{i}.nii'}")
    recent = win.recent.entries()
    assert len(recent) == RECENT_MAX and recent[0].endswith(f"s{RECENT_MAX + 1}.nii")
    win.recent.add(f"scan|{tmp_path / 's3.nii'}")
    assert win.recent.entries()[0].endswith("s3.nii") and len(win.recent.entries()) == RECENT_MAX
    entries = [a for a in win.recent.menu.actions() if a.text().startswith("scan:")]
    assert len(entries) == RECENT_MAX and entries[0].text().endswith("s3.nii")
    with qtbot.waitSignal(app_state.errorRaised, timeout=WAIT_MS) as error:
        entries[1].trigger()  # choosing an entry opens it (no model is open: it says so)
    assert "open a model first" in error.args[0]
    assert win.recent.entries()[0].endswith(f"s{RECENT_MAX + 1}.nii")
    hidden = next(iter(win.docks))
    win.docks[hidden].hide()
    win.close()
    assert settings.value("geometry") is not None and settings.value("window_state") is not None

    from medstyle_gui.gui.state import AppState

    again = AppState()
    try:
        win2 = MainWindow(again, settings=settings)
        qtbot.addWidget(win2)
        assert win2.docks[hidden].isHidden()  # the dock layout came back
        assert all(
            not d.isHidden()
            for k, d in win2.docks.items()
            if k in ("scans", "latent") and k != hidden
        )
        assert win2.recent.entries()[0].endswith(f"s{RECENT_MAX + 1}.nii")  # the one chosen last
        clear = next(a for a in win2.recent.menu.actions() if a.text() == "Clear")
        clear.trigger()
        assert win2.recent.entries() == [] and not win2.recent.menu.isEnabled()
        win2.close()
    finally:
        again.shutdown()


def test_the_default_settings_are_the_tests_own():
    from PySide6.QtCore import QCoreApplication, QSettings

    assert QCoreApplication.organizationName() == "medstyle-tests"
    assert "tests" in QCoreApplication.applicationName()
    assert "qsettings" in QSettings().fileName()


def _gui(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    # the subprocess must not read or write the user's settings either
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["HOME"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "medstyle_gui", "gui", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_screenshot_from_the_command_line(tmp_path, tiny_bundle, real_t2_nifti):
    out = tmp_path / "window.png"
    result = _gui(
        ["--model", str(tiny_bundle), str(real_t2_nifti), "--screenshot", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    width, height = _png_size(out)
    assert width > 800 and height > 500
    assert f"wrote {out}" in result.stdout


def test_screenshot_with_no_arguments_shows_the_demo(tmp_path):
    """``medstyle gui`` alone: the demo model and study, the middle slice refined and
    rendered."""
    out = tmp_path / "demo.png"
    result = _gui(["--screenshot", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert _png_size(out)[0] > 800
    shown = next(line for line in result.stdout.splitlines() if line.startswith("shown: "))
    assert "model demo (64 px" in shown and "MR mr.nii.gz slice 44/87 (refined)" in shown
    assert "paired with CT" in shown and shown.endswith("rendered")


def test_screenshot_with_a_bad_model_says_so_and_fails(tmp_path):
    out = tmp_path / "bad.png"
    result = _gui(["--model", str(tmp_path / "no_model"), "--screenshot", str(out)], tmp_path)
    assert result.returncode == 1
    assert "no_model" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()  # no picture of a window without the model asked for


def test_a_session_opens_with_its_model_scans_and_latents(
    qtbot, window, app_state, tiny_bundle, tmp_path
):
    """``medstyle gui SESSION.medstyle``: model, paired study and refined latents restored."""
    from medstyle_gui import resources_path
    from medstyle_gui.cli import main
    from medstyle_gui.gui.app import open_inputs

    out = tmp_path / "demo.medstyle"
    study = str(resources_path("demo", "study"))
    args = ["session", study, "--model", str(tiny_bundle), "--out", str(out)]
    assert main([*args, "--refine-steps", "1", "--batch", "64", "--quiet"]) == 0
    state = app_state
    explore = state.explore
    open_inputs(window, None, [out], "cpu")
    qtbot.waitUntil(lambda: len(explore.paired_latents) > 0, timeout=WAIT_MS)
    assert state.model is not None and explore.paired is not None
    assert len(explore.latents) == explore.source.num_slices == len(explore.paired_latents)
    # the session's encoder latents are restored (the slices were not encoded again)
    assert len(explore.encoder_latents) == explore.source.num_slices
    assert len(explore.paired_encoder_latents) == explore.paired.num_slices
    assert explore.index == explore.source.num_slices // 2
    qtbot.waitUntil(
        lambda: state.last_result is not None and state.truth is not None, timeout=WAIT_MS
    )
    assert "session restored" in window.statusBar().currentMessage()


def test_closing_while_work_runs_asks_first(qtbot, app_state, settings, monkeypatch):
    from medstyle_gui.gui.main_window import MainWindow

    win = MainWindow(app_state, settings=settings)
    qtbot.addWidget(win)
    win.show()
    asked: list[list[str]] = []
    answer = {"quit": False}

    def confirm(self, running: list[str]) -> bool:
        asked.append(running)
        return answer["quit"]

    monkeypatch.setattr(MainWindow, "confirm_quit", confirm)

    def work(progress, cancel) -> None:
        while not cancel.is_set():
            cancel.wait(0.01)

    app_state.run_task("embedding 88 slices", work)
    assert win.work_in_progress() == ["embedding 88 slices"]
    assert not win.close() and win.isVisible()  # the user said no: nothing stops
    assert asked == [["embedding 88 slices"]] and app_state.tasks.busy
    answer["quit"] = True
    assert win.close() and not win.isVisible()
    assert len(asked) == 2 and not app_state.tasks.busy  # the work was stopped


def test_closing_during_a_display_computation_does_not_ask(qtbot, app_state, settings, monkeypatch):
    # an error curve or slider ranges lose nothing: they are worked out again
    from medstyle_gui.gui.main_window import MainWindow

    win = MainWindow(app_state, settings=settings)
    qtbot.addWidget(win)
    win.show()
    asked: list[list[str]] = []
    monkeypatch.setattr(MainWindow, "confirm_quit", lambda self, r: asked.append(r) or False)

    def work(progress, cancel) -> None:
        while not cancel.is_set():
            cancel.wait(0.01)

    app_state.tasks.start(work, name="error curve", disposable=True)
    assert win.work_in_progress() == []
    assert win.close() and not win.isVisible() and asked == []
    assert not app_state.tasks.busy  # the computation was stopped
