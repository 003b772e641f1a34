"""The model card: what the open model is, what it was trained on, how good its directions are.

Read-only: everything comes from the bundle's manifest and its directions (accuracy
on held-out patients, which model the paper's selection rule chose, and the slice
direction's calibration in mm), so a user can judge the model before trusting a slider.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core.latent import layer_names

if TYPE_CHECKING:
    from medstyle_gui.core.model import Model
    from medstyle_gui.gui.state import AppState
    from trainer.directions import Direction

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
#: Columns of the directions table.
COLUMNS = ("Direction", "Separates", "Model", "Accuracy")


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell ("—" when missing)."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "—" if not math.isfinite(x) else f"{x:.{digits}g}"


def _percent(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{100 * float(value):.1f} %"


def direction_accuracy(direction: Direction) -> float | None:
    """Validation accuracy of the model the selection rule chose (held-out patients)."""
    m = direction.metrics or {}
    if m.get("selected") == "dense" and m.get("dense_accuracy") is not None:
        return float(m["dense_accuracy"])
    for key in ("logistic_accuracy", "accuracy_all_rows"):
        if m.get(key) is not None:
            return float(m[key])
    return None


def direction_row(direction: Direction) -> list[str]:
    """The table row of one direction (see :data:`COLUMNS`)."""
    chosen = "dense net" if direction.kind == "dense" else "logistic"
    return [
        direction.name,
        f"{direction.classes[0]} → {direction.classes[1]}",
        chosen,
        _percent(direction_accuracy(direction)),
    ]


def direction_details(direction: Direction) -> str:
    """The fit's numbers behind a row (its tooltip)."""
    m = direction.metrics or {}
    lines = [
        f"logistic regression: {_percent(m.get('logistic_accuracy'))}",
        f"dense prediction net: {_percent(m.get('dense_accuracy'))}",
        f"reverse net R²: {_fmt(m.get('reverse_r2'))}",
    ]
    if m.get("n_val"):
        lines.append(f"validation: {m['n_val']} slices of {m.get('patients_val', '?')} patients")
    if direction.conditioned_on:
        lines.append(
            f"moves {direction.classes[0]} ↔ {direction.classes[1]} without changing "
            + ", ".join(direction.conditioned_on)
        )
    return "\n".join(lines)


def calibration_text(model: Model) -> str:
    """One or two lines about the slice direction's calibration, in mm."""
    lines = []
    for name, direction in sorted(model.directions.items()):
        cal = direction.calibration or {}
        ups = cal.get("units_per_slice")
        if ups is None:
            continue
        mm = cal.get("mm_per_slice")
        per_mm = cal.get("units_per_mm")
        step = "one slice" if mm is None else f"one slice ({_fmt(mm)} mm)"
        text = f"{name}: {step} = {_fmt(ups)} normal units"
        if per_mm:
            text += f"; 1 cm = {_fmt(10 * float(per_mm))} units"
        if cal.get("n_volumes"):
            text += f". Measured on {cal['n_volumes']} volumes."
        lines.append(text)
    return "\n".join(lines) or "No calibrated slice direction: the slice slider shows normal units."


def training_lines(model: Model) -> dict[str, str]:
    """Label -> text for the training part of the card (what the manifest records)."""
    t = model.manifest.get("training") or {}
    out: dict[str, str] = {}
    data = t.get("data")
    out["Training data"] = Path(str(data)).name if data else "not recorded"
    geometry = t.get("geometry") or {}
    if geometry.get("pixel_mm"):
        out["Training data"] += (
            f"  (pixel {float(geometry['pixel_mm']):.2f} mm"
            + (f", slice {float(geometry['slice_mm']):.2f} mm" if geometry.get("slice_mm") else "")
            + ")"
        )
    if t.get("kimg") is not None:
        out["Trained for"] = f"{float(t['kimg']):g} kimg ({int(t.get('images_seen', 0)):,} images)"
        if t.get("kimg_total") is not None:  # a run that continued another model's training
            out["Trained for"] = (
                f"{float(t['kimg_total']):g} kimg in all ({float(t['kimg']):g} in its last run)"
            )
        if t.get("loss"):
            out["Trained for"] += f", {str(t['loss']).upper()} loss"
    metric, value = t.get("metric"), t.get("metric_value")
    if metric:
        name = "SWD (×10³)" if str(metric).lower() == "swd" else str(metric).upper()
        out["Best metric"] = f"{name} {_fmt(value, 4)}  (lower is better)"
    return out


