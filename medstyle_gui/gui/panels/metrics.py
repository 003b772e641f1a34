"""Metrics panel: the rendered slice's error against its ground truth, live, and its curve.

The numbers are the paper's: MAE in HU for CT, RMSE on [-1, 1] for MR, over the whole
image and inside the truth's body mask (air dominates a whole-image mean). The truth is
the one :func:`core.explore.ground_truth` picks (the paired slice once a modality move
crosses to the other modality, the sought slice for a slice move, else the source slice)
and is named under the numbers. Below, the error against one slider's value for this
slice, worked out on a worker (Fetty et al. 2020, Fig. 3 for the modality slider,
Fig. 4's row for the slice slider), with the slider's position marked. The curve follows
the slider moved last unless another direction is chosen.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core import explore, sweeps
from medstyle_gui.gui.panels._background import BLUE, GREEN, GREY, ORANGE, LatestJob, plot_widget

if TYPE_CHECKING:
    from medstyle_gui.core.model import Model
    from medstyle_gui.core.render import RenderResult
    from medstyle_gui.gui.state import AppState

#: Metric keys of a render result, by modality: (whole image, body, row label).
#: The error-curve marker follows the slider at most this often (ms): ~30 updates a second.
MARK_INTERVAL_MS = 33

METRICS = {"CT": ("mae_hu", "mae_hu_body", "MAE (HU)"), "MR": ("rmse", "rmse_body", "RMSE")}


def format_metric(value: float | None, modality: str | None) -> str:
    """``"73.6"`` HU or ``"0.351"`` RMSE; "—" when there is no number."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.1f}" if modality == "CT" else f"{value:.3f}"


def axis_label(model: Model, name: str) -> str:
    """What the curve's x axis is, in words and units."""
    direction = model.directions[name]
    if explore.is_slice_direction(direction) and sweeps.slice_units_per_mm(model, name):
        return "slice position (mm, + superior)"
    return f"{name} α (normal units, + toward {direction.classes[1]})"


def curve_truth(model: Model, state: explore.ExplorerState, name: str) -> str:
    """What the curve is scored against, in words (see :func:`sweeps.alpha_requests`)."""
    direction = model.directions[name]
    if explore.is_modality_direction(direction) and state.paired is not None:
        return f"the paired {state.paired.modality} slice (the paper's Fig. 3 for this slice)"
    if explore.is_slice_direction(direction):
        return "the sought slice at each position (the paper's Fig. 4, this slice's row)"
    return "the truth the live view uses at each value"


