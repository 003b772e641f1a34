"""Embed panel: put the current slice (or the whole scan) into the model's latent space.

The encoder gives a first guess, then N refinement steps (Fetty et al. 2020, eq. 1; the
paper uses 350) pull the reconstruction toward the slice. The loss is plotted live while
it refines, with progress and cancel; at the end the panel shows how far the encoder's
guess alone and the refined latent are from the slice (MAE in HU for CT, RMSE on
[-1, 1] for MR), per slice. Refinement runs on a worker thread; a result that arrives
after another scan (or model) was opened is dropped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core.embed import (
    CONVERGED_LR,
    CONVERGED_STEPS,
    REFINE_LR,
    REFINE_STEPS,
    EmbedProgress,
    embed_images,
    refinement_settings,
)
from medstyle_gui.core.evaluate.scoring import error_unit
from medstyle_gui.gui.dialogs import rate_spin
from medstyle_gui.gui.panels._background import BLUE, GREY, ORANGE, LatestJob, plot_widget

if TYPE_CHECKING:
    from medstyle_gui.core.embed import EmbedResult
    from medstyle_gui.gui.state import AppState

#: What can be embedded: (combo text, key).
SCOPES = (
    ("This slice", "slice"),
    ("Whole scan", "volume"),
    ("Paired slice", "paired"),
)
#: Slices refined together for a whole scan (memory grows with it).
BATCH = 16
MAX_STEPS = 5000


class _LossFeed(QObject):
    """Carries each refinement step's loss from the worker to the GUI thread (queued)."""

    point = Signal(int, int, int, float)  # run, batch start, step, mean loss


