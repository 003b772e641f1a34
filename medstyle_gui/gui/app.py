"""The application: QApplication set-up, the dark theme, and ``run_gui`` (``medstyle gui``).

``run_gui(model, scans, screenshot)`` opens the main window, loads the model (the bundled
demo when none is given and it is installed) and the scans on workers, and either runs
the event loop or, with ``screenshot``, waits until everything is loaded and the first
render is shown, saves a PNG of the whole window and returns (or, when something failed
to load, says what in one line and writes nothing).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import (
    QCoreApplication,
    QMessageLogContext,
    QSettings,
    QTimer,
    QtMsgType,
    qInstallMessageHandler,
)
from PySide6.QtGui import QColor, QFont, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from medstyle_gui import resources_path
from trainer.errors import MedstyleError, ScanWriteError
from trainer.files import atomic_file

ORGANISATION = "medstyle"
APPLICATION = "medstyle"
#: Window size of screenshots (pixels), so README pictures do not depend on the screen.
SCREENSHOT_SIZE = (1600, 1000)
#: Longest wait for loading and the first render before a screenshot is taken anyway (s).
SCREENSHOT_TIMEOUT_S = 180.0

_COLOURS = {
    QPalette.ColorRole.Window: "#2b2b2b",
    QPalette.ColorRole.WindowText: "#dcdcdc",
    QPalette.ColorRole.Base: "#1f1f1f",
    QPalette.ColorRole.AlternateBase: "#282828",
    QPalette.ColorRole.ToolTipBase: "#303030",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#7a7a7a",
    QPalette.ColorRole.Text: "#dcdcdc",
    QPalette.ColorRole.Button: "#353535",
    QPalette.ColorRole.ButtonText: "#dcdcdc",
    QPalette.ColorRole.BrightText: "#ff6e6e",
    QPalette.ColorRole.Light: "#4a4a4a",
    QPalette.ColorRole.Midlight: "#404040",
    QPalette.ColorRole.Mid: "#303030",
    QPalette.ColorRole.Dark: "#1c1c1c",
    QPalette.ColorRole.Shadow: "#101010",
    QPalette.ColorRole.Highlight: "#3d7ab8",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6cb6ff",
    QPalette.ColorRole.LinkVisited: "#b08cff",
}
_DISABLED = ("#7a7a7a", "#2a2a2a")  # text, button


def dark_palette() -> QPalette:
    """A dark grey palette: dim surroundings so the eye adapts to the images, as in a
    reading room."""
    palette = QPalette()
    for role, colour in _COLOURS.items():
        palette.setColor(role, QColor(colour))
    group = QPalette.ColorGroup.Disabled
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(group, role, QColor(_DISABLED[0]))
    palette.setColor(group, QPalette.ColorRole.Button, QColor(_DISABLED[1]))
    palette.setColor(group, QPalette.ColorRole.Highlight, QColor("#505050"))
    return palette


def apply_theme(app: QApplication) -> None:
    """Fusion + the dark palette + ``resources/style/dark.qss`` + light icons."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    sheet = resources_path("style", "dark.qss")
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8"))
    try:
        import qtawesome as qta

        qta.set_defaults(color="#d0d0d0", color_disabled="#6a6a6a", color_active="#ffffff")
    except Exception:  # icons are a nicety: a broken icon font must not stop the app
        pass