def curve_value_at(x: np.ndarray, y: np.ndarray, at: float) -> float | None:
    """The curve ``y [K]`` over sorted ``x [K]`` at ``at``, linear between its two points
    either side; None where either is missing (NaN) or ``at`` is off the curve's ends:
    the dot marks a scored value, never one carried over a gap."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    i = int(np.searchsorted(x, at))
    if i < len(x) and np.isclose(x[i], at):
        return float(y[i]) if np.isfinite(y[i]) else None
    if i == 0 or i == len(x) or not (np.isfinite(y[i - 1]) and np.isfinite(y[i])):
        return None
    return float(np.interp(at, x[i - 1 : i + 1], y[i - 1 : i + 1]))


def missing_truth_note(
    model: Model, state: explore.ExplorerState, name: str, x: np.ndarray, error: np.ndarray
) -> str:
    """Why a curve stops short (some points have no truth), in words; "" when whole.

    ``x`` [K] as the axis shows it, ``error`` [K] with NaN where a point has no truth."""
    known = np.isfinite(error)
    if known.all() or not known.any():
        return ""
    # the scored stretches of the curve: "a to b", or "a" for a lone point
    edges = np.flatnonzero(np.diff(np.concatenate([[0], known.astype(int), [0]])))
    runs = [
        f"{x[a]:.3g}" if b - a == 1 else f"{x[a]:.3g} to {x[b - 1]:.3g}"
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
    where = (
        " and ".join([", ".join(runs[:-1]), runs[-1]] if len(runs) > 1 else runs)
        if len(runs) <= 3
        else f"{int(known.sum())} of {len(known)} points"
    )
    direction = model.directions[name]
    if explore.is_modality_direction(direction) and state.paired is None:
        source = state.source.modality if state.source is not None else None
        other = next(c for c in reversed(direction.classes) if c != source)
        why = f"the moved slice reads as {other} there, and this study has no {other} to compare"
    elif explore.is_slice_direction(direction):
        why = "the sought slice lies outside the scan there"
    else:
        why = "no truth for the moved slice there"
    return f"Scored at {where} only: {why}."


class MetricsPanel(QWidget):
    """Live error of the rendered slice and the error-against-slider curve."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.curve: sweeps.ErrorCurve | None = None
        self.curve_name: str | None = None  # direction of self.curve
        self.job = LatestJob(lambda: state.tasks, "error curve", self, disposable=True)
        self._key: tuple | None = None
        self._moves: dict[str, float] = {}
        self._latents_version = 0

        # -- live numbers
        grid = QGridLayout()
        self.row_label = QLabel("error")
        self.whole = QLabel("—")
        self.body = QLabel("—")
        for c, text in enumerate(("", "Whole image", "Body only")):
            header = QLabel(text)
            header.setStyleSheet(f"color: {GREY};")
            grid.addWidget(header, 0, c, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.row_label, 1, 0, Qt.AlignmentFlag.AlignRight)
        for c, label in ((1, self.whole), (2, self.body)):
            label.setStyleSheet("font-size: 22px; font-weight: bold;")
            label.setAlignment(Qt.AlignmentFlag.AlignRight)
            label.setMinimumWidth(110)
            grid.addWidget(label, 1, c)
        grid.setColumnStretch(3, 1)
        self.body.setToolTip("Inside the ground truth's body outline: air left out")
        self.truth = QLabel("No render yet.")
        self.truth.setWordWrap(True)
        # the model reads the latent as the other modality than it is drawn as
        self.misread = QLabel()
        self.misread.setWordWrap(True)
        self.misread.setStyleSheet(f"color: {ORANGE};")
        self.misread.hide()

        # -- curve
        self.direction = QComboBox()
        self.direction.setToolTip("Which slider the curve sweeps (follows the slider you move)")
        self.plot = plot_widget("α", "error")
        self.whole_curve = self.plot.plot([], [], pen=pg.mkPen(BLUE, width=2))
        self.body_curve = self.plot.plot(
            [], [], pen=pg.mkPen(GREEN, width=2, style=Qt.PenStyle.DashLine)
        )
        self.key = QLabel(
            f"<span style='color:{BLUE}'>━ whole image</span>&nbsp;&nbsp;"
            f"<span style='color:{GREEN}'>╍ body only</span>&nbsp;&nbsp;"
            f"<span style='color:{ORANGE}'>● now</span>"
        )
        self.marker = pg.InfiniteLine(angle=90, pen=pg.mkPen(ORANGE, width=1.5))
        self.dot = pg.ScatterPlotItem(size=10, brush=ORANGE, pen=None)
        self.plot.addItem(self.marker)
        self.plot.addItem(self.dot)
        self.busy = QProgressBar()
        self.busy.setRange(0, 1000)
        self.busy.setMaximumHeight(6)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.curve_note = QLabel()
        self.curve_note.setWordWrap(True)
        self.curve_note.setStyleSheet(f"color: {GREY};")

        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.truth)
        layout.addWidget(self.misread)
        row = QHBoxLayout()
        title = QLabel("Error against")
        title.setStyleSheet("font-weight: bold;")
        row.addWidget(title)
        row.addWidget(self.direction, 1)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.key)
        layout.addWidget(self.busy)
        layout.addWidget(self.curve_note)

        self.job.progress.connect(lambda f, _: self.busy.setValue(int(1000 * f)))
        self.job.running.connect(self.busy.setVisible)
        self.direction.currentIndexChanged.connect(lambda _: self.schedule())
        self._mark_timer = QTimer(self)
        self._mark_timer.setSingleShot(True)
        self._mark_timer.setInterval(MARK_INTERVAL_MS)
        self._mark_timer.timeout.connect(self._mark_now)
        state.rendered.connect(self.show_result)
        state.modelChanged.connect(self.rebuild)
        state.scanChanged.connect(self.schedule)
        state.sliceChanged.connect(lambda _: self.schedule())
        state.latentsChanged.connect(self._latents_changed)
        state.controlsChanged.connect(self._controls_changed)
        self.rebuild()

    # -- live numbers -------------------------------------------------------------------------

    def show_result(self, result: RenderResult | None = None) -> None:
        """Show a render's metrics and what they were measured against."""
        result = result if result is not None else self.state.last_result
        if result is None:
            self.whole.setText("—")
            self.body.setText("—")
            self.truth.setText("No render yet.")
            self.misread.hide()
            return
        modality = result.modality or "MR"
        whole_key, body_key, label = METRICS.get(modality, METRICS["MR"])
        self.row_label.setText(label)
        self.whole.setText(format_metric(result.metrics.get(whole_key), modality))
        self.body.setText(format_metric(result.metrics.get(body_key), modality))
        truth = self.state.truth_label or "no ground truth"
        if result.metrics:
            self.truth.setText(f"Generated {modality} against the <b>{truth}</b>.")
        else:
            self.truth.setText(f"No error to show: {truth}.")
        model = self.state.model
        note = (
            ""
            if model is None
            else explore.misread_note(self.state.explore, model, result.w_final, result.modality)
        )
        self.misread.setText(f"\u26a0 {note}")
        self.misread.setVisible(bool(note))
        self._mark()

    # -- curve ---------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Fill the direction list from the state's model."""
        model = self.state.model
        self.direction.blockSignals(True)
        self.direction.clear()
        if model is not None:
            for name in sorted(model.directions):
                self.direction.addItem(name, name)
        self.direction.blockSignals(False)
        self._moves = dict(self.state.explore.moves)
        self.show_result(None)
        self.schedule()

    def current_direction(self) -> str | None:
        return self.direction.currentData()

    def _latents_changed(self) -> None:
        self._latents_version += 1
        self.schedule()

    def _controls_changed(self) -> None:
        """Follow the slider the user moves; recompute only when something other than the
        curve's own slider changed (moving it just moves the marker)."""
        moves = dict(self.state.explore.moves)
        changed = [
            n for n in set(moves) | set(self._moves) if moves.get(n, 0.0) != self._moves.get(n, 0.0)
        ]
        self._moves = moves
        if len(changed) == 1 and changed[0] != self.current_direction():
            index = self.direction.findData(changed[0])
            if index >= 0:
                self.direction.setCurrentIndex(index)  # schedules the new curve
                return
        self.schedule()
        self._mark()

    def _curve_key(self) -> tuple:
        s, name = self.state.explore, self.current_direction()
        others = tuple(sorted((n, a) for n, a in s.moves.items() if n != name))
        return (
            id(self.state.model), id(s.source), id(s.paired), s.index, name, others, s.tau,
            tuple(s.mix_layers), s.mix_source, s.mix_slice, s.mix_seed, s.seed,
            self._latents_version,
        )  # fmt: skip

    def schedule(self) -> None:
        """Recompute the curve (after a short pause) when what it depends on changed."""
        key = self._curve_key()
        if key == self._key:
            return
        self._key = key
        self.curve = None
        self.whole_curve.setData([], [])
        self.body_curve.setData([], [])
        self.dot.setData([], [])
        name, model = self.current_direction(), self.state.model
        if model is None or name is None:
            self.job.invalidate()
            self.curve_note.setText("Open a model with directions to see the error curve.")
            return
        self.curve_note.setText("Working out the error curve…")
        self.job.later(self._start)

    def _start(self) -> None:
        model, name = self.state.model, self.current_direction()
        if model is None or name is None:
            return
        snap = self.state.snapshot()
        current = snap.moves.get(name, 0.0)
        n = None if snap.source is None else snap.source.num_slices

        def work(progress, cancel) -> Any:
            half = sweeps.slider_half_range(model, name, n)
            alphas = sweeps.alpha_grid(-half, half, current)
            requests = sweeps.alpha_requests(snap, model, name, alphas)
            return sweeps.error_vs_alpha(
                model, requests, alphas, progress=progress, cancel=cancel.is_set
            )

        self.job.run(
            work,
            lambda curve: self._show_curve(model, snap, name, curve),
            on_failed=self.curve_note.setText,
        )

    def _x(self, model: Model, name: str, alphas: np.ndarray | float) -> Any:
        """Alpha -> the x axis's unit (mm for a calibrated slice direction)."""
        direction = model.directions[name]
        per_mm = sweeps.slice_units_per_mm(model, name)
        if explore.is_slice_direction(direction) and per_mm:
            return np.asarray(alphas) / per_mm
        return alphas

    def _show_curve(
        self, model: Model, snap: explore.ExplorerState, name: str, curve: sweeps.ErrorCurve
    ) -> None:
        self.curve, self.curve_name = curve, name
        x = self._x(model, name, curve.x)
        self.whole_curve.setData(x, np.asarray(curve.error, float), connect="finite")
        self.body_curve.setData(x, np.asarray(curve.error_body, float), connect="finite")
        self.plot.setLabel("bottom", axis_label(model, name))
        self.plot.setLabel("left", curve.unit or "error")
        self.plot.enableAutoRange()
        if not np.isfinite(curve.error).any():
            why = "no ground truth" if snap.source is None else "no ground truth at these values"
            self.curve_note.setText(f"No curve: {why}.")
        else:
            note = missing_truth_note(model, snap, name, np.asarray(x, float), curve.error)
            self.curve_note.setText(f"Against {curve_truth(model, snap, name)}. {note}".strip())
        self._mark()

    def _mark(self) -> None:
        """Move the marker soon: at most every :data:`MARK_INTERVAL_MS`, so a dragged
        slider does not repaint the plot (its axes are slow to paint) on every step."""
        if not self._mark_timer.isActive():
            self._mark_timer.start()

    def _mark_now(self) -> None:
        """Put the marker at the curve's slider's current value."""
        model, name = self.state.model, self.curve_name
        if model is None or name is None or name not in model.directions:
            return
        alpha = self.state.explore.moves.get(name, 0.0)
        x = float(self._x(model, name, alpha))
        self.marker.setValue(x)
        curve = self.curve
        if curve is None or name != self.current_direction():
            self.dot.setData([], [])
            return
        y = curve_value_at(curve.x, curve.error, alpha)
        self.dot.setData([] if y is None else [x], [] if y is None else [y])