class ModelPanel(QWidget):
    """The model card of ``state.model``; empty with an "Open model" button without one."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 14px; font-weight: bold;")
        self.title.setWordWrap(True)
        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.fields: dict[str, QLabel] = {}
        for key in (
            "Folder",
            "Image size",
            "Style layers",
            "Latent",
            "Training data",
            "Trained for",
            "Best metric",
            "Networks",
            "Device",
        ):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = label
            self.form.addRow(key + ":", label)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # the one that wraps
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header.setToolTip(
            "Accuracy: the chosen model's accuracy on patients held out of the fit.\n"
            "Model: a dense net when reverse R² × its accuracy beats logistic regression\n"
            "(the selection rule of Fetty et al. 2020), else logistic regression.\n"
            "Hover a row for the fit's details."
        )
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.calibration = QLabel()
        self.calibration.setWordWrap(True)
        self.open_button = QPushButton("Open model folder…")
        self.open_button.setToolTip("Open a model bundle folder (bundle.json inside)")
        self.open_button.clicked.connect(self._open)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(self.form)
        directions = QLabel("Directions")
        directions.setStyleSheet("font-weight: bold;")
        layout.addWidget(directions)
        layout.addWidget(self.table)
        calibration = QLabel("Slice calibration")
        calibration.setStyleSheet("font-weight: bold;")
        layout.addWidget(calibration)
        layout.addWidget(self.calibration)
        layout.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)
        state.modelChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Show the card of the state's current model."""
        model = self.state.model
        if model is None:
            self.title.setText("No model open")
            for label in self.fields.values():
                label.setText("—")
            self.table.setRowCount(0)
            self.calibration.setText("")
            self._fit_table()
            return
        cfg = model.config
        names = layer_names(cfg)
        self.title.setText(model.name)
        self.fields["Folder"].setText(str(model.folder))
        self.fields["Folder"].setToolTip(str(model.folder))
        self.fields["Image size"].setText(f"{model.resolution} × {model.resolution} pixels")
        self.fields["Style layers"].setText(f"{len(names)}: {names[0]} … {names[-1]}")
        self.fields["Latent"].setText(f"w has {model.w_dim} numbers, {model.num_ws} style inputs")
        for key, text in training_lines(model).items():
            self.fields[key].setText(text)
        parts = ["generator"]
        parts.append("encoder" if model.encoder is not None else "no encoder (slow embedding)")
        if model.D is not None:
            parts.append("discriminator")
        self.fields["Networks"].setText(", ".join(parts))
        self.fields["Device"].setText(str(model.device).upper())
        directions = [d for _, d in sorted(model.directions.items())]
        rows = [direction_row(d) for d in directions]
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(direction_details(directions[r]))
                if c >= 3:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)
        if not rows:
            self.table.setRowCount(1)
            self.table.setItem(0, 0, QTableWidgetItem("This model has no fitted directions."))
            self.table.setSpan(0, 0, 1, len(COLUMNS))
        else:
            self.table.clearSpans()
        self.calibration.setText(calibration_text(model))
        self._fit_table()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_table()  # wrapped rows change height with the width

    def _fit_table(self) -> None:
        """As tall as its rows: the card reads top to bottom without an empty box."""
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)

    def _open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model bundle folder")
        if folder:
            self.state.open_model(folder)
