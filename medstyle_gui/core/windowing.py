"""Display arithmetic for greyscale scans: window/level, presets, drag-to-window,
MR auto windows, symmetric ranges for difference maps, scale bars and orientation
labels. Qt-free, so the CLI and tests can use it; the GUI's views only call it.

A window is ``(level, width)`` in native units (HU for CT, scanner units for MR): the
grey ramp runs from ``level - width / 2`` (black) to ``level + width / 2`` (white).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import ConfigError

#: Narrowest window allowed, in native units (a zero width would divide by zero).
MIN_WIDTH = 1.0

#: Percentiles of the body's values that an automatic (MR) window spans.
AUTO_PERCENTILES = (1.0, 99.5)

#: Window that a CT opens in (soft tissue, the pelvis's usual reading window), in HU.
DEFAULT_CT_PRESET = "soft tissue"

#: Screen pixels of drag that change the window by its own width: a drag across a
#: 400 px view sweeps about two widths, fine enough for brain (80 HU) and fast enough
#: for bone (2500 HU) because the step scales with the width at the start of the drag.
DRAG_PIXELS_PER_WIDTH = 200.0

#: Smallest drag step in native units per pixel (so a 1 HU window can still grow).
MIN_DRAG_STEP = 0.25


@dataclass(frozen=True)
class Window:
    """A grey window in native units."""

    level: float
    width: float

    @property
    def low(self) -> float:
        """Value shown black (``level - width / 2``)."""
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        """Value shown white (``level + width / 2``)."""
        return self.level + self.width / 2.0

    def label(self, units: str = "HU") -> str:
        """``W 400 / L 40 HU``."""
        return f"W {self.width:g} / L {self.level:g} {units}".rstrip()


def window_to_range(level: float, width: float) -> tuple[float, float]:
    """``(low, high)`` shown black and white for a window ``(level, width)``."""
    width = max(float(width), MIN_WIDTH)
    return float(level) - width / 2.0, float(level) + width / 2.0


def range_to_window(low: float, high: float) -> tuple[float, float]:
    """``(level, width)`` of the window that shows ``low`` black and ``high`` white."""
    low, high = float(low), float(high)
    if high < low:
        low, high = high, low
    return (low + high) / 2.0, max(high - low, MIN_WIDTH)


def load_presets(path: str | Path | None = None) -> dict[str, Window]:
    """The window presets, by name in file order (soft tissue, bone, lung, liver, brain).

    Args:
        path: a JSON file ``{"name": {"width": W, "level": L}, ...}``; keys starting
            with ``_`` are comments. Default: ``resources/presets/window_presets.json``.

    Raises:
        ConfigError: the file cannot be read or a preset lacks a numeric width/level.
    """
    if path is None:
        from medstyle_gui import resources_path

        source = resources_path("presets", "window_presets.json")
        name = "window_presets.json"
    else:
        source, name = Path(path), str(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read the window presets ({exc})") from None
    presets: dict[str, Window] = {}
    for key, value in data.items():
        if key.startswith("_"):
            continue
        try:
            level, width = float(value["level"]), float(value["width"])
        except (TypeError, KeyError, ValueError):
            raise ConfigError(f"{name}: preset {key!r} needs a numeric width and level") from None
        if not (math.isfinite(level) and math.isfinite(width)) or width < MIN_WIDTH:
            raise ConfigError(f"{name}: preset {key!r} has width {width}, level {level}")
        presets[key] = Window(level, width)
    return presets


def auto_window(
    image: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES
) -> tuple[float, float]:
    """``(level, width)`` spanning the given percentiles of the image's body values.

    Meant for MR, whose units are arbitrary: the background (air: values within 5 % of
    the range above the minimum, the range measured to the 99th percentile) is left
    out so it does not pull the window down; with too few body pixels every finite
    value counts.
    """
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.5, 1.0
    # the 99th percentile, not the maximum, so one hot pixel does not move the cut
    lo, hi = float(values.min()), float(np.percentile(values, 99.0))
    body = values[values > lo + 0.05 * (hi - lo)]
    if body.size >= max(16, values.size // 100):
        values = body
    low, high = np.percentile(values, percentiles)
    return range_to_window(float(low), float(high))


def default_window(image: np.ndarray, modality: str | None) -> tuple[float, float]:
    """The window a scan opens in: soft tissue for CT, an auto window otherwise."""
    if modality == "CT":
        preset = load_presets()[DEFAULT_CT_PRESET]
        return preset.level, preset.width
    return auto_window(image)


def drag_step(width: float) -> float:
    """Native units per screen pixel of a window drag that starts at ``width``."""
    return max(float(width) / DRAG_PIXELS_PER_WIDTH, MIN_DRAG_STEP)


def drag_window(
    level: float, width: float, dx_px: float, dy_px: float, step: float | None = None
) -> tuple[float, float]:
    """The window after a right-drag of ``(dx_px, dy_px)`` screen pixels from the
    window ``(level, width)`` at the start of the drag.

    Right widens the window, left narrows it (never below :data:`MIN_WIDTH`); up (a
    negative ``dy_px``, screen y grows downwards) raises the level, so the band of
    values shown follows the mouse. ``step`` is native units per pixel (default
    :func:`drag_step` of the starting width).
    """
    step = drag_step(width) if step is None else float(step)
    new_level = float(level) - float(dy_px) * step
    new_width = max(float(width) + float(dx_px) * step, MIN_WIDTH)
    return new_level, new_width


def symmetric_range(difference: np.ndarray, percentile: float = 99.0) -> float:
    """Half-range ``r`` for a diverging map on ``[-r, r]``: the ``percentile`` of
    ``|difference|`` rounded up to a nice number (1, 2 or 5 times a power of ten)."""
    values = np.abs(np.asarray(difference, dtype=np.float64))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    return nice_ceil(float(np.percentile(values, percentile)))


def nice_ceil(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is at least ``value`` (1 for nothing)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for mantissa in (1.0, 2.0, 5.0):
        if mantissa * power >= value * (1 - 1e-9):
            return mantissa * power
    return 10.0 * power


def scale_bar_mm(visible_width_mm: float, fraction: float = 0.2) -> float:
    """Length in mm of a scale bar about ``fraction`` of the visible width: 1, 2 or 5
    times a power of ten, never longer than the fraction asks."""
    target = max(float(visible_width_mm) * fraction, 1e-3)
    power = 10.0 ** math.floor(math.log10(target))
    best = power
    for mantissa in (1.0, 2.0, 5.0):
        if mantissa * power <= target:
            best = mantissa * power
    return best


def scale_bar_label(length_mm: float) -> str:
    """``"5 cm"`` from 10 mm up, else ``"5 mm"`` (or ``"0.5 mm"``)."""
    if length_mm >= 10.0:
        return f"{length_mm / 10.0:g} cm"
    return f"{length_mm:g} mm"


# LPS patient axes: +x left, +y posterior, +z superior.
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def _letter(vector: np.ndarray) -> str:
    """The patient direction a unit LPS vector points to most: one of R L A P I S."""
    axis = int(np.argmax(np.abs(vector)))
    return _AXIS_LETTERS[axis][1 if vector[axis] > 0 else 0]


def orientation_labels(direction: np.ndarray | None = None) -> dict[str, str]:
    """Letters at the edges of a displayed slice: ``{"left", "right", "top", "bottom"}``.

    ``direction`` holds the volume's direction cosines (column 0: where the column
    index x grows, column 1: where the row index y grows, in LPS). Column 0 is drawn
    on the left and row 0 at the top, so for the canonical LPS axial slice the
    labels are R on the left, L on the right, A on top and P at the bottom.
    """
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    x_axis, y_axis = d[:, 0], d[:, 1]
    return {
        "left": _letter(-x_axis),
        "right": _letter(x_axis),
        "top": _letter(-y_axis),
        "bottom": _letter(y_axis),
    }


def patient_position(
    origin_lps_mm: np.ndarray,
    direction: np.ndarray,
    x_mm: float,
    y_mm: float,
    spacing_mm: tuple[float, float],
) -> np.ndarray:
    """LPS patient position (mm) of the point ``(x_mm, y_mm)`` of a displayed slice.

    ``x_mm, y_mm`` are measured from the top-left corner of pixel ``(0, 0)``;
    ``origin_lps_mm`` is the centre of that pixel (DICOM's Image Position), so half a
    pixel ``spacing_mm`` ``(row, column)`` is taken off before stepping along the
    direction cosines' columns 0 (x) and 1 (y).
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    u = float(x_mm) - spacing_mm[1] / 2.0
    v = float(y_mm) - spacing_mm[0] / 2.0
    return np.asarray(origin_lps_mm, dtype=np.float64) + u * d[:, 0] + v * d[:, 1]


def patient_position_label(position_lps_mm: np.ndarray) -> str:
    """``"R 12.3  P 45.6  I 784.5 mm"``: each axis named by the side it lies on (the
    letters 3D Slicer's probe uses), so no one has to remember which sign is left."""
    parts = []
    for value, (negative, positive) in zip(position_lps_mm, _AXIS_LETTERS, strict=True):
        parts.append(f"{positive if value >= 0 else negative} {abs(value):.1f}")
    return "  ".join(parts) + " mm"


def units_of(modality: str | None) -> str:
    """Units of native values: ``"HU"`` for CT, ``"MR units"`` for MR, else ``""``."""
    return {"CT": "HU", "MR": "MR units"}.get(modality or "", "")
