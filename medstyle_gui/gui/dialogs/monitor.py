"""The window (or tab) that follows one training run: the command's output as it
comes, the losses and the quality metric plotted live against kimg (pyqtgraph), the
newest sample grid, Stop (SIGTERM to the run's processes, SIGKILL after a grace period),
Resume (the same run with ``--resume``) and, when it succeeded, an offer to open the model
bundle it made or changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QPalette, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from medstyle_gui.core.run_log import METRIC_LABELS
from medstyle_gui.gui.dialogs.process_runner import ProcessRunner, RunSpec, RunWatcher
from trainer.errors import MedstyleError

#: Line colours that read on a dark and on a light background.
COLOURS = ("#4e9fe5", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948")
#: Lines kept in the log view (older ones scroll away).
LOG_LINES = 5000
STATUS_COLOURS = {"running": "#4e9fe5", "done": "#59a14f", "failed": "#e15759"}


def _plot(title: str, y_label: str) -> pg.PlotWidget:
    plot = pg.PlotWidget()
    plot.setTitle(title, size="10pt")
    plot.setLabel("bottom", "kimg")
    plot.setLabel("left", y_label)
    plot.showGrid(x=True, y=True, alpha=0.2)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)  # kimg stays kimg, not "x0.001"
    plot.getAxis("left").setWidth(58)  # both plots' axes line up
    plot.setMinimumHeight(150)
    plot.setMenuEnabled(False)
    return plot


class TrainingMonitor(QWidget):
    """Runs a :class:`RunSpec` and shows it. ``open_bundle(path)`` is called when the
    user takes the offer to open the resulting model bundle. ``closed()`` is emitted when
    it was closed (a tab holding it goes too)."""

    closed = Signal()

    def __init__(
        self,
        spec: RunSpec,
        open_bundle: Callable[[Path], None] | None = None,
        parent: QWidget | None = None,
        start: bool = True,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.spec, self.open_bundle = spec, open_bundle
        self.setWindowTitle(spec.title)
        self.resize(1100, 700)
        self.outcome = ""  # "", "running", "done", "failed", "stopped"
        self.last_error = ""
        self.runner = ProcessRunner(self)
        self.runner.lineReceived.connect(self.append_line)
        self.runner.progressText.connect(self._progress_text)
        self.runner.commandStarted.connect(self._command_started)
        self.runner.finished.connect(self._finished)
        self.watcher = RunWatcher(spec.run_folder, self) if spec.run_folder else None
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._clock = QElapsedTimer()
        self._sample_pixmap: QPixmap | None = None
        self._build()
        if self.watcher is not None:
            self.watcher.updated.connect(self._update_plots)
            self.watcher.record.connect(lambda r: self.append_line(self.watcher.log.describe(r)))
            self.watcher.sampleChanged.connect(self.show_sample)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._update_clock)
        self._tick.start(1000)
        if start and spec.commands:
            self.start(spec.commands)
        elif self.watcher is not None:  # watching a run started elsewhere
            self.watcher.start()
            self._set_status("watching", "#b07aa1")

    # -- layout -----------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        heading = QLabel(self.spec.title, self)
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        heading.setFont(font)
        top.addWidget(heading)
        top.addStretch(1)
        self.status = QLabel("", self)
        self.status.setObjectName("runStatus")
        top.addWidget(self.status)
        layout.addLayout(top)
        self.command = QLabel("", self)
        self.command.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command.setWordWrap(True)
        self.command.setStyleSheet("color: #a8a8a8; font-family: monospace;")
        layout.addWidget(self.command)
        row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p %")
        self.progress.setFixedWidth(200)
        row.addWidget(self.progress)
        self.summary = QLabel("", self)
        row.addWidget(self.summary, 1)
        layout.addLayout(row)

        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget(split)
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        self.log_view = QPlainTextEdit(left)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.log_view.setFont(mono)
        column.addWidget(self.log_view, 1)
        self.bar_line = QLabel("", left)
        self.bar_line.setFont(mono)
        column.addWidget(self.bar_line)
        split.addWidget(left)
        if self.watcher is not None:
            right = QSplitter(Qt.Orientation.Vertical, split)
            self.loss_plot = _plot("Losses (running mean per tick)", "loss")
            legend = self.loss_plot.addLegend(offset=(-10, 10))
            legend.setBrush(pg.mkBrush(30, 30, 30, 200))
            self.metric_plot = _plot("Quality", "metric")
            below = QWidget(right)
            row = QHBoxLayout(below)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.metric_plot, 1)
            samples = QVBoxLayout()
            self.sample = QLabel("no samples yet", below)
            self.sample.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.sample.setMinimumSize(220, 220)
            # the pixmap follows the room, not the other way round (no growing loop)
            self.sample.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            self.sample_caption = QLabel("", below)
            self.sample_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            samples.addWidget(self.sample, 1)
            samples.addWidget(self.sample_caption)
            row.addLayout(samples)
            right.addWidget(self.loss_plot)
            right.addWidget(below)
            right.setSizes([330, 270])
            split.addWidget(right)
            split.setSizes([480, 640])
            self._style_plots()
        layout.addWidget(split, 1)

        self.offer = QLabel("", self)
        self.offer.setWordWrap(True)
        self.offer.hide()
        layout.addWidget(self.offer)
        buttons = QHBoxLayout()
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setToolTip("stop the run (it can be resumed from its last checkpoint)")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("continue the run from checkpoints/latest.pt")
        self.resume_button.clicked.connect(self.resume)
        self.open_button = QPushButton("Open model", self)
        self.open_button.clicked.connect(self.take_offer)
        self.folder_button = QPushButton("Show folder", self)
        self.folder_button.clicked.connect(self._show_folder)
        self.folder_button.setEnabled(self.spec.run_folder is not None)
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        for b in (self.stop_button, self.resume_button, self.open_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self._update_buttons()

    def _style_plots(self) -> None:
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        for plot in (self.loss_plot, self.metric_plot):
            plot.setBackground(base)
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen(text)
                plot.getAxis(axis).setTextPen(text)
            plot.getPlotItem().titleLabel.setText(
                plot.getPlotItem().titleLabel.text, color=text.name()
            )

    # -- running ----------------------------------------------------------------------------

    def start(self, commands: list[list[str]]) -> None:
        """Run ``commands`` and follow the run folder."""
        self.outcome, self.last_error = "running", ""
        self.offer.hide()
        self._clock.start()
        self._set_status("running", STATUS_COLOURS["running"])
        if self.watcher is not None:
            self.watcher.start()
        self.runner.start(commands)
        self._update_buttons()

    def stop(self) -> None:
        """Stop the run: SIGTERM now, SIGKILL if it is still there after the grace period."""
        if self.runner.running:
            self.append_line("-- stopping --")
            self._set_status("stopping...", "#edc948")
            self.runner.stop()
            self.stop_button.setEnabled(False)

    def resume(self) -> None:
        """Continue the run from its last checkpoint (``--resume``)."""
        if self.runner.running or self.spec.resume is None:
            return
        try:
            commands = self.spec.resume()
        except MedstyleError as err:
            self._set_status(f"cannot resume: {err}", STATUS_COLOURS["failed"])
            return
        self.append_line("-- resuming --")
        self.start(commands)

    def can_resume(self) -> bool:
        if self.runner.running or self.spec.resume is None or self.watcher is None:
            return False
        return self.watcher.log.can_resume() and self.outcome in ("stopped", "failed")

    def result_bundle(self) -> Path | None:
        """The model bundle the run made (GAN) or changed (encoder, directions)."""
        if self.watcher is not None and self.watcher.log.bundle() is not None:
            return self.watcher.log.bundle()
        result = self.spec.result
        return result if result is not None and (result / "bundle.json").is_file() else None

    def take_offer(self) -> None:
        bundle = self.result_bundle()
        if bundle is not None and self.open_bundle is not None:
            self.open_bundle(bundle)

    def _command_started(self, line: str) -> None:
        self.command.setText(line)
        self.append_line(f"$ {line}")

    def _finished(self, code: int, how: str) -> None:
        self.outcome = how
        self.bar_line.setText("")
        if self.watcher is not None:
            self.watcher.stop()
        elapsed = self._elapsed()
        if how == "done":
            self._set_status(f"finished in {elapsed}", STATUS_COLOURS["done"])
            bundle = self.result_bundle()
            if bundle is not None and self.open_bundle is not None:
                self.offer.setText(
                    f"The run made the model bundle {bundle}. Open it in the explorer with "
                    "'Open model'."
                )
                self.offer.show()
        elif how == "stopped":
            kimg = f" at {self.watcher.log.kimg:.3g} kimg" if self.watcher is not None else ""
            self._set_status(f"stopped{kimg} after {elapsed}", "#edc948")
        else:
            reason = self.last_error or f"exit code {code}"
            self._set_status(f"failed: {reason}", STATUS_COLOURS["failed"])
        self._update_buttons()

    def append_line(self, line: str) -> None:
        """Add one line of output to the log view (the newest error line is kept)."""
        if "error:" in line:
            self.last_error = line.split("error:", 1)[1].strip()
        bar = self.log_view.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 2  # a user reading back is left alone
        self.log_view.appendPlainText(line)
        if following:
            bar.setValue(bar.maximum())

    def _progress_text(self, text: str) -> None:
        self.bar_line.setText(text[-160:])

    def _set_status(self, text: str, colour: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour}; font-weight: bold;")

    def _update_buttons(self) -> None:
        running = self.runner.running
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(self.can_resume())
        self.resume_button.setVisible(self.spec.resume is not None)
        self.open_button.setEnabled(
            not running and self.open_bundle is not None and self.result_bundle() is not None
        )

    def _elapsed(self) -> str:
        seconds = int(self._clock.elapsed() / 1000) if self._clock.isValid() else 0
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _update_clock(self) -> None:
        if self.runner.running and not self.runner.stopping:
            self._set_status(f"running {self._elapsed()}", STATUS_COLOURS["running"])

    def _show_folder(self) -> None:
        if self.spec.run_folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.spec.run_folder)))

    # -- plots and samples --------------------------------------------------------------

    def _update_plots(self) -> None:
        log = self.watcher.log
        for i, key in enumerate(log.loss_keys()):
            x, y = log.series(key)
            if key not in self._curves:
                pen = pg.mkPen(COLOURS[i % len(COLOURS)], width=2)
                self._curves[key] = self.loss_plot.plot(name=key, pen=pen)
            self._curves[key].setData(x, y)
        metric = log.metric_key()
        if metric is not None:
            x, y = log.series(metric)
            curve = self._curves.get("metric")
            if curve is None:
                self.metric_plot.setLabel("left", metric)
                self.metric_plot.setTitle(METRIC_LABELS.get(metric, metric), size="10pt")
                curve = self.metric_plot.plot(
                    pen=pg.mkPen("#e15759", width=2), symbol="o", symbolSize=7,
                    symbolBrush="#e15759",
                )  # fmt: skip
                self._curves["metric"] = curve
            curve.setData(x, y)
        total = log.total_kimg
        if total:
            self.progress.setValue(int(1000 * min(log.kimg / total, 1.0)))
        self.summary.setText(log.summary())
        self._update_buttons()

    def show_sample(self, path: str) -> None:
        """Show the sample grid ``path`` at a whole-number zoom (pixels stay sharp)."""
        pixmap = QPixmap(path)
        if pixmap.isNull():
            return
        self._sample_pixmap = pixmap
        self._fit_sample()
        images = Path(path).stem.rsplit("-", 1)[-1]
        kimg = f"{int(images) / 1000:g} kimg" if images.isdigit() else Path(path).name
        self.sample_caption.setText(f"G_ema at {kimg}, fixed seeds")

    def _fit_sample(self) -> None:
        """The grid as large as the room allows: a whole-number zoom when it fits
        (pixels stay sharp), smoothly shrunk when it does not."""
        pixmap = self._sample_pixmap
        if pixmap is None:
            return
        room = min(self.sample.width(), self.sample.height())
        side = max(pixmap.width(), pixmap.height(), 1)
        if room >= side:
            zoom = math.floor(room / side)
            pixmap = pixmap.scaled(pixmap.width() * zoom, pixmap.height() * zoom)
        elif room > 0:
            pixmap = pixmap.scaled(
                room, room, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )  # fmt: skip
        self.sample.setPixmap(pixmap)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.watcher is not None:
            self._fit_sample()

    def closeEvent(self, event) -> None:
        if self.runner.running:
            answer = QMessageBox.question(
                self, "Stop the run?", "The run is still going. Stop it and close?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.runner.stop(grace_s=2.0)
        super().closeEvent(event)
        self.closed.emit()
