"""Inception-v3 up to the pool3 layer (2048-d features), the network FID is defined on.

The definition is ours (torchvision is not a dependency) but keeps torchvision's
module and parameter names, so either of the usual weight files loads into it:

* pytorch-fid's ``pt_inception-2015-12-05-*.pth`` - the original TensorFlow FID
  network; FID values are comparable with the published ones only with these.
  It has a 1008-way ``fc`` layer and is run as ``fid_variant=True`` (average pools
  that ignore padding, a max pool in the last block), detected automatically.
* torchvision's ``inception_v3_google-*.pth`` (ImageNet classifier, 1000-way ``fc``).

Nothing is downloaded: the user supplies the file (``--inception-weights FILE``),
which is read with ``torch.load(weights_only=True)``. The classifier head (``fc``,
``AuxLogits``) is ignored. Input: images [N, C, H, W] in [-1, 1] (the generator's
range); one channel is repeated to three, and the image is resized bilinearly to
299 x 299.
"""

from __future__ import annotations

from os import PathLike

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.errors import ConfigError

INPUT_SIZE = 299  # pixels; the size the network was trained at
FEATURE_DIM = 2048  # pool3 features


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, as the TensorFlow original) + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor, fid_variant: bool) -> Tensor:
    # The TensorFlow graph FID was defined on averages over real pixels only.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not fid_variant)


class InceptionA(nn.Module):
    """35 x 35 block (Mixed_5b..5d)."""

    def __init__(self, in_channels: int, pool_features: int, fid_variant: bool) -> None:
        super().__init__()
        self.fid_variant = fid_variant
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x, self.fid_variant))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (Mixed_6a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""

    def __init__(self, in_channels: int, channels_7x7: int, fid_variant: bool) -> None:
        super().__init__()
        self.fid_variant = fid_variant
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool(x, self.fid_variant))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (Mixed_7a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 branches (Mixed_7b, 7c).

    ``pool``: "avg" (torchvision), "avg-valid" (FID's Mixed_7b) or "max" (FID's
    Mixed_7c, a quirk of the TensorFlow graph the published FIDs come from).
    """

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x, fid_variant=self.pool == "avg-valid")
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features: images [N, C, H, W] in [-1, 1] -> [N, 2048].

    ``fid_variant`` selects the TensorFlow FID network's pooling quirks (use it with
    pytorch-fid's weights); False gives torchvision's Inception-v3.
    """

    def __init__(self, fid_variant: bool = True) -> None:
        super().__init__()
        self.fid_variant = fid_variant
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32, fid_variant=fid_variant)
        self.Mixed_5c = InceptionA(256, pool_features=64, fid_variant=fid_variant)
        self.Mixed_5d = InceptionA(288, pool_features=64, fid_variant=fid_variant)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128, fid_variant=fid_variant)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, fid_variant=fid_variant)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, fid_variant=fid_variant)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, fid_variant=fid_variant)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg-valid" if fid_variant else "avg")
        self.Mixed_7c = InceptionE(2048, pool="max" if fid_variant else "avg")

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey CT/MR -> the three colour inputs
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    @classmethod
    def from_file(cls, path: str | PathLike[str], fid_variant: bool | None = None):
        """Build the network and load a weights file (a plain state_dict, read with
        ``weights_only=True``). ``fid_variant=None`` picks the FID network when the file
        has the TensorFlow graph's 1008-way classifier. Errors name the file."""
        from trainer.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        if "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        fc = state.get("fc.weight")
        if fid_variant is None:
            fid_variant = fc is None or (isinstance(fc, Tensor) and fc.shape[0] == 1008)
        net = cls(fid_variant=fid_variant)
        features = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        try:
            result = net.load_state_dict(features, strict=False)
        except RuntimeError as exc:  # a weight of the wrong shape
            first = str(exc).strip().splitlines()[-1].strip()
            raise ConfigError(f"is not an Inception-v3 weights file: {first}", path) from exc
        # BatchNorm's step counter is bookkeeping, not a weight; older files lack it.
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            problem = (
                f"lacks {len(missing)} Inception-v3 weights (e.g. {missing[0]})"
                if missing
                else f"has {len(result.unexpected_keys)} unknown entries "
                f"(e.g. {result.unexpected_keys[0]})"
            )
            raise ConfigError(f"is not an Inception-v3 weights file: it {problem}", path)
        return net.eval()
