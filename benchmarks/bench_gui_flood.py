"""Flood a latent slider with 1,000 value changes and see what the render worker makes of it.

The whole main window runs (every panel listening, offscreen unless a display is set).
The latent panel's first direction slider (or ``state.set_move`` when the panel is not
there) is set 1,000 times, in two ways:

* ``burst``: 1,000 ``QSlider.setValue`` calls in one go on the GUI thread (the cost of the
  handlers per change, and what is left to render afterwards);
* ``drag``: one change per timer tick of ``--interval-ms`` (default 1 ms: faster than any
  hand on a mouse), with the event loop running in between, as during a real drag.

For each: renders requested, run, skipped (replaced before they started) and dropped
(stale when done); whether the image shown last is the render of the final value (max
absolute difference against a fresh ``Renderer.render`` of the final state, in native
units); and the longest gap between ticks of a 5 ms QTimer on the GUI thread (its longest
stall). Figures only, no pass/fail:

    python benchmarks/bench_gui_flood.py --model DIR [--scan SCAN] [--direction NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FLOOD = 1000
WAIT_S = 300.0


class GapMeter:
    """A 5 ms QTimer on the GUI thread; the longest gap between its ticks is the longest
    time the GUI thread could not react."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.interval_ms = interval_ms
        self.gaps: list[float] = []
        self.last = time.perf_counter()

    def start(self) -> None:
        self.gaps.clear()
        self.last = time.perf_counter()
        self.timer.start(self.interval_ms)

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(1e3 * (now - self.last))
        self.last = now

    def summary(self) -> str:
        if not self.gaps:
            return "no ticks"
        g = np.asarray(self.gaps)
        return f"longest {g.max():.1f} ms, 99th pct {np.percentile(g, 99):.1f} ms, {len(g)} ticks"


def wait(app, until, timeout_s: float = WAIT_S) -> bool:
    """Run the event loop (never sleeping the GUI thread) until ``until()`` or timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    if until():
        return True
    loop = QEventLoop()
    deadline = time.perf_counter() + timeout_s
    check = QTimer()
    check.timeout.connect(
        lambda: loop.quit() if until() or time.perf_counter() > deadline else None
    )
    check.start(5)
    loop.exec()
    check.stop()
    return bool(until())


def settle(app, state, quiet_s: float = 0.5) -> None:
    """Until the worker is idle and the newest result is shown, then ``quiet_s`` more."""
    wait(app, lambda: not state.renderer.busy and state.last_result is not None)
    wait(app, lambda: state.last_result.stamp == state.stamp or not state.renderer.busy)
    end = time.perf_counter() + quiet_s
    wait(app, lambda: time.perf_counter() > end)


def final_check(state) -> str:
    from medstyle_gui.core.explore import build_request
    from medstyle_gui.core.render import Renderer

    shown = state.last_result
    request = build_request(state.explore, state.model, stamp=0)
    direct = Renderer(state.model).render(request)
    diff = float(np.abs(shown.image_native - direct.image_native).max())
    current = (
        "yes" if shown.stamp == state.stamp else f"no (shown {shown.stamp}, newest {state.stamp})"
    )
    return f"last shown is the newest request: {current}; max |shown - direct| = {diff:.3g}"


def flood(app, state, setter, values, mode: str, interval_ms: int, meter: GapMeter) -> None:
    from PySide6.QtCore import QTimer

    worker = state.renderer
    worker.reset_counters()
    stamp0 = state.stamp
    meter.start()
    start = time.perf_counter()
    if mode == "burst":
        for v in values:
            setter(v)
        loop_ms = 1e3 * (time.perf_counter() - start)
    else:
        pending = list(values)
        timer = QTimer()

        def tick() -> None:
            if pending:
                setter(pending.pop(0))
            else:
                timer.stop()

        timer.timeout.connect(tick)
        timer.start(interval_ms)
        wait(app, lambda: not pending)
        loop_ms = 1e3 * (time.perf_counter() - start)
    settle(app, state)
    total_ms = 1e3 * (time.perf_counter() - start)
    meter.stop()
    requested = state.stamp - stamp0
    print(f"\n[{mode}] {len(values)} slider changes in {loop_ms:.0f} ms", end="")
    print(f" ({loop_ms / len(values):.3f} ms each)" if mode == "burst" else "")
    print(
        f"  renders requested {requested}, submitted {worker.requested}, run {worker.rendered}, "
        f"skipped {worker.skipped}, dropped stale {worker.dropped}, shown {worker.emitted}"
    )
    print(f"  all done after {total_ms:.0f} ms; GUI thread gaps: {meter.summary()}")
    print(f"  {final_check(state)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model bundle (default: the demo model)")
    parser.add_argument("--scan", type=Path, help="a scan to open (default: a random latent)")
    parser.add_argument("--direction", help="which slider (default: the panel's first)")
    parser.add_argument("--interval-ms", type=int, default=1, help="drag: ms between changes")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from medstyle_gui.core.model import load_model
    from medstyle_gui.gui.app import demo_model, make_app
    from medstyle_gui.gui.main_window import MainWindow
    from medstyle_gui.gui.state import AppState

    folder = args.model or demo_model()
    if folder is None:
        print("no model: pass --model DIR (the demo model is not installed)", file=sys.stderr)
        return 2
    app = make_app()
    import tempfile

    from PySide6.QtCore import QSettings

    ini = Path(tempfile.mkdtemp(prefix="bench_flood_")) / "settings.ini"
    state = AppState()
    window = MainWindow(state, settings=QSettings(str(ini), QSettings.Format.IniFormat))
    window.show()
    model = load_model(folder)
    state.set_model(model)
    if args.scan:
        state.open_scan(args.scan)
        wait(app, lambda: state.explore.source is not None)
    settle(app, state)

    panel = window.panels.get("latent")
    rows = getattr(panel, "rows", None)
    if panel is not None:
        wait(app, lambda: bool(panel.rows), 60)
    if rows:
        name = args.direction or next(iter(rows))
        slider = rows[name].slider
        lo, hi = slider.minimum(), slider.maximum()
        values = [lo + (i % (hi - lo)) for i in range(FLOOD)]
        setter = slider.setValue
        how = f"latent panel slider {name!r} (positions {lo}..{hi})"
    else:
        name = args.direction or next(iter(model.directions))
        values = list(np.linspace(-3.0, 3.0, FLOOD))
        setter = lambda v: state.set_move(name, float(v))  # noqa: E731
        how = f"state.set_move({name!r}, ...) (no latent panel)"
    threads = torch.get_num_threads()
    print(f"model {model.name} ({model.resolution} px, {state.device}, {threads} threads)")
    print(f"source: {state.explore.source.path if state.explore.source else 'random latent'}")
    print(f"flooding {how}")
    print(f"one render of this state: {state.last_result.render_ms:.1f} ms")
    meter = GapMeter()
    for mode in ("burst", "drag"):
        if rows:
            setter(0)
            settle(app, state)
        flood(
            app,
            state,
            setter,
            values if mode == "burst" else values[::-1],
            mode,
            args.interval_ms,
            meter,
        )
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
