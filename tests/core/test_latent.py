"""Latent operations: style-layer names, eq. 3 manipulation, truncation, mixing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from medstyle_gui.core.latent import (
    apply_directions,
    broadcast,
    layer_names,
    manipulate,
    mask_layer_names,
    mean_latent,
    mix,
    parse_layers,
    truncate,
)
from trainer.directions import DenseClassifier, Direction, ReverseNet
from trainer.errors import ConfigError
from trainer.networks.stylegan import Generator, StyleGANConfig

W_DIM = 32  # the tiny bundle's w_dim


# -- helpers shared with test_render.py -----------------------------------------------------


def logistic_direction(
    name: str = "logistic", seed: int = 0, offset: float = 0.3, classes=("class0", "class1")
) -> Direction:
    """A logistic direction in W with a random unit normal."""
    normal = torch.randn(W_DIM, generator=torch.Generator().manual_seed(seed))
    return Direction(name, classes, "logistic", normal / normal.norm(), offset)


def dense_direction(name: str = "dense", seed: int = 0, hidden: int = 8) -> Direction:
    """A dense direction with small random (untrained) Forward and Reverse nets."""
    torch.manual_seed(seed)
    forward = DenseClassifier(W_DIM, [16, hidden], activation="silu")
    reverse = ReverseNet(hidden, W_DIM, [16], activation="silu")
    normal, baseline = torch.randn(hidden), torch.randn(W_DIM)
    return Direction(
        name,
        ("class0", "class1"),
        "dense",
        normal / normal.norm(),
        0.1,
        forward_net=forward.hidden,
        reverse_net=reverse,
        logistic_normal=baseline / baseline.norm(),
        logistic_offset=0.0,
        dense=forward,
    )


def load_tiny_generator(bundle: Path) -> Generator:
    """The tiny bundle's EMA generator, eval, without gradients."""
    from trainer.bundle import read_bundle_generator

    state = read_bundle_generator(bundle)
    G = Generator(StyleGANConfig.from_dict(state["config"]))
    G.load_state_dict(state["G_ema"])
    G.w_avg.copy_(state["w_avg"])
    return G.eval().requires_grad_(False)


def random_w(n: int = 5, seed: int = 1) -> Tensor:
    return torch.randn(n, W_DIM, generator=torch.Generator().manual_seed(seed))


# -- style layers by name -------------------------------------------------------------------

CFG128 = StyleGANConfig.slim(128)  # blocks 4, 8, 16, 32, 64, 128: num_ws 12


def _mask(*blocks: int) -> Tensor:
    m = torch.zeros(CFG128.num_ws, dtype=torch.bool)
    for b in blocks:
        m[2 * b : 2 * b + 2] = True
    return m


def test_layer_names() -> None:
    assert layer_names(CFG128) == ["4x4", "8x8", "16x16", "32x32", "64x64", "128x128"]


@pytest.mark.parametrize(
    ("names", "blocks"),
    [
        ("8x8", (1,)),
        ("8", (1,)),
        (["16x16", "128"], (2, 5)),
        ("4, 64x64", (0, 4)),
        ("8-32", (1, 2, 3)),
        ("8x8-32x32", (1, 2, 3)),
        ("32+", (3, 4, 5)),
        ("coarse", (0, 1)),
        ("middle", (2, 3)),
        ("fine", (4, 5)),
        ("all", (0, 1, 2, 3, 4, 5)),
        ("Coarse, fine", (0, 1, 4, 5)),
        ((), ()),
        ("", ()),
    ],
)
def test_parse_layers_accepts(names, blocks) -> None:
    mask = parse_layers(CFG128, names)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, _mask(*blocks))


@pytest.mark.parametrize("bad", ["banana", "12x12", "16x32", "256", "64-8", "8-", "x", "4x4x4"])
def test_parse_layers_rejects_unknown(bad) -> None:
    with pytest.raises(ConfigError) as info:
        parse_layers(CFG128, bad)
    message = str(info.value)
    assert "\n" not in message
    assert repr(bad) in message


def test_preset_missing_from_a_small_model_is_empty() -> None:
    cfg = StyleGANConfig.slim(32)
    assert not parse_layers(cfg, "fine").any()
    assert mask_layer_names(cfg, parse_layers(cfg, "middle")) == ["16x16", "32x32"]


# -- latents --------------------------------------------------------------------------------


def test_broadcast_and_truncate() -> None:
    w = random_w(3)
    ws = broadcast(w, 8)
    assert ws.shape == (3, 8, W_DIM)
    assert torch.equal(ws[:, 5], w)
    w_avg = random_w(1, seed=9)[0]
    assert torch.equal(truncate(w, w_avg, 1.0), w)
    assert torch.allclose(truncate(w, w_avg, 0.0), w_avg.expand_as(w))
    assert torch.allclose(truncate(w, w_avg, 0.25), w_avg + 0.25 * (w - w_avg))


def test_mean_latent_is_deterministic_per_seed() -> None:
    cfg = StyleGANConfig(img_resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_max=8)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    a = mean_latent(G, n=200, seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    b = mean_latent(G, n=200, seed=3)
    c = mean_latent(G, n=200, seed=4)
    assert a.shape == (16,)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    z = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, G.map(z)[:, 0].mean(dim=0), atol=1e-6)


# -- eq. 3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [logistic_direction, dense_direction])
def test_identity_at_alpha_0_tau_1(make) -> None:
    direction = make()
    w = random_w()
    w_mean = random_w(1, seed=5)[0]
    assert torch.equal(manipulate(w, direction, 0.0), w)
    assert torch.equal(manipulate(w, direction, 0.0, 1.0, w_mean), w)
    assert torch.equal(manipulate(w[0], direction, 0.0), w[0])  # a single [w_dim] latent


