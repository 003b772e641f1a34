"""The image -> w encoder: shapes for both backbones at every size, the paper's sizes,
the config, the mean-latent offset, batch independence and the encoder.pt round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.checkpoint import CheckpointError
from trainer.errors import ConfigError
from trainer.networks import StyleGANConfig
from trainer.networks.encoder import (
    BACKBONES,
    Encoder,
    EncoderConfig,
    encoder_file_state,
    encoder_from_state,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_slim_encoders_map_images_to_one_w_each(resolution: int, backbone: str) -> None:
    g_cfg = StyleGANConfig.slim(resolution)
    E = Encoder(EncoderConfig.for_generator(g_cfg, backbone=backbone))
    img = torch.randn(3, 1, resolution, resolution)
    w = E(img)
    assert w.shape == (3, g_cfg.w_dim) and torch.isfinite(w).all()
    features = E.backbone(img)
    assert features.shape == (3, g_cfg.channels(4), 4, 4)
    w.square().sum().backward()
    assert all(p.grad is not None for p in E.parameters())
    if backbone == "mirror":  # every weight takes part (resnet: the residual branches start
        # at zero, so the weights before their zero scale have no gradient yet)
        assert all(p.grad.abs().sum() > 0 for p in E.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_paper_encoder_at_256_px_ends_at_4x4x512_and_gives_512_d_w(backbone: str) -> None:
    g_cfg = StyleGANConfig.paper(256)
    E = Encoder(EncoderConfig.for_generator(g_cfg, backbone=backbone)).eval()
    features = []
    E.backbone.register_forward_hook(lambda _m, _i, out: features.append(out.shape))
    with torch.no_grad():  # one pass: the backbone is most of the time at the paper's width
        w = E(torch.randn(1, 1, 256, 256))
    assert features == [(1, 512, 4, 4)]
    count = n_params(E)
    # measured: mirror 21,469,952 parameters (16.5 M in the convs, 4.2 M in the head's first
    # layer 8192 -> 512), resnet 10,473,024
    assert w.shape == (1, 512) and torch.isfinite(w).all(), f"{backbone}: {count:,} parameters"
    assert 5_000_000 < count < 30_000_000, f"{backbone}: {count:,} parameters"


def test_mirror_is_the_generator_reversed_with_instance_norm() -> None:
    """From-image 1x1 conv at R, two 3x3 convs with InstanceNorm per resolution R..8, the
    widths of the generator's blocks in reverse, a four-layer dense head."""
    g_cfg = StyleGANConfig.paper(64)
    E = Encoder(EncoderConfig.for_generator(g_cfg))
    convs = [m for m in E.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (1, 1) and convs[0].out_channels == g_cfg.channels(64)
    assert [c.kernel_size for c in convs[1:]] == [(3, 3)] * 8  # 64, 32, 16, 8 px: two each
    assert [c.out_channels for c in convs[1:]] == [256, 512, 512, 512, 512, 512, 512, 512]
    norms = [m for m in E.backbone.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 8 and all(n.affine and not n.track_running_stats for n in norms)
    linears = [m for m in E.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8192, 512)] + [(512, 512)] * 3
    acts = [m for m in E.head if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.2 for a in acts)


def test_resnet_stages_follow_resnet50_down_to_4x4() -> None:
    from trainer.networks.encoder import Bottleneck

    def depths(resolution: int) -> list[int]:
        E = Encoder(EncoderConfig.for_generator(StyleGANConfig.slim(resolution), "resnet"))
        blocks = [m for m in E.backbone if isinstance(m, Bottleneck)]
        stride2 = [i for i, b in enumerate(blocks) if not isinstance(b.shortcut, nn.Identity)]
        return [b - a for a, b in zip(stride2, [*stride2[1:], len(blocks)], strict=True)]

    assert depths(32) == [4, 6, 3]  # 32 -> 16 -> 8 -> 4
    assert depths(128) == [1, 3, 4, 6, 3]


def test_output_is_an_offset_from_the_generators_mean_w() -> None:
    E = Encoder(EncoderConfig(img_resolution=32, w_dim=8, channel_base=256, channel_max=8))
    nn.init.zeros_(E.head[-1].weight)
    nn.init.zeros_(E.head[-1].bias)
    E.w_avg.copy_(torch.arange(8.0))
    assert torch.equal(E(torch.randn(2, 1, 32, 32)), torch.arange(8.0).expand(2, 8))


def test_each_image_is_encoded_on_its_own() -> None:
    """Instance norm: the batch an image comes in does not change its w."""
    E = Encoder(EncoderConfig.for_generator(StyleGANConfig.slim(32), "resnet"))
    img = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(E(img)[2:3], E(img[2:3]), rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_errors() -> None:
    g_cfg = StyleGANConfig.slim(64)
    cfg = EncoderConfig.for_generator(g_cfg, backbone="resnet")
    assert (cfg.img_resolution, cfg.w_dim, cfg.channel_max, cfg.dense_layers) == (64, 64, 64, 4)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolutions == [64, 32, 16, 8]
    with pytest.raises(ConfigError, match="unknown keys depth"):
        EncoderConfig.from_dict({**cfg.to_dict(), "depth": 3})
    with pytest.raises(ConfigError, match="backbone 'vgg'"):
        EncoderConfig(backbone="vgg")
    with pytest.raises(ConfigError, match="power of two"):
        EncoderConfig(img_resolution=48)
    with pytest.raises(ValueError, match=r"expected images \[N, 1, 64, 64\]"):
        Encoder(cfg)(torch.zeros(1, 1, 32, 32))


def test_encoder_file_state_round_trip(tmp_path) -> None:
    from trainer.checkpoint import load_checkpoint, save_checkpoint

    E = Encoder(EncoderConfig.for_generator(StyleGANConfig.slim(32)))
    E.w_avg.normal_()
    path = save_checkpoint(encoder_file_state(E, {"kimg": 1.0}), tmp_path / "encoder.pt")
    state = load_checkpoint(path)
    assert (state["format"], state["format_version"], state["training"]) == (
        "medstyle-encoder",
        1,
        {"kimg": 1.0},
    )
    loaded = encoder_from_state(state, path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    img = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(loaded(img), E.eval()(img))
    with pytest.raises(CheckpointError, match="not a medstyle encoder file"):
        encoder_from_state({"format": "medstyle-generator"}, path)
    with pytest.raises(CheckpointError, match="format version 2"):
        encoder_from_state({**state, "format_version": 2}, path)
    bad = {**state, "config": {**state["config"], "w_dim": 16}}
    with pytest.raises(CheckpointError, match="do not fit its config") as err:
        encoder_from_state(bad, path)
    assert len(str(err.value).splitlines()) == 1 and str(path) in str(err.value)
