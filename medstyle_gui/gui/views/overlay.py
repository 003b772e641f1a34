"""What a SliceView draws over its image: title, window, orientation letters, value
readout, scale bar and, for a difference map, the colour legend.

Painted with QPainter on a transparent, mouse-transparent widget laid over the
graphics view, so it stays crisp and the same size at any zoom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QWidget

from medstyle_gui.core import windowing as wl

if TYPE_CHECKING:
    from medstyle_gui.gui.views.slice_view import SliceView

TEXT = QColor(225, 225, 225)
DIM_TEXT = QColor(160, 160, 160)
ORIENTATION = QColor(255, 210, 80)
DIVERGING_MAP = "CET-D4"  # blue - black - red (Kovesi): zero is dark, errors glow


class SliceOverlay(QWidget):
    """Transparent layer over a SliceView's image that its annotations are painted on."""

    def __init__(self, view: SliceView) -> None:
        super().__init__(view)
        self._view = view
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        paint_overlay(self._view, painter, self.width(), self.height())
        painter.end()


def paint_overlay(v: SliceView, p: QPainter, w: int, h: int) -> None:
    """Everything drawn over the image of ``v`` on a ``w`` x ``h`` px overlay."""
    font = QFont(v.font())
    font.setPointSizeF(max(7.5, font.pointSizeF()))
    p.setFont(font)
    metrics = p.fontMetrics()
    line = metrics.height()
    pad = 6
    title, subtitle = v.title
    _text(p, pad, pad + metrics.ascent(), title, TEXT, bold=True)
    if subtitle:
        _text(p, pad, pad + metrics.ascent() + line, subtitle, DIM_TEXT)
    if v.message:
        p.setPen(DIM_TEXT)
        p.drawText(QRectF(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, v.message)
    if v.image is None:
        return
    clipped = v.window_clip_note()
    if clipped:
        p.setPen(DIM_TEXT)
        p.drawText(QRectF(0, 0, w, h), Qt.AlignmentFlag.AlignCenter, clipped)
    # the corners' text blocks per line, to keep the top orientation letter clear of them
    bold = QFont(font)
    bold.setBold(True)
    lefts = (QFontMetrics(bold).horizontalAdvance(title), metrics.horizontalAdvance(subtitle))
    rights = [0.0, 0.0, 0.0]  # the window label's width on the line it takes
    if not v.diverging:
        level, width = v.window()
        text = f"W {width:.0f}  L {level:.0f} {v.units()}".rstrip()
        right_block = metrics.horizontalAdvance(text)
        row = window_label_row(lefts, right_block, w, pad)
        rights[row] = right_block
        _text(p, w - pad - right_block, pad + metrics.ascent() + row * line, text)
    # value above position: the value is what the eye looks for
    position, value = v.probe_lines()
    probe_block = max(metrics.horizontalAdvance(position), metrics.horizontalAdvance(value))
    scale_block = 0.2 * w + 30  # the scale bar is at most a fifth of the width
    drops = (
        top_letter_row(lefts, rights, w, pad) * line,
        0 if _centre_free(w, pad, probe_block, scale_block) else 2 * line,
    )
    _paint_orientation(v, p, font, w, h, pad, *drops)
    p.setFont(font)
    _text(p, pad, h - pad - metrics.descent(), position, DIM_TEXT)
    _text(p, pad, h - pad - metrics.descent() - line, value)
    _paint_scale_bar(v, p, w, h, pad)
    if v.diverging:
        _paint_legend(v, p, w, h, pad)


def window_label_row(lefts: tuple[float, float], right: float, w: int, pad: int) -> int:
    """The line (0, 1 or 2) of the top-right window label ``right`` px wide: the first
    whose left text (title, subtitle: ``lefts`` px wide) it clears by 12 px, so in a
    narrow view it drops below the title instead of running into it."""
    for row, left in enumerate(lefts):
        if pad + left + 12 < w - pad - right:
            return row
    return 2


def top_letter_row(
    lefts: tuple[float, float], rights: tuple[float, float, float] | list[float], w: int, pad: int
) -> int:
    """The line (0-3) of the top orientation letter: the first where the text in the
    corners (``lefts``: title, subtitle; ``rights``: the window label's width on the line
    it took, else 0) leaves mid-width free."""
    widths = (*lefts, 0.0)
    return next((r for r in range(3) if _centre_free(w, pad, widths[r], rights[r])), 3)


def _centre_free(w: int, pad: int, left: float, right: float) -> bool:
    """Whether a letter at mid-width clears text blocks ``left`` and ``right`` px wide
    in the corners of a ``w`` px wide view."""
    return (w - 40) / 2 > pad + left and (w + 40) / 2 < w - pad - right


def _paint_orientation(
    v: SliceView,
    p: QPainter,
    font: QFont,
    w: int,
    h: int,
    pad: int,
    top_drop: float = 0.0,
    bottom_lift: float = 0.0,
) -> None:
    """The patient direction at each edge: R / L at mid-height, A / P at mid-width (the
    top letter ``top_drop`` px lower, the bottom one ``bottom_lift`` px higher, where the
    corners' text would cover them)."""
    bold = QFont(font)
    bold.setBold(True)
    p.setFont(bold)
    fm = p.fontMetrics()
    labels = v.orientation_labels()
    left, right, top, bottom = (labels[k] for k in ("left", "right", "top", "bottom"))
    mid_y = h / 2 + fm.ascent() / 2
    _text(p, pad, mid_y, left, ORIENTATION)
    _text(p, w - pad - fm.horizontalAdvance(right), mid_y, right, ORIENTATION)
    _text(p, (w - fm.horizontalAdvance(top)) / 2, pad + fm.ascent() + top_drop, top, ORIENTATION)
    x = (w - fm.horizontalAdvance(bottom)) / 2
    _text(p, x, h - pad - fm.descent() - bottom_lift, bottom, ORIENTATION)


def _paint_scale_bar(v: SliceView, p: QPainter, w: int, h: int, pad: int) -> None:
    """A bar about a fifth of the view wide, 1, 2 or 5 cm (or mm) long."""
    px_per_mm = v.pixels_per_mm()
    if px_per_mm <= 0:
        return
    length_mm = wl.scale_bar_mm(w / px_per_mm)
    length_px = length_mm * px_per_mm
    x1, y = w - pad - 30, h - pad - p.fontMetrics().height() - 4
    x0 = x1 - length_px
    p.setPen(QPen(TEXT, 2))
    p.drawLine(QPointF(x0, y), QPointF(x1, y))
    for x in (x0, x1):
        p.drawLine(QPointF(x, y - 4), QPointF(x, y + 4))
    label = wl.scale_bar_label(length_mm)
    tw = p.fontMetrics().horizontalAdvance(label)
    _text(p, (x0 + x1 - tw) / 2, h - pad - p.fontMetrics().descent(), label)


def _paint_legend(v: SliceView, p: QPainter, w: int, h: int, pad: int) -> None:
    """A vertical colour bar with +r, 0, -r in native units at the right edge."""
    r = v.window()[1] / 2.0
    fm = p.fontMetrics()
    # below the right-hand orientation letter, above the scale bar
    bottom = h - pad - 2 * fm.height() - 10
    bar_h, bar_w = min(140.0, bottom - h / 2 - 2 * fm.height()), 10.0
    if bar_h < 30:
        return
    x, y = w - pad - bar_w, bottom - bar_h
    gradient = QLinearGradient(0, y, 0, y + bar_h)
    cmap = pg.colormap.get(DIVERGING_MAP)
    for t in np.linspace(0.0, 1.0, 9):
        gradient.setColorAt(float(t), cmap.map(1.0 - t, mode="qcolor"))
    p.fillRect(QRectF(x, y, bar_w, bar_h), gradient)
    p.setPen(QPen(DIM_TEXT, 1))
    p.drawRect(QRectF(x, y, bar_w, bar_h))
    for text, ty in ((f"+{r:g}", y), ("0", y + bar_h / 2), (f"\u2212{r:g}", y + bar_h)):
        _text(p, x - 4 - fm.horizontalAdvance(text), ty + fm.ascent() / 2 - 1, text)
    units = v.units()
    if units:
        _text(p, x + bar_w - fm.horizontalAdvance(units), y - fm.descent() - 6, units, DIM_TEXT)


def _text(p: QPainter, x: float, y: float, text: str, colour: QColor = TEXT, bold=False) -> None:
    """Text on a faint dark backdrop with a dark outline, so it reads over bright and
    dark pixels alike without hiding the image under it."""
    if not text:
        return
    p.save()
    if bold:
        font = QFont(p.font())
        font.setBold(True)
        p.setFont(font)
    fm = p.fontMetrics()
    box = QRectF(x - 3, y - fm.ascent() - 1, fm.horizontalAdvance(text) + 6, fm.height() + 2)
    p.fillRect(box, QColor(0, 0, 0, 110))
    p.setPen(QColor(0, 0, 0, 200))
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        p.drawText(QPointF(x + dx, y + dy), text)
    p.setPen(colour)
    p.drawText(QPointF(x, y), text)
    p.restore()
