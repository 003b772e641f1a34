"""The StyleGAN networks: shapes, growing, truncation, style mixing, cached re-rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.bench import generator_flops_per_image
from trainer.errors import ConfigError
from trainer.networks import Discriminator, Generator, StyleGANConfig
from trainer.networks.layers import EqualLinear

REPO = Path(__file__).resolve().parents[3]


def tiny(resolution: int = 32) -> StyleGANConfig:
    """A few channels at every resolution: cheap even at 512 px."""
    return StyleGANConfig(
        img_resolution=resolution,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        channel_base=8 * resolution,
        channel_max=16,
        mbstd_group_size=2,
    )


@pytest.fixture(scope="module")
def nets() -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    cfg = tiny(64)
    return Generator(cfg).eval(), Discriminator(cfg).eval()


@pytest.mark.parametrize("resolution", [32, 64, 128, 256, 512])
def test_shapes_at_every_resolution(resolution: int) -> None:
    cfg = tiny(resolution)
    G, D = Generator(cfg), Discriminator(cfg)
    assert G.num_ws == cfg.num_ws == 2 * (int(math.log2(resolution)) - 1)
    assert cfg.resolutions[0] == 4 and cfg.resolutions[-1] == resolution
    with torch.no_grad():
        img = G(torch.randn(2, cfg.z_dim))
        assert img.shape == (2, 1, resolution, resolution)
        assert torch.isfinite(img).all()
        assert D(img).shape == (2, 1)


def test_paper_and_slim_configs() -> None:
    paper = StyleGANConfig.paper()
    assert (paper.img_resolution, paper.z_dim, paper.w_dim, paper.mapping_layers) == (
        512,
        512,
        512,
        8,
    )
    assert paper.num_ws == 16
    slim = StyleGANConfig.slim(32)
    assert slim.z_dim == 64 and max(slim.channels(r) for r in slim.resolutions) <= 64
    assert StyleGANConfig.from_dict(slim.to_dict()) == slim


# Feature maps of the network the paper used (rosinality's style-based-gan-pytorch, the
# official StyleGAN's fmap_base 8192 / 2**stage): 512 at 4..32 px, then 16384 / r.
PAPER_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@pytest.mark.parametrize("resolution", [32, 64, 128, 256, 512])
def test_paper_network_has_the_papers_feature_maps(resolution: int) -> None:
    paper = StyleGANConfig.paper(resolution)
    assert {r: paper.channels(r) for r in PAPER_WIDTHS} == PAPER_WIDTHS
    G, D = Generator(paper), Discriminator(paper)
    # the layers themselves, not only the rule: the last block's convs and to_rgb
    convs = [m.conv for m in G.modules() if hasattr(m, "conv") and hasattr(m, "adain")]
    assert convs[-1].weight.shape[:2] == (PAPER_WIDTHS[resolution],) * 2
    widths = {p.shape[0] for n, p in D.named_parameters() if n.endswith("weight") and p.ndim == 4}
    assert PAPER_WIDTHS[resolution] in widths and max(widths) == 512


def test_paper_network_flops_per_image() -> None:
    """27.3 GFLOP per image at 64 px (2 x multiply-accumulates), then 14.5 more per block:
    each block from 64 px up costs the same, its maps halving as its area quadruples.
    (rosinality's code does ~55 at 512 px: from 128 px on it upsamples with a fused 4x4
    transposed convolution, which does fewer multiply-accumulates than the nearest x2
    upsampling and 3x3 convolution here.)"""
    gflops = {r: generator_flops_per_image(StyleGANConfig.paper(r)) / 1e9 for r in (64, 512)}
    assert gflops[64] == pytest.approx(27.27, abs=0.01)
    assert gflops[512] == pytest.approx(27.27 + 3 * 14.50, abs=0.01)


def test_demo_recipe_rebuilds_the_demo_bundles_network() -> None:
    """The shipped demo keeps its network: its recipe (the slim preset, 512-d z and w)
    builds the config its bundle.json holds, and generator.pt's weights fit it exactly."""
    from trainer.bundle import read_bundle_generator, read_bundle_manifest
    from trainer.loops.gan import network_config
    from trainer.loops.gan_config import GANTrainConfig

    demo = REPO / "resources" / "models" / "demo"
    if not (demo / "generator.pt").is_file():
        pytest.skip(f"no demo model at {demo}")
    recipe = json.loads((REPO / "scripts" / "demo" / "gan64_w512.json").read_text())
    saved = read_bundle_manifest(demo)["config"]
    cfg = network_config(GANTrainConfig.from_dict(recipe), saved["img_resolution"])
    assert cfg.to_dict() == saved
    state = read_bundle_generator(demo, verify=False)
    for net, key in ((Generator(cfg), "G_ema"), (Discriminator(cfg), "D")):
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert shapes == {k: tuple(v.shape) for k, v in state[key].items()}, key


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="power of two"):
        StyleGANConfig(img_resolution=48)
    with pytest.raises(ConfigError, match="unknown keys"):
        StyleGANConfig.from_dict({"img_resolution": 32, "zdim": 3})