def test_paper_exact_dense_is_not_the_identity() -> None:
    direction = dense_direction()
    w = random_w()
    out = manipulate(w, direction, 0.0, paper_exact=True)
    # eq. 3 as printed returns Reverse(Forward(w)), which a small reverse net cannot match
    assert torch.allclose(out, direction.from_hidden(direction.to_hidden(w)))
    assert (out - w).abs().max() > 0.1


@pytest.mark.parametrize("alpha", [-2.0, 0.5, 3.0])
def test_alpha_moves_the_signed_distance_by_alpha(alpha) -> None:
    direction = logistic_direction()
    w = random_w()
    moved = manipulate(w, direction, alpha)
    shift = direction.signed_distance(moved) - direction.signed_distance(w)
    assert torch.allclose(shift, torch.full_like(shift, alpha), atol=1e-5)
    assert torch.allclose(moved, w + alpha * direction.normal, atol=1e-6)


def test_dense_alpha_moves_the_hidden_point_along_the_normal() -> None:
    direction = dense_direction()
    w = random_w()
    exact = manipulate(w, direction, 1.5, paper_exact=True)
    corrected = manipulate(w, direction, 1.5)
    expected = direction.from_hidden(direction.to_hidden(w) + 1.5 * direction.normal)
    assert torch.allclose(exact, expected, atol=1e-6)
    # the residual correction shifts every sample by its own residual
    residual = w - direction.from_hidden(direction.to_hidden(w))
    assert torch.allclose(corrected, expected + residual, atol=1e-5)


def test_tau_0_gives_the_mean() -> None:
    w = random_w()
    w_mean = random_w(1, seed=5)[0]
    logistic = logistic_direction()
    assert torch.allclose(manipulate(w, logistic, 0.0, 0.0, w_mean), w_mean.expand_as(w))
    moved = manipulate(w, logistic, 2.0, 0.0, w_mean)
    assert torch.allclose(moved, (w_mean + 2.0 * logistic.normal).expand_as(w), atol=1e-6)
    half = manipulate(w, logistic, 0.0, 0.5, w_mean)
    assert torch.allclose(half, w_mean + 0.5 * (w - w_mean), atol=1e-6)

    dense = dense_direction()
    h_mean = dense.to_hidden(w_mean[None])
    exact = manipulate(w, dense, 0.0, 0.0, w_mean, paper_exact=True)
    assert torch.allclose(exact, dense.from_hidden(h_mean).expand_as(w), atol=1e-6)
    corrected = manipulate(w, dense, 0.0, 0.0, w_mean)
    assert torch.allclose(corrected, w_mean.expand_as(w), atol=1e-5)
    assert torch.allclose(dense.to_hidden(corrected), h_mean.expand(len(w), -1), atol=1e-5)


def test_tau_needs_the_mean() -> None:
    with pytest.raises(ConfigError, match="mean latent"):
        manipulate(random_w(), logistic_direction(), 0.0, 0.5)
    with pytest.raises(ConfigError, match="mean latent"):
        apply_directions(random_w(), [], 0.5)
    with pytest.raises(ConfigError, match="finite"):
        manipulate(random_w(), logistic_direction(), float("nan"))


def test_apply_directions() -> None:
    w = random_w()
    w_mean = random_w(1, seed=5)[0]
    a, b = logistic_direction("a", seed=0), logistic_direction("b", seed=1)
    both = apply_directions(w, [(a, 1.0), (b, -0.5)], 0.7, w_mean)
    expected = w_mean + 0.7 * (w - w_mean) + 1.0 * a.normal - 0.5 * b.normal
    assert torch.allclose(both, expected, atol=1e-5)
    dense = dense_direction()
    one = apply_directions(w, [(dense, 0.8)], 0.6, w_mean)
    assert torch.allclose(one, manipulate(w, dense, 0.8, 0.6, w_mean))
    assert apply_directions(w, []) is w
    assert torch.allclose(apply_directions(w, [], 0.5, w_mean), truncate(w, w_mean, 0.5))


# -- style mixing ---------------------------------------------------------------------------


def test_mix_tensors() -> None:
    cfg = StyleGANConfig.slim(32)
    src, tgt = broadcast(random_w(2, 1), cfg.num_ws), broadcast(random_w(1, 2), cfg.num_ws)
    assert torch.equal(mix(src, tgt, parse_layers(cfg, [])), src)
    assert torch.equal(mix(src, tgt, parse_layers(cfg, "all")), tgt.expand_as(src))
    part = mix(src, tgt, parse_layers(cfg, "8x8"))
    assert torch.equal(part[:, 2:4], tgt[:, 2:4].expand(2, -1, -1))
    assert torch.equal(part[:, :2], src[:, :2]) and torch.equal(part[:, 4:], src[:, 4:])
    with pytest.raises(ConfigError):
        mix(src, tgt, torch.ones(3, dtype=torch.bool))


def test_mix_renders_source_and_target(tiny_gan_bundle: Path) -> None:
    G = load_tiny_generator(tiny_gan_bundle)
    with torch.no_grad():
        ws = G.map(torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
        src, tgt = ws[:1], ws[1:]

        def render(x: Tensor) -> Tensor:
            return G.synthesise(x, noise_mode="const")

        none = render(mix(src, tgt, parse_layers(G.cfg, ())))
        every = render(mix(src, tgt, parse_layers(G.cfg, "all")))
        some = render(mix(src, tgt, parse_layers(G.cfg, "16+")))
        assert torch.allclose(none, render(src), atol=1e-6)
        assert torch.allclose(every, render(tgt), atol=1e-6)
        assert not torch.allclose(some, render(src), atol=1e-3)
