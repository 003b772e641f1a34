"""The main window: the comparison view in the middle, the panels in docks around it,
menus, shortcuts, a status bar (model, device, last render time, progress) and a memory of
the layout and recent files (QSettings).

The window only wires: panels talk to :class:`~medstyle_gui.gui.state.AppState`, and the
window shows what the state says (the source slice, each render, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QWidget,
)

from medstyle_gui.gui.panels.embed import EmbedPanel
from medstyle_gui.gui.panels.export import ExportPanel
from medstyle_gui.gui.panels.latent import LatentPanel
from medstyle_gui.gui.panels.metrics import MetricsPanel
from medstyle_gui.gui.panels.mixing import MixingPanel
from medstyle_gui.gui.panels.model import ModelPanel
from medstyle_gui.gui.panels.scans import ScansPanel
from medstyle_gui.gui.panels.training import TrainingPanel
from medstyle_gui.gui.recent_files import RecentFiles
from medstyle_gui.gui.state import AppState
from medstyle_gui.gui.views.comparison import ComparisonView

SCAN_FILTER = "Scans (*.nii *.nii.gz *.mha *.mhd *.nrrd *.nhdr *.dcm *.h5 *.hdf5);;All files (*)"
SESSION_FILTER = "medstyle sessions (*.medstyle);;All files (*)"
#: Window size on a first start (pixels), shrunk to fit the screen.
DEFAULT_SIZE = (1500, 950)


@dataclass(frozen=True)
class PanelSpec:
    """A dock: its key (``window.panels[key]``), panel class, title, side, icon, shortcut."""

    key: str
    cls: type
    title: str
    area: Qt.DockWidgetArea
    icon: str
    shortcut: str


LEFT, RIGHT = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea
PANELS = (
    PanelSpec("scans", ScansPanel, "Scans", LEFT, "fa5s.layer-group", "Ctrl+1"),
    PanelSpec("model", ModelPanel, "Model", LEFT, "fa5s.cube", "Ctrl+2"),
    PanelSpec("export", ExportPanel, "Export", LEFT, "fa5s.file-export", "Ctrl+3"),
    PanelSpec("latent", LatentPanel, "Latent", RIGHT, "fa5s.sliders-h", "Ctrl+4"),
    PanelSpec("mixing", MixingPanel, "Mixing", RIGHT, "fa5s.blender", "Ctrl+5"),
    PanelSpec("embed", EmbedPanel, "Embed", RIGHT, "fa5s.crosshairs", "Ctrl+6"),
    PanelSpec("metrics", MetricsPanel, "Metrics", RIGHT, "fa5s.chart-line", "Ctrl+7"),
    PanelSpec("training", TrainingPanel, "Training", BOTTOM, "fa5s.brain", "Ctrl+8"),
)
#: Docks shown as tabs of one group per side (the first is in front); the metrics sit below
#: the sliders, visible while sliding, and the training dock opens when a run starts.
TAB_GROUPS = (("scans", "model", "export"), ("latent", "mixing", "embed"))


def icon(name: str):
    """A qtawesome icon, or an empty one if the icon font cannot be loaded."""
    from PySide6.QtGui import QIcon

    try:
        import qtawesome as qta

        return qta.icon(name)
    except Exception:
        return QIcon()


class MainWindow(QMainWindow):
    """Docks, menus, status bar; ``settings`` defaults to the application's QSettings."""

    def __init__(
        self, state: AppState, settings: QSettings | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.settings = settings if settings is not None else QSettings()
        self.setWindowTitle("medstyle")
        self.setObjectName("MainWindow")
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
            | QMainWindow.DockOption.AllowNestedDocks
        )
        self.comparison = ComparisonView(self)
        self.setCentralWidget(self.comparison)
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        self._make_docks()
        self._make_status_bar()
        self._make_menus()
        self._default_state = self.saveState()
        self.last_error = ""
        self._error_box: QMessageBox | None = None
        #: ask before closing stops a run or an embedding (not for screenshots)
        self.ask_before_quitting = True
        self._setting_window = False
        self._connect()
        self._restore_settings()
        self._show_model()
        self._show_source()

    # -- building ---------------------------------------------------------------------------

    def _make_docks(self) -> None:
        for spec in PANELS:
            panel = spec.cls(self.state, self)
            dock = QDockWidget(spec.title, self)
            dock.setObjectName(f"dock_{spec.key}")
            dock.setWidget(panel)
            dock.setFeatures(
                QDockWidget.DockWidgetFeature.DockWidgetMovable
                | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                | QDockWidget.DockWidgetFeature.DockWidgetClosable
            )
            self.addDockWidget(spec.area, dock, Qt.Orientation.Vertical)
            self.panels[spec.key], self.docks[spec.key] = panel, dock
        for first, *others in TAB_GROUPS:
            for key in others:
                self.tabifyDockWidget(self.docks[first], self.docks[key])
            self.docks[first].raise_()
        self.docks["training"].hide()
        sides = [self.docks["scans"], self.docks["latent"]]
        self.resizeDocks(sides, [320, 360], Qt.Orientation.Horizontal)

    def _make_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setIcon(icon("fa5s.times"))
        self.cancel_button.setToolTip("Cancel the running task")
        self.cancel_button.clicked.connect(self.state.tasks.cancel_all)
        self.model_label = QLabel("no model")
        self.device_label = QLabel("")
        self.render_label = QLabel("")
        self.render_label.setMinimumWidth(110)
        for widget in (self.busy_label, self.progress, self.cancel_button):
            bar.addPermanentWidget(widget)
            widget.hide()
        for widget in (self.model_label, self.device_label, self.render_label):
            bar.addPermanentWidget(widget)
        self.model_label.setToolTip("The open model bundle")
        self.device_label.setToolTip("Where the networks run")
        self.render_label.setToolTip("Time of the last render (latent to image and metrics)")

    def _action(self, menu: QMenu, text: str, slot, shortcut=None, icon_name=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if icon_name:
            action.setIcon(icon(icon_name))
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        a = self._action
        a(
            file,
            "Open &scan\u2026",
            self.open_scan_dialog,
            QKeySequence.StandardKey.Open,
            "fa5s.folder-open",
        )
        a(file, "Open &DICOM folder\u2026", self.open_dicom_dialog, "Ctrl+D", "fa5s.folder")
        a(file, "Open &paired study\u2026", self.open_pair_dialog, "Ctrl+Shift+P", "fa5s.clone")
        a(file, "Open paired study &folder\u2026", self.open_study_dialog, None, "fa5s.folder-plus")
        a(file, "Open &model\u2026", self.open_model_dialog, "Ctrl+Shift+M", "fa5s.cube")
        recent_menu = file.addMenu(icon("fa5s.history"), "&Recent files")
        self.recent = RecentFiles(recent_menu, self.settings, self.open_recent)
        file.addSeparator()
        a(
            file,
            "&Save session\u2026",
            self.save_session_dialog,
            QKeySequence.StandardKey.Save,
            "fa5s.save",
        )
        a(file, "Open s&ession\u2026", self.open_session_dialog, "Ctrl+Shift+O")
        self.export_menu = file.addMenu(icon("fa5s.file-export"), "&Export")
        self.export_menu.addActions(self.panels["export"].menu_actions())
        file.addSeparator()
        a(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view = bar.addMenu("&View")
        for key, dock in self.docks.items():
            toggle = dock.toggleViewAction()
            spec = next(s for s in PANELS if s.key == key)
            toggle.setShortcut(QKeySequence(spec.shortcut))
            toggle.setIcon(icon(spec.icon))
            view.addAction(toggle)
        view.addSeparator()
        a(view, "Next slice (superior)", lambda: self._step_slice(1), "Ctrl+Up")
        a(view, "Previous slice (inferior)", lambda: self._step_slice(-1), "Ctrl+Down")
        a(view, "&Fit images", self.comparison.fit, "Ctrl+0", "fa5s.expand")
        a(view, "&Reset sliders", self.state.reset_moves, "Ctrl+R", "fa5s.undo")
        layout = view.addMenu("Comparison &layout")
        for mode, text in (("auto", "Automatic"), ("row", "One row"), ("grid", "2 \u00d7 2 grid")):
            a(layout, text, lambda m=mode: self.comparison.set_layout(m))
        presets = view.addMenu("&Presets")
        a(presets, "E&xplore (default layout)", self.reset_layout)
        a(presets, "&Images only", self.images_only)
        a(view, "&Full screen", self._toggle_full_screen, "F11")

        self.training_menu = bar.addMenu("&Training")
        self.training_menu.addActions(self.panels["training"].menu_actions())

        help_menu = bar.addMenu("&Help")
        a(help_menu, "&Keyboard and mouse", self.show_controls, "F1")
        a(help_menu, "&About medstyle", self.show_about)

    def _connect(self) -> None:
        s = self.state
        s.modelChanged.connect(self._show_model)
        s.scanChanged.connect(self._show_source)
        s.sliceChanged.connect(lambda _: self._show_source())
        s.rendered.connect(self._show_result)
        s.windowChanged.connect(self._apply_window)
        s.errorRaised.connect(self.show_error)
        s.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 8000))
        s.busyChanged.connect(self._show_busy)
        s.tasks.progress.connect(self._show_progress)
        self.comparison.windowChanged.connect(self._window_dragged)
        self.comparison.sliceStep.connect(self._step_slice)

    # -- showing the state ------------------------------------------------------------------

    def _show_model(self) -> None:
        model = self.state.model
        if model is None:
            self.model_label.setText("no model")
            self.device_label.setText("")
            self.setWindowTitle("medstyle")
            return
        self.model_label.setText(f"model {model.name} \u00b7 {model.resolution} px")
        self.device_label.setText(self.state.device)
        self.setWindowTitle(f"medstyle \u2014 {model.name}")
        self.comparison.clear_result("Rendering\u2026")

    def _show_source(self) -> None:
        source = self.state.explore.source
        if source is None:
            self.comparison.show_source(None)
            return
        i = self.state.explore.index
        volume = source.volume
        self.comparison.show_source(
            source.native(i),
            (volume.spacing_mm[1], volume.spacing_mm[2]),
            source.modality,
            direction=volume.direction,
            title=f"Source \u00b7 {source.modality} \u00b7 slice {i} / {source.num_slices - 1}",
        )
        window = self.state.explore.window
        if window is not None:
            self.comparison.set_window(*window)

    def _show_result(self, result) -> None:
        self.comparison.show_result(result, self.state.truth, self.state.truth_label)
        self.render_label.setText(f"render {result.render_ms:.0f} ms")

    def _apply_window(self) -> None:
        window = self.state.explore.window
        if window is not None and not self._setting_window:
            self.comparison.set_window(*window)

    def _window_dragged(self, level: float, width: float) -> None:
        self._setting_window = True
        try:
            self.state.set_window(level, width)
        finally:
            self._setting_window = False

    def _step_slice(self, step: int) -> None:
        self.state.set_slice(self.state.explore.index + int(step))

    def _show_busy(self, name: str) -> None:
        for widget in (self.busy_label, self.progress, self.cancel_button):
            widget.setVisible(bool(name))
        self.busy_label.setText(name)
        self.progress.setValue(0)

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        if message:
            self.busy_label.setText(message)

    def show_status(self, message: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(message, timeout_ms)

    def show_error(self, message: str) -> None:
        """One line in a non-modal dialog (reused, so a burst of errors is one box) and in
        the status bar; the app carries on."""
        self.last_error = message
        self.statusBar().showMessage(f"\u26a0 {message}", 15000)
        if self._error_box is None:
            self._error_box = QMessageBox(QMessageBox.Icon.Warning, "medstyle", "", parent=self)
            self._error_box.setWindowModality(Qt.WindowModality.NonModal)
        self._error_box.setText(message)
        self._error_box.show()

    # -- file actions -----------------------------------------------------------------------

    def _ask(self, title: str, *, folder: bool = False, filters: str = SCAN_FILTER) -> str:
        start = str(self.settings.value("last_folder", str(Path.home())))
        if folder:
            path = QFileDialog.getExistingDirectory(self, title, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, title, start, filters)
        if path:
            self.settings.setValue("last_folder", str(Path(path).parent))
        return path

    def open_scan_dialog(self) -> None:
        path = self._ask("Open a scan")
        if path:
            self.open_recent(f"scan|{path}")

    def open_dicom_dialog(self) -> None:
        self.panels["scans"].open_dicom_browser()

    def open_pair_dialog(self) -> None:
        self.panels["scans"].open_pair_dialog()

    def open_study_dialog(self) -> None:
        path = self._ask("Open a paired study folder (study.json, or a CT and an MR)", folder=True)
        if path:
            self.open_recent(f"pair|{path}")

    def open_model_dialog(self) -> None:
        path = self._ask("Open a model bundle folder", folder=True)
        if path:
            self.open_recent(f"model|{path}")

    def save_session_dialog(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        path, _ = QFileDialog.getSaveFileName(self, "Save session", start, SESSION_FILTER)
        if not path:
            return
        if not path.endswith(".medstyle"):
            path += ".medstyle"
        # the file dialog has asked before replacing a file
        if self.state.save_session(path, overwrite=True) is not None:
            self.recent.add(f"session|{path}")

    def open_session_dialog(self) -> None:
        path = self._ask("Open a session", filters=SESSION_FILTER)
        if path:
            self.open_recent(f"session|{path}")

    def open_recent(self, entry: str) -> None:
        """Open a "kind|path" entry (scan, pair, model, session) and remember it."""
        kind, _, path = entry.partition("|")
        s = self.state
        if kind == "model":
            s.open_model(path, device=str(s.model.device) if s.model else _device())
        elif kind == "scan":
            s.open_scan(path)
        elif kind == "pair":
            ct, _, mr = path.partition("::")
            s.open_pair(ct, mr or None)
        elif kind == "session":
            s.open_session(path)
        else:
            return
        self.recent.add(entry)

    # -- view -------------------------------------------------------------------------------

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.setFloating(False)

    def images_only(self) -> None:
        for dock in self.docks.values():
            dock.hide()

    def _toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def show_controls(self) -> None:
        from medstyle_gui.gui.views.slice_view import CONTROLS_HELP

        QMessageBox.information(self, "Keyboard and mouse", CONTROLS_HELP)

    def show_about(self) -> None:
        from medstyle_gui import __version__

        QMessageBox.about(
            self,
            "About medstyle",
            f"medstyle {__version__}\n\nExplore what a StyleGAN has learned about pelvic CT and "
            "T2 MR: embed scans, walk learned directions, mix styles, and measure the error "
            "against ground truth (Fetty et al. 2020).",
        )

    # -- settings ---------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        self._size_on_show = not isinstance(geometry, QByteArray | bytes)
        if not self._size_on_show:
            self.restoreGeometry(QByteArray(geometry))
        state = self.settings.value("window_state")
        if isinstance(state, QByteArray | bytes):
            self.restoreState(QByteArray(state))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._size_on_show:
            # first start: a default size that fits the screen (before the first show the
            # docks' size hints can make the window taller than any screen)
            self._size_on_show = False
            screen = self.screen().availableGeometry()
            self.resize(min(DEFAULT_SIZE[0], screen.width()), min(DEFAULT_SIZE[1], screen.height()))

    def work_in_progress(self) -> list[str]:
        """What closing would stop: running training commands and in-app work
        (embeddings, exports), one line each; not display computations (error curves),
        which lose nothing."""
        runs = [
            f"training run: {m.spec.title}"
            for m in self.panels["training"].training.monitors
            if m.runner.running
        ]
        return runs + [task.name for task in self.state.tasks.tasks if not task.disposable]

    def confirm_quit(self, running: list[str]) -> bool:
        """Ask before stopping ``running`` (the lines of :meth:`work_in_progress`)."""
        answer = QMessageBox.question(
            self,
            "Quit medstyle?",
            "Still running:\n  " + "\n  ".join(running) + "\n\nQuit and stop it? A training "
            "run saves its checkpoint first and can be resumed; other work is lost.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        running = self.work_in_progress() if self.ask_before_quitting else []
        if running and not self.confirm_quit(running):
            event.ignore()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.sync()
        if self._error_box is not None:
            self._error_box.close()
        self.state.shutdown()
        super().closeEvent(event)


def _device() -> str:
    from medstyle_gui.gui.app import default_device

    return default_device()
