"""The render worker (latest wins), the task runner, and AppState driven as panels do."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot

from medstyle_gui.core.embed import EmbedCancelled
from medstyle_gui.core.render import Renderer, RenderRequest
from medstyle_gui.gui.worker import RenderWorker, TaskRunner, one_line
from tests.gui.conftest import WAIT_MS, wait_render
from trainer.errors import ScanReadError

pytestmark = pytest.mark.gui


class Collector(QObject):
    """Receives results on the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list = []

    @Slot(object)
    def add(self, result) -> None:
        self.results.append(result)


@pytest.fixture
def worker(tiny_model):
    made: list[RenderWorker] = []

    def make(**kw) -> RenderWorker:
        w = RenderWorker(tiny_model, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


def flood_requests(model, n: int) -> list[RenderRequest]:
    w = model.w_mean.cpu().numpy()
    return [
        RenderRequest(w=w, moves=(("slice", 0.002 * i),), tau=1.0, modality="MR", stamp=i + 1)
        for i in range(n)
    ]


# -- RenderWorker -------------------------------------------------------------------------------


@pytest.mark.parametrize("stale_after_ms", [None, 150.0])
def test_a_flood_of_requests_renders_a_few_and_ends_on_the_last(
    qtbot, worker, tiny_model, stale_after_ms
):
    render = worker(stale_after_ms=stale_after_ms)
    sink = Collector()
    render.finished.connect(sink.add)
    requests = flood_requests(tiny_model, 1000)
    for request in requests:
        render.submit(request)
    qtbot.waitUntil(lambda: bool(sink.results) and sink.results[-1].stamp == 1000, timeout=WAIT_MS)
    qtbot.wait(100)  # nothing else may arrive after the last
    assert sink.results[-1].stamp == 1000
    assert render.requested == 1000
    assert render.rendered <= 5, f"{render.rendered} renders for a flood"
    assert render.rendered + render.skipped == 1000
    assert [r.stamp for r in sink.results] == sorted(r.stamp for r in sink.results)
    if stale_after_ms is None:
        assert [r.stamp for r in sink.results] == [1000]  # every stale result dropped
    direct = Renderer(tiny_model).render(requests[-1])
    np.testing.assert_allclose(sink.results[-1].image_unit, direct.image_unit, atol=1e-5)
    assert not render.busy


def test_a_bad_request_comes_back_as_a_one_line_error_and_the_worker_carries_on(
    qtbot, worker, tiny_model
):
    render = worker()
    sink = Collector()
    render.finished.connect(sink.add)
    w = tiny_model.w_mean.cpu().numpy()
    render.submit(RenderRequest(w=w, moves=(("no such direction", 1.0),), stamp=1))
    qtbot.waitUntil(lambda: len(sink.results) == 1, timeout=WAIT_MS)
    assert sink.results[0].image_native is None
    assert "no direction 'no such direction'" in sink.results[0].error
    assert "\n" not in sink.results[0].error
    render.submit(RenderRequest(w=w, stamp=2))
    qtbot.waitUntil(lambda: len(sink.results) == 2, timeout=WAIT_MS)
    assert sink.results[1].error is None and sink.results[1].image_native is not None


def test_without_a_model_the_worker_says_so(qtbot, worker, tiny_model):
    render = worker()
    render.set_model(None)
    sink = Collector()
    render.finished.connect(sink.add)
    render.submit(RenderRequest(w=np.zeros(tiny_model.w_dim, np.float32), stamp=1))
    qtbot.waitUntil(lambda: len(sink.results) == 1, timeout=WAIT_MS)
    assert sink.results[0].error == "no model is open"


# -- TaskRunner ---------------------------------------------------------------------------------


@pytest.fixture
def runner(qtbot):
    r = TaskRunner()
    yield r
    r.wait_all(10.0)


def test_a_task_reports_progress_and_its_result_on_the_gui_thread(qtbot, runner):
    gui_thread = threading.get_ident()
    seen: dict = {}

    def work(progress, cancel):
        seen["thread"] = threading.get_ident()
        progress(0.5, "half way")
        time.sleep(0.1)
        progress(1.0, "done")
        return 42

    busy: list[str] = []
    runner.busyChanged.connect(busy.append)
    progress: list = []
    with qtbot.waitSignal(runner.done, timeout=WAIT_MS) as done:
        task = runner.start(work, name="counting")
        task.progress.connect(lambda f, m: progress.append((f, m, threading.get_ident())))
    assert done.args == [42]
    assert seen["thread"] != gui_thread
    assert (0.5, "half way", gui_thread) in progress and progress[-1][:2] == (1.0, "done")
    qtbot.waitUntil(lambda: busy[-1:] == [""], timeout=WAIT_MS)
    assert busy[0] == "counting" and not runner.busy
    assert task.outcome == "done"


def test_a_task_can_be_cancelled(qtbot, runner):
    started = threading.Event()

    def work(progress, cancel):
        started.set()
        while not cancel.is_set():
            time.sleep(0.01)
        raise EmbedCancelled("stopped")

    done: list = []
    runner.done.connect(done.append)
    task = runner.start(work, name="forever")
    assert started.wait(10)
    with qtbot.waitSignal(runner.cancelled, timeout=WAIT_MS):
        task.cancel()
    assert not done and task.outcome == "cancelled"


def test_a_task_that_returns_after_cancel_counts_as_cancelled(qtbot, runner):
    def work(progress, cancel):
        cancel.wait(10)
        return "too late"

    task = runner.start(work)
    with qtbot.waitSignal(task.cancelled, timeout=WAIT_MS):
        runner.cancel_all()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ScanReadError("does not exist", "/data/x.nii"), "/data/x.nii: does not exist"),
        (ValueError("bad value\nsecond line"), "internal error: ValueError: bad value"),
    ],
)
def test_a_failing_task_sends_one_line(qtbot, runner, error, expected):
    def work(progress, cancel):
        raise error

    with qtbot.waitSignal(runner.failed, timeout=WAIT_MS) as failed:
        runner.start(work, name="failing")
    assert failed.args == [expected]
    assert one_line(error) == expected


