"""SliceView and ComparisonView, driven with real (offscreen) mouse, wheel and key events."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from medstyle_gui.core.render import RenderResult
from medstyle_gui.gui.views import ComparisonView, SliceView

pytestmark = pytest.mark.gui


def _ramp(rows: int = 40, cols: int = 30) -> np.ndarray:
    """Values that say where they are: 1000 * row + column."""
    r, c = np.mgrid[:rows, :cols]
    return (1000.0 * r + c).astype(np.float32)


@pytest.fixture
def view(qtbot) -> SliceView:
    v = SliceView("test")
    qtbot.addWidget(v)
    v.resize(400, 400)
    v.show()
    qtbot.waitExposed(v)
    return v


def _widget_pos(view: SliceView, x_mm: float, y_mm: float) -> QPoint:
    """Viewport pixel of the point (x_mm, y_mm) of the image."""
    scene = view.view_box.mapViewToScene(QPointF(x_mm, y_mm))
    return view.graphics.mapFromScene(scene)


def _mouse(view: SliceView, kind: QEvent.Type, pos: QPoint, button, buttons) -> None:
    viewport = view.graphics.viewport()
    event = QMouseEvent(
        kind,
        QPointF(pos),
        QPointF(viewport.mapToGlobal(pos)),
        button,
        buttons,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(viewport, event)


def _wheel(view: SliceView, delta: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = view.graphics.viewport()
    pos = QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(
        pos,
        QPointF(viewport.mapToGlobal(pos.toPoint())),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)


def test_pixels_have_their_size_in_mm(view: SliceView) -> None:
    image = _ramp(40, 30)
    view.set_image(image, spacing_mm=(2.0, 0.5), modality="CT")
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((15.0, 80.0))  # 30 x 0.5, 40 x 2
    assert view.extent_mm() == (80.0, 15.0)
    # square screen pixels per mm: 10 mm across is as long as 10 mm down
    a = view.view_box.mapViewToScene(QPointF(0, 0))
    b = view.view_box.mapViewToScene(QPointF(10, 10))
    assert abs(b.x() - a.x()) == pytest.approx(abs(b.y() - a.y()), rel=1e-3)
    assert b.y() > a.y()  # row 0 at the top
    assert view.pixel_at(0.74, 3.9) == (1, 1)


def test_window_changes_the_levels_not_the_data(view: SliceView) -> None:
    image = _ramp()
    before = image.copy()
    view.set_image(image, (1.0, 1.0), "CT")
    view.set_window(40, 400)
    assert view.window() == (40, 400)
    assert tuple(view.image_item.getLevels()) == pytest.approx((-160, 240))
    view.set_window(480, 2500)
    assert tuple(view.image_item.getLevels()) == pytest.approx((-770, 1730))
    assert view.image is image
    np.testing.assert_array_equal(image, before)


def test_probe_reports_value_and_position_in_mm(view: SliceView, qtbot) -> None:
    image = _ramp(40, 30)
    view.set_image(image, spacing_mm=(2.0, 0.5), modality="CT")
    qtbot.wait(10)
    pos = _widget_pos(view, 7.3, 21.0)  # column 14, row 10
    with qtbot.waitSignal(view.probed, timeout=2000) as blocker:
        _mouse(view, QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    x_mm, y_mm, value = blocker.args
    assert x_mm == pytest.approx(7.3, abs=0.5) and y_mm == pytest.approx(21.0, abs=0.5)
    row, col = view.pixel_at(x_mm, y_mm)
    assert value == image[row, col] and (row, col) == (10, 14)
    assert "mm" in view.probe_text() and view.probe_text().endswith(f"{value:.0f} HU")
    assert math.isnan(view.value_at(-1.0, 5.0))  # outside the image


def test_orientation_labels_for_an_lps_slice(view: SliceView) -> None:
    view.set_image(_ramp(), (1.0, 1.0), "CT")
    view.set_orientation(np.eye(3))  # canonical LPS: x to the patient's left, y posterior
    assert view.orientation_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    view.set_orientation(np.diag([-1.0, -1.0, 1.0]))  # an RAS-stored slice, not reoriented
    assert view.orientation_labels()["left"] == "L" and view.orientation_labels()["top"] == "P"


def test_right_drag_windows_and_emits_the_new_window(view: SliceView, qtbot) -> None:
    view.set_image(_ramp(), (1.0, 1.0), "CT")
    view.set_window(40, 400)
    qtbot.wait(10)
    right, none = Qt.MouseButton.RightButton, Qt.MouseButton.NoButton
    start = QPoint(200, 200)
    received = []
    view.windowDragged.connect(lambda lv, wd: received.append((lv, wd)))
    _mouse(view, QEvent.Type.MouseButtonPress, start, right, right)
    for k in range(1, 6):  # right and up: wider and higher
        _mouse(view, QEvent.Type.MouseMove, start + QPoint(8 * k, -4 * k), none, right)
    _mouse(view, QEvent.Type.MouseButtonRelease, start + QPoint(40, -20), right, none)
    assert received, "a right-drag emits windowDragged"
    level, width = received[-1]
    assert width > 400 and level > 40
    assert view.window() == pytest.approx((level, width))
    assert view.image is not None and view.view_box.viewRange()[0][0] <= 0  # no zoom


def test_wheel_and_keys_step_slices_ctrl_wheel_zooms(view: SliceView, qtbot) -> None:
    view.set_image(_ramp(), (1.0, 1.0), "CT")
    steps = []
    view.sliceStep.connect(steps.append)
    _wheel(view, 120)
    _wheel(view, -240)
    qtbot.keyClick(view.graphics, Qt.Key.Key_PageUp)
    qtbot.keyClick(view.graphics, Qt.Key.Key_Down)
    assert steps == [1, -1, -1, 1, -1]
    width_before = np.diff(view.view_box.viewRange()[0])[0]
    _wheel(view, 120, Qt.KeyboardModifier.ControlModifier)
    assert np.diff(view.view_box.viewRange()[0])[0] < width_before  # zoomed in
    assert steps == [1, -1, -1, 1, -1]  # and no slice step


@pytest.fixture
def comparison(qtbot) -> ComparisonView:
    c = ComparisonView()
    qtbot.addWidget(c)
    c.resize(900, 700)
    c.show()
    qtbot.waitExposed(c)
    return c


def _result(image: np.ndarray, truth: np.ndarray) -> RenderResult:
    return RenderResult(
        image_native=image,
        image_unit=image / 1000.0,
        modality="CT",
        metrics={"mae_hu": 12.5, "mae_hu_body": 20.0},
        difference=image - truth,
        render_ms=7.0,
        stamp=3,
    )


def test_comparison_links_zoom_and_pan(comparison: ComparisonView, qtbot) -> None:
    image = _ramp(64, 64)
    comparison.show_source(image, (1.0, 1.0), "CT")
    comparison.show_result(_result(image + 5, image), image, "source slice")
    qtbot.wait(20)
    comparison.generated.view_box.setRange(QRectF(10, 20, 16, 16), padding=0)
    for view in comparison.views:
        (x0, x1), (y0, y1) = view.view_box.viewRange()
        assert (x0 + x1) / 2 == pytest.approx(18, abs=0.2)
        assert (y0 + y1) / 2 == pytest.approx(28, abs=0.2)
        assert min(x1 - x0, y1 - y0) == pytest.approx(16, rel=0.05)
    # the crosshair follows the cursor into every view, each reading its own value
    comparison.source.probe_at(30.5, 40.5)
    assert comparison.truth.probe_lines()[1] == f"{image[40, 30]:.0f} HU"
    assert comparison.difference.probe_lines()[1] == "+5 HU"


def test_comparison_shows_a_render_result(comparison: ComparisonView) -> None:
    truth = _ramp(32, 32) / 10.0
    generated = truth + np.linspace(-50, 50, 32, dtype=np.float32)[None, :]
    result = _result(generated, truth)
    comparison.show_source(truth, (1.5, 1.5), "CT")
    comparison.show_result(result, truth, "source slice")
    assert comparison.generated.image is result.image_native
    assert comparison.truth.image is truth
    assert comparison.difference.image is result.difference
    assert comparison.generated.pixel_size_mm == (1.5, 1.5)
    low, high = comparison.difference.levels()
    assert high == -low > 0  # symmetric, diverging
    assert "MAE 12.5 HU" in comparison.difference._subtitle
    # a window set once reaches every grey view, without touching the images
    comparison.set_window(480, 2500)
    for view in (comparison.source, comparison.generated, comparison.truth):
        assert view.window() == (480, 2500)
    assert comparison.generated.image is result.image_native


def test_dragging_one_view_windows_all_grey_views(comparison: ComparisonView, qtbot) -> None:
    image = _ramp(32, 32)
    comparison.show_source(image, (1.0, 1.0), "CT")
    comparison.show_result(_result(image, image), image, "source slice")
    with qtbot.waitSignal(comparison.windowChanged) as blocker:
        comparison.truth.windowDragged.emit(100.0, 300.0)
    assert blocker.args == [100.0, 300.0]
    assert comparison.source.window() == (100.0, 300.0)
    assert comparison.generated.window() == (100.0, 300.0)
    # the difference map follows half the width (150), rounded up to a legend-friendly 200
    assert comparison.difference.levels() == (-200.0, 200.0)


def test_a_failed_render_says_why(comparison: ComparisonView) -> None:
    failed = RenderResult(image_native=None, image_unit=None, modality=None, error="bad latent")
    comparison.show_result(failed)
    assert comparison.generated.image is None
    assert "bad latent" in comparison.generated._message


def test_the_window_label_drops_below_a_long_title() -> None:
    from medstyle_gui.gui.views.overlay import window_label_row

    assert window_label_row((200, 80), 150, 600, 6) == 0  # room beside the title
    assert window_label_row((300, 80), 150, 420, 6) == 1  # beside the subtitle
    assert window_label_row((300, 300), 150, 420, 6) == 2  # below both


def test_the_top_letter_keeps_clear_of_a_dropped_window_label() -> None:
    from medstyle_gui.gui.views.overlay import top_letter_row

    assert top_letter_row((100, 0), [150, 0, 0], 600, 6) == 0  # free between title and label
    # a long title pushes the label to line 1 of a narrow view: the letter goes below both
    assert top_letter_row((300, 0), [0, 150, 0], 300, 6) == 2
    assert top_letter_row((300, 0), [0, 150, 0], 500, 6) == 1  # in a wide one, beside it
    assert top_letter_row((300, 0), [150, 0, 0], 600, 6) == 1  # line 1 is empty


def test_an_image_wholly_outside_the_window_says_so(view: SliceView) -> None:
    """A generated CT of air only is black at a soft-tissue window: the view says why."""
    air = np.full((8, 8), -900.0, np.float32)
    air[0, 0] = -458.0
    view.set_image(air, (1.0, 1.0), "CT")
    view.set_window(40, 400)
    assert view.window_clip_note() == "all below the window (max -458 HU)"
    view.set_window(-700, 1500)  # a lung window shows it
    assert view.window_clip_note() == ""
    view.set_image(np.full((8, 8), 3000.0, np.float32), (1.0, 1.0), "CT")
    view.set_window(40, 400)
    assert view.window_clip_note() == "all above the window (min 3000 HU)"
    view.grab()  # the overlay paints the note