def test_truncation_psi_zero_gives_w_avg(nets: tuple[Generator, Discriminator]) -> None:
    G, _ = nets
    G.w_avg.copy_(torch.randn(G.cfg.w_dim))
    ws = G.map(torch.randn(3, G.cfg.z_dim), truncation_psi=0.0)
    assert ws.shape == (3, G.num_ws, G.cfg.w_dim)
    assert torch.allclose(ws, G.w_avg.expand_as(ws))
    half = G.map(torch.zeros(1, G.cfg.z_dim) + 1, truncation_psi=0.5)
    full = G.map(torch.zeros(1, G.cfg.z_dim) + 1)
    assert torch.allclose(half, (full + G.w_avg) / 2, atol=1e-6)


def test_w_avg_tracks_the_mean_w() -> None:
    torch.manual_seed(1)
    G = Generator(tiny(32))
    z = torch.randn(64, G.cfg.z_dim)
    for _ in range(40):
        G.map(z, update_w_avg=True, w_avg_beta=0.5)
    assert torch.allclose(G.w_avg, G.mapping(z).mean(0), atol=1e-4)


def test_fade_in_alpha_zero_is_the_upsampled_previous_image(
    nets: tuple[Generator, Discriminator],
) -> None:
    G, _ = nets
    ws = G.map(torch.randn(2, G.cfg.z_dim))
    with torch.no_grad():
        for r in (8, 32, 64):
            low = G.synthesise(ws, resolution=r // 2, noise_mode="const")
            at0 = G.synthesise(ws, resolution=r, alpha=0.0, noise_mode="const")
            assert at0.shape == (2, 1, r, r)
            assert torch.allclose(at0, F.interpolate(low, scale_factor=2.0), atol=1e-5)
            at1 = G.synthesise(ws, resolution=r, alpha=1.0, noise_mode="const")
            # continuous in alpha: a small step moves the image a little, linearly
            mid = G.synthesise(ws, resolution=r, alpha=0.5, noise_mode="const")
            assert torch.allclose(mid, (at0 + at1) / 2, atol=1e-5)
            near = G.synthesise(ws, resolution=r, alpha=1e-3, noise_mode="const")
            assert (near - at0).abs().max() <= 1e-3 * (at1 - at0).abs().max() + 1e-6


def test_synthesis_split_at_any_block_gives_the_whole_image(
    nets: tuple[Generator, Discriminator],
) -> None:
    """``synthesise`` runs up to a block and continues from there: the split is exact."""
    G, _ = nets
    ws = G.map(torch.randn(2, G.cfg.z_dim))
    last = len(G.cfg.resolutions) - 1
    with torch.no_grad():
        full = G.synthesise(ws, noise_mode="const")
        for block in range(len(G.cfg.resolutions)):
            x = G.synthesis.until(ws, block, "const")
            r = G.cfg.resolutions[block]
            assert x.shape == (2, G.cfg.channels(r), r, r)
            resumed = G.synthesis.continue_from(x, ws, block, last, 1.0, "const")
            assert torch.allclose(resumed, full, atol=1e-6)


def test_noise_modes(nets: tuple[Generator, Discriminator]) -> None:
    G, _ = nets
    for layer in G.modules():
        if hasattr(layer, "strength"):
            layer.strength.data.fill_(0.5)  # fresh layers start with zero noise strength
    ws = G.map(torch.randn(1, G.cfg.z_dim))
    with torch.no_grad():
        a, b = (G.synthesise(ws, noise_mode="const") for _ in range(2))
        c, d = (G.synthesise(ws, noise_mode="random") for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.allclose(c, d)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesise(ws, noise_mode="loud")


def test_style_mixing_changes_only_layers_after_the_cutoff() -> None:
    G = Generator(tiny(32))
    ws = torch.zeros(200, G.num_ws, G.cfg.w_dim)
    ws2 = torch.ones_like(ws)
    torch.manual_seed(0)
    mixed = G.mix_styles(ws, ws2, prob=1.0)
    from2 = mixed[:, :, 0] == 1  # [N, num_ws]: which layers came from ws2
    cutoffs = (~from2).sum(1)
    assert (cutoffs >= 1).all() and (cutoffs < G.num_ws).all()
    for n in range(len(ws)):
        c = int(cutoffs[n])
        assert not from2[n, :c].any() and from2[n, c:].all()
    assert len(set(cutoffs.tolist())) > 3  # the cutoff is random
    assert torch.equal(G.mix_styles(ws, ws2, prob=0.0), ws)
    share = (G.mix_styles(ws, ws2, prob=0.5)[:, -1, 0] == 1).float().mean()
    assert 0.3 < share < 0.7
    limited = G.mix_styles(ws, ws2, prob=1.0, num_layers=4)
    assert (limited[:, 3:, 0] == 1).all()  # cutoff within the 4 active layers


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_discriminator_at_every_training_resolution(
    nets: tuple[Generator, Discriminator], alpha: float
) -> None:
    _, D = nets
    for r in D.cfg.resolutions:
        assert D(torch.randn(3, 1, r, r), resolution=r, alpha=alpha).shape == (3, 1)
    with pytest.raises(ValueError, match="expected images"):
        D(torch.randn(3, 1, 32, 32), resolution=64)


def test_discriminator_fade_in_alpha_zero_ignores_the_new_block(
    nets: tuple[Generator, Discriminator],
) -> None:
    _, D = nets
    img = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        at0 = D(img, resolution=32, alpha=0.0)
        half = D(F.avg_pool2d(img, 2), resolution=16)
    assert torch.allclose(at0, half, atol=1e-5)


def test_first_conv_features() -> None:
    cfg = tiny(256)
    D = Discriminator(cfg)
    with torch.no_grad():
        feats = D.first_conv_features(torch.randn(2, 1, 256, 256))
        assert sorted(feats) == [64, 128, 256]
        for r, f in feats.items():
            assert f.shape == (2, cfg.channels(r), r, r)
        assert sorted(D.first_conv_features(torch.randn(1, 1, 128, 128))) == [64, 128]
        assert D.first_conv_features(torch.randn(1, 1, 32, 32)) == {}
        # the 256 features are the first conv of the 256 block on from_rgb, as in D's forward
        img = torch.randn(1, 1, 256, 256)
        expected = D.blocks[-1].conv0(D.from_rgb[-1](img))
        assert torch.allclose(D.first_conv_features(img)[256], expected)


def test_mapping_effective_learning_rate() -> None:
    """One Adam step moves an effective weight by lr * lr_multiplier / sqrt(fan_in)."""
    cfg = tiny(32)
    G = Generator(cfg)
    assert all(layer.lr_multiplier == 0.1 for layer in G.mapping.layers)
    for lr_mul in (1.0, 0.1):
        layer = EqualLinear(16, 8, lr_multiplier=lr_mul)
        before = layer.weight.detach() * layer.weight_gain
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3, betas=(0.0, 0.99), eps=1e-12)
        layer(torch.randn(32, 16)).square().sum().backward()
        opt.step()
        step = (layer.weight.detach() * layer.weight_gain - before).abs()
        assert torch.allclose(step, torch.full_like(step, 1e-3 * lr_mul / 4), rtol=1e-3)
    # and the effective weights start at He scale whatever the multiplier
    w = G.mapping.layers[1].weight.detach() * G.mapping.layers[1].weight_gain
    assert abs(float(w.std()) * math.sqrt(cfg.w_dim) - 1) < 0.15


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    cfg = tiny(32)
    G, D = Generator(cfg), Discriminator(cfg)
    for layer in G.modules():
        if hasattr(layer, "strength"):
            layer.strength.data.fill_(0.1)
    score = D(G(torch.randn(4, cfg.z_dim), resolution=32, alpha=0.5), resolution=32, alpha=0.5)
    score.sum().backward()
    # to_rgb / from_rgb of 4 and 8 px are idle while 32 px fades in over 16 px
    idle = ("synthesis.to_rgb.0.", "synthesis.to_rgb.1.", "from_rgb.0.", "from_rgb.1.")
    for net in (G, D):
        for name, p in net.named_parameters():
            if name.startswith(idle):
                assert p.grad is None, name
                continue
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_same_seed_same_networks_and_images() -> None:
    def make() -> torch.Tensor:
        torch.manual_seed(123)
        G = Generator(tiny(32))
        return G(torch.randn(2, 16))

    assert torch.equal(make(), make())


def test_flop_count_matches_torch_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    for cfg in (tiny(64), StyleGANConfig.slim(32)):
        G = Generator(cfg).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            G(torch.randn(1, cfg.z_dim))
        assert counter.get_total_flops() == generator_flops_per_image(cfg)
