"""The renderer: cached re-renders, metrics against a truth, errors as results; the benchmark."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from medstyle_gui.core.bench_render import bench_render, format_bench_render
from medstyle_gui.core.latent import mean_latent
from medstyle_gui.core.model import Model, load_model
from medstyle_gui.core.render import Renderer, RenderRequest
from tests.core.test_latent import dense_direction, logistic_direction
from trainer.data.normalise import PAPER
from trainer.metrics import body_mask, mae, rmse
from trainer.networks import Generator, StyleGANConfig
from trainer.networks.layers import NoiseInput


@pytest.fixture(scope="module")
def bare_model(tiny_gan_bundle: Path) -> Model:
    """The tiny bundle as the application loads it, without directions."""
    return dataclasses.replace(load_model(tiny_gan_bundle), directions={})


@pytest.fixture(scope="module")
def random_model(bare_model: Model) -> Model:
    """A random slim 32 px generator (seed 0) in the tiny bundle's clothes; its noise
    strengths are random too (they start at 0), so the cached activations carry noise."""
    torch.manual_seed(0)
    G = Generator(StyleGANConfig.slim(32)).eval().requires_grad_(False)
    with torch.no_grad():
        for module in G.modules():
            if isinstance(module, NoiseInput):
                module.strength.normal_(0.0, 0.5)
    return dataclasses.replace(bare_model, G=G, directions={})


@pytest.fixture(scope="module")
def model(bare_model: Model) -> Model:
    """The tiny model with a logistic "modality" direction (MR -> CT) and a dense one."""
    modality = logistic_direction("modality", seed=3, offset=0.0, classes=("MR", "CT"))
    directions = {"modality": modality, "dense": dense_direction()}
    return dataclasses.replace(bare_model, directions=directions)


def latents(G, n: int, seed: int = 0) -> list[np.ndarray]:
    z = torch.randn(n, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return list(G.mapping(z).numpy())


def disc(size: int, inside: float, outside: float) -> np.ndarray:
    """A hand-made slice: a centred disc of radius size/3 in a uniform background."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    return np.where(np.hypot(y, x) < size / 3, inside, outside).astype(np.float32)


# -- the generator's one-pass activations ---------------------------------------------------