def format_error(value: float | None, unit: str) -> str:
    """``812 HU`` / ``0.214`` (RMSE has no unit): a number for the error label."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.0f} HU" if unit.startswith("MAE") else f"{value:.3f}"


class EmbedPanel(QWidget):
    """Encoder + refinement of the current slice, the whole scan or the paired slice."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.job = LatestJob(lambda: state.tasks, "embedding", self)
        self._feed = _LossFeed(self)
        self._feed.point.connect(self._on_point)
        self._curve_x: list[int] = []
        self._curve_y: list[float] = []
        self._batch = -1
        self._run = 0  # numbers the runs, so a stopped run's late points are ignored
        self.last_result: EmbedResult | None = None

        self.scope = QComboBox()
        for text, key in SCOPES:
            self.scope.addItem(text, key)
        self.scope.setToolTip(
            "This slice, every slice of the scan, or the paired scan's slice here (whose "
            "style the Mixing panel can take)"
        )
        self.steps = QSpinBox()
        self.steps.setRange(0, MAX_STEPS)
        self.steps.setValue(REFINE_STEPS)
        self.steps.setSingleStep(50)
        self.steps.setSuffix(" steps")
        self.steps.setToolTip(
            "Refinement steps after the encoder's guess (the paper: 350; 0: encoder only). "
            "Set to those the model's directions were fitted with when a model opens"
        )
        self.lr = rate_spin(
            REFINE_LR,
            f"Refinement learning rate (the paper: {REFINE_LR:g}). {CONVERGED_STEPS} steps at "
            f"{CONVERGED_LR:g} run the refinement to convergence: lower errors, latents "
            "further from the encoder's guess",
        )
        self.lr.setPrefix("lr ")
        self.embed_button = QPushButton("Embed")
        self.embed_button.setToolTip("Encode and refine (Ctrl+E)")
        self.embed_button.setShortcut("Ctrl+E")
        self.embed_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.job.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.job.progress.connect(self._on_progress)
        self.job.running.connect(self._on_running)

        self.loss_plot = plot_widget("refinement step", "loss")
        self.loss_plot.setToolTip("Refinement loss (mean over the slices being refined)")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen(BLUE, width=2))
        self.summary = QLabel("Not embedded yet.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        # colours as in the summary's table above it, which is the plot's key
        self.error_plot = plot_widget("slice", "error", height=140)
        self.error_plot.setToolTip(
            "Error per embedded slice: encoder only (orange), refined (blue)"
        )
        self.encoder_points = self.error_plot.plot(
            [], [], pen=None, symbol="o", symbolSize=6, symbolBrush=ORANGE, symbolPen=None
        )
        self.refined_points = self.error_plot.plot(
            [], [], pen=None, symbol="o", symbolSize=6, symbolBrush=BLUE, symbolPen=None
        )
        self.slice_line = pg.InfiniteLine(angle=90, pen=pg.mkPen(GREY, style=Qt.PenStyle.DashLine))
        self.error_plot.addItem(self.slice_line)

        row = QHBoxLayout()
        row.addWidget(self.scope, 1)
        row.addWidget(self.steps)
        row.addWidget(self.lr)
        row.addWidget(self.embed_button)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.loss_plot, 2)
        layout.addWidget(self.summary)
        layout.addWidget(self.error_plot, 1)

        self._model_defaults()
        state.modelChanged.connect(self._model_defaults)
        state.modelChanged.connect(self._invalidate)
        state.scanChanged.connect(self._invalidate)
        state.sliceChanged.connect(lambda _: self.refresh())
        state.latentsChanged.connect(self.refresh)
        self.refresh()

    def _model_defaults(self) -> None:
        """Embed as the model's directions were fitted (see ``refinement_settings``)."""
        if self.state.model is not None:
            steps, lr = refinement_settings(self.state.model)
            self.steps.setValue(steps)
            self.lr.setValue(lr)

    # -- starting -------------------------------------------------------------------------

    def start(self) -> None:
        """Embed what the scope says, on a worker (the button's action)."""
        state, model = self.state.explore, self.state.model
        if model is None:
            self.state.report_error("open a model first")
            return
        scope = self.scope.currentData()
        slot = state.paired if scope == "paired" else state.source
        if slot is None:
            what = "a paired study" if scope == "paired" else "a scan"
            self.state.report_error(f"open {what} first: there is nothing to embed")
            return
        rows = list(range(slot.num_slices)) if scope == "volume" else [state.index]
        images = slot.slices.images[rows]
        modalities = [slot.modality] * len(rows)
        steps, lr, feed = int(self.steps.value()), float(self.lr.value()), self._feed
        self._run += 1
        run = self._run

        def work(progress, cancel) -> Any:
            def step(p: EmbedProgress) -> None:
                done = p.slices_done + p.batch_slices * p.step / max(p.steps, 1)
                first, last = p.slices_done + 1, p.slices_done + p.batch_slices
                which = f"slice {rows[0]}" if len(rows) == 1 else f"slices {first}-{last}"
                progress(done / p.slices_total, f"{which}: step {p.step} of {p.steps}")
                feed.point.emit(run, p.slices_done, p.step, p.loss)

            result = embed_images(
                model,
                images,
                modalities,
                steps=steps,
                lr=lr,
                batch=BATCH,
                progress=step,
                cancel=cancel.is_set,
            )
            return rows, result

        key = (model, slot)
        self._curve_x, self._curve_y, self._batch = [], [], -1
        self.loss_curve.setData([], [])
        which = f"slice {rows[0]}" if len(rows) == 1 else f"{len(rows)} slices"
        self.loss_plot.setTitle(f"refining {slot.modality} {which}…", color=GREY)
        self.job.run(
            work,
            lambda out: self._finished(key, scope == "paired", out),
            on_failed=self._failed,
            on_cancelled=lambda: self.progress.setFormat("cancelled"),
        )

    # -- results --------------------------------------------------------------------------

    def _finished(self, key: tuple, paired: bool, out: tuple[list[int], EmbedResult]) -> None:
        state = self.state.explore
        slot = state.paired if paired else state.source
        if key != (self.state.model, slot):
            return  # another scan or model was opened meanwhile: these latents are stale
        rows, result = out
        self.last_result = result
        latents, encoder = result.latents_by_slice(rows)
        errors = result.errors_by_slice(rows)
        # the whole run's mean loss per step replaces the live (per-batch) curve
        curve = result.loss_curve.mean(axis=1)
        self.loss_curve.setData(np.arange(len(curve)), curve)
        what = f"slice {rows[0]}" if len(rows) == 1 else f"mean of {len(rows)} slices"
        self.loss_plot.setTitle(f"refinement loss, {what}", color=GREY)
        self.progress.setValue(1000)
        self.progress.setFormat(
            f"done: {len(rows)} slice(s), {result.steps} steps at lr {result.lr:g}"
        )
        if paired:
            self.state.set_latents(latents, encoder=encoder, paired=True)
        else:
            self.state.set_latents(latents, encoder=encoder, errors=errors)

    def _failed(self, message: str) -> None:
        self.progress.setFormat("failed")
        self.state.report_error(message)

    def _on_point(self, run: int, batch: int, step: int, loss: float) -> None:
        if run != self._run or not self.job.is_running:
            return
        if batch != self._batch:  # a new batch of a whole scan: start its curve afresh
            self._batch, self._curve_x, self._curve_y = batch, [], []
        self._curve_x.append(step)
        self._curve_y.append(loss)
        self.loss_curve.setData(self._curve_x, self._curve_y)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        self.progress.setFormat(message)

    def _on_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.embed_button.setEnabled(not running)

    def _invalidate(self) -> None:
        self._run += 1
        if self.job.is_running:
            self.job.invalidate()
            self.progress.setFormat("stopped: another scan or model was opened")
        self.loss_curve.setData([], [])
        self.last_result = None
        self.refresh()

    # -- display --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the current slice's errors and every embedded slice's on the plot."""
        state = self.state.explore
        source = state.source
        has_pair = state.paired is not None
        model_item = self.scope.model()
        model_item.item(2).setEnabled(has_pair)
        if not has_pair and self.scope.currentData() == "paired":
            self.scope.setCurrentIndex(0)
        if source is None:
            self.summary.setText("Open a scan to embed its slices.")
            self.encoder_points.setData([], [])
            self.refined_points.setData([], [])
            return
        unit = error_unit(source.modality)
        self.error_plot.setLabel("left", unit)
        self.slice_line.setValue(state.index)
        rows = sorted(state.embed_errors)
        enc = [state.embed_errors[i].get("encoder", math.nan) for i in rows]
        ref = [state.embed_errors[i].get("refined", math.nan) for i in rows]
        self.encoder_points.setData(rows, enc)
        self.refined_points.setData(rows, ref)
        self.error_plot.setXRange(-0.5, source.num_slices - 0.5, padding=0)
        e = state.embed_errors.get(state.index)
        where = f"Slice {state.index} of {source.num_slices} ({source.modality})"
        if e is None:
            refined = state.index in state.latents
            note = "refined" if refined else "the encoder's guess only, not refined yet"
            self.summary.setText(f"<b>{where}</b>: {note}.")
            return
        cells = [
            (f"<span style='color:{colour}'>{name}</span>", e.get(key), e.get(key + "_body"))
            for name, key, colour in (
                ("encoder only", "encoder", ORANGE),
                ("refined", "refined", BLUE),
            )
        ]
        rows = "".join(
            f"<tr><td>{name}</td><td align='right'>{format_error(whole, unit)}</td>"
            f"<td align='right'>{format_error(body, unit)}</td></tr>"
            for name, whole, body in cells
        )
        text = (
            f"<b>{where}</b>, {unit}<table cellspacing='0' cellpadding='1'>"
            f"<tr><td></td><td align='right' style='color:{GREY}'>&nbsp;&nbsp;whole image</td>"
            f"<td align='right' style='color:{GREY}'>&nbsp;&nbsp;body only</td></tr>{rows}</table>"
        )
        self.summary.setText(text)
