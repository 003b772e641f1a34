"""The paper's StyleGAN (Karras et al. 2019) with progressive growing, for 1-channel slices.

Generator: ``z [N, z_dim]`` -> mapping MLP -> ``w [N, w_dim]``, broadcast to
``ws [N, num_ws, w_dim]`` (one w per AdaIN input) -> synthesis from a learned constant 4x4
through resolution blocks 4, 8, ..., img_resolution (each: conv, noise, AdaIN, twice) ->
``img [N, img_channels, r, r]`` in [-1, 1] (not clamped).

Discriminator: the mirror image, from_rgb at each resolution, blocks down to 4x4 with the
minibatch standard deviation before the last one, ``[N, 1]`` score.

Progressive growing: at a training resolution ``r`` below ``img_resolution`` only the blocks
up to ``r`` run, and while block ``r`` fades in (``alpha < 1``) its image is blended with the
nearest-upsampled image of block ``r/2`` (the discriminator mirrors this with 2x2 box
downsampling).

Style layers are numbered from 0; block ``b`` (resolution ``4 * 2**b``) uses ws[:, 2b] and
ws[:, 2b + 1].
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainer.errors import ConfigError
from trainer.networks.layers import (
    LRELU_SLOPE,
    AdaIN,
    EqualConv2d,
    EqualLinear,
    NoiseInput,
    downsample2x,
    minibatch_stddev,
    upsample2x,
)

# From this resolution on the synthesis keeps activations channels-last: oneDNN's convolutions
# with few channels on large maps run several times faster so (measured on a 2-core CPU: 16
# maps at 512 px, 26 ms -> 7 ms), while with 512 maps at 4..16 px plain NCHW is faster.
CHANNELS_LAST_FROM = 32

# Feature maps of the paper's network at r px are min(16384 / r, 512): the official
# StyleGAN's fmap_base / 2**stage with fmap_base 8192 and stage log2(r) - 1, which is also
# what rosinality's style-based-gan-pytorch (the code Fetty et al. used) builds.
PAPER_CHANNEL_BASE = 16384


@dataclass(frozen=True)
class StyleGANConfig:
    """Sizes of one StyleGAN (generator and discriminator share them)."""

    img_resolution: int = 256  # final output size in pixels, a power of two 32..512
    img_channels: int = 1  # channels of the image (1: a CT or MR slice)
    z_dim: int = 512  # width of the input latent z
    w_dim: int = 512  # width of the intermediate latent w
    mapping_layers: int = 8  # depth of the mapping MLP z -> w
    mapping_lr_multiplier: float = 0.1  # mapping lr relative to the rest (1e-4 against 1e-3)
    # feature maps at resolution r: min(channel_base // r, channel_max). The paper's network
    # has PAPER_CHANNEL_BASE (see paper()); this default stays what configs written without
    # the key were built with.
    channel_base: int = 8192
    channel_max: int = 512  # upper bound on feature maps at any resolution
    mbstd_group_size: int = 4  # samples per group of the discriminator's minibatch stddev

    def __post_init__(self) -> None:
        r = self.img_resolution
        if not isinstance(r, int) or r < 32 or r > 512 or r & (r - 1):
            raise ConfigError(f"img_resolution: {r!r} is not a power of two between 32 and 512")
        for name in ("img_channels", "z_dim", "w_dim", "mapping_layers", "channel_base"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, not {getattr(self, name)}")
        if self.channel_max < 1 or self.mbstd_group_size < 1:
            raise ConfigError("channel_max and mbstd_group_size must be at least 1")
        if self.mapping_lr_multiplier <= 0:
            raise ConfigError(
                f"mapping_lr_multiplier: must be positive, not {self.mapping_lr_multiplier}"
            )

    @classmethod
    def paper(cls, img_resolution: int = 512) -> StyleGANConfig:
        """The paper's full-width network: 512-d z and w, 8 mapping layers, and the feature
        maps of the code the paper used, 512 at 4..32 px, then 16384 / r (256 at 64 px,
        128 at 128, 64 at 256, 32 at 512)."""
        return cls(img_resolution=img_resolution, channel_base=PAPER_CHANNEL_BASE)

    @classmethod
    def slim(cls, img_resolution: int = 32) -> StyleGANConfig:
        """A narrow network for CPU tests and demos: 64-d z and w, 64 maps at most, 32 on top."""
        return cls(
            img_resolution=img_resolution,
            z_dim=64,
            w_dim=64,
            mapping_layers=4,
            channel_base=32 * img_resolution,
            channel_max=64,
        )

    @property
    def num_ws(self) -> int:
        """AdaIN inputs: two per resolution block, ``2 * (log2(img_resolution) - 1)``."""
        return 2 * len(self.resolutions)

    @property
    def resolutions(self) -> list[int]:
        """Resolutions of the synthesis blocks: ``[4, 8, ..., img_resolution]``."""
        return [2**k for k in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, resolution: int) -> int:
        """Feature maps of the block at ``resolution`` pixels."""
        return max(1, min(self.channel_base // resolution, self.channel_max))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGANConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a typo should not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"StyleGAN config: unknown keys {', '.join(unknown)}")
        return cls(**d)

    def block_index(self, resolution: int | None) -> int:
        """Index of the block at ``resolution`` (None: the last), with a clear error."""
        resolution = self.img_resolution if resolution is None else resolution
        if resolution not in self.resolutions:
            raise ConfigError(
                f"resolution {resolution} is not one of this model's {self.resolutions}"
            )
        return self.resolutions.index(resolution)


# -- generator ------------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    """``z [N, z_dim] -> w [N, w_dim]``: normalise z to unit second moment, then an MLP."""

    def __init__(
        self,
        z_dim: int,  # width of the input latent z
        w_dim: int,  # width of the output latent w (and of the hidden layers)
        num_layers: int,  # fully connected layers, each followed by leaky ReLU
        lr_multiplier: float,  # learning-rate multiplier of every layer
    ) -> None:
        super().__init__()
        widths = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_multiplier=lr_multiplier, activation=True)
            for a, b in itertools.pairwise(widths)
        )

    def forward(self, z: Tensor) -> Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class StyleLayer(nn.Module):
    """Conv (optionally after x2 upsampling), noise, bias, leaky ReLU, AdaIN.

    ``x [N, in, H, W]`` (``[N, in, H/2, W/2]`` when upsampling), ``w [N, w_dim]`` ->
    ``[N, out, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # output feature maps
        resolution: int,  # output height and width in pixels
        w_dim: int,  # width of the latent w feeding the AdaIN
        *,
        upsample: bool = False,  # nearest x2 upsampling before the 3x3 conv
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = EqualConv2d(in_channels, out_channels, 3)
        self.noise = NoiseInput(out_channels, resolution)
        self.adain = AdaIN(out_channels, w_dim)

    def pre_adain(self, x: Tensor, noise_mode: str = "random") -> Tensor:
        """Everything before the AdaIN, which alone sees the style:
        ``x [N, in, H, W]`` (``[N, in, H/2, W/2]`` when upsampling) -> ``[N, out, H, W]``."""
        if self.upsample:
            x = upsample2x(x)
        # the conv's bias is added before the noise: addition commutes, and it saves a pass
        x = self.noise(self.conv(x), noise_mode)
        # no He gain here: the AdaIN's normalisation would divide it out again
        return torch.nn.functional.leaky_relu(x, LRELU_SLOPE, inplace=True)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        return self.adain(self.pre_adain(x, noise_mode), w)


class ConstInput(nn.Module):
    """The 4x4 block's first layer: a learned constant, noise, bias, leaky ReLU, AdaIN."""

    def __init__(
        self,
        channels: int,  # feature maps of the constant
        w_dim: int,  # width of the latent w feeding the AdaIN
    ) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.noise = NoiseInput(channels, 4)
        self.adain = AdaIN(channels, w_dim)

    def pre_adain(self, batch: int, noise_mode: str = "random") -> Tensor:
        """Everything before the AdaIN, which alone sees the style: ``-> [batch, C, 4, 4]``."""
        x = self.const.expand(batch, -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        x = self.noise(x, noise_mode)
        # no He gain here: the AdaIN's normalisation would divide it out again
        return torch.nn.functional.leaky_relu(x, LRELU_SLOPE, inplace=True)

    def forward(self, w: Tensor, noise_mode: str = "random") -> Tensor:
        return self.adain(self.pre_adain(w.shape[0], noise_mode), w)


class SynthesisBlock(nn.Module):
    """Two style layers at one resolution: ``[N, in, r/2, r/2]`` -> ``[N, out, r, r]``."""

    def __init__(
        self,
        in_channels: int,  # feature maps coming from the previous block (ignored at 4x4)
        out_channels: int,  # feature maps of this block
        resolution: int,  # this block's resolution in pixels
        w_dim: int,  # width of the latent w
    ) -> None:
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.layer0: nn.Module = ConstInput(out_channels, w_dim)
        else:
            self.layer0 = StyleLayer(in_channels, out_channels, resolution, w_dim, upsample=True)
        self.layer1 = StyleLayer(out_channels, out_channels, resolution, w_dim)

    def _block_input(self, x: Tensor) -> Tensor:
        """The previous block's output in the memory layout this block runs in."""
        if self.resolution >= CHANNELS_LAST_FROM:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: Tensor | None, ws: Tensor, noise_mode: str = "random") -> Tensor:
        """``ws [N, 2, w_dim]``: this block's two styles."""
        if self.resolution == 4:
            x = self.layer0(ws[:, 0], noise_mode)
        else:
            x = self.layer0(self._block_input(x), ws[:, 0], noise_mode)
        return self.layer1(x, ws[:, 1], noise_mode)

    def pre_adain(
        self, layer: int, x: Tensor | None, batch: int, noise_mode: str = "random"
    ) -> Tensor:
        """Style layer ``layer`` (0 or 1) of this block up to its AdaIN, ``-> [N, out, r, r]``.

        ``x`` is the layer's input: for layer 0 the previous block's output
        ``[N, in, r/2, r/2]`` (None at 4x4, where ``batch`` gives N), for layer 1 layer 0's
        output ``[N, out, r, r]``. ``adain(layer, pre_adain(layer, x, ...), w)`` equals what
        ``forward`` computes for that layer.
        """
        if layer == 1:
            assert x is not None
            return self.layer1.pre_adain(x, noise_mode)
        if self.resolution == 4:
            return self.layer0.pre_adain(batch, noise_mode)
        assert x is not None
        return self.layer0.pre_adain(self._block_input(x), noise_mode)

    def adain(self, layer: int, x: Tensor, w: Tensor) -> Tensor:
        """Style layer ``layer``'s AdaIN: ``x [N, out, r, r]``, ``w [N, w_dim]`` -> same shape.

        Without autograd it overwrites ``x`` (see :class:`AdaIN`): pass a copy to keep it.
        """
        return (self.layer0 if layer == 0 else self.layer1).adain(x, w)


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim] -> img [N, img_channels, r, r]`` with progressive growing."""

    def __init__(
        self,
        cfg: StyleGANConfig,  # sizes; see StyleGANConfig
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()  # one 1x1 conv per resolution, for growing
        for r in cfg.resolutions:
            in_ch = cfg.channels(max(r // 2, 4))
            self.blocks.append(SynthesisBlock(in_ch, cfg.channels(r), r, cfg.w_dim))
            self.to_rgb.append(EqualConv2d(cfg.channels(r), cfg.img_channels, 1))

    def until(self, ws: Tensor, block: int, noise_mode: str = "random") -> Tensor:
        """Activation after block ``block`` (0: 4x4): ``[N, channels(r), r, r]``."""
        x = None
        for b in range(block + 1):
            x = self.blocks[b](x, ws[:, 2 * b : 2 * b + 2], noise_mode)
        assert x is not None
        return x

    def continue_from(
        self,
        x: Tensor,
        ws: Tensor,
        block: int,
        last: int,
        alpha: float = 1.0,
        noise_mode: str = "random",
    ) -> Tensor:
        """Run blocks ``block + 1 .. last`` on ``x`` (block ``block``'s activation); image out."""
        if block > last:
            raise ValueError(f"block {block} is past the output block {last}")
        prev = x
        for b in range(block + 1, last + 1):
            prev = x
            x = self.blocks[b](x, ws[:, 2 * b : 2 * b + 2], noise_mode)
        img = self.to_rgb[last](x)
        if alpha < 1.0 and last > 0:
            if block == last:
                raise ValueError("a fade-in (alpha < 1) needs the activation before the last block")
            # fade-in: the new block's image blended with the previous block's, upsampled
            img_prev = upsample2x(self.to_rgb[last - 1](prev))
            img = torch.lerp(img_prev, img, alpha)
        return img

    def forward(
        self,
        ws: Tensor,
        resolution: int | None = None,
        alpha: float = 1.0,
        noise_mode: str = "random",
    ) -> Tensor:
        last = self.cfg.block_index(resolution)
        if last == 0:
            return self.to_rgb[0](self.until(ws, 0, noise_mode))
        x = self.until(ws, 0, noise_mode)
        return self.continue_from(x, ws, 0, last, alpha, noise_mode)


class Generator(nn.Module):
    """Mapping + synthesis, with the running mean ``w_avg`` for the truncation trick."""

    def __init__(
        self,
        cfg: StyleGANConfig,  # sizes; see StyleGANConfig
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_ws = cfg.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_multiplier
        )
        self.synthesis = SynthesisNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def map(
        self,
        z: Tensor,
        *,
        truncation_psi: float = 1.0,
        update_w_avg: bool = False,
        w_avg_beta: float = 0.995,
    ) -> Tensor:
        """``z [N, z_dim] -> ws [N, num_ws, w_dim]`` (w broadcast to all layers).

        ``truncation_psi < 1`` pulls every w toward ``w_avg`` (0: all equal ``w_avg``).
        ``update_w_avg`` (training) moves ``w_avg`` toward this batch's mean w.
        """
        w = self.mapping(z)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.lerp(w, truncation_psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesise(
        self,
        ws: Tensor,
        *,
        resolution: int | None = None,
        alpha: float = 1.0,
        noise_mode: str = "random",
    ) -> Tensor:
        """``ws [N, num_ws, w_dim] -> img [N, img_channels, r, r]``, r = resolution or full size.

        ``alpha`` in [0, 1] fades block r in over the upsampled image of block r/2.
        """
        return self.synthesis(ws, resolution, alpha, noise_mode)

    def forward(
        self,
        z: Tensor,
        *,
        truncation_psi: float = 1.0,
        resolution: int | None = None,
        alpha: float = 1.0,
        noise_mode: str = "random",
    ) -> Tensor:
        """``z [N, z_dim] -> img [N, img_channels, r, r]``."""
        ws = self.map(z, truncation_psi=truncation_psi)
        return self.synthesise(ws, resolution=resolution, alpha=alpha, noise_mode=noise_mode)

    def mix_styles(
        self,
        ws: Tensor,
        ws2: Tensor,
        *,
        prob: float,
        num_layers: int | None = None,
    ) -> Tensor:
        """Style-mixing regularisation: per sample, with probability ``prob``, the layers from a
        random cutoff in ``[1, num_layers)`` on take ``ws2``'s styles.

        ``ws, ws2 [N, num_ws, w_dim]``; ``num_layers`` (default all) limits the cutoff to the
        layers in use at the current training resolution. Uses torch's global RNG.
        """
        n = ws.shape[0]
        num_layers = self.num_ws if num_layers is None else num_layers
        cutoff = torch.randint(1, max(num_layers, 2), (n,), device=ws.device)
        mixed = torch.rand(n, device=ws.device) < prob
        cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws))
        layer = torch.arange(self.num_ws, device=ws.device).view(1, -1)
        take2 = (layer >= cutoff.view(-1, 1)).unsqueeze(-1)  # [N, num_ws, 1]
        return torch.where(take2, ws2, ws)

    def synthesise_with_activations(
        self,
        ws: Tensor,
        *,
        start_layer: int = 0,
        pre: Tensor | None = None,
        noise_mode: str = "const",
    ) -> tuple[Tensor, list[Tensor]]:
        """The full-size image and every style layer's pre-AdaIN activation, in one pass.

        Style layer ``k`` (block ``k // 2``, layer ``k % 2``) is conv, noise and leaky ReLU,
        then the AdaIN that alone reads its style ``ws[:, k]``; its pre-AdaIN activation
        ``[N, channels(r), r, r]`` does not depend on ``ws[:, k:]``. So after a change of
        the styles from layer ``k`` on, a renderer that kept these activations resumes with
        ``start_layer = k`` and ``pre`` = layer ``k``'s activation (None exactly when
        ``start_layer`` is 0): it skips every earlier layer and layer ``k``'s own conv.
        ``pre`` is not modified.

        ``ws [N, num_ws, w_dim]`` -> ``img [N, img_channels, R, R]`` and the pre-AdaIN
        activations of layers ``start_layer .. num_ws - 1`` in order (the first is ``pre``
        itself when resuming). With ``start_layer = 0`` the image equals
        ``synthesise(ws, noise_mode=noise_mode)`` op for op.
        """
        blocks = self.synthesis.blocks
        if not 0 <= start_layer < self.num_ws:
            raise ValueError(f"start layer {start_layer} is outside 0..{self.num_ws - 1}")
        if (pre is None) != (start_layer == 0):
            raise ValueError("pre (layer start_layer's activation) is needed exactly when > 0")
        batch = ws.shape[0]
        activations: list[Tensor] = []
        x: Tensor | None = None
        for k in range(start_layer, self.num_ws):
            block, layer = blocks[k // 2], k % 2
            if k == start_layer and pre is not None:
                activations.append(pre)
                x = pre.clone()  # the AdaIN below overwrites its input; pre stays as it was
            else:
                x = block.pre_adain(layer, x, batch, noise_mode)
                # a copy to keep, as the AdaIN below overwrites x in place (without autograd)
                activations.append(x.clone())
            x = block.adain(layer, x, ws[:, k])
        assert x is not None
        return self.synthesis.to_rgb[-1](x), activations


# -- discriminator --------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """``[N, channels(r), r, r] -> [N, channels(r/2), r/2, r/2]``: two 3x3 convs, 2x2 box down."""

    def __init__(
        self,
        in_channels: int,  # feature maps at this resolution
        out_channels: int,  # feature maps at half this resolution
    ) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True)

    def forward(self, x: Tensor) -> Tensor:
        return downsample2x(self.conv1(self.conv0(x)))


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end: minibatch stddev, 3x3 conv, dense, dense to one score. ``-> [N, 1]``."""

    def __init__(
        self,
        channels: int,  # feature maps at 4x4
        mbstd_group_size: int,  # samples per group of the minibatch stddev
    ) -> None:
        super().__init__()
        self.mbstd_group_size = mbstd_group_size
        self.conv = EqualConv2d(channels + 1, channels, 3, activation=True)
        self.fc = EqualLinear(channels * 16, channels, activation=True)
        self.out = EqualLinear(channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(minibatch_stddev(x, self.mbstd_group_size))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """``img [N, img_channels, r, r] -> score [N, 1]``, mirroring the generator's growing."""

    def __init__(
        self,
        cfg: StyleGANConfig,  # sizes; see StyleGANConfig
    ) -> None:
        super().__init__()
        self.cfg = cfg
        # indexed like the generator's blocks: entry b works at resolution 4 * 2**b
        self.from_rgb = nn.ModuleList(
            EqualConv2d(cfg.img_channels, cfg.channels(r), 1, activation=True)
            for r in cfg.resolutions
        )
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(cfg.channels(r), cfg.channels(r // 2)) for r in cfg.resolutions[1:]
        )  # blocks[b - 1] takes resolution 4 * 2**b down to half
        self.epilogue = DiscriminatorEpilogue(cfg.channels(4), cfg.mbstd_group_size)

    def _check(self, img: Tensor, resolution: int) -> None:
        if (
            img.ndim != 4
            or img.shape[1] != self.cfg.img_channels
            or img.shape[2:]
            != (
                resolution,
                resolution,
            )
        ):
            raise ValueError(
                f"expected images [N, {self.cfg.img_channels}, {resolution}, {resolution}], "
                f"got {list(img.shape)}"
            )

    def forward(self, img: Tensor, *, resolution: int | None = None, alpha: float = 1.0) -> Tensor:
        """``img [N, img_channels, r, r] -> [N, 1]``; ``alpha < 1`` fades block r in."""
        last = self.cfg.block_index(resolution)
        self._check(img, self.cfg.resolutions[last])
        x = self.from_rgb[last](img)
        if last > 0:
            x = self.blocks[last - 1](x)
            if alpha < 1.0:
                # mirrored fade-in: the half-size image through the older from_rgb
                x_prev = self.from_rgb[last - 1](downsample2x(img))
                x = torch.lerp(x_prev, x, alpha)
            for b in range(last - 1, 0, -1):
                x = self.blocks[b - 1](x)
        return self.epilogue(x)

    def first_conv_features(self, img: Tensor) -> dict[int, Tensor]:
        """``{r: [N, channels(r), r, r]}``: the first conv's output (after its activation) of
        the block at every resolution r >= 64 up to the input's size (``img [N, C, R, R]``).

        Refinement compares these between a generated image and a target (the paper's D_r).
        """
        size = img.shape[-1]
        last = self.cfg.block_index(size)
        self._check(img, size)
        x = self.from_rgb[last](img)
        features: dict[int, Tensor] = {}
        for b in range(last, 0, -1):
            r = self.cfg.resolutions[b]
            if r < 64:
                break
            block = self.blocks[b - 1]
            features[r] = x = block.conv0(x)
            if self.cfg.resolutions[b - 1] >= 64:
                x = downsample2x(block.conv1(x))
        return features