def random_ws(G: Generator, n: int, seed: int) -> torch.Tensor:
    """``[n, num_ws, w_dim]`` with a different w in every style layer."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(n * G.num_ws, G.cfg.z_dim, generator=gen))
    return w.view(n, G.num_ws, G.cfg.w_dim)


def test_synthesise_with_activations(bare_model: Model) -> None:
    G = bare_model.G
    ws = G.map(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        img, pre = G.synthesise_with_activations(ws)
        assert torch.equal(img, G.synthesise(ws, noise_mode="const"))
        assert len(pre) == G.num_ws
        assert [p.shape[-1] for p in pre] == [r for r in G.cfg.resolutions for _ in (0, 1)]
        # layer 3's AdaIN on its cached input gives block 1's output
        block1 = G.synthesis.blocks[1].adain(1, pre[3].clone(), ws[:, 3])
        assert torch.allclose(block1, G.synthesis.until(ws, 1, "const"), atol=1e-6)
        kept = pre[4].clone()
        resumed, rest = G.synthesise_with_activations(ws, start_layer=4, pre=pre[4])
        assert torch.allclose(resumed, img, atol=1e-6) and len(rest) == G.num_ws - 4
        assert rest[0] is pre[4] and torch.equal(pre[4], kept)  # the cache is not written
        last = G.num_ws - 1
        only_last, (same,) = G.synthesise_with_activations(ws, start_layer=last, pre=pre[last])
        assert torch.allclose(only_last, img, atol=1e-6) and same is pre[last]
    with pytest.raises(ValueError):
        G.synthesise_with_activations(ws, start_layer=1)
    with pytest.raises(ValueError):
        G.synthesise_with_activations(ws, pre=pre[0])
    with pytest.raises(ValueError):
        G.synthesise_with_activations(ws, start_layer=G.num_ws, pre=pre[-1])


def test_resume_at_every_style_layer_equals_a_full_render(random_model: Model) -> None:
    G = random_model.G
    ws, other = random_ws(G, 2, seed=1), random_ws(G, 2, seed=2)
    with torch.no_grad():
        _, pre = G.synthesise_with_activations(ws)
        kept = [p.clone() for p in pre]
        for k in range(G.num_ws):
            changed = ws.clone()
            changed[:, k:] = other[:, k:]
            cached = pre[k] if k > 0 else None  # layer 0 is a constant: nothing to resume
            img, rest = G.synthesise_with_activations(changed, start_layer=k, pre=cached)
            full, full_pre = G.synthesise_with_activations(changed)
            torch.testing.assert_close(img, full, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(rest, full_pre[k:], atol=1e-5, rtol=1e-5)
            # a style change must show, or the comparison above proves nothing
            assert not torch.allclose(img, G.synthesise(ws, noise_mode="const"), atol=1e-3)
        assert all(torch.equal(a, b) for a, b in zip(pre, kept, strict=True))


def test_mean_latent_matches_the_model(bare_model: Model) -> None:
    assert torch.allclose(mean_latent(bare_model.G), bare_model.w_mean, atol=1e-6)


# -- caching --------------------------------------------------------------------------------


def test_renderer_resumes_at_the_first_changed_style_layer(random_model: Model) -> None:
    G = random_model.G
    base, other = random_ws(G, 1, seed=3), random_ws(G, 1, seed=4)
    renderer = Renderer(random_model)
    with torch.no_grad():
        full_base = G.synthesise(base, noise_mode="const")
        img, start = renderer.synthesise(base)
        assert start == 0 and torch.equal(img, full_base)
        for k in range(G.num_ws):
            # one style changed, then back: each resumes at layer k from the updated cache
            changed = base.clone()
            changed[:, k] = other[:, k]
            img, start = renderer.synthesise(changed)
            assert start == k
            torch.testing.assert_close(img, G.synthesise(changed, noise_mode="const"))
            img, start = renderer.synthesise(base)
            assert start == k
            torch.testing.assert_close(img, full_base)


def test_renderer_change_in_several_layers_at_once(random_model: Model) -> None:
    G = random_model.G
    base, other = random_ws(G, 1, seed=5), random_ws(G, 1, seed=6)
    renderer = Renderer(random_model)
    with torch.no_grad():
        renderer.synthesise(base)
        current = base
        for i, layers in enumerate(([3, 4, 7], [6, 2, 5], [1, 7], [5, 6])):
            current = current.clone()
            current[:, layers] = other[:, layers] + 0.1 * i  # never the style a layer had
            img, start = renderer.synthesise(current)
            assert start == min(layers)
            torch.testing.assert_close(img, G.synthesise(current, noise_mode="const"))
        # nothing changed: the cached image comes back, and no layer runs
        again, start = renderer.synthesise(current.clone())
        assert start == G.num_ws
        torch.testing.assert_close(again, G.synthesise(current, noise_mode="const"))


def test_cached_rerender_equals_full_render(model) -> None:
    w, target, other = latents(model.G, 3)
    renderer = Renderer(model)
    first = renderer.render(RenderRequest(w=w, mix_w=target, mix_layers=("16+",)))
    assert first.error is None and first.restart_layer == 0
    # a new mix target from 16x16 on (block 2 of 4x4, 8x8, 16x16, 32x32) resumes at its
    # first style layer, 4
    request = RenderRequest(w=w, mix_w=other, mix_layers=("16+",))
    cached = renderer.render(request)
    assert cached.restart_layer == 4
    full = Renderer(model).render(request)
    assert full.restart_layer == 0
    np.testing.assert_allclose(cached.image_unit, full.image_unit, atol=1e-5)
    assert not np.allclose(cached.image_unit, first.image_unit, atol=1e-3)
    # the same request again: nothing changed, the cached image comes back
    again = renderer.render(request)
    assert again.restart_layer == model.num_ws
    np.testing.assert_allclose(again.image_unit, full.image_unit, atol=1e-5)


def test_coarse_change_invalidates_the_cache(model) -> None:
    w, target = latents(model.G, 2)
    renderer = Renderer(model)
    renderer.render(RenderRequest(w=w, mix_w=target, mix_layers=("16+",)))
    coarse = RenderRequest(w=w, mix_w=target, mix_layers=("coarse",))
    result = renderer.render(coarse)
    assert result.restart_layer == 0
    np.testing.assert_allclose(result.image_unit, Renderer(model).render(coarse).image_unit)
    moved = renderer.render(RenderRequest(w=w, moves=(("dense", 0.5),)))
    assert moved.restart_layer == 0


# -- decoding, metrics and errors -----------------------------------------------------------


def test_moves_and_modality(model) -> None:
    (w,) = latents(model.G, 1)
    direction = model.directions["modality"]
    distance = float(direction.signed_distance(torch.from_numpy(w)[None])[0])
    renderer = Renderer(model)
    # move well past the decision surface each way: the predicted modality follows
    ct = renderer.render(RenderRequest(w=w, moves=(("modality", 2.0 - distance),)))
    mr = renderer.render(RenderRequest(w=w, moves=(("modality", -2.0 - distance),)))
    assert (ct.modality, mr.modality) == ("CT", "MR")
    expected = w + (2.0 - distance) * direction.normal.numpy()
    np.testing.assert_allclose(ct.w_final, expected, atol=1e-5)
    np.testing.assert_allclose(ct.image_native, model.normalisation.to_native(ct.image_unit, "CT"))
    forced = renderer.render(RenderRequest(w=w, modality="MR"))
    assert forced.modality == "MR"
    np.testing.assert_allclose(
        forced.image_native, model.normalisation.to_native(forced.image_unit, "MR")
    )
    plain = Renderer(dataclasses.replace(model, directions={})).render(RenderRequest(w=w))
    assert plain.modality == "MR" and plain.error is None


def test_ct_metrics_are_mae_in_hu(model) -> None:
    (w,) = latents(model.G, 1)
    r = model.resolution
    truth = disc(r, 40.0, -1000.0)  # soft tissue in air: the body is the disc
    result = Renderer(model).render(RenderRequest(w=w, modality="CT", ground_truth=truth))
    assert result.error is None
    generated = result.image_native
    inside = disc(r, 1, 0).astype(bool)
    assert np.array_equal(body_mask(truth, -500.0), inside)
    assert result.metrics["mae_hu"] == pytest.approx(mae(generated, truth), rel=1e-5)
    assert result.metrics["mae_hu_body"] == pytest.approx(mae(generated, truth, inside), rel=1e-5)
    np.testing.assert_allclose(result.difference, generated - truth, atol=1e-4)
    # a truth 5 HU below the image everywhere: MAE 5 HU, difference +5 HU
    shifted = generated - np.float32(5.0)
    offset = Renderer(model).render(RenderRequest(w=w, modality="CT", ground_truth=shifted))
    assert offset.metrics["mae_hu"] == pytest.approx(5.0, abs=1e-3)
    np.testing.assert_allclose(offset.difference, 5.0, atol=1e-3)


def test_mr_metrics_are_rmse_on_unit_scale(model) -> None:
    (w,) = latents(model.G, 1)
    r = model.resolution
    truth = disc(r, 900.0, 0.0)  # MR units
    assert model.normalisation == PAPER  # the numbers below are the paper's window
    result = Renderer(model).render(RenderRequest(w=w, modality="MR", ground_truth=truth))
    assert result.error is None and set(result.metrics) == {"rmse", "rmse_body"}
    truth_unit = truth / 1250.0 - 1.0  # the paper's [0, 2500] -> [-1, 1]
    inside = disc(r, 1, 0).astype(bool)
    assert result.metrics["rmse"] == pytest.approx(rmse(result.image_unit, truth_unit), rel=1e-5)
    body = rmse(result.image_unit, truth_unit, inside)
    assert result.metrics["rmse_body"] == pytest.approx(body, rel=1e-5)
    np.testing.assert_allclose(result.difference, result.image_native - truth, atol=1e-3)
    # 125 MR units below the image everywhere is 0.1 on [-1, 1]
    shifted = result.image_native - np.float32(125.0)
    offset = Renderer(model).render(RenderRequest(w=w, modality="MR", ground_truth=shifted))
    assert offset.metrics["rmse"] == pytest.approx(0.1, abs=1e-5)


def test_wrong_size_ground_truth_is_an_error_result(model) -> None:
    (w,) = latents(model.G, 1)
    truth = np.zeros((20, 24), np.float32)
    result = Renderer(model).render(RenderRequest(w=w, ground_truth=truth, stamp=7))
    assert result.error is not None and "\n" not in result.error
    assert "ground-truth" in result.error and "(20, 24)" in result.error
    assert result.stamp == 7 and result.metrics == {} and result.difference is None
    assert result.image_native is not None  # the image itself is fine and still shown


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"moves": (("tumour", 1.0),)}, "no direction 'tumour'"),
        ({"mix_layers": ("12x12",)}, "'12x12'"),
        ({"modality": "PET"}, "not CT or MR"),
        ({"w": np.zeros(5, np.float32)}, "the latent w has shape"),
        ({"w": np.full(32, np.nan, np.float32)}, "NaN"),
        ({"tau": float("inf")}, "tau"),
    ],
)
def test_user_mistakes_come_back_as_errors(model, changes, words) -> None:
    (w,) = latents(model.G, 1)
    request = RenderRequest(**{"w": w, "stamp": 3, **changes})
    result = Renderer(model).render(request)
    assert result.error is not None and words in result.error and "\n" not in result.error
    assert result.stamp == 3 and result.image_native is None


def test_stamps_pass_through(model) -> None:
    w, target = latents(model.G, 2)
    renderer = Renderer(model)
    stamps = [renderer.render(RenderRequest(w=w, mix_w=target, stamp=s)).stamp for s in (5, 2, 9)]
    assert stamps == [5, 2, 9]
    assert renderer.render(RenderRequest(w=torch.from_numpy(w), stamp=11)).render_ms > 0


# -- benchmark ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_directions", [True, False])
def test_bench_render_runs(model, with_directions) -> None:
    subject = model if with_directions else dataclasses.replace(model, directions={})
    result = bench_render(subject, repeats=3)
    for key in ("full", "cached", "slider"):
        assert result[f"{key}_ms_median"] > 0 and result[f"{key}_ms_p95"] > 0
    assert result["cached_from"] == "32x32" and result["speedup"] > 0
    assert result["slider"] == ("direction modality" if with_directions else "tau")
    assert "re-render from 32x32" in format_bench_render(result)
