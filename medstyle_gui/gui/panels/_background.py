"""Small helpers the explorer's panels share: one background job at a time, plot styling,
a slider centred on 0.

:class:`LatestJob` runs a panel's slow computation (an embedding, an error curve, the
per-layer bar chart) through the application's :class:`~medstyle_gui.gui.worker.TaskRunner`,
never on the GUI thread. Starting a job cancels the one still running, and a result is
delivered only when no newer job was started and :meth:`LatestJob.invalidate` was not
called since: a result that arrives after the user moved on is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSlider, QStyle, QStyleOptionSlider

from medstyle_gui.gui.worker import Task, TaskFn, TaskRunner

#: Plot colours on the dark theme (colour-blind safe: Okabe-Ito blue, orange, green).
BLUE = "#56B4E9"
ORANGE = "#E69F00"
GREEN = "#009E73"
GREY = "#9a9a9a"
PLOT_BACKGROUND = "#1e1e1e"
#: Unfilled slider groove of the dark theme (resources/style/dark.qss).
GROOVE = "#4a4a4a"


class LatestJob(QObject):
    """At most one live run of a panel's background computation.

    Signals: ``running(bool)`` when a run starts or ends (for busy indicators) and
    ``progress(float, str)`` of the live run only.
    """

    running = Signal(bool)
    progress = Signal(float, str)

    def __init__(
        self,
        tasks: Callable[[], TaskRunner],
        name: str,
        parent: QObject | None = None,
        *,
        disposable: bool = False,
    ):
        super().__init__(parent)
        self._tasks = tasks  # the runner is looked up per run: the app may replace it
        self.name = name
        self.disposable = disposable  # see Task.disposable
        self._generation = 0
        self._task: Task | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._pending: Callable[[], None] | None = None
        self._debounce.timeout.connect(self._fire)

    @property
    def is_running(self) -> bool:
        return self._task is not None

    def later(self, start: Callable[[], None], delay_ms: int = 250) -> None:
        """Call ``start`` after ``delay_ms`` of quiet (a slider drag starts one job, not 100).
        Anything already computed is stale from now: it is invalidated at once."""
        self.invalidate()
        self._pending = start
        self._debounce.start(delay_ms)

    def _fire(self) -> None:
        start, self._pending = self._pending, None
        if start is not None:
            start()

    def run(
        self,
        fn: TaskFn,
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Task:
        """Start ``fn(progress, cancel_event)`` on a worker; cancel the previous run."""
        self.invalidate()
        generation = self._generation

        def live() -> bool:
            return generation == self._generation

        def done(result: Any) -> None:
            if live():
                on_done(result)

        def failed(message: str) -> None:
            if live() and on_failed is not None:
                on_failed(message)

        def cancelled() -> None:
            if live() and on_cancelled is not None:
                on_cancelled()

        task = self._tasks().start(
            fn,
            name=self.name,
            on_done=done,
            on_failed=failed,
            on_cancelled=cancelled,
            disposable=self.disposable,
        )
        task.progress.connect(lambda f, m: self.progress.emit(f, m) if live() else None)
        task.ended.connect(lambda: self._ended(task))
        self._task = task
        self.running.emit(True)
        return task

    def cancel(self) -> None:
        """Ask the running job to stop (its ``on_cancelled`` still arrives)."""
        if self._task is not None:
            self._task.cancel()

    def invalidate(self) -> None:
        """Drop whatever the current run will deliver and ask it to stop."""
        self._generation += 1
        self._debounce.stop()
        self._pending = None
        if self._task is not None:
            self._task.cancel()

    def _ended(self, task: Task) -> None:
        if self._task is task:
            self._task = None
            self.running.emit(False)


def plot_widget(x_label: str, y_label: str, *, height: int = 170) -> pg.PlotWidget:
    """A small labelled plot for a dock: dark, grid, no context menu, no autorange button."""
    plot = pg.PlotWidget(background=PLOT_BACKGROUND)
    plot.setMinimumHeight(height)
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    item.hideButtons()
    item.showGrid(x=True, y=True, alpha=0.2)
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    for axis in ("bottom", "left"):
        item.getAxis(axis).setTextPen(GREY)
        item.getAxis(axis).setPen(GREY)
        item.getAxis(axis).enableAutoSIPrefix(False)  # "0.81", not "810 (x0.001)"
    plot.setMouseEnabled(x=False, y=False)
    return plot


class BipolarSlider(QSlider):
    """A horizontal slider whose 0 is in the middle: the groove is not filled from the
    left end (that would read as an amount), and a small mark shows where 0 is."""

    def __init__(self) -> None:
        super().__init__(Qt.Orientation.Horizontal)
        self.setStyleSheet(f"QSlider::sub-page:horizontal {{ background: {GROOVE}; }}")
        self.setMinimumHeight(24)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        handle = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self
        )
        span = self.width() - handle.width()
        x = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), 0, span)
        x += handle.width() // 2
        y = self.height() // 2
        painter = QPainter(self)
        painter.setPen(QPen(QColor(GREY), 2))
        painter.drawLine(x, y + 5, x, y + 10)
        painter.end()
