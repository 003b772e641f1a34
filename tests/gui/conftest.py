"""Fixtures for the GUI tests: offscreen Qt, settings that never touch the user's, the
tiny model loaded once, and an AppState (optionally with the real T2 open) whose worker
threads are stopped after each test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")

# importing the worker applies the guard against PySide6 6.12.0's reference counting bug on
# Python < 3.12 (see worker.guard_singleton_refcounts), for every GUI test in the session
import medstyle_gui.gui.worker  # noqa: F401

#: Longest wait for a load or a render in a test (ms); the CPU is shared.
WAIT_MS = 60_000


@pytest.fixture(autouse=True)
def no_modal_quit_question(monkeypatch) -> None:
    """Closing a window with work still running asks in a modal box, which nobody answers
    offscreen: the run would hang. Here the answer is "quit" (a test that checks the
    question replaces this with its own answer)."""
    from medstyle_gui.gui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "confirm_quit", lambda self, running: True)


@pytest.fixture(scope="session", autouse=True)
def isolated_settings(qapp, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every QSettings() of the test session is an INI file under a temporary folder, with
    a test-only organisation and application name: the user's settings are never read or
    written. (After pytest-qt's ``qapp``, which names the application itself.)"""
    from PySide6.QtCore import QCoreApplication, QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    QCoreApplication.setOrganizationName("medstyle-tests")
    QCoreApplication.setApplicationName(f"medstyle-gui-tests-{os.getpid()}")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))
    return folder


@pytest.fixture
def settings(tmp_path: Path):
    """A fresh INI-file QSettings for one test."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle: Path):
    """The tiny bundle loaded on the CPU (read-only: do not change it)."""
    from medstyle_gui.core.model import load_model

    return load_model(tiny_bundle)


@pytest.fixture
def app_state(qtbot):
    """An AppState without a model; its threads are stopped at the end."""
    from medstyle_gui.gui.state import AppState

    state = AppState()
    yield state
    state.shutdown()


@pytest.fixture
def model_state(qtbot, app_state, tiny_model):
    """An AppState with the tiny model and its first (seed) render shown."""
    with qtbot.waitSignal(app_state.rendered, timeout=WAIT_MS):
        app_state.set_model(tiny_model)
    return app_state


@pytest.fixture
def t2_state(qtbot, model_state, real_t2_nifti: Path):
    """The tiny model with the real T2 open (encoder latents only) and rendered."""
    state = model_state
    with qtbot.waitSignal(state.scanChanged, timeout=WAIT_MS):
        task = state.open_scan(real_t2_nifti)
        assert task is not None
    qtbot.waitUntil(
        lambda: state.last_result is not None and state.truth is not None, timeout=WAIT_MS
    )
    return state


def wait_render(qtbot, state, action, timeout: int = WAIT_MS):
    """Run ``action`` and wait until a result of its (newest) request is shown."""
    action()
    stamp = state.stamp
    qtbot.waitUntil(
        lambda: state.last_result is not None and state.last_result.stamp >= stamp,
        timeout=timeout,
    )
    return state.last_result
