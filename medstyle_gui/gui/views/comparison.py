"""The central comparison: source | generated | ground truth | difference.

Four :class:`SliceView` s share zoom and pan (the region each shows) and a crosshair:
the cursor over any view puts the crosshair, and each view's value readout, at the
same point in all four, so a radiologist can read the source, the generated and the
true value of one voxel at a glance. Window/level is a display setting kept per
modality (a CT source rendered as MR must not be shown in a HU window): dragging or
choosing a window applies it at once to every grey view of that modality, without a
re-render. The difference map (generated - truth, native units) uses a diverging
map on a symmetric range that follows half the generated image's window width, so
a difference that would span half the grey ramp is full colour.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGridLayout, QWidget

from medstyle_gui.core import windowing as wl
from medstyle_gui.gui.views.slice_view import BACKGROUND, CONTROLS_HELP, SliceView

#: The four panes in reading order.
PANES = ("source", "generated", "truth", "difference")

#: Width / height above which the four panes sit in one row instead of a 2 x 2 grid.
ROW_ASPECT = 2.4


class ComparisonView(QWidget):
    """Source, generated, ground truth and difference, linked.

    Signals:
        windowChanged(level, width): the user dragged the window of the source's
            modality (native units); connect it to ``AppState.set_window``.
        sliceStep(step): a view asks for the next slice (+1 superior, -1 inferior).
        probed(x_mm, y_mm): the crosshair moved to (x_mm, y_mm) of the image.
    """

    windowChanged = Signal(float, float)
    sliceStep = Signal(int)
    probed = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = SliceView("Source")
        self.generated = SliceView("Generated")
        self.truth = SliceView("Ground truth")
        self.difference = SliceView("Difference")
        self.difference.setToolTip(
            "Generated \u2212 ground truth, native units: red brighter, blue darker "
            "than the truth.\nThe range follows half the window width; right-drag "
            "left/right to change it.\n\n" + CONTROLS_HELP
        )
        self.views = [self.source, self.generated, self.truth, self.difference]
        self.difference.set_diverging(True)
        self.generated.clear("Nothing rendered yet")
        self.truth.clear("No ground truth")
        self.difference.clear("No ground truth")
        self._windows: dict[str, tuple[float, float]] = {}  # modality -> (level, width)
        self._source_modality: str | None = None
        self._spacing = (1.0, 1.0)
        self._difference_half: float | None = None  # fixed by a drag on the difference
        self._layout_mode = "auto"

        # black between the panes, as on a reading station
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(BACKGROUND))
        self.setPalette(palette)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(3)
        self._place("grid")
        self._syncing = False
        self._sizes: dict[int, tuple[float, float]] = {}
        for view in self.views:
            vb = view.view_box
            vb.sigRangeChanged.connect(lambda *_, v=vb: self._on_range_changed(v))
            view.probed.connect(self._on_probed)
            view.sliceStep.connect(self.sliceStep)
        for view in (self.source, self.generated, self.truth):
            view.windowDragged.connect(lambda lv, wd, v=view: self._on_window_drag(v, lv, wd))
        self.difference.windowDragged.connect(self._on_difference_drag)

    # -- content ---------------------------------------------------------------------

    def show_source(
        self,
        image: np.ndarray | None,
        spacing_mm: tuple[float, float] = (1.0, 1.0),
        modality: str | None = None,
        direction: np.ndarray | None = None,
        title: str = "",
        origin_lps_mm: np.ndarray | None = None,
    ) -> None:
        """Show the source slice (native units, pixels of ``spacing_mm`` (row, column)
        in mm); ``direction`` sets the orientation letters (None: canonical LPS) and
        ``origin_lps_mm`` (pixel (0, 0)'s centre) lets the readouts give patient
        positions. Every view shares the geometry: renders are on the source's grid."""
        self._source_modality = modality
        self._spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
        for view in self.views:
            view.set_orientation(direction, origin_lps_mm)
        self.source.set_title(title or _title("Source", modality))
        if image is None:
            self.source.clear("Open a scan (File > Open scan)")
            return
        self._ensure_window(modality, image)
        self.source.set_image(image, self._spacing, modality)
        self.source.set_window(*self._windows[modality or ""])

    def show_result(
        self,
        result,
        truth: np.ndarray | None = None,
        truth_label: str = "",
        truth_modality: str | None = None,
    ) -> None:
        """Show a :class:`~medstyle_gui.core.render.RenderResult`: its image, the truth
        it was scored against (native units, same modality unless ``truth_modality``)
        and the difference map, with the metrics in the difference's subtitle."""
        if result is None:
            self.generated.clear("Nothing rendered yet")
            return
        modality = result.modality
        if result.image_native is None:
            self.generated.set_title("Generated")
            self.generated.clear(f"Render failed: {result.error or 'no image'}")
            self.difference.clear("No image")
            return
        image = result.image_native
        self._ensure_window(modality, image)
        self.generated.set_image(image, self._spacing, modality)
        self.generated.set_window(*self._windows[modality or ""])
        subtitle = f"{result.render_ms:.0f} ms" if result.render_ms else ""
        self.generated.set_title(_title("Generated", modality), subtitle)
        self.generated.set_message(f"\u26a0 {result.error}" if result.error else "")

        truth_modality = truth_modality or modality
        self.truth.set_title(_title("Ground truth", truth_modality), truth_label)
        if truth is None:
            self.truth.clear("No ground truth")
        else:
            self._ensure_window(truth_modality, truth)
            self.truth.set_image(truth, self._spacing, truth_modality)
            self.truth.set_window(*self._windows[truth_modality or ""])

        difference = result.difference
        if difference is None and truth is not None and truth.shape == image.shape:
            difference = image - truth
        self.difference.set_title("Generated \u2212 truth", _metrics(result))
        if difference is None:
            self.difference.clear("No ground truth")
            return
        self.difference.set_image(difference, self._spacing, modality)
        self._update_difference_range()

    def clear_result(self, message: str = "Nothing rendered yet") -> None:
        self.generated.clear(message)
        self.truth.clear("No ground truth")
        self.difference.clear("No ground truth")

    def attach(self, state) -> None:
        """Follow an :class:`~medstyle_gui.gui.state.AppState`: its scan and slice, its
        renders and its window; wheel/keys step its slice and a drag sets its window."""
        self._state = state

        def source_changed(*_: object) -> None:
            slot, index = state.explore.source, state.explore.index
            if slot is None:
                self.show_source(None)
                self.clear_result("Open a scan, or sample a seed")
                return
            volume = slot.volume
            z = float(volume.slice_positions_mm[index])
            self.show_source(
                slot.native(index),
                volume.spacing_mm[1:],
                slot.modality,
                volume.direction,
                origin_lps_mm=volume.slice_origins_lps_mm[index],
            )
            self.source.set_title(
                _title("Source", slot.modality),
                f"slice {index} / {slot.num_slices - 1}   z {z:.1f} mm",
            )

        def window_changed() -> None:
            if state.explore.window is not None:
                self.set_window(*state.explore.window)

        def rendered(result) -> None:
            self.show_result(result, state.truth, state.truth_label)

        def step(delta: int) -> None:
            state.set_slice(state.explore.index + delta)

        state.scanChanged.connect(source_changed)
        state.sliceChanged.connect(source_changed)
        state.windowChanged.connect(window_changed)
        state.rendered.connect(rendered)
        self.sliceStep.connect(step)
        self.windowChanged.connect(state.set_window)
        source_changed()
        window_changed()

    # -- window ------------------------------------------------------------------------

    def set_window(self, level: float, width: float, modality: str | None = None) -> None:
        """Window (native units) of ``modality`` (default: the source's) on every grey
        view showing that modality; no re-render."""
        modality = modality if modality is not None else self._source_modality
        key = modality or ""
        self._windows[key] = (float(level), max(float(width), wl.MIN_WIDTH))
        for view in (self.source, self.generated, self.truth):
            if view.image is not None and (view.modality or "") == key:
                view.set_window(*self._windows[key])
        self._update_difference_range()

    def window(self, modality: str | None = None) -> tuple[float, float] | None:
        """``(level, width)`` of ``modality`` (default: the source's), None if unset."""
        key = (modality if modality is not None else self._source_modality) or ""
        return self._windows.get(key)

    def set_difference_range(self, half_range: float | None) -> None:
        """Fix the difference map to ``[-half_range, +half_range]`` (native units), or
        None to follow half the generated image's window width."""
        self._difference_half = None if half_range is None else float(half_range)
        self._update_difference_range()

    # -- layout and view -----------------------------------------------------------------

    def set_layout(self, mode: str) -> None:
        """``"row"`` (1 x 4), ``"grid"`` (2 x 2) or ``"auto"`` (row when wide)."""
        if mode not in ("row", "grid", "auto"):
            raise ValueError(f"layout {mode!r}: use row, grid or auto")
        self._layout_mode = mode
        self._place(self._wanted_layout())

    def fit(self) -> None:
        """Fit the image in every view (they are linked)."""
        self.source.fit() if self.source.image is not None else self.generated.fit()

    def set_crosshair(self, x_mm: float, y_mm: float) -> None:
        for view in self.views:
            view.set_crosshair(x_mm, y_mm)

    # -- internals -----------------------------------------------------------------------

    def _ensure_window(self, modality: str | None, image: np.ndarray) -> None:
        key = modality or ""
        if key not in self._windows:
            self._windows[key] = wl.default_window(image, modality)

    def _on_window_drag(self, view: SliceView, level: float, width: float) -> None:
        self.set_window(level, width, view.modality)
        if (view.modality or "") == (self._source_modality or ""):
            self.windowChanged.emit(level, width)

    def _on_difference_drag(self, _level: float, width: float) -> None:
        self._difference_half = width / 2.0

    def _update_difference_range(self) -> None:
        half = self._difference_half
        if half is None:
            window = self._windows.get(self.generated.modality or "")
            half = window[1] / 2.0 if window else 100.0
        half = wl.nice_ceil(half) if self._difference_half is None else half
        self.difference.set_window(0.0, 2.0 * half)

    def _on_range_changed(self, vb) -> None:
        """Show the region that ``vb`` aims at in every other view.

        Each ViewBox keeps a target region (what it was asked to show) and, locked to
        square pixels, shows at least that region at its own aspect ratio. Passing the
        target, never the aspect-padded range, keeps the views lined up through
        re-layouts; pyqtgraph's setXLink/setYLink copy the padded range instead, and
        between aspect-locked views of different shapes that widens without end. A
        change that comes from the view's own resize is not passed on: every view
        already refits the same target.
        """
        size = (vb.width(), vb.height())
        resized = self._sizes.get(id(vb)) != size
        self._sizes[id(vb)] = size
        if self._syncing or resized:
            return
        target = vb.targetRect()
        self._syncing = True
        try:
            for view in self.views:
                if view.view_box is not vb:
                    view.view_box.setRange(rect=target, padding=0)
        finally:
            self._syncing = False

    def _on_probed(self, x_mm: float, y_mm: float, _value: float) -> None:
        self.set_crosshair(x_mm, y_mm)
        self.probed.emit(x_mm, y_mm)

    def _wanted_layout(self) -> str:
        if self._layout_mode != "auto":
            return self._layout_mode
        h = max(self.height(), 1)
        return "row" if self.width() / h > ROW_ASPECT else "grid"

    def _place(self, mode: str) -> None:
        self._placed = mode
        for i, view in enumerate(self.views):
            self._grid.removeWidget(view)
            row, col = (0, i) if mode == "row" else divmod(i, 2)
            self._grid.addWidget(view, row, col)
        for i in range(4):
            self._grid.setColumnStretch(i, 1 if (mode == "row" or i < 2) else 0)
            self._grid.setRowStretch(i, 1 if (mode == "grid" and i < 2) or i == 0 else 0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        wanted = self._wanted_layout()
        if wanted != self._placed:
            self._place(wanted)


def _title(what: str, modality: str | None) -> str:
    return f"{what} \u00b7 {modality}" if modality else what


def _metrics(result) -> str:
    """``MAE 73.6 HU (body 80.1)`` or ``RMSE 0.350 (body 0.41)`` from a result."""
    m = getattr(result, "metrics", None) or {}
    if "mae_hu" in m:
        body = m.get("mae_hu_body", math.nan)
        extra = "" if math.isnan(body) else f" (body {body:.1f})"
        return f"MAE {m['mae_hu']:.1f} HU{extra}"
    if "rmse" in m:
        body = m.get("rmse_body", math.nan)
        extra = "" if math.isnan(body) else f" (body {body:.3f})"
        return f"RMSE {m['rmse']:.3f}{extra}"
    return ""
