"""The Training menu's dialogs: each builds a ``medstyle`` command line from its form.

:class:`CommandDialog` is the common frame: a form, a line that says what is wrong (the
dialog stays open until the form makes sense), and Start / Cancel. A subclass fills the
form and implements :meth:`CommandDialog.spec`, which returns the
:class:`~medstyle_gui.gui.dialogs.process_runner.RunSpec` to run or raises a
MedstyleError naming the field to fix. :class:`PathEdit` is a path field with a Browse
button.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

# imported for its guard of None/True/False against PySide6 6.12's reference-count bug
# (see worker.guard_singleton_refcounts): the dialogs and monitors may run without AppState
from medstyle_gui.gui import worker as _worker  # noqa: F401
from medstyle_gui.gui.dialogs.process_runner import RunSpec
from trainer.errors import MedstyleError

__all__ = ["CommandDialog", "PathEdit", "RunSpec", "optional_spin"]


class PathEdit(QWidget):
    """A path field with a Browse button. ``mode``: ``"open"`` (an existing file),
    ``"save"`` (a file to write), ``"folder"`` (an existing or new folder)."""

    def __init__(
        self, mode: str = "open", file_filter: str = "", placeholder: str = "", parent=None
    ) -> None:
        super().__init__(parent)
        self.mode, self.file_filter = mode, file_filter
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        browse = QToolButton(self)
        browse.setText("Browse...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)
        self.textChanged = self.edit.textChanged

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str | Path | None) -> None:
        self.edit.setText("" if text is None else str(text))

    def _browse(self) -> None:
        start = self.text() or str(Path.home())
        if self.mode == "folder":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self.mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Write to", start, self.file_filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open", start, self.file_filter)
        if path:
            self.setText(path)


def optional_spin(
    low: float, high: float, decimals: int = 3, default_text: str = "trainer default"
) -> QDoubleSpinBox:
    """A number field whose lowest value means "not given" (the CLI's default is used):
    :func:`spin_value` reads it as None."""
    spin = QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setSpecialValueText(default_text)
    spin.setValue(low)
    return spin


def rate_spin(value: float, tooltip: str) -> QDoubleSpinBox:
    """A learning-rate field (1e-4 .. 0.3, steps that scale with the value)."""
    spin = QDoubleSpinBox()
    spin.setDecimals(4)
    spin.setRange(1e-4, 0.3)
    spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
    spin.setValue(value)
    spin.setToolTip(tooltip)
    return spin


def spin_value(spin: QDoubleSpinBox | QSpinBox) -> float | None:
    """The field's value, or None when it shows its special "default" text."""
    if spin.specialValueText() and spin.value() == spin.minimum():
        return None
    return spin.value()


def combo_value(combo: QComboBox) -> str | None:
    """The chosen item's data (None for an item meaning "the default")."""
    return combo.currentData()


def make_combo(items: list[tuple[str, object]], current: object = None) -> QComboBox:
    """A combo box of ``(label, data)`` items, ``current`` chosen by its data."""
    combo = QComboBox()
    for label, data in items:
        combo.addItem(label, data)
    index = combo.findData(current)
    combo.setCurrentIndex(max(index, 0))
    return combo


class CommandDialog(QDialog):
    """A form that becomes a :class:`RunSpec`; ``result_spec`` holds it after Start."""

    def __init__(self, title: str, intro: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(560)
        self.result_spec: RunSpec | None = None
        layout = QVBoxLayout(self)
        text = QLabel(intro, self)
        text.setWordWrap(True)
        text.setObjectName("dialogIntro")
        layout.addWidget(text)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        layout.addLayout(self.form)
        self.body = layout
        self.error_label = QLabel("", self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #ff6b6b;")
        self.error_label.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.start_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.start_button.setText("Start")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self._tail_added = False

    def add_tail(self) -> None:
        """Put the error line and the buttons last (call after the subclass's form)."""
        if not self._tail_added:
            self.body.addWidget(self.error_label)
            self.body.addWidget(self.buttons)
            self._tail_added = True

    @staticmethod
    def check(text: str, tip: str = "") -> QCheckBox:
        box = QCheckBox(text)
        box.setToolTip(tip)
        return box

    def model_field(self, state) -> PathEdit:
        """A "Model bundle" row, filled with the open model's folder when there is one."""
        edit = PathEdit("folder", placeholder="model bundle folder", parent=self)
        model = getattr(state, "model", None)
        if model is not None:
            edit.setText(model.folder)
        self.form.addRow("Model bundle", edit)
        return edit

    def spec(self) -> RunSpec:  # pragma: no cover - every dialog implements it
        raise NotImplementedError

    def commands(self) -> list[list[str]]:
        """The CLI word lists the form stands for (raises MedstyleError if it is wrong)."""
        return self.spec().commands

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))

    def accept(self) -> None:
        try:
            self.result_spec = self.spec()
        except MedstyleError as err:
            self.show_error(str(err))
            return
        self.show_error("")
        super().accept()
