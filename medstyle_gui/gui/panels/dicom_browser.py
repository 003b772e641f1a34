"""DICOM browser: a folder's patients, studies and series in a tree; choose one to open.

The folder is indexed (headers only) on a worker thread when a
:class:`~medstyle_gui.gui.worker.TaskRunner` is given, so a large folder does not
freeze the window. Series that hold no image volume (RT structures, plans, reports)
are listed greyed out with what they are.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core.dicom_index import PatientEntry, SeriesEntry, index_dicom_folder
from medstyle_gui.gui.worker import one_line

#: Item data role holding a series item's SeriesEntry.
SERIES_ROLE = Qt.ItemDataRole.UserRole + 1

COLUMNS = ("Patient / study / series", "Modality", "Images", "Matrix", "Series UID")


class DicomBrowser(QDialog):
    """Patient / study / series tree of a folder.

    Signals:
        seriesChosen(folder, series_uid): the user opened a series (double-click or
            Open); the dialog then closes with ``accept()``.
        indexed(count): the folder was read; ``count`` series are listed.
    """

    seriesChosen = Signal(str, str)
    indexed = Signal(int)

    def __init__(
        self, folder: str | Path | None = None, parent: QWidget | None = None, runner=None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("DICOM browser")
        self.resize(760, 420)
        self._runner = runner  # a TaskRunner, or None to index on the calling thread
        self._folder: Path | None = None
        self._task = None

        self.folder_label = QLabel("No folder")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        choose = QPushButton("Folder\u2026")
        choose.setToolTip("Choose a folder to search for DICOM series (sub-folders too)")
        choose.clicked.connect(self._choose_folder)
        top = QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        top.addWidget(choose)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._open_selected)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self._update_buttons()
        if folder is not None:
            self.load(folder)

    # -- public -----------------------------------------------------------------------

    def load(self, folder: str | Path) -> None:
        """Index ``folder`` (on the runner's worker thread when there is one)."""
        self._folder = Path(folder)
        self.folder_label.setText(str(self._folder))
        self.tree.clear()
        self.status.setText("Reading DICOM headers\u2026")
        if self._runner is None:
            try:
                patients = index_dicom_folder(self._folder)
            except Exception as err:  # shown in one line; the dialog stays usable
                self._failed(one_line(err))
                return
            self._fill(patients)
            return
        self._task = self._runner.start(
            lambda progress, cancel: index_dicom_folder(self._folder),
            name=f"reading {self._folder.name}",
            on_done=self._fill,
            on_failed=self._failed,
        )

    def series_entries(self) -> list[SeriesEntry]:
        """Every series listed, in tree order."""
        out = []
        for item in self._series_items():
            out.append(item.data(0, SERIES_ROLE))
        return out

    def select_series(self, uid: str) -> bool:
        """Select the series with ``uid``; False when it is not listed."""
        for item in self._series_items():
            if item.data(0, SERIES_ROLE).uid == uid:
                self.tree.setCurrentItem(item)
                return True
        return False

    def selected_series(self) -> SeriesEntry | None:
        """The selected image series, None when nothing openable is selected."""
        item = self.tree.currentItem()
        entry = None if item is None else item.data(0, SERIES_ROLE)
        return entry if entry is not None and entry.openable else None

    # -- internals ----------------------------------------------------------------------

    def _series_items(self) -> list[QTreeWidgetItem]:
        items = []
        for i in range(self.tree.topLevelItemCount()):
            patient = self.tree.topLevelItem(i)
            for j in range(patient.childCount()):
                study = patient.child(j)
                items.extend(study.child(k) for k in range(study.childCount()))
        return items

    def _fill(self, patients: list[PatientEntry]) -> None:
        self.tree.clear()
        count = 0
        first_image: QTreeWidgetItem | None = None
        for patient in patients:
            p_item = QTreeWidgetItem([patient.label()])
            self.tree.addTopLevelItem(p_item)
            for study in patient.studies:
                s_item = QTreeWidgetItem([study.label()])
                s_item.setToolTip(0, f"Study UID {study.uid}")
                p_item.addChild(s_item)
                for entry in study.series:
                    item = _series_item(entry)
                    s_item.addChild(item)
                    count += 1
                    if first_image is None and entry.openable:
                        first_image = item
        self.tree.expandAll()
        for col in range(len(COLUMNS) - 1):
            self.tree.resizeColumnToContents(col)
        if first_image is not None:
            self.tree.setCurrentItem(first_image)
        self.status.setText(f"{count} series" if count else "No series found")
        self._update_buttons()
        self.indexed.emit(count)

    def _failed(self, message: str) -> None:
        self.tree.clear()
        self.status.setText(f"<span style='color:#ff8080'>{message}</span>")
        self._update_buttons()
        self.indexed.emit(0)

    def _update_buttons(self) -> None:
        button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        button.setEnabled(self.selected_series() is not None)

    def _on_double_click(self, item: QTreeWidgetItem, _column: int) -> None:
        entry = item.data(0, SERIES_ROLE)
        if entry is not None and entry.openable:
            self._open_selected()

    def _open_selected(self) -> None:
        entry = self.selected_series()
        if entry is None:
            return
        self.seriesChosen.emit(str(entry.folder), entry.uid)
        self.accept()

    def _choose_folder(self) -> None:
        start = str(self._folder) if self._folder else ""
        folder = QFileDialog.getExistingDirectory(self, "Folder with DICOM files", start)
        if folder:
            self.load(folder)


def _series_item(entry: SeriesEntry) -> QTreeWidgetItem:
    info = entry.info
    number = f"#{info.series_number} " if info.series_number is not None else ""
    name = f"{number}{info.description or info.sop_class_name or 'series'}"
    matrix = f"{info.columns} \u00d7 {info.rows}" if info.rows and info.columns else ""
    images = str(info.num_images) if entry.openable else (info.not_image or "not an image")
    uid = info.uid or "(no series UID)"
    item = QTreeWidgetItem([name, info.modality, images, matrix, uid])
    item.setData(0, SERIES_ROLE, entry)
    item.setToolTip(0, info.label())
    if not entry.openable:
        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsSelectable)
        item.setForeground(0, Qt.GlobalColor.gray)
    return item
