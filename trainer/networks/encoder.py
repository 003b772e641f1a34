"""The image -> w encoder (Fetty et al. 2020, section 2.4; Cohen, Giryes & Greenspan).

``img [N, img_channels, R, R]`` in [-1, 1] -> convolutional backbone -> ``[N, channels(4),
4, 4]`` -> flatten -> dense head (LeakyReLU 0.2) -> ``w [N, w_dim]``, one w per image (the
generator takes it broadcast to every style layer, ``w.unsqueeze(1).repeat(1, num_ws, 1)``).

Backbones:

- ``"mirror"`` (the paper's): the generator's synthesis reversed. A 1x1 from-image conv at
  R, then at each resolution r = R, R/2, ..., 8 two 3x3 convs (``channels(r) -> channels(r)
  -> channels(r/2)``), each followed by instance normalisation (affine) and LeakyReLU(0.2)
  in place of the generator's AdaIN, and a 2x2 box downsample; it ends at 4x4 x channels(4)
  (512 for the paper's network).
- ``"resnet"``: a compact ResNet (Cohen et al. used ResNet50): a 3x3 stem, then one stage
  per halving of the resolution made of bottleneck residual blocks, the last four stages
  with ResNet50's 3, 4, 6, 3 blocks (one block for the earlier, larger stages). Instance
  norm rather than batch norm: the paper's batch of 8 split over GPUs leaves 2-4 images per
  process, too few for batch statistics, and embedding later runs one slice at a time; with
  instance norm the encoder is the same function in training and in use, on any batch.

The output is ``w_avg + head(features)``: the head learns the offset from the generator's
mean latent (a buffer the training loop fills from G), so a fresh encoder starts near the
middle of W rather than at an arbitrary point.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.errors import ConfigError
from trainer.networks.layers import LRELU_SLOPE, downsample2x

BACKBONES = ("mirror", "resnet")
ENCODER_FORMAT = "medstyle-encoder"
ENCODER_FORMAT_VERSION = 1

#: Bottleneck blocks of ResNet50's four stages; here they are the last four stages (to 4x4).
RESNET50_STAGE_BLOCKS = (3, 4, 6, 3)


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of one encoder; :meth:`for_generator` matches it to a StyleGAN."""

    img_resolution: int = 256  # input image size in pixels, a power of two 8..512
    img_channels: int = 1  # channels of the image (1: a CT or MR slice)
    w_dim: int = 512  # width of the output latent w (the generator's w_dim)
    channel_base: int = 8192  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512  # upper bound on feature maps at any resolution
    dense_layers: int = 4  # fully connected layers of the head (the last one is linear)
    backbone: str = "mirror"  # "mirror" (the paper's) or "resnet"

    def __post_init__(self) -> None:
        r = self.img_resolution
        if not isinstance(r, int) or r < 8 or r > 512 or r & (r - 1):
            raise ConfigError(f"encoder img_resolution: {r!r} is not a power of two 8..512")
        for name in ("img_channels", "w_dim", "channel_base", "channel_max", "dense_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"encoder {name}: must be at least 1, not {getattr(self, name)}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown encoder backbone {self.backbone!r} (mirror or resnet)")

    @classmethod
    def for_generator(cls, g_cfg: Any, backbone: str = "mirror") -> EncoderConfig:
        """The encoder of a generator with StyleGANConfig ``g_cfg``: its resolution,
        channels, w_dim and feature-map widths."""
        return cls(
            img_resolution=g_cfg.img_resolution,
            img_channels=g_cfg.img_channels,
            w_dim=g_cfg.w_dim,
            channel_base=g_cfg.channel_base,
            channel_max=g_cfg.channel_max,
            backbone=backbone,
        )

    @property
    def resolutions(self) -> list[int]:
        """Resolutions the backbone works at, largest first: ``[R, R/2, ..., 8]``."""
        return [2**k for k in range(int(math.log2(self.img_resolution)), 2, -1)]

    def channels(self, resolution: int) -> int:
        """Feature maps at ``resolution`` pixels (as the generator's)."""
        return max(1, min(self.channel_base // resolution, self.channel_max))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a typo should not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"encoder config: unknown keys {', '.join(unknown)}")
        return cls(**d)


# -- backbones ------------------------------------------------------------------------------


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    # no bias: every conv here is followed by a normalisation that removes it again
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)


class MirrorBlock(nn.Module):
    """``[N, channels(r), r, r] -> [N, channels(r/2), r/2, r/2]``: the generator's block
    reversed, instance norm in place of AdaIN."""

    def __init__(
        self,
        in_channels: int,  # feature maps at this resolution
        out_channels: int,  # feature maps at half this resolution
    ) -> None:
        super().__init__()
        self.conv0 = _conv(in_channels, in_channels, 3)
        self.norm0 = nn.InstanceNorm2d(in_channels, affine=True)
        self.conv1 = _conv(in_channels, out_channels, 3)
        self.norm1 = nn.InstanceNorm2d(out_channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.norm0(self.conv0(x)), LRELU_SLOPE)
        x = F.leaky_relu(self.norm1(self.conv1(x)), LRELU_SLOPE)
        return downsample2x(x)


class MirrorBackbone(nn.Sequential):
    """``[N, C, R, R] -> [N, channels(4), 4, 4]``: from-image 1x1 conv, then MirrorBlocks."""

    def __init__(
        self,
        cfg: EncoderConfig,  # sizes; see EncoderConfig
    ) -> None:
        r0 = cfg.img_resolution
        # the discriminator's from_rgb: a 1x1 conv with bias (no normalisation after it)
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.img_channels, cfg.channels(r0), 1),
            nn.LeakyReLU(LRELU_SLOPE),
        ]
        layers += [MirrorBlock(cfg.channels(r), cfg.channels(r // 2)) for r in cfg.resolutions]
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (stride ``stride``), 1x1 expand, plus the shortcut.

    ``[N, in, r, r] -> [N, out, r/stride, r/stride]``. The shortcut of a block that changes
    the shape is a 2x2 average pool and a 1x1 conv (ResNet-D: no input pixel is skipped).
    """

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # output feature maps
        stride: int,  # 1, or 2 to halve the resolution
    ) -> None:
        super().__init__()
        mid = max(out_channels // 4, 1)  # ResNet50's 4x narrower middle
        self.body = nn.Sequential(
            _conv(in_channels, mid, 1),
            nn.InstanceNorm2d(mid, affine=True),
            nn.ReLU(),
            _conv(mid, mid, 3, stride),
            nn.InstanceNorm2d(mid, affine=True),
            nn.ReLU(),
            _conv(mid, out_channels, 1),
            nn.InstanceNorm2d(out_channels, affine=True),
        )
        # the residual branch starts at zero, so a deep stack starts as the identity path
        # and trains like a shallow one (Goyal et al. 2017)
        nn.init.zeros_(self.body[-1].weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                _conv(in_channels, out_channels, 1),
                nn.InstanceNorm2d(out_channels, affine=True),
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetBackbone(nn.Sequential):
    """``[N, C, R, R] -> [N, channels(4), 4, 4]``: 3x3 stem, one stage per halving."""

    def __init__(
        self,
        cfg: EncoderConfig,  # sizes; see EncoderConfig
    ) -> None:
        r0 = cfg.img_resolution
        layers: list[nn.Module] = [
            _conv(cfg.img_channels, cfg.channels(r0), 3),
            nn.InstanceNorm2d(cfg.channels(r0), affine=True),
            nn.ReLU(),
        ]
        stages = cfg.resolutions
        depths = [1] * max(len(stages) - 4, 0) + list(RESNET50_STAGE_BLOCKS[-len(stages) :])
        for r, depth in zip(stages, depths, strict=True):
            c_in, c_out = cfg.channels(r), cfg.channels(r // 2)
            layers.append(Bottleneck(c_in, c_out, stride=2))
            layers += [Bottleneck(c_out, c_out, stride=1) for _ in range(depth - 1)]
        super().__init__(*layers)


# -- the encoder ----------------------------------------------------------------------------


class Encoder(nn.Module):
    """``img [N, img_channels, R, R]`` in [-1, 1] -> ``w [N, w_dim]``."""

    def __init__(
        self,
        cfg: EncoderConfig,  # sizes and backbone; see EncoderConfig
    ) -> None:
        super().__init__()
        self.cfg = cfg
        backbone = MirrorBackbone if cfg.backbone == "mirror" else ResNetBackbone
        self.backbone = backbone(cfg)
        widths = [cfg.channels(4) * 16] + [cfg.w_dim] * cfg.dense_layers
        head: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            head.append(nn.Linear(a, b))
            if i < cfg.dense_layers - 1:  # the last layer is linear: w is any real vector
                head.append(nn.LeakyReLU(LRELU_SLOPE))
        self.head = nn.Sequential(*head)
        # the generator's mean w (the training loop copies G.w_avg here): outputs are offsets
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, img: Tensor) -> Tensor:
        """``img [N, C, R, R] -> w [N, w_dim]``."""
        c, r = self.cfg.img_channels, self.cfg.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (c, r, r):
            raise ValueError(f"expected images [N, {c}, {r}, {r}], got {list(img.shape)}")
        return self.w_avg + self.head(self.backbone(img).flatten(1))


def encoder_file_state(encoder: Encoder, training: Mapping[str, Any]) -> dict[str, Any]:
    """What ``encoder.pt`` holds: format, version, the weights ``E``, ``config`` and the
    JSON-ready ``training`` summary."""
    return {
        "format": ENCODER_FORMAT,
        "format_version": ENCODER_FORMAT_VERSION,
        "E": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "config": encoder.cfg.to_dict(),
        "training": dict(training),
    }


def encoder_from_state(state: Mapping[str, Any], path: str | PathLike[str]) -> Encoder:
    """Build the encoder an ``encoder.pt`` dict describes (eval mode, no gradients).

    Raises :class:`~trainer.checkpoint.CheckpointError` naming ``path`` when the dict is not
    an encoder file this version reads or its weights do not fit its config.
    """
    from trainer.checkpoint import CheckpointError

    if state.get("format") != ENCODER_FORMAT or "E" not in state or "config" not in state:
        raise CheckpointError("is not a medstyle encoder file (no E and config)", path)
    version = state.get("format_version")
    if not isinstance(version, int) or version > ENCODER_FORMAT_VERSION:
        raise CheckpointError(
            f"has encoder format version {version!r}; this medstyle reads up to "
            f"{ENCODER_FORMAT_VERSION} (update medstyle)",
            path,
        )
    try:
        encoder = Encoder(EncoderConfig.from_dict(state["config"]))
        encoder.load_state_dict(state["E"])
    except (ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"has a malformed encoder config ({exc})", path) from None
    except RuntimeError as exc:  # missing, unexpected or misshapen weights
        first = (str(exc).strip().splitlines() or ["mismatch"])[0]
        raise CheckpointError(f"has weights that do not fit its config ({first})", path) from None
    return encoder.eval().requires_grad_(False)