def make_app(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (the existing one if any), themed and named."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    if not QCoreApplication.organizationName():
        QCoreApplication.setOrganizationName(ORGANISATION)
    if not QCoreApplication.applicationName() or QCoreApplication.applicationName() == "python":
        QCoreApplication.setApplicationName(APPLICATION)
    QApplication.setApplicationDisplayName("medstyle")
    icon = QIcon()  # PNGs, not the SVG: a frozen build need not carry the SVG plugin
    for size in (16, 32, 48, 64, 128, 256):
        icon.addFile(str(resources_path("icons", f"medstyle_{size}.png")))
    app.setWindowIcon(icon)
    # Wayland shells take the window's icon from the .desktop entry of this name
    QApplication.setDesktopFileName("medstyle")
    # the render and task threads run Python between torch calls; a shorter GIL switch
    # interval (5 ms by default) lets the GUI thread in sooner, so it stays responsive
    sys.setswitchinterval(0.001)
    font = app.font()
    if font.pointSizeF() < 9:
        app.setFont(QFont(font.family(), 9))
    apply_theme(app)
    return app  # type: ignore[return-value]


#: What Qt's offscreen platform says whenever a window's size hints change: noise there.
_OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints()"


def quiet_offscreen_noise(app: QApplication) -> None:
    """On the offscreen platform, drop the one warning it repeats for every dock and
    window (so an error stays the one line on stderr); other Qt messages pass as before."""
    if app.platformName() != "offscreen":
        return

    def handler(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
        if message != _OFFSCREEN_NOISE:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def demo_model() -> Path | None:
    """The bundled demo model folder, None when it is not installed."""
    folder = resources_path("models", "demo")
    if folder.is_dir() and (Path(str(folder)) / "bundle.json").is_file():
        return Path(str(folder))
    return None


def demo_study() -> Path | None:
    """The bundled demo study (a held-out phantom patient, paired CT + MR), or None."""
    folder = resources_path("demo", "study")
    if folder.is_dir() and (Path(str(folder)) / "study.json").is_file():
        return Path(str(folder))
    return None


def demo_session() -> Path | None:
    """The demo session (the demo study embedded with the demo model), or None."""
    path = resources_path("demo", "demo.medstyle")
    return Path(str(path)) if path.is_file() else None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def open_inputs(
    window,
    model: str | os.PathLike[str] | None,
    scans: Sequence,
    device: str,
    series: str | None = None,
):
    """Load ``model`` (or the demo) and then ``scans`` into ``window``'s state.

    One scan opens as is (``series``: which series of a DICOM folder, its UID or its
    listed number); a folder with ``study.json`` as a paired study; two scans as a paired
    study (CT first, then MR); a ``.medstyle`` file as a session (with its own model).
    With neither a model nor scans, the demo session opens (the demo model and study,
    every slice already embedded), or else the demo model and study.
    """
    from medstyle_gui.core.session import SUFFIX
    from medstyle_gui.core.session_build import describe_inputs

    state = window.state
    if model is None and not scans and demo_session() is not None:
        scans = [demo_session()]
    if len(scans) == 1 and Path(scans[0]).suffix == SUFFIX:
        state.open_session(scans[0], device=device)
        return
    folder = Path(model) if model is not None else demo_model()
    if model is None and not scans and demo_study() is not None:
        scans = [demo_study()]  # the demo: its model and its held-out study together
    if folder is None:
        window.show_status(
            "No model open: the demo model is not installed (resources/models/demo). "
            "Open one with File \u203a Open model."
        )
        return
    try:
        opened = describe_inputs(scans, series_uid=series) if scans else None
    except MedstyleError as err:
        state.report_error(str(err))
        opened = None

    def open_scans(_: object = None) -> None:
        if opened is not None and state.model is not None:
            state.open_described(opened)

    state.open_model(folder, device=device).done.connect(open_scans)


def describe_shown(state) -> str:
    """One line on what the window shows: model, scan, slice, and which latent (for a
    screenshot's log, and for tests that check what was loaded)."""
    model = state.model
    if model is None:
        return "no model"
    parts = [f"model {model.name} ({model.resolution} px, {model.device})"]
    explore = state.explore
    if explore.source is not None:
        i = explore.index
        latent = (
            "refined"
            if i in explore.latents
            else "encoder"
            if i in explore.encoder_latents
            else "no latent"
        )
        parts.append(
            f"{explore.source.modality} {Path(explore.source.path).name} slice "
            f"{i}/{explore.source.num_slices - 1} ({latent})"  # as the Scans panel counts
        )
        if explore.paired is not None:
            parts.append(f"paired with {explore.paired.modality}")
    else:
        parts.append("no scan")
    result = state.last_result
    parts.append("rendered" if result is not None and result.error is None else "not rendered")
    return "; ".join(parts)


class _ScreenshotTaker:
    """Waits until nothing loads or renders for a few polls, then grabs the window; stops
    at the first error (or the time limit) instead, writing nothing: a picture of a
    half-loaded window would pass for the real thing. Made before the inputs are opened,
    so errors raised while opening them count too."""

    def __init__(self, window, path: Path, app: QApplication, overwrite: bool = False) -> None:
        self.window, self.path, self.app, self.overwrite = window, path, app, overwrite
        self.started = time.perf_counter()
        self.quiet_polls = 0
        self.status = 0
        self.errors: list[str] = []
        window.state.errorRaised.connect(self.errors.append)
        self.timer = QTimer()
        self.timer.timeout.connect(self.poll)
        self.timer.start(100)

    def poll(self) -> None:
        state = self.window.state
        busy = state.tasks.busy or state.renderer.busy
        self.quiet_polls = 0 if busy else self.quiet_polls + 1
        if time.perf_counter() - self.started > SCREENSHOT_TIMEOUT_S:
            self.errors.append(f"gave up waiting after {SCREENSHOT_TIMEOUT_S:.0f} s")
        # five quiet polls: the last render has been shown and the views have painted
        if self.quiet_polls < 5 and not self.errors:
            return
        self.timer.stop()
        if not self.errors:
            self.save()
        if self.errors:
            # one line: the first error is the cause, what follows it its consequence
            print(f"medstyle: error: {self.errors[0]}", file=sys.stderr)
            self.status = 1
        self.app.quit()

    def save(self) -> None:
        """Write the PNG (atomically: a failed write leaves no file, an old one whole)."""
        pixmap = self.window.grab()
        try:
            with atomic_file(self.path, overwrite=self.overwrite) as tmp:
                if not pixmap.save(str(tmp), "PNG"):
                    raise ScanWriteError("could not write the screenshot", self.path)
        except MedstyleError as err:
            self.errors.append(str(err))
            return
        print(f"wrote {self.path} ({pixmap.width()} x {pixmap.height()} px)")
        print(f"shown: {describe_shown(self.window.state)}")
        print(f"ready after {time.perf_counter() - self.started:.1f} s")


def run_gui(
    model: str | os.PathLike[str] | None = None,
    scans: Sequence[str | os.PathLike[str]] = (),
    screenshot: str | os.PathLike[str] | None = None,
    device: str | None = None,
    series: str | None = None,
    overwrite: bool = False,
) -> int:
    """Run the application; returns the exit status.

    Args:
        model: a model bundle folder (default: the bundled demo, if installed).
        scans: a scan, a paired study folder, or a CT and an MR.
        screenshot: write a PNG of the whole window once loaded and rendered, then exit
            (1 and no PNG when something failed to load).
        device: "cpu", "cuda" or "cuda:N" (default: a GPU when there is one).
        series: which series of a DICOM folder ``scans`` names (its UID or listed number).
        overwrite: replace an existing ``screenshot`` file (else it is an error).
    """
    from medstyle_gui.gui.main_window import MainWindow
    from medstyle_gui.gui.state import AppState

    app = make_app()
    quiet_offscreen_noise(app)
    settings = None
    if screenshot is not None:
        # a screenshot neither reads nor changes the user's remembered layout
        ini = Path(tempfile.mkdtemp(prefix="medstyle_shot_")) / "settings.ini"
        settings = QSettings(str(ini), QSettings.Format.IniFormat)
    state = AppState()
    window = MainWindow(state, settings=settings)
    window.show()
    if screenshot is not None:
        window.ask_before_quitting = False  # nobody is there to answer
        window.resize(*SCREENSHOT_SIZE)  # after show: the docks' hints are settled then
    taker = None
    if screenshot is not None:
        taker = _ScreenshotTaker(window, Path(screenshot), app, overwrite)
    open_inputs(window, model, scans, device or default_device(), series)
    if taker is None:
        return int(app.exec())
    app.exec()
    window.close()
    return taker.status
