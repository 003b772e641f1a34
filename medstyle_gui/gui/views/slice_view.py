"""One slice on screen, read like a PACS viewer.

A pyqtgraph ImageItem in a ViewBox whose coordinates are millimetres (the image's
rectangle is its pixel count times its pixel size, so pixels are shown at their true
size and shape), y pointing down. The data are never changed for display: a window
is only the ImageItem's levels. Drawn over the image: a title, the window, the
orientation letters at the edges, a scale bar in cm, the value under the cursor
with its position in mm, a crosshair that other views can drive, and for the
difference map a colour legend in native units.

Mouse and keys (also in the tooltip): wheel, Up/Down and PageUp/PageDown step one
slice (up: superior); Ctrl+wheel zooms; left-drag pans; right-drag windows
(vertical: level, horizontal: width); double-click or Home fits the image.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QVBoxLayout, QWidget

from medstyle_gui.core import windowing as wl
from medstyle_gui.gui.views.overlay import DIVERGING_MAP, SliceOverlay

#: Tooltip shared by every slice view: the one mouse and key scheme.
CONTROLS_HELP = (
    "Wheel, Up/Down or PageUp/PageDown: next slice up (superior) or down (inferior)\n"
    "Ctrl+wheel: zoom    Left-drag: pan    Double-click or Home: fit\n"
    "Right-drag: window (up/down: level, left/right: width)"
)

BACKGROUND = "#000000"
CROSSHAIR = (255, 210, 80, 140)
WHEEL_STEP = 120  # one notch of a mouse wheel, in Qt's eighths of a degree


class _SliceViewBox(pg.ViewBox):
    """A ViewBox that pans with the left button, windows with the right, zooms with
    Ctrl+wheel and turns the plain wheel into slice steps."""

    windowDrag = Signal(float, float, bool, bool)  # dx, dy px since press; start; finish
    wheelStep = Signal(int)
    doubleClicked = Signal()

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._wheel = 0

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos(Qt.MouseButton.RightButton)
            self.windowDrag.emit(delta.x(), delta.y(), ev.isStart(), ev.isFinish())
        else:
            super().mouseDragEvent(ev, axis)

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        ev.accept()
        # touchpads send small deltas: add them up to whole notches
        self._wheel += ev.delta()
        while abs(self._wheel) >= WHEEL_STEP:
            step = 1 if self._wheel > 0 else -1
            self._wheel -= step * WHEEL_STEP
            self.wheelStep.emit(step)

    def mouseClickEvent(self, ev) -> None:
        if ev.double() and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.doubleClicked.emit()
        else:
            super().mouseClickEvent(ev)


class SliceView(QWidget):
    """A 2-D slice in native units with window/level, probe, orientation and scale bar.

    Signals:
        windowDragged(level, width): a right-drag changed the window (native units).
        probed(x_mm, y_mm, value): the cursor is over (x_mm, y_mm), measured from the
            image's top-left corner; value in native units (NaN outside the image).
        sliceStep(step): the wheel or a key asks for the next slice, +1 superior,
            -1 inferior.
    """

    windowDragged = Signal(float, float)
    probed = Signal(float, float, float)
    sliceStep = Signal(int)

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: np.ndarray | None = None
        self._range: tuple[float, float] | None = None  # (min, max) of the finite pixels
        self._spacing = (1.0, 1.0)  # (row, column) pixel size in mm
        self._modality: str | None = None
        self._window = (0.5, 1.0)
        self._diverging = False
        self._title, self._subtitle, self._message = title, "", "No image"
        self._labels = wl.orientation_labels()
        self._direction = np.eye(3)
        self._origin: np.ndarray | None = None  # LPS mm of pixel (0, 0)'s centre
        self._probe: tuple[float, float] | None = None
        self._drag_start: tuple[float, float] | None = None
        self._units_override: str | None = None

        self.graphics = pg.GraphicsView(background=BACKGROUND)
        self.graphics.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.graphics.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.view_box = _SliceViewBox()
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        pen = pg.mkPen(CROSSHAIR, width=1, style=Qt.PenStyle.DashLine)
        self._cross = [pg.InfiniteLine(angle=a, movable=False, pen=pen) for a in (90, 0)]
        for line in self._cross:
            line.hide()
            self.view_box.addItem(line, ignoreBounds=True)
        self._grey = pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)])
        self.image_item.setColorMap(self._grey)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self._overlay = SliceOverlay(self)
        self.setToolTip(CONTROLS_HELP)
        self.setFocusProxy(self.graphics)
        self.setMinimumSize(120, 120)

        self.view_box.windowDrag.connect(self._on_window_drag)
        self.view_box.wheelStep.connect(self.sliceStep)
        self.view_box.doubleClicked.connect(self.fit)
        self.view_box.sigRangeChanged.connect(self._overlay.update)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.installEventFilter(self)

    # -- content ---------------------------------------------------------------------

    def set_image(
        self,
        image: np.ndarray | None,
        spacing_mm: tuple[float, float] = (1.0, 1.0),
        modality: str | None = None,
    ) -> None:
        """Show ``image [rows, columns]`` in native units with pixels of ``spacing_mm``
        ``(row, column)`` in mm. The zoom and pan stay unless the image's extent in mm
        changed (then it is fitted). ``None`` clears the view."""
        if image is None:
            self.clear()
            return
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"SliceView shows 2-D slices, got shape {image.shape}")
        old_extent = self.extent_mm()
        self._image = image
        # once per image: the overlay asks on every paint (the probe repaints as the mouse moves)
        finite = image[np.isfinite(image)] if image.size else image
        self._range = (float(finite.min()), float(finite.max())) if finite.size else None
        self._spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        self._modality = modality
        self._message = ""
        self.image_item.setImage(image, autoLevels=False, levels=self.levels())
        rows, cols = image.shape
        self.image_item.setRect(QRectF(0, 0, cols * self._spacing[1], rows * self._spacing[0]))
        self.image_item.show()
        if old_extent is None or not np.allclose(old_extent, self.extent_mm()):
            self.fit()
        if self._probe is not None:
            self.set_crosshair(*self._probe)
        self._overlay.update()

    def clear(self, message: str = "No image") -> None:
        """Remove the image and show ``message`` in the middle of the view."""
        self._image = None
        self.image_item.hide()
        self._message = message
        self._overlay.update()

    def set_message(self, message: str) -> None:
        """A line shown over the middle of the view (empty: none)."""
        self._message = message
        self._overlay.update()

    def set_title(self, title: str, subtitle: str = "") -> None:
        self._title, self._subtitle = title, subtitle
        self._overlay.update()

    def set_orientation(
        self, direction: np.ndarray | None = None, origin_lps_mm: np.ndarray | None = None
    ) -> None:
        """Edge letters from the volume's direction cosines (None: canonical LPS); with
        ``origin_lps_mm`` (the patient position of pixel (0, 0)'s centre) the readout
        gives the patient position (R/L, A/P, I/S) instead of mm from the corner."""
        self._labels = wl.orientation_labels(direction)
        self._direction = np.eye(3) if direction is None else np.asarray(direction, float)
        self._origin = None if origin_lps_mm is None else np.asarray(origin_lps_mm, float)
        self._overlay.update()

    def set_units(self, units: str | None) -> None:
        """Units shown with values (default: from the modality)."""
        self._units_override = units
        self._overlay.update()

    # -- window ----------------------------------------------------------------------

    def set_window(self, level: float, width: float) -> None:
        """Show ``level - width/2`` black and ``level + width/2`` white (for the diverging
        map the range is ``[-width/2, width/2]``); the data are not touched."""
        level = 0.0 if self._diverging else float(level)
        self._window = (level, max(float(width), wl.MIN_WIDTH))
        self.image_item.setLevels(self.levels())
        self._overlay.update()

    def set_diverging(self, on: bool = True) -> None:
        """Use a diverging colour map on a symmetric range (difference maps)."""
        self._diverging = bool(on)
        cmap = pg.colormap.get(DIVERGING_MAP) if on else self._grey
        self.image_item.setColorMap(cmap)
        self.set_window(0.0, self._window[1])

    # -- geometry and probing ---------------------------------------------------------

    def fit(self) -> None:
        """Zoom so the whole image fits the view."""
        extent = self.extent_mm()
        if extent is not None:
            self.view_box.setRange(QRectF(0, 0, extent[1], extent[0]), padding=0.0)

    def set_crosshair(self, x_mm: float, y_mm: float) -> None:
        """Put the crosshair (and the value readout) at ``(x_mm, y_mm)``."""
        self._probe = (float(x_mm), float(y_mm))
        self._cross[0].setValue(x_mm)
        self._cross[1].setValue(y_mm)
        for line in self._cross:
            line.setVisible(self._image is not None)
        self._overlay.update()

    def probe_at(self, x_mm: float, y_mm: float) -> float:
        """Move the crosshair to ``(x_mm, y_mm)``, emit ``probed`` and return the value
        there (NaN outside the image)."""
        self.set_crosshair(x_mm, y_mm)
        value = self.value_at(x_mm, y_mm)
        self.probed.emit(float(x_mm), float(y_mm), value)
        return value

    def value_at(self, x_mm: float, y_mm: float) -> float:
        """The image's value in native units at ``(x_mm, y_mm)``, NaN outside."""
        pixel = self.pixel_at(x_mm, y_mm)
        if pixel is None or self._image is None:
            return math.nan
        return float(self._image[pixel])

    def pixel_at(self, x_mm: float, y_mm: float) -> tuple[int, int] | None:
        """``(row, column)`` of the pixel containing ``(x_mm, y_mm)``, None outside."""
        if self._image is None:
            return None
        row = math.floor(y_mm / self._spacing[0])
        col = math.floor(x_mm / self._spacing[1])
        rows, cols = self._image.shape
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None

    # -- read-only facts ----------------------------------------------------------------

    @property
    def image(self) -> np.ndarray | None:
        """The array shown (the caller's, never modified)."""
        return self._image

    @property
    def pixel_size_mm(self) -> tuple[float, float]:
        """``(row, column)`` pixel size in mm."""
        return self._spacing

    @property
    def modality(self) -> str | None:
        return self._modality

    def extent_mm(self) -> tuple[float, float] | None:
        """``(height, width)`` of the image in mm, None without one."""
        if self._image is None:
            return None
        rows, cols = self._image.shape
        return rows * self._spacing[0], cols * self._spacing[1]

    def window(self) -> tuple[float, float]:
        """``(level, width)`` in native units."""
        return self._window

    def levels(self) -> tuple[float, float]:
        """``(black, white)`` values of the current window."""
        return wl.window_to_range(*self._window)

    def window_clip_note(self) -> str:
        """ "" unless every pixel lies outside the window, where the view is uniformly black
        (or white) and the user should know why: "all below the window (max -458 HU)"."""
        if self._image is None or self._diverging or self._range is None:
            return ""
        black, white = self.levels()
        low, high = self._range
        units = f" {self.units()}".rstrip()
        if high < black:
            return f"all below the window (max {high:.0f}{units})"
        if low > white:
            return f"all above the window (min {low:.0f}{units})"
        return ""

    def orientation_labels(self) -> dict[str, str]:
        """``{"left", "right", "top", "bottom"}`` letters drawn at the edges."""
        return dict(self._labels)

    @property
    def title(self) -> tuple[str, str]:
        """``(title, subtitle)`` drawn at the top left."""
        return self._title, self._subtitle

    @property
    def message(self) -> str:
        """The line over the middle of the view ("" when none)."""
        return self._message

    @property
    def diverging(self) -> bool:
        return self._diverging

    def pixels_per_mm(self) -> float:
        """Screen pixels per mm at the current zoom (0 before the view is laid out)."""
        a = self.view_box.mapViewToScene(QPointF(0.0, 0.0))
        b = self.view_box.mapViewToScene(QPointF(100.0, 0.0))
        if a is None or b is None:
            return 0.0
        return abs(b.x() - a.x()) / 100.0

    def units(self) -> str:
        if self._units_override is not None:
            return self._units_override
        return wl.units_of(self._modality)

    def probe_text(self) -> str:
        """The readout: position in mm and the value under the crosshair, one line."""
        return "   ".join(t for t in self.probe_lines() if t)

    def probe_lines(self) -> tuple[str, str]:
        """``("R 12.3  P 45.6  I 784.5 mm", "40 HU")`` at the crosshair: the patient
        position when the slice's origin is known, else ``"x 12.3  y 45.6 mm"`` from
        the image's corner (empty strings: no crosshair)."""
        if self._probe is None or self._image is None:
            return "", ""
        x, y = self._probe
        value = self.value_at(x, y)
        if self._origin is not None:
            lps = wl.patient_position(self._origin, self._direction, x, y, self._spacing)
            position = wl.patient_position_label(lps)
        else:
            position = f"x {x:.1f}  y {y:.1f} mm"
        if math.isnan(value):
            return position, ""
        sign = "+" if self._diverging else ""
        digits = 0 if abs(value) >= 10 or self._modality == "CT" else 2
        return position, f"{value:{sign}.{digits}f} {self.units()}".rstrip()

    # -- events ------------------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._overlay.setGeometry(self.graphics.geometry())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.graphics and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            up = (Qt.Key.Key_Up, Qt.Key.Key_PageUp)
            down = (Qt.Key.Key_Down, Qt.Key.Key_PageDown)
            if key in up or key in down:
                self.sliceStep.emit(1 if key in up else -1)
                return True
            if key == Qt.Key.Key_Home:
                self.fit()
                return True
        return super().eventFilter(watched, event)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._image is None or not self.view_box.sceneBoundingRect().contains(scene_pos):
            return
        point = self.view_box.mapSceneToView(scene_pos)
        self.probe_at(point.x(), point.y())

    def _on_window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        if self._image is None:
            return
        if start or self._drag_start is None:
            self._drag_start = self._window
        level, width = wl.drag_window(*self._drag_start, dx, dy)
        self.set_window(level, width)
        self.windowDragged.emit(*self._window)
        if finish:
            self._drag_start = None

    # -- painting the overlay ------------------------------------------------------------