# -- AppState -----------------------------------------------------------------------------------


def test_the_model_alone_renders_a_seed(model_state, tiny_model):
    state = model_state
    assert state.last_result.image_native.shape == (tiny_model.resolution,) * 2
    assert state.truth is None and "no ground truth" in state.truth_label
    assert state.device == "CPU"


def test_opening_the_real_t2_renders_its_middle_slice_off_the_gui_thread(
    qtbot, monkeypatch, model_state, real_t2_nifti
):
    threads: list[int] = []
    original = Renderer.render

    def spy(self, request):
        threads.append(threading.get_ident())
        return original(self, request)

    monkeypatch.setattr(Renderer, "render", spy)
    state = model_state
    slices: list[int] = []
    state.sliceChanged.connect(slices.append)
    with qtbot.waitSignal(state.rendered, timeout=WAIT_MS, check_params_cb=lambda r: r.stamp > 1):
        state.open_scan(real_t2_nifti)
    source = state.explore.source
    assert source.modality == "MR" and slices == [source.num_slices // 2]
    assert len(state.explore.encoder_latents) == source.num_slices
    assert threads and threading.get_ident() not in threads
    result = state.last_result
    assert result.modality == "MR" and "rmse" in result.metrics
    np.testing.assert_array_equal(state.truth, source.native(source.num_slices // 2))
    assert state.truth_label.startswith("source MR slice")


def test_moves_slices_and_mixes_change_the_image(qtbot, t2_state):
    state = t2_state
    before = state.last_result.image_native.copy()
    moved = wait_render(qtbot, state, lambda: state.set_move("sex", 3.0))
    assert np.abs(moved.image_native - before).max() > 1e-3
    assert state.explore.moves == {"sex": 3.0}
    slice_move = 4 * float(state.model.directions["slice"].calibration["units_per_slice"])
    wait_render(qtbot, state, lambda: state.set_move("slice", slice_move))
    assert "(+4)" in state.truth_label
    wait_render(qtbot, state, state.reset_moves)
    assert state.explore.moves == {} and state.explore.tau == 1.0
    np.testing.assert_allclose(state.last_result.image_native, before, atol=1e-3)
    index = state.explore.index
    wait_render(qtbot, state, lambda: state.set_slice(index + 1))
    assert state.explore.index == index + 1
    wait_render(qtbot, state, lambda: state.set_mix(layers=("4x4",), source="slice", slice=0))
    assert state.last_result.restart_layer == 0
    wait_render(qtbot, state, lambda: state.set_tau(0.5))
    assert state.explore.tau == 0.5


def test_window_changes_do_not_render(qtbot, t2_state):
    state = t2_state
    stamp = state.stamp
    with qtbot.waitSignal(state.windowChanged, timeout=1000):
        state.set_window(300.0, 600.0)
    assert state.explore.window == (300.0, 600.0) and state.stamp == stamp


def test_worker_errors_arrive_as_one_line_and_the_state_carries_on(qtbot, t2_state, tmp_path):
    state = t2_state
    missing = tmp_path / "missing.nii.gz"
    with qtbot.waitSignal(state.errorRaised, timeout=WAIT_MS) as err:
        state.open_scan(missing)
    assert str(missing) in err.args[0] and "\n" not in err.args[0]
    assert state.explore.source is not None  # the open scan stays
    with qtbot.waitSignal(state.errorRaised, timeout=WAIT_MS) as err:
        state.set_mix(layers=("9x9",), source="seed")
    assert "9x9" in err.args[0] and "\n" not in err.args[0]
    wait_render(qtbot, state, lambda: state.set_mix(layers=("8x8",)))
    assert state.last_result.error is None
    with qtbot.waitSignal(state.errorRaised, timeout=1000):
        state.set_move("no such direction", 1.0)
    wait_render(qtbot, state, lambda: state.set_move("sex", -2.0))


def test_a_scan_needs_a_model(qtbot, app_state, real_t2_nifti):
    with qtbot.waitSignal(app_state.errorRaised, timeout=1000) as err:
        assert app_state.open_scan(real_t2_nifti) is None
    assert "open a model first" in err.args[0]
    assert app_state.request_render() is False


def test_a_session_is_saved_and_reopened_through_the_state(qtbot, t2_state, tmp_path):
    from medstyle_gui.gui.state import AppState

    state = t2_state
    index = state.explore.index
    w = np.full(state.model.w_dim, 0.25, np.float32)
    wait_render(qtbot, state, lambda: state.set_latents({index: w}, errors={index: {"refined": 1}}))
    wait_render(qtbot, state, lambda: state.set_move("sex", 1.5))
    state.set_window(200.0, 800.0)
    path = state.save_session(tmp_path / "s.medstyle")
    assert path is not None and path.is_file()
    with qtbot.waitSignal(state.errorRaised, timeout=1000):
        state.save_session(tmp_path / "s.medstyle")  # exists: refused, said in one line

    other = AppState()
    try:
        with qtbot.waitSignal(other.rendered, timeout=WAIT_MS):
            other.set_model(state.model)
        other.open_session(path)
        qtbot.waitUntil(lambda: other.explore.latents != {}, timeout=WAIT_MS)
        assert other.explore.source.path == state.explore.source.path
        assert other.explore.index == index
        np.testing.assert_array_equal(other.explore.latents[index], w)
        assert other.explore.moves == {"sex": 1.5}
        assert other.explore.window == (200.0, 800.0)
    finally:
        other.shutdown()


def test_an_abandoned_task_says_nothing_and_a_closed_runner_starts_nothing(qtbot, runner):
    release = threading.Event()

    def work(progress, cancel):
        release.wait(10)
        return "late"

    done: list = []
    runner.done.connect(done.append)
    task = runner.start(work, name="slow")
    runner.abandon(task)
    assert not runner.busy and task.cancel_event.is_set()
    release.set()
    assert task.wait(10)
    qtbot.wait(100)
    assert done == []
    runner.wait_all()
    late = runner.start(lambda progress, cancel: 1, name="after shutdown")
    assert late.detached and not late.running and not runner.busy


def test_the_singleton_refcount_guard_holds_on_affected_pyside():
    import sys

    from PySide6.QtWidgets import QLabel

    from medstyle_gui.gui import worker

    if not worker._GUARDED:
        pytest.skip("this PySide6 / Python pair counts references to None correctly")
    label = QLabel()
    for _ in range(20_000):  # unguarded, each call lowers the count of None by one
        label.setText("x")
    assert sys.getrefcount(None) > 2**39
