"""The model, embed, mixing and metrics panels driven as a user would, with the real
AppState, render worker and task runner on the tiny model and a paired phantom study."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.core.latent import PRESETS
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


def panel(qtbot, cls, state):
    widget = cls(state)
    qtbot.addWidget(widget)
    widget.resize(480, 560)
    widget.show()
    return widget


# -- model card -----------------------------------------------------------------------------


def test_model_card(qtbot, app_state, tiny_model) -> None:
    from medstyle_gui.gui.panels.model import ModelPanel

    card = panel(qtbot, ModelPanel, app_state)
    assert card.title.text() == "No model open"
    app_state.set_model(tiny_model)
    assert card.fields["Image size"].text() == "32 × 32 pixels"
    assert card.fields["Style layers"].text() == "4: 4x4 … 32x32"
    assert "data.h5" in card.fields["Training data"].text()
    assert card.fields["Trained for"].text().startswith("0.8 kimg")
    assert card.fields["Best metric"].text().startswith("SWD")
    rows = {card.table.item(r, 0).text(): r for r in range(card.table.rowCount())}
    assert set(rows) == set(tiny_model.directions)
    r = rows["modality"]
    assert card.table.item(r, 1).text() == "MR → CT"
    assert card.table.item(r, 2).text() == tiny_model.directions["modality"].kind
    assert card.table.item(r, 3).text().endswith("%")
    assert "slice" in card.table.item(rows["modality|slice"], 0).toolTip()
    assert "3 mm" in card.calibration.text() and "1 cm" in card.calibration.text()


# -- embedding -------------------------------------------------------------------------------


def test_embed_current_slice(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.embed import EmbedPanel

    embed = panel(qtbot, EmbedPanel, pair_state)
    index = pair_state.explore.index
    assert "not refined yet" in embed.summary.text()
    embed.steps.setValue(40)
    assert embed.lr.value() == 0.001  # the paper's rate unless the user picks another
    embed.lr.setValue(0.01)
    with qtbot.waitSignal(pair_state.latentsChanged, timeout=WAIT_MS):
        embed.embed_button.click()
        assert not embed.embed_button.isEnabled() and embed.cancel_button.isEnabled()
    x, y = embed.loss_curve.getData()
    assert len(x) == 41 and y[-1] < y[0]  # the loss falls while refining
    errors = pair_state.explore.embed_errors[index]
    assert set(errors) >= {"encoder", "refined"}
    assert index in pair_state.explore.latents
    text = embed.summary.text()
    assert "encoder only" in text and "refined" in text and f"{errors['refined']:.3f}" in text
    ex, _ = embed.refined_points.getData()
    assert list(ex) == [index]
    assert embed.progress.value() == 1000 and embed.embed_button.isEnabled()
    assert embed.last_result.lr == 0.01 and "lr 0.01" in embed.progress.format()


def test_embed_whole_scan_and_paired_slice(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.embed import EmbedPanel

    embed = panel(qtbot, EmbedPanel, pair_state)
    embed.steps.setValue(3)
    embed.scope.setCurrentIndex(embed.scope.findData("volume"))
    with qtbot.waitSignal(pair_state.latentsChanged, timeout=WAIT_MS):
        embed.start()
    n = pair_state.explore.source.num_slices
    assert sorted(pair_state.explore.embed_errors) == list(range(n))
    embed.scope.setCurrentIndex(embed.scope.findData("paired"))
    with qtbot.waitSignal(pair_state.latentsChanged, timeout=WAIT_MS):
        embed.start()
    assert pair_state.explore.index in pair_state.explore.paired_latents


def test_embed_cancel_and_stale_results(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.embed import EmbedPanel

    embed = panel(qtbot, EmbedPanel, pair_state)
    embed.steps.setValue(5000)
    embed.start()
    qtbot.waitUntil(lambda: len(embed._curve_x) > 2, timeout=WAIT_MS)
    embed.cancel_button.click()
    qtbot.waitUntil(lambda: not embed.job.is_running, timeout=WAIT_MS)
    assert embed.progress.format() == "cancelled"
    assert pair_state.explore.latents == {}
    # a result for a scan that is no longer open is dropped
    embed.steps.setValue(20)
    embed.start()
    pair_state.swap_pair()  # the CT becomes the source: another scan
    qtbot.waitUntil(lambda: not embed.job.is_running, timeout=WAIT_MS)
    qtbot.wait(200)
    assert pair_state.explore.latents == {} and pair_state.explore.paired_latents == {}


# -- mixing ----------------------------------------------------------------------------------


def test_mixing_layers_presets_and_bar_chart(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.mixing import MixingPanel

    mixing = panel(qtbot, MixingPanel, pair_state)
    state = pair_state
    assert list(mixing.boxes) == ["4x4", "8x8", "16x16", "32x32"]
    assert mixing.paired_radio.isChecked() and mixing.paired_radio.isEnabled()
    source = wait_render(qtbot, state, state.request_render)
    mixed = wait_render(qtbot, state, lambda: mixing.boxes["8x8"].setChecked(True))
    assert state.explore.mix_layers == ("8x8",)
    assert not np.allclose(mixed.image_unit, source.image_unit)
    assert "paired CT" in state.truth_label
    # presets tick exactly their layers; "fine" has none in a 32 px model
    wait_render(qtbot, state, mixing.preset_buttons["coarse"].click)
    assert mixing.ticked() == ["4x4", "8x8"] and state.explore.mix_layers == ("4x4", "8x8")
    wait_render(qtbot, state, mixing.preset_buttons["middle"].click)
    assert mixing.ticked() == ["16x16", "32x32"]
    assert PRESETS["fine"][0] == 64 and not mixing.preset_buttons["fine"].isEnabled()
    # none ticked: the source's own image again
    plain = wait_render(qtbot, state, mixing.none_button.click)
    assert state.explore.mix_layers == ()
    np.testing.assert_allclose(plain.image_unit, source.image_unit, atol=1e-5)
    # the error-per-layer bar chart fills in from a background task
    qtbot.waitUntil(lambda: mixing.curve is not None, timeout=WAIT_MS)
    curve = mixing.curve
    assert curve.labels == list(mixing.boxes) and np.isfinite(curve.error).all()
    assert curve.unit == "MAE (HU)" and curve.reference is not None
    heights = mixing.bars.opts["height"]
    np.testing.assert_allclose(heights, curve.error)
    assert "paired CT slice" in mixing.chart_note.text()


def test_mixing_sources(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.mixing import MixingPanel

    mixing = panel(qtbot, MixingPanel, pair_state)
    state = pair_state
    wait_render(qtbot, state, lambda: mixing.boxes["16x16"].setChecked(True))
    mixing.mix_seed.setValue(11)
    assert state.explore.mix_source == "seed" and state.explore.mix_seed == 11
    seeded = wait_render(qtbot, state, state.request_render)
    other = (state.explore.index + 5) % state.explore.source.num_slices
    mixing.slice_radio.click()
    result = wait_render(qtbot, state, lambda: mixing.mix_slice.setValue(other))
    assert state.explore.mix_source == "slice" and state.explore.mix_slice == other
    assert not np.allclose(result.image_unit, seeded.image_unit)
    qtbot.waitUntil(lambda: mixing.curve is not None, timeout=WAIT_MS)
    assert f"slice {other}" in mixing.chart_note.text()
    # a state change while the chart is computed drops the old chart's result
    mixing.paired_radio.click()
    assert mixing.curve is None
    qtbot.waitUntil(lambda: mixing.curve is not None, timeout=WAIT_MS)
    assert "paired CT slice" in mixing.chart_note.text()


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_numbers_truth_and_curve(qtbot, pair_state) -> None:
    from medstyle_gui.gui.panels.metrics import MetricsPanel

    metrics = panel(qtbot, MetricsPanel, pair_state)
    state, model = pair_state, pair_state.model
    result = wait_render(qtbot, state, state.request_render)
    metrics.show_result(result)
    assert metrics.row_label.text() == "RMSE"  # the source is MR
    assert metrics.whole.text() == f"{result.metrics['rmse']:.3f}"
    assert metrics.body.text() == f"{result.metrics['rmse_body']:.3f}"
    assert f"source MR slice {state.explore.index}" in metrics.truth.text()
    # a modality move across to CT: MAE in HU against the paired CT slice
    alpha = 4.0 * (1 if model.directions["modality"].classes[1] == "CT" else -1)
    moved = wait_render(qtbot, state, lambda: state.set_move("modality", alpha))
    assert moved.modality == "CT" and metrics.row_label.text() == "MAE (HU)"
    assert metrics.whole.text() == f"{moved.metrics['mae_hu']:.1f}"
    assert "paired CT slice" in metrics.truth.text()
    # the curve follows the slider moved last and fills in from a background task
    assert metrics.current_direction() == "modality"
    qtbot.waitUntil(lambda: metrics.curve is not None, timeout=WAIT_MS)
    x, y = metrics.whole_curve.getData()
    assert len(x) >= 31 and np.isfinite(y).all()
    qtbot.waitUntil(lambda: metrics.marker.value() == pytest.approx(alpha), timeout=WAIT_MS)
    assert "Fig. 3" in metrics.curve_note.text()
    # moving the same slider moves the marker without recomputing
    curve = metrics.curve
    wait_render(qtbot, state, lambda: state.set_move("modality", alpha / 2))
    qtbot.waitUntil(lambda: metrics.marker.value() == pytest.approx(alpha / 2), timeout=WAIT_MS)
    assert metrics.curve is curve
    # the slice slider: the curve switches to it, in mm
    per_mm = model.directions["slice"].calibration["units_per_mm"]
    wait_render(qtbot, state, lambda: state.set_move("slice", 6 * per_mm))
    assert metrics.current_direction() == "slice"
    qtbot.waitUntil(lambda: metrics.curve is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: metrics.marker.value() == pytest.approx(6.0), timeout=WAIT_MS)
    assert "mm" in metrics.plot.getPlotItem().getAxis("bottom").labelText
    assert "sought slice" in metrics.curve_note.text()


def test_metrics_warn_when_the_model_reads_the_latent_as_the_other_modality(
    qtbot, pair_state
) -> None:
    import torch

    from medstyle_gui.core import explore
    from medstyle_gui.core.generate import alpha_to_class
    from medstyle_gui.core.latent import manipulate
    from medstyle_gui.gui.panels.metrics import MetricsPanel

    metrics = panel(qtbot, MetricsPanel, pair_state)
    state, model = pair_state, pair_state.model
    i, direction = state.explore.index, model.directions["modality"]
    w = torch.as_tensor(explore.current_w(state.explore))[None]  # the encoder's guess
    ct = direction.classes.index("CT")
    alpha = alpha_to_class(direction, w, ct, model.w_mean) + 2.0 * (1 if ct == 1 else -1)
    # a refined latent of this MR slice that the model places among CT slices
    ct_like = manipulate(w, direction, alpha, 1.0, model.w_mean)[0].numpy()
    result = wait_render(qtbot, state, lambda: state.set_latents({i: ct_like}))
    assert result.modality == "MR"  # drawn as the scan's modality all the same
    metrics.show_result(result)
    assert metrics.misread.isVisible()
    assert "reads this latent as CT" in metrics.misread.text()
    assert "its sliders may not mean here" in metrics.misread.text()
    mr_like = manipulate(w, direction, -alpha, 1.0, model.w_mean)[0].numpy()
    metrics.show_result(wait_render(qtbot, state, lambda: state.set_latents({i: mr_like})))
    assert not metrics.misread.isVisible()


def test_a_curve_cut_short_says_why(pair_state) -> None:
    """One MR scan without its CT: past the modality surface there is nothing to score."""
    from medstyle_gui.gui.panels.metrics import missing_truth_note

    model, alone = pair_state.model, pair_state.explore.copy()
    alone.paired = None
    assert alone.source.modality == "MR"
    x = np.linspace(-1.0, 1.0, 5)
    cut = np.array([0.1, 0.2, 0.3, np.nan, np.nan])
    assert missing_truth_note(model, alone, "modality", x, cut) == (
        "Scored at -1 to 0 only: the moved slice reads as CT there, and this study has "
        "no CT to compare."
    )
    gaps = np.array([0.1, np.nan, 0.3, np.nan, 0.5])
    assert missing_truth_note(model, alone, "modality", x, gaps).startswith(
        "Scored at -1, 0 and 1 only:"
    )
    assert missing_truth_note(model, alone, "slice", x, cut).endswith("outside the scan there.")
    assert missing_truth_note(model, alone, "modality", x, np.ones(5)) == ""
    assert missing_truth_note(model, alone, "modality", x, np.full(5, np.nan)) == ""


def test_the_now_dot_marks_only_scored_values() -> None:
    from medstyle_gui.gui.panels.metrics import curve_value_at

    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    y = np.array([0.1, 0.2, 0.3, np.nan, 0.5])
    assert curve_value_at(x, y, -0.75) == pytest.approx(0.15)
    assert curve_value_at(x, y, 0.0) == pytest.approx(0.3)
    assert curve_value_at(x, y, 1.0) == pytest.approx(0.5)
    for gap in (0.25, 0.5, 0.75, -2.0, 2.0):  # next to the NaN, or past the ends
        assert curve_value_at(x, y, gap) is None


def test_latest_job_drops_stale_results(qtbot, app_state) -> None:
    from medstyle_gui.gui.panels._background import LatestJob

    job = LatestJob(lambda: app_state.tasks, "test")
    got, release = [], threading.Event()

    def slow(progress, cancel):
        release.wait(10)
        return "old"

    job.run(slow, got.append)
    job.run(lambda p, c: "new", got.append)  # cancels and supersedes the first
    release.set()
    qtbot.waitUntil(lambda: not app_state.tasks.busy, timeout=WAIT_MS)
    qtbot.wait(50)
    assert got == ["new"]
    job.run(lambda p, c: time.sleep(0.2) or "late", got.append)
    job.invalidate()
    qtbot.waitUntil(lambda: not app_state.tasks.busy, timeout=WAIT_MS)
    qtbot.wait(50)
    assert got == ["new"]
