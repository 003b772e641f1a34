"""StyleGAN building blocks: equalised-learning-rate linear and conv layers, noise, AdaIN.

Equalised learning rate (Karras et al. 2018): parameters are stored as N(0, 1) / lr_multiplier
and scaled at run time by ``lr_multiplier / sqrt(fan_in)`` (He's constant), so Adam's
scale-free steps change every layer's effective weights at the same relative speed, and a
layer's effective learning rate is ``lr * lr_multiplier``.

Image tensors are ``[N, C, H, W]`` float32; latent vectors are ``[N, w_dim]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
# leaky ReLU's He gain: keeps activations at unit variance through the network
LRELU_GAIN = math.sqrt(2.0)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate: ``[N, in] -> [N, out]``."""

    def __init__(
        self,
        in_features: int,  # input width
        out_features: int,  # output width
        *,
        bias_init: float = 0.0,  # initial value of the (effective) bias
        lr_multiplier: float = 1.0,  # this layer's learning rate relative to the optimiser's
        activation: bool = False,  # leaky ReLU 0.2 with He gain after the affine map
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.lr_multiplier = lr_multiplier
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, in] -> [N, out]``."""
        x = torch.addmm(self.bias * self.lr_multiplier, x, (self.weight * self.weight_gain).t())
        if self.activation:
            x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
        return x

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, lr_multiplier={self.lr_multiplier}"


class EqualConv2d(nn.Module):
    """Square convolution, stride 1, 'same' zero padding, equalised learning rate.

    ``[N, in, H, W] -> [N, out, H, W]``. The weight is scaled once per call and handed to
    ``F.conv2d`` (oneDNN on CPU, cuDNN on GPU), the fastest path PyTorch has.
    """

    def __init__(
        self,
        in_channels: int,  # input feature maps
        out_channels: int,  # output feature maps
        kernel_size: int,  # odd kernel width in pixels (1 or 3)
        *,
        bias: bool = True,  # learned per-channel bias added by the convolution
        activation: bool = False,  # leaky ReLU 0.2 with He gain after the convolution
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, in, H, W] -> [N, out, H, W]``."""
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.kernel_size // 2)
        if self.activation:
            x = F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
        return x

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of one image through this layer at ``height x width`` output."""
        return self.in_channels * self.out_channels * self.kernel_size**2 * height * width

    def extra_repr(self) -> str:
        k = self.kernel_size
        return f"{self.in_channels} -> {self.out_channels}, kernel {k}x{k}"


class NoiseInput(nn.Module):
    """Per-pixel Gaussian noise with a learned per-channel strength (StyleGAN's B input).

    ``noise_mode``: "random" draws fresh noise each call, "const" uses a fixed map stored
    with the model (so an image is a pure function of ``ws``), "none" adds nothing.
    """

    def __init__(
        self,
        channels: int,  # feature maps the noise is added to
        resolution: int,  # height and width of those maps in pixels
    ) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, noise_mode: str = "random") -> Tensor:
        """``x [N, C, H, W]`` plus noise ``[N, 1, H, W]`` times strength ``[C]``, added in place."""
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
        else:
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', not {noise_mode!r}")
        # in place: x is a fresh conv output, and a large new tensor costs more than the add
        return x.addcmul_(noise.to(x.dtype), self.strength.view(1, -1, 1, 1).to(x.dtype))


class AdaIN(nn.Module):
    """Adaptive instance normalisation: each map normalised, then scaled and shifted by a style.

    The style ``(scale, shift)`` per channel is a learned affine map of ``w``; the scale's bias
    starts at 1 so a fresh layer passes the normalised maps through.
    """

    def __init__(
        self,
        channels: int,  # feature maps to normalise and style
        w_dim: int,  # width of the intermediate latent w
    ) -> None:
        super().__init__()
        self.channels = channels
        self.affine_scale = EqualLinear(w_dim, channels, bias_init=1.0)
        self.affine_shift = EqualLinear(w_dim, channels, bias_init=0.0)

    def forward(self, x: Tensor, w: Tensor, eps: float = 1e-8) -> Tensor:
        """``x [N, C, H, W]``, ``w [N, w_dim]`` -> ``[N, C, H, W]``."""
        # mean and mean square in two plain reductions: several times faster on CPU than
        # torch.var_mean, and exact enough for activations of order one
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x.square().mean(dim=(2, 3), keepdim=True) - mean.square()).clamp_min(0.0)
        scale = self.affine_scale(w).view(-1, self.channels, 1, 1).to(x.dtype)
        shift = self.affine_shift(w).view(-1, self.channels, 1, 1).to(x.dtype)
        # one fused pass over x: scale' * x + shift', with the normalisation folded in
        scale = scale * torch.rsqrt(var + eps)
        shift = shift - mean * scale
        if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
            return torch.addcmul(shift, x, scale)
        # inference: overwrite x (allocating a large output costs more than the arithmetic)
        return torch.addcmul(shift, x, scale, out=x)

    def macs(self) -> int:
        """Multiply-accumulates of the two style affines for one image."""
        return 2 * self.affine_scale.in_features * self.channels


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour x2 upsampling: ``[N, C, H, W] -> [N, C, 2H, 2W]``."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: Tensor) -> Tensor:
    """2x2 box downsampling: ``[N, C, H, W] -> [N, C, H/2, W/2]``."""
    return F.avg_pool2d(x, 2)


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one map: the stddev of features across a group of samples, averaged.

    ``[N, C, H, W] -> [N, C + 1, H, W]``. The group is the largest divisor of N not above
    ``group_size``, so any batch size works.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, -1, c, h, w)
    y = (y.var(dim=0, correction=0) + 1e-8).sqrt()  # [N/g, C, H, W]
    y = y.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)  # [N/g, 1, 1, 1]
    y = y.repeat(g, 1, h, w)  # [N, 1, H, W]
    return torch.cat([x, y], dim=1)
