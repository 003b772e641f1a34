"""Error curves of one slice (core.sweeps): against the live renderer's own numbers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medstyle_gui.core import explore, sweeps
from medstyle_gui.core.model import Model, load_model
from medstyle_gui.core.render import Renderer
from trainer.errors import ConfigError


@pytest.fixture(scope="module")
def model(tiny_bundle: Path) -> Model:
    return load_model(tiny_bundle)


@pytest.fixture(scope="module")
def pair(model: Model, gan_data: Path):
    """A paired phantom study (MR source, CT pair) encoded with the tiny model."""
    return explore.load_pair(model, gan_data.parent / "cohort" / "P0001")


@pytest.fixture
def state(pair) -> explore.ExplorerState:
    mr, ct, mr_w, ct_w = pair
    return explore.ExplorerState(
        source=mr,
        paired=ct,
        index=mr.num_slices // 2,
        encoder_latents=dict(mr_w),
        paired_encoder_latents=dict(ct_w),
    )


def test_alpha_grid_passes_through_zero_and_the_slider() -> None:
    grid = sweeps.alpha_grid(-2.0, 2.0, 0.37, n=9)
    assert grid[0] == -2.0 and grid[-1] == 2.0
    assert 0.0 in grid and 0.37 in grid
    assert np.all(np.diff(grid) > 0)
    with pytest.raises(ConfigError):
        sweeps.alpha_grid(1.0, 1.0)


def test_slider_ranges(model: Model) -> None:
    half = sweeps.slider_range(model, "modality")
    assert half > 0 and half == sweeps.slider_range(model, "modality")  # seeded
    per_mm = sweeps.slice_units_per_mm(model)
    mm = sweeps.slice_mm_per_slice(model)
    assert per_mm is not None and mm is not None
    assert sweeps.slider_half_range(model, "slice", 24) == pytest.approx(abs(per_mm) * 23 * mm)
    assert sweeps.slider_half_range(model, "slice") == pytest.approx(
        abs(per_mm) * sweeps.SLICE_HALF_RANGE_MM
    )
    assert sweeps.slider_half_range(model, "sex", 24) == sweeps.slider_range(model, "sex")
    with pytest.raises(ConfigError):
        sweeps.slider_range(model, "no such direction")


def test_modality_curve_is_figure_3_against_the_paired_slice(model, state) -> None:
    alphas = sweeps.alpha_grid(-3.0, 3.0, 0.5, n=7)
    requests = sweeps.alpha_requests(state, model, "modality", alphas)
    paired_truth = state.paired.native(state.index)
    for r in requests:
        np.testing.assert_array_equal(r.ground_truth, paired_truth)
        assert r.modality == "CT"
    curve = sweeps.error_vs_alpha(model, requests, alphas)
    assert curve.unit == "MAE (HU)" and np.isfinite(curve.error).all()
    # every point is what the live renderer reports for the same request
    renderer = Renderer(model)
    for k in (0, len(alphas) // 2, len(alphas) - 1):
        metrics = renderer.render(requests[k]).metrics
        assert curve.error[k] == pytest.approx(metrics["mae_hu"], rel=1e-4)
        assert curve.error_body[k] == pytest.approx(metrics["mae_hu_body"], rel=1e-4)


def test_slice_curve_scores_each_alpha_against_its_sought_slice(model, state) -> None:
    ups = explore.units_per_slice(model)
    alphas = np.array([-2 * ups, 0.0, 3 * ups])
    requests = sweeps.alpha_requests(state, model, "slice", alphas)
    truths = [r.ground_truth for r in requests]
    for offset, truth in zip((-2, 0, 3), truths, strict=True):
        np.testing.assert_array_equal(truth, state.source.native(state.index + offset))
    curve = sweeps.error_vs_alpha(model, requests, alphas)
    assert curve.unit == "RMSE ([-1, 1])"
    # alpha 0: the slice's own reconstruction error, as the live view shows it
    live = Renderer(model).render(explore.build_request(state, model, 0)).metrics
    assert curve.error[1] == pytest.approx(live["rmse"], rel=1e-4)


def test_points_without_truth_are_nan(model) -> None:
    state = explore.ExplorerState(seed_w=explore.seeded_w(model, 3))
    alphas = np.array([-1.0, 1.0])
    curve = sweeps.error_vs_alpha(model, sweeps.alpha_requests(state, model, "sex", alphas), alphas)
    assert np.isnan(curve.error).all() and curve.unit == ""


def test_error_per_layer_matches_mixed_renders(model, state) -> None:
    request = explore.build_request(state, model, 0)
    target = state.paired_encoder_latents[state.index]
    truth = state.paired.native(state.index)
    curve = sweeps.error_per_layer(model, request, target, truth, "CT", mode="only")
    assert curve.labels == ["4x4", "8x8", "16x16", "32x32"]
    assert curve.unit == "MAE (HU)" and np.isfinite(curve.error).all()
    renderer = Renderer(model)
    for k, name in enumerate(curve.labels):
        mixed = replace(
            request, mix_w=target, mix_layers=(name,), ground_truth=truth, modality="CT"
        )
        assert curve.error[k] == pytest.approx(renderer.render(mixed).metrics["mae_hu"], rel=1e-4)
    plain = replace(request, ground_truth=truth, modality="CT")
    assert curve.reference == pytest.approx(renderer.render(plain).metrics["mae_hu"], rel=1e-4)
    # injecting from 4x4 on is the target's own image
    crossover = sweeps.error_per_layer(model, request, target, truth, "CT", mode="from")
    own = replace(request, w=target, moves=(), ground_truth=truth, modality="CT")
    assert crossover.error[0] == pytest.approx(renderer.render(own).metrics["mae_hu"], rel=1e-4)


def test_error_per_layer_bad_mode_and_cancel(model, state) -> None:
    request = explore.build_request(state, model, 0)
    target = state.paired_encoder_latents[state.index]
    with pytest.raises(ConfigError, match="injection mode"):
        sweeps.error_per_layer(model, request, target, None, "CT", mode="sideways")
    with pytest.raises(sweeps.SweepCancelled):
        sweeps.error_per_layer(model, request, target, None, "CT", cancel=lambda: True)
    seen = []
    sweeps.error_per_layer(model, request, target, None, "CT", progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0
