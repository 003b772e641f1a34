"""Work off the GUI thread: the render worker (latest wins) and a runner for long tasks.

:class:`RenderWorker` lives on its own QThread with its own
:class:`~medstyle_gui.core.render.Renderer`. ``submit`` only stores the request: while a
render runs, newer requests replace the waiting one, so a slider dragged through 1,000
values costs a handful of renders, and the last value is always rendered. A result whose
request was superseded while it rendered is dropped (its stamp is older than the newest
submitted), as the StyleGAN3 visualizer's async renderer does, except that one stale
result is let through when nothing was shown for ``stale_after_ms``, so a long drag still
moves the picture.

:class:`TaskRunner` runs a callable ``fn(progress, cancel)`` on a worker thread: progress
reports ``(fraction 0..1, message)``, ``cancel`` is a :class:`threading.Event` the callable
polls. Each run is a :class:`Task` with its own signals; the runner repeats them and says
when it is busy.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from medstyle_gui.core.embed import EmbedCancelled
from medstyle_gui.core.model import Model
from medstyle_gui.core.render import Renderer, RenderRequest, RenderResult
from trainer.errors import MedstyleError

log = logging.getLogger(__name__)

#: Progress signals are sent at most this often (ms); the last one always goes.
PROGRESS_INTERVAL_MS = 40.0


def guard_singleton_refcounts() -> bool:
    """Work around PySide6 6.12.0 on Python < 3.12: its void methods return None (and
    signal ``emit`` returns True) without taking a reference, so every call lowers the
    object's count by one, and after some thousands of calls (a slider dragged for a
    while) Python aborts with "deallocating None". Python 3.12 made these objects
    immortal (PEP 683); here they get a count no session can use up. Returns True when
    applied (only on the affected versions)."""
    import PySide6

    if sys.version_info >= (3, 12) or not PySide6.__version__.startswith("6.12."):
        return False
    import ctypes

    for obj in (None, True, False):
        # ob_refcnt is the first field of every PyObject (a Py_ssize_t)
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True


_GUARDED = guard_singleton_refcounts()


def one_line(err: BaseException) -> str:
    """A user-facing line for ``err``: a MedstyleError's own message; anything else is a
    bug, named by its type (the traceback goes to the log)."""
    if isinstance(err, MedstyleError):
        text = str(err)
    else:
        text = f"internal error: {type(err).__name__}: {err}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


class RenderWorker(QObject):
    """Renders the newest request on a worker thread; emits ``finished(RenderResult)``.

    Counters (read from the GUI thread): ``requested`` submits, ``rendered`` renders run,
    ``skipped`` requests replaced before they started, ``dropped`` results discarded as
    stale, ``emitted`` results sent.
    """

    finished = Signal(object)  # RenderResult
    _wake = Signal()

    def __init__(self, model: Model | None = None, stale_after_ms: float | None = 150.0) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._model = model
        self._renderer: Renderer | None = None
        self._pending: RenderRequest | None = None
        self._scheduled = False
        self._last_stamp = -1
        self._last_emit = time.perf_counter()
        self.stale_after_ms = stale_after_ms
        self.requested = self.rendered = self.skipped = self.dropped = self.emitted = 0
        self._thread = QThread()
        self._thread.setObjectName("render")
        self.moveToThread(self._thread)
        self._wake.connect(self._drain)
        self._thread.start()

    # -- GUI thread ------------------------------------------------------------------------

    def set_model(self, model: Model | None) -> None:
        """Render with ``model`` from the next request on (its renderer is made there)."""
        with self._lock:
            self._model = model

    def submit(self, request: RenderRequest) -> None:
        """Queue ``request``, replacing any request still waiting (latest wins)."""
        with self._lock:
            if self._pending is not None:
                self.skipped += 1
            self._pending = request
            self.requested += 1
            self._last_stamp = max(self._last_stamp, request.stamp)
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            self._wake.emit()

    def reset_counters(self) -> None:
        with self._lock:
            self.requested = self.rendered = self.skipped = self.dropped = self.emitted = 0

    @property
    def busy(self) -> bool:
        """True while a request waits or renders."""
        with self._lock:
            return self._scheduled

    def stop(self, timeout_ms: int = 5000) -> None:
        """Let the current render finish and end the thread (call once, at shutdown)."""
        with self._lock:
            self._pending = None
        self._thread.quit()
        self._thread.wait(timeout_ms)

    # -- worker thread ---------------------------------------------------------------------

    @Slot()
    def _drain(self) -> None:
        while True:
            with self._lock:
                request, self._pending = self._pending, None
                model = self._model
                if request is None:
                    self._scheduled = False
                    return
            result = self._render(model, request)
            now = time.perf_counter()
            with self._lock:
                self.rendered += 1
                stale = request.stamp < self._last_stamp
                show_anyway = (
                    self.stale_after_ms is not None
                    and 1e3 * (now - self._last_emit) >= self.stale_after_ms
                )
                if stale and not show_anyway:
                    self.dropped += 1
                    continue
                self.emitted += 1
                self._last_emit = now
            self.finished.emit(result)

    def _render(self, model: Model | None, request: RenderRequest) -> RenderResult:
        if model is None:
            return RenderResult(None, None, None, stamp=request.stamp, error="no model is open")
        if self._renderer is None or self._renderer.model is not model:
            self._renderer = Renderer(model)
        try:
            return self._renderer.render(request)
        except Exception as err:  # a bug in rendering must not end the thread
            log.error("render failed:\n%s", traceback.format_exc())
            self._renderer = None
            return RenderResult(None, None, None, stamp=request.stamp, error=one_line(err))


TaskFn = Callable[[Callable[[float, str], None], threading.Event], Any]


class Task(QObject):
    """One run of a callable on a worker thread. Signals arrive on the GUI thread.

    Exactly one of ``done(result)``, ``failed(message)`` and ``cancelled()`` is emitted,
    then ``ended()``. The worker thread emits private signals that this object (living on
    the GUI thread) turns into the public ones, so even a lambda connected to them runs
    on the GUI thread.
    """

    progress = Signal(float, str)  # fraction 0..1, message
    done = Signal(object)
    failed = Signal(str)  # one line
    cancelled = Signal()
    ended = Signal()
    _progress = Signal(float, str)
    _finish = Signal(str, object)  # "done" | "failed" | "cancelled", payload

    def __init__(
        self, name: str, fn: TaskFn, parent: QObject | None = None, *, disposable: bool = False
    ) -> None:
        super().__init__(parent)
        self.name = name
        # a display computation (an error curve): closing drops it without asking, since
        # nothing the user made is lost and it is worked out again on the next view
        self.disposable = disposable
        self.cancel_event = threading.Event()
        self.running = False
        self.detached = False  # after detach(): nothing more is emitted
        self.outcome = ""  # "done" | "failed" | "cancelled" once ended
        self._fn = fn
        self._last_progress = 0.0
        self._thread = threading.Thread(target=self._run, name=f"task:{name}", daemon=True)
        self._progress.connect(self._relay_progress)
        self._finish.connect(self._relay_finish)

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def cancel(self) -> None:
        """Ask the callable to stop (it polls the event)."""
        self.cancel_event.set()

    def detach(self) -> None:
        """Cancel and emit nothing more, even what is already queued (at shutdown, when
        the widgets listening may be gone)."""
        self.detached = True
        self.cancel_event.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the thread ends (tests, shutdown); True when it has."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- worker thread ---------------------------------------------------------------------

    def _report(self, fraction: float, message: str) -> None:
        now = time.perf_counter()
        if fraction < 1.0 and 1e3 * (now - self._last_progress) < PROGRESS_INTERVAL_MS:
            return
        self._last_progress = now
        self._progress.emit(float(min(max(fraction, 0.0), 1.0)), str(message))

    def _run(self) -> None:
        try:
            result = self._fn(self._report, self.cancel_event)
        except BaseException as err:
            if self.cancel_event.is_set() or isinstance(err, EmbedCancelled):
                self._finish.emit("cancelled", None)
            else:
                if not isinstance(err, MedstyleError):
                    log.error("task %r failed:\n%s", self.name, traceback.format_exc())
                self._finish.emit("failed", one_line(err))
        else:
            outcome = "cancelled" if self.cancel_event.is_set() else "done"
            self._finish.emit(outcome, result)

    # -- GUI thread ------------------------------------------------------------------------

    @Slot(float, str)
    def _relay_progress(self, fraction: float, message: str) -> None:
        if self.running and not self.detached:
            self.progress.emit(fraction, message)

    @Slot(str, object)
    def _relay_finish(self, outcome: str, payload: object) -> None:
        self.running = False
        self.outcome = outcome
        if not self.detached:
            if outcome == "done":
                self.done.emit(payload)
            elif outcome == "failed":
                self.failed.emit(str(payload))
            else:
                self.cancelled.emit()
            self.ended.emit()
        # the thread has sent its last signal: the object can go (its Python attributes,
        # such as outcome, stay readable)
        self.deleteLater()


class TaskRunner(QObject):
    """Starts :class:`Task` s and repeats their signals; ``busyChanged(name)`` says what
    runs ("" when idle)."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    busyChanged = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks: list[Task] = []
        self.closed = False  # after wait_all (shutdown) nothing new starts

    def start(
        self,
        fn: TaskFn,
        *,
        name: str = "working",
        on_done: Callable[[Any], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        disposable: bool = False,
    ) -> Task:
        """Run ``fn(progress, cancel)`` on a worker thread; the callbacks run on the GUI
        thread before the runner's own signals. After shutdown the task is returned
        detached and never runs. ``disposable``: see :attr:`Task.disposable`."""
        task = Task(name, fn, self, disposable=disposable)
        if self.closed:
            task.detach()
            return task
        if on_done is not None:
            task.done.connect(on_done)
        if on_failed is not None:
            task.failed.connect(on_failed)
        if on_cancelled is not None:
            task.cancelled.connect(on_cancelled)
        task.progress.connect(self.progress)
        task.done.connect(self.done)
        task.failed.connect(self.failed)
        task.cancelled.connect(self.cancelled)
        task.ended.connect(lambda: self._ended(task))
        self.tasks.append(task)
        task.start()
        self.busyChanged.emit(name)
        return task

    @property
    def busy(self) -> bool:
        return bool(self.tasks)

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def abandon(self, task: Task) -> None:
        """Stop caring about ``task``: cancelled, and nothing more from it arrives."""
        task.detach()
        self._ended(task)

    def wait_all(self, timeout_s: float = 10.0) -> None:
        """Shutdown: detach every task (cancelled, silent from now on) and wait for its
        thread, so nothing arrives later at widgets that are gone. Nothing starts after."""
        self.closed = True
        tasks, self.tasks = list(self.tasks), []
        for task in tasks:
            task.detach()
        deadline = time.perf_counter() + timeout_s
        for task in tasks:
            task.wait(max(0.0, deadline - time.perf_counter()))
        if tasks:
            self.busyChanged.emit("")

    def _ended(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        self.busyChanged.emit(self.tasks[-1].name if self.tasks else "")
