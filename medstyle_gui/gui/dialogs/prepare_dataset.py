"""Prepare a dataset: paired CT + MR studies -> an HDF5 slice dataset for training
(``medstyle dataset build``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core.export import DatasetOptions
from medstyle_gui.gui.dialogs import CommandDialog, PathEdit, RunSpec, make_combo

#: Model matrix sizes offered (px; the trainer takes powers of two).
SIZES = (32, 64, 128, 256, 512)


class PrepareDatasetDialog(CommandDialog):
    """Study folders in, ``DATA.h5`` out, with the registration and N4 switches."""

    def __init__(self, state=None, parent: QWidget | None = None) -> None:
        super().__init__(
            "Prepare a training dataset",
            "Paired CT + T2 MR studies (folders written by 'medstyle pair' or 'medstyle "
            "phantom', or folders holding such studies) become one HDF5 file of axial "
            "slices on the model matrix, with modality, sex and slice-position labels.",
            parent,
        )
        sources = QWidget(self)
        column = QVBoxLayout(sources)
        column.setContentsMargins(0, 0, 0, 0)
        self.sources = QListWidget(sources)
        self.sources.setMinimumHeight(90)
        column.addWidget(self.sources)
        buttons = QHBoxLayout()
        add, remove = QPushButton("Add folder...", sources), QPushButton("Remove", sources)
        add.clicked.connect(self._add_folder)
        remove.clicked.connect(self._remove)
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        column.addLayout(buttons)
        self.form.addRow("Studies", sources)

        self.out = PathEdit("save", "HDF5 slice dataset (*.h5)", "DATA.h5 to write", self)
        self.form.addRow("Dataset file", self.out)
        model = getattr(state, "model", None)
        size = model.resolution if model is not None and model.resolution in SIZES else 256
        self.matrix = make_combo([(f"{s} x {s} px", s) for s in SIZES], size)
        self.matrix.setToolTip("the model matrix: slices are resampled to N x N pixels")
        self.form.addRow("Matrix", self.matrix)
        self.register = self.check("Register CT to MR (rigid)", "off: trust the scans' geometry")
        self.register.setChecked(True)
        self.n4 = self.check("N4 bias-field correction of MR", "the paper corrects MR first")
        self.n4.setChecked(True)
        self.overwrite = self.check("Overwrite the dataset file if it exists")
        for box in (self.register, self.n4, self.overwrite):
            self.form.addRow("", box)
        self.add_tail()

    def add_source(self, path: str | Path) -> None:
        self.sources.addItem(str(path))

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A study folder or a folder of studies")
        if folder:
            self.add_source(folder)

    def _remove(self) -> None:
        for item in self.sources.selectedItems():
            self.sources.takeItem(self.sources.row(item))

    def options(self) -> DatasetOptions:
        return DatasetOptions(
            sources=[self.sources.item(i).text() for i in range(self.sources.count())],
            out=self.out.text(),
            size=int(self.matrix.currentData()),
            register=self.register.isChecked(),
            n4=self.n4.isChecked(),
            overwrite=self.overwrite.isChecked(),
        )

    def spec(self) -> RunSpec:
        options = self.options()
        return RunSpec(f"Prepare dataset: {Path(options.out).name}", [options.argv()])
