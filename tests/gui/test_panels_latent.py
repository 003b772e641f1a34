"""The latent panel driven as a user would: sliders, tau, reset, random seed, walk."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.core import explore
from tests.gui.conftest import WAIT_MS, wait_render

pytestmark = pytest.mark.gui


@pytest.fixture
def pair_state(qtbot, model_state, gan_data: Path):
    """The tiny model with a paired phantom study open (MR source, CT pair), rendered."""
    state = model_state
    with qtbot.waitSignal(state.scanChanged, timeout=WAIT_MS):
        assert state.open_pair(gan_data.parent / "cohort" / "P0001") is not None
    qtbot.waitUntil(lambda: state.truth is not None, timeout=WAIT_MS)
    return state


def make_panel(qtbot, state):
    from medstyle_gui.gui.panels.latent import LatentPanel

    panel = LatentPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: len(panel.rows) == len(state.model.directions), timeout=WAIT_MS)
    return panel


def test_a_slider_per_direction_with_meaningful_labels(qtbot, pair_state) -> None:
    panel = make_panel(qtbot, pair_state)
    model = pair_state.model
    assert set(panel.rows) == set(model.directions)
    titles = {name: row.title.text() for name, row in panel.rows.items()}
    assert titles["modality"] == "Modality" and titles["slice"] == "Slice position"
    assert titles["modality|slice"] == "Modality (slice kept)"
    assert (panel.rows["modality"].low.text(), panel.rows["modality"].high.text()) == ("MR", "CT")
    # the slice slider reads in mm and names the slice it seeks
    scale = panel.scales["slice"]
    mm_per_slice = 3.0
    wait_render(
        qtbot, pair_state, lambda: panel.set_alpha("slice", 4 * mm_per_slice * scale.units_per_mm)
    )
    text = panel.rows["slice"].value.text()
    assert re.match(r"^\+1[12] mm superior → slice \d+$", text), text
    index = pair_state.explore.index
    assert text.endswith(f"slice {explore.sought_slice(pair_state.explore, model)}")
    assert explore.sought_slice(pair_state.explore, model) == index + 4
    wait_render(
        qtbot, pair_state, lambda: panel.set_alpha("slice", -2 * mm_per_slice * scale.units_per_mm)
    )
    assert "mm inferior" in panel.rows["slice"].value.text()
    # its range spans the scan either way
    assert scale.half_range == pytest.approx(
        abs(scale.units_per_mm) * (pair_state.explore.source.num_slices - 1) * mm_per_slice
    )


def test_each_slider_changes_request_image_and_metrics(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.metrics import MetricsPanel

    panel = make_panel(qtbot, pair_state)
    metrics = MetricsPanel(pair_state)
    qtbot.addWidget(metrics)
    state, model = pair_state, pair_state.model
    before = wait_render(qtbot, state, state.request_render)
    for name, row in panel.rows.items():
        numbers = (metrics.whole.text(), metrics.body.text())
        position = int(0.3 * row.slider.maximum())  # the sought slice stays in the scan
        result = wait_render(qtbot, state, lambda row=row, p=position: row.slider.setValue(p))
        alpha = panel.scales[name].alpha(position)
        assert state.explore.moves[name] == pytest.approx(alpha)
        request = explore.build_request(state.explore, model, 0)
        assert (name, pytest.approx(alpha)) in [(n, a) for n, a in request.moves]
        assert not np.allclose(result.image_unit, before.image_unit), name
        assert (metrics.whole.text(), metrics.body.text()) != numbers, name
        assert metrics.whole.text() != "—"
        before = result
    # the modality slider's value says which class the moved latent reads as
    assert re.search(r"→ (MR|CT) \d+ %", panel.rows["modality"].value.text())


def test_tau_and_reset(qtbot, pair_state) -> None:
    panel = make_panel(qtbot, pair_state)
    state = pair_state
    wait_render(qtbot, state, lambda: panel.tau.setValue(40))
    assert state.explore.tau == pytest.approx(0.4) and panel.tau_value.text() == "0.40"
    for row in panel.rows.values():
        row.slider.setValue(-123)
    assert len(state.explore.moves) == len(panel.rows)
    wait_render(qtbot, state, panel.reset_button.click)
    assert state.explore.moves == {} and state.explore.tau == 1.0
    assert all(row.slider.value() == 0 for row in panel.rows.values())
    assert panel.tau.value() == 100 and "none" in panel.tau_value.text()
    assert panel.rows["slice"].value.text().startswith("0 mm")


def test_random_seed_makes_a_new_image(qtbot, model_state) -> None:
    panel = make_panel(qtbot, model_state)
    assert panel.random_button.isEnabled()  # no scan open: the seed is what is shown
    first = model_state.last_result
    result = wait_render(qtbot, model_state, panel.random_button.click)
    assert model_state.explore.seed == panel.seed.value()
    assert not np.allclose(result.image_unit, first.image_unit)
    panel.seed.setValue(7)
    result7 = wait_render(qtbot, model_state, panel.seed.editingFinished.emit)
    assert model_state.explore.seed == 7
    assert not np.allclose(result7.image_unit, result.image_unit)


def test_walk_swings_the_current_slider(qtbot, model_state) -> None:
    panel = make_panel(qtbot, model_state)
    sex = panel.rows["sex"].slider
    sex.setValue(10)  # touching a slider makes it the current one
    assert panel.current == "sex"
    seen = set()
    sex.valueChanged.connect(seen.add)
    panel.walk_button.click()
    assert panel.walk_timer.isActive() and panel.walk_button.text() == "Stop walk"
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=WAIT_MS)
    assert model_state.explore.moves["sex"] == pytest.approx(panel.scales["sex"].alpha(sex.value()))
    panel.walk_button.click()
    assert not panel.walk_timer.isActive() and panel.walk_button.text() == "Walk"
    # the walk turns round at the ends
    sex.setValue(panel.rows["sex"].slider.maximum() - 5)
    panel.walk(True)
    qtbot.waitUntil(lambda: sex.value() < sex.maximum() - 30, timeout=WAIT_MS)
    panel.walk(False)


def test_sliders_follow_the_state(qtbot, pair_state) -> None:
    panel = make_panel(qtbot, pair_state)
    scale = panel.scales["sex"]
    pair_state.set_move("sex", scale.half_range / 2)
    assert panel.rows["sex"].slider.value() == panel.rows["sex"].slider.maximum() // 2
    pair_state.set_tau(0.25)
    assert panel.tau.value() == 25
