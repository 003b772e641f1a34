"""Window/level arithmetic: presets, MR auto window, drag-to-window, display helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medstyle_gui.core import windowing as wl
from trainer.errors import ConfigError


def test_presets_load_with_the_five_names_and_values() -> None:
    presets = wl.load_presets()
    assert list(presets) == ["soft tissue", "bone", "lung", "liver", "brain"]
    as_pairs = {name: (w.width, w.level) for name, w in presets.items()}
    assert as_pairs == {
        "soft tissue": (400, 40),
        "bone": (2500, 480),
        "lung": (1500, -600),
        "liver": (150, 90),
        "brain": (80, 40),
    }
    soft = presets["soft tissue"]
    assert (soft.low, soft.high) == (-160, 240)
    assert soft.label() == "W 400 / L 40 HU"


def test_a_bad_presets_file_is_one_clear_error(tmp_path) -> None:
    bad = tmp_path / "presets.json"
    bad.write_text(json.dumps({"bone": {"width": "wide"}}))
    with pytest.raises(ConfigError, match="bone"):
        wl.load_presets(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        wl.load_presets(tmp_path / "missing.json")


def test_level_width_and_range_round_trip() -> None:
    assert wl.window_to_range(40, 400) == (-160, 240)
    assert wl.range_to_window(-160, 240) == (40, 400)
    assert wl.range_to_window(240, -160) == (40, 400)  # either order
    assert wl.range_to_window(5, 5)[1] == wl.MIN_WIDTH  # never a zero width


def test_mr_auto_window_spans_the_body_not_the_air() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64), np.float32)  # air
    image[16:48, 16:48] = rng.uniform(200, 800, size=(32, 32))  # tissue
    image[30, 30] = 5000  # one hot pixel
    level, width = wl.auto_window(image)
    low, high = wl.window_to_range(level, width)
    assert 195 < low < 215 and 785 < high < 801  # 1st..99.5th percentile of the tissue
    # a CT opens in soft tissue, an MR in its auto window
    assert wl.default_window(image, "CT") == (40, 400)
    assert wl.default_window(image, "MR") == (level, width)
    assert wl.auto_window(np.full((4, 4), np.nan)) == (0.5, 1.0)


def test_drag_arithmetic() -> None:
    step = wl.drag_step(400)
    assert step == pytest.approx(400 / wl.DRAG_PIXELS_PER_WIDTH)
    # right widens, up raises the level (screen y grows downwards)
    assert wl.drag_window(40, 400, dx_px=10, dy_px=0) == pytest.approx((40, 400 + 10 * step))
    assert wl.drag_window(40, 400, dx_px=0, dy_px=-10) == pytest.approx((40 + 10 * step, 400))
    # a drag across 200 px changes the width by its own size, whatever the preset
    assert wl.drag_window(40, 80, 200, 0)[1] == pytest.approx(160)
    assert wl.drag_window(480, 2500, 200, 0)[1] == pytest.approx(5000)
    # never narrower than MIN_WIDTH, and a tiny window still moves
    assert wl.drag_window(40, 400, dx_px=-10_000, dy_px=0)[1] == wl.MIN_WIDTH
    assert wl.drag_window(0, 1, 4, 0)[1] > 1


def test_symmetric_range_scale_bar_and_orientation() -> None:
    diff = np.linspace(-130, 130, 1001)
    assert wl.symmetric_range(diff) == 200
    assert wl.symmetric_range(np.zeros(3)) == 1.0
    assert wl.scale_bar_mm(256) == 50  # a fifth of 256 mm is 51: a 5 cm bar
    assert wl.scale_bar_label(50) == "5 cm"
    assert wl.scale_bar_label(2) == "2 mm"
    assert wl.orientation_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    sagittal = np.column_stack([(0, 1, 0), (0, 0, -1), (1, 0, 0)])  # x->P, y->I
    assert wl.orientation_labels(sagittal) == {
        "left": "A",
        "right": "P",
        "top": "S",
        "bottom": "I",
    }
    assert wl.units_of("CT") == "HU" and wl.units_of("MR") == "MR units"


def test_patient_position_of_a_point_on_the_slice() -> None:
    origin = np.array([-250.0, -200.0, -784.5])  # centre of pixel (0, 0), LPS mm
    spacing = (2.0, 0.5)  # (row, column) mm
    # the centre of pixel (row 10, column 4): x = 4.5 * 0.5 mm, y = 10.5 * 2 mm
    lps = wl.patient_position(origin, np.eye(3), 2.25, 21.0, spacing)
    np.testing.assert_allclose(lps, [-248.0, -180.0, -784.5])
    assert wl.patient_position_label(lps) == "R 248.0  A 180.0  I 784.5 mm"
    assert wl.patient_position_label(np.array([1.0, 2.0, 3.0])) == "L 1.0  P 2.0  S 3.0 mm"
