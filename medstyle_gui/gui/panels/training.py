"""The Training menu and the Training dock.

The menu's actions: Prepare dataset, Train StyleGAN, Pack a snapshot, Train encoder, Fit
directions (each a dialog that builds a ``medstyle`` command line) and Watch a run
folder (a run started elsewhere, e.g. on a GPU server with a shared disk). Every run gets a
:class:`~medstyle_gui.gui.dialogs.monitor.TrainingMonitor` (its output, live loss and
metric plots, the newest samples, Stop, Resume, Open model): a tab of the Training dock
in the main window, or a window of its own when the menu is installed on its own with
:func:`install_training_menu`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from PySide6.QtCore import QCoreApplication, QObject, Qt
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QTabBar,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.gui.dialogs import CommandDialog
from medstyle_gui.gui.dialogs.fit_directions import FitDirectionsDialog
from medstyle_gui.gui.dialogs.monitor import TrainingMonitor
from medstyle_gui.gui.dialogs.prepare_dataset import PrepareDatasetDialog
from medstyle_gui.gui.dialogs.process_runner import RunSpec
from medstyle_gui.gui.dialogs.snapshot_bundle import SnapshotBundleDialog
from medstyle_gui.gui.dialogs.train_encoder import TrainEncoderDialog
from medstyle_gui.gui.dialogs.train_gan import TrainGANDialog

if TYPE_CHECKING:
    from medstyle_gui.gui.state import AppState

__all__ = ["TrainingActions", "TrainingMonitor", "TrainingPanel", "install_training_menu"]


class TrainingActions(QObject):
    """The Training menu's actions, the dialog they open and the runs they started.

    ``host(monitor)`` shows a new run's monitor (default: as a window of its own)."""

    DIALOGS: ClassVar[dict[str, type[CommandDialog]]] = {
        "dataset": PrepareDatasetDialog,
        "gan": TrainGANDialog,
        "snapshot": SnapshotBundleDialog,
        "encoder": TrainEncoderDialog,
        "directions": FitDirectionsDialog,
    }
    ITEMS = (
        ("dataset", "Prepare dataset...", "fa5s.database", "paired studies -> HDF5 slices"),
        ("gan", "Train StyleGAN...", "fa5s.brain", "progressive growing; GPUs via torchrun"),
        ("snapshot", "Pack a snapshot...", "fa5s.box", "a model bundle of any snapshot of a run"),
        ("encoder", "Train encoder...", "fa5s.compress-arrows-alt", "image -> w encoder"),
        ("directions", "Fit directions...", "fa5s.compass", "modality, sex, slice directions"),
        ("watch", "Watch a run folder...", "fa5s.eye", "follow a run started elsewhere"),
    )

    def __init__(
        self,
        state: AppState | None,
        parent: QWidget | None,
        open_bundle: Callable[[Path], None] | None = None,
        host: Callable[[TrainingMonitor], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.state, self.parent_widget = state, parent
        self.open_bundle = open_bundle or self._open_in_state
        self.host = host or (lambda monitor: monitor.show())
        self.dialog: CommandDialog | None = None
        self.monitors: list[TrainingMonitor] = []
        self.actions: dict[str, QAction] = {}
        for key, text, icon_name, tip in self.ITEMS:
            action = QAction(_icon(icon_name), text, self)
            action.setStatusTip(tip)
            action.setToolTip(tip)
            if key == "watch":
                action.triggered.connect(lambda _=False: self.watch_folder())
            else:
                action.triggered.connect(lambda _=False, k=key: self.open_dialog(k))
            self.actions[key] = action
        app = QCoreApplication.instance()
        if app is not None:  # runs end with the application, workers and all
            app.aboutToQuit.connect(self.stop_all)

    def stop_all(self) -> None:
        """Stop every running command and wait for it (the application quits)."""
        for monitor in self.monitors:
            monitor.runner.stop_now()

    def menu_actions(self) -> list[QAction]:
        """The actions in menu order, a separator before Watch."""
        separator = QAction(self)
        separator.setSeparator(True)
        items = [self.actions[k] for k in ("dataset", "gan", "snapshot", "encoder", "directions")]
        return [*items, separator, self.actions["watch"]]

    def open_dialog(self, kind: str) -> CommandDialog:
        """Show the dialog of ``kind`` (window-modal, not blocking); Start runs it."""
        dialog = self.DIALOGS[kind](self.state, self.parent_widget)
        dialog.accepted.connect(lambda: self.start(dialog.result_spec))
        self.dialog = dialog
        dialog.open()
        return dialog

    def start(self, spec: RunSpec | None) -> TrainingMonitor | None:
        """Run ``spec`` in a new monitor."""
        if spec is None:
            return None
        monitor = TrainingMonitor(spec, self.open_bundle, self.parent_widget)
        self.monitors.append(monitor)
        self.host(monitor)
        return monitor

    def watch_folder(self, folder: str | Path | None = None) -> TrainingMonitor | None:
        """Follow the log and samples of a run folder without starting anything."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.parent_widget, "A training run folder")
            if not folder:
                return None
        return self.start(RunSpec(f"Run {Path(folder).name}", [], run_folder=Path(folder)))

    def _open_in_state(self, bundle: Path) -> None:
        if self.state is not None:
            self.state.open_model(bundle)


def _icon(name: str) -> QIcon:
    try:
        import qtawesome as qta

        return qta.icon(name, color="#c8c8c8")
    except Exception:  # the icon font may be missing in a frozen build: no icon then
        return QIcon()


def install_training_menu(
    menu: QMenu,
    state: AppState | None,
    parent: QWidget | None,
    open_bundle: Callable[[Path], None] | None = None,
) -> TrainingActions:
    """Fill ``menu`` with the training actions; runs open in windows of their own.
    ``open_bundle(path)`` opens a finished run's model (default: ``state.open_model``)."""
    actions = TrainingActions(state, parent, open_bundle)
    actions.setParent(menu)
    menu.addActions(actions.menu_actions())
    return actions


class TrainingPanel(QWidget):
    """The Training dock: one tab per run (closable once it has ended), and buttons for
    the Training menu's actions while there is none. ``menu_actions()`` fill the menu."""

    def __init__(self, state: AppState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.training = TrainingActions(state, parent or self, host=self._add_tab)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.tabs = QTabWidget(self)
        self.tabs.setTabsClosable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        layout.addWidget(self.tabs)
        start = QWidget(self.tabs)
        column = QVBoxLayout(start)
        column.addWidget(QLabel("Start a training run; it shows here as it goes.", start))
        row = QHBoxLayout()
        for action in self.training.menu_actions():
            if not action.isSeparator():
                button = QToolButton(start)
                button.setDefaultAction(action)
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
                row.addWidget(button)
        row.addStretch(1)
        column.addLayout(row)
        column.addStretch(1)
        self.tabs.addTab(start, "Start")
        self.tabs.tabBar().setTabButton(0, QTabBar.ButtonPosition.RightSide, None)

    def menu_actions(self) -> list[QAction]:
        return self.training.menu_actions()

    def _add_tab(self, monitor: TrainingMonitor) -> None:
        monitor.setWindowFlags(Qt.WindowType.Widget)
        index = self.tabs.addTab(monitor, monitor.spec.title)
        self.tabs.setCurrentIndex(index)
        monitor.closed.connect(lambda: self._remove(monitor))
        dock = self.parentWidget()
        if isinstance(dock, QDockWidget):  # the dock starts hidden: show the new run
            dock.show()
            dock.raise_()

    def _close_tab(self, index: int) -> None:
        monitor = self.tabs.widget(index)
        if isinstance(monitor, TrainingMonitor):
            monitor.close()  # asks first while the run goes on; ``closed`` removes the tab

    def _remove(self, monitor: TrainingMonitor) -> None:
        index = self.tabs.indexOf(monitor)
        if index >= 0:
            self.tabs.removeTab(index)
        if monitor in self.training.monitors:
            self.training.monitors.remove(monitor)
        monitor.deleteLater()
