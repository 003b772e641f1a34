"""Image-quality metrics: SWD and FID for generators, MAE (HU) / RMSE for image pairs.

* :func:`swd` - multi-scale sliced Wasserstein distance of Karras et al. 2018
  (progressive GAN, appendix D): Laplacian pyramid from the image size down to
  16 px, 7x7 neighbourhoods sampled at random per image and level, descriptors
  normalised per channel, 512 random projections (4 x 128), distance per level =
  mean over projections of the mean ``|sorted a - sorted b|``, times 1e3. Needs no
  pretrained network, so it is always available.
* :func:`fid` / :func:`frechet_distance` - Frechet Inception distance on pool3
  features (2048-d) of :class:`trainer.networks.inception.InceptionFeatures`, which
  needs a user-supplied weights file (:func:`load_inception`).
* :func:`mae` / :func:`rmse` - the paper's per-image errors (CT: MAE in HU after the
  inverse normalisation; MR: RMSE on images in [-1, 1]), optionally inside a mask
  such as :func:`body_mask`, since air dominates a whole-image mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any

import numpy as np
import scipy.linalg
import scipy.ndimage
import torch
import torch.nn.functional as F

from trainer.errors import ConfigError

SWD_MIN_RESOLUTION = 16  # coarsest pyramid level, as in Karras et al. 2018
SWD_PATCH = 7  # neighbourhood size in pixels
SWD_PROJECTIONS_PER_REPEAT = 128  # the reference draws its 512 directions as 4 x 128

# ---------------------------------------------------------------------------------------
# Sliced Wasserstein distance
# ---------------------------------------------------------------------------------------


def _binomial_kernel(channels: int, dtype: torch.dtype) -> torch.Tensor:
    """5x5 binomial (Gaussian-like) filter [1, 4, 6, 4, 1] / 16 per channel, [C, 1, 5, 5]."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype) / 16.0
    return torch.outer(k1, k1).expand(channels, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    # mirror padding, as scipy.ndimage's "mirror" in the reference code
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def _pyr_down(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return _blur(x, kernel)[..., ::2, ::2]


def _pyr_up(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return _blur(up, kernel * 4.0)  # x4 restores the mean lost to the inserted zeros


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of ``images`` [N, C, H, W], finest level first.

    Level ``i`` has size ``H / 2**i``; every level but the last is a band-pass
    (level minus the upsampled next level), the last is the low-pass residual.
    """
    kernel = _binomial_kernel(images.shape[1], images.dtype).to(images.device)
    pyramid = []
    current = images
    for _ in range(levels - 1):
        smaller = _pyr_down(current, kernel)
        pyramid.append(current - _pyr_up(smaller, kernel))
        current = smaller
    pyramid.append(current)
    return pyramid


def _swd_levels(size: int) -> list[int]:
    """Pyramid resolutions for square images of ``size`` px: [size, size/2, ..., 16]."""
    if size < SWD_MIN_RESOLUTION or size & (size - 1):
        raise ConfigError(
            f"SWD needs square images whose size is a power of two >= {SWD_MIN_RESOLUTION} "
            f"px, got {size} px"
        )
    return [size >> i for i in range(int(math.log2(size // SWD_MIN_RESOLUTION)) + 1)]


def _patch_positions(n: int, size: int, per_image: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Top-left corners [n, per_image] of the 7x7 neighbourhoods for one level.

    Drawn from ``seed`` alone, so both image sets of a comparison are sampled at the
    same places (the distance is then exactly symmetric, and 0 for identical sets).
    """
    g = torch.Generator().manual_seed(seed)
    high = size - SWD_PATCH + 1
    ys = torch.randint(0, high, (n, per_image), generator=g)
    xs = torch.randint(0, high, (n, per_image), generator=g)
    return ys, xs


def _descriptors(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Gather 7x7 neighbourhoods: level [N, C, S, S] -> descriptors [N * K, C, 7, 7]."""
    n, c = level.shape[:2]
    offsets = torch.arange(SWD_PATCH, device=level.device)
    ys, xs = ys.to(level.device), xs.to(level.device)
    rows = (ys[..., None] + offsets)[..., :, None]  # [N, K, 7, 1]
    cols = (xs[..., None] + offsets)[..., None, :]  # [N, K, 1, 7]
    idx = torch.arange(n, device=level.device)[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[idx, rows, cols]  # [N, K, 7, 7, C]
    return patches.reshape(-1, SWD_PATCH, SWD_PATCH, c).permute(0, 3, 1, 2)


class SWDAccumulator:
    """Collects SWD descriptors of one image set batch by batch (for large sets).

    ``add`` takes images [N, C, H, W] in any fixed range (the generator's [-1, 1]);
    descriptors are kept on the CPU as float32, ``C * 49`` floats per neighbourhood.
    Two accumulators built with the same ``seed`` and fed the same number of images
    per batch sample the same positions, which keeps :func:`swd_from_accumulators`
    symmetric.
    """

    def __init__(self, *, seed: int = 0, descriptors_per_image: int = 128) -> None:
        self.seed = seed
        self.descriptors_per_image = descriptors_per_image
        self.levels: list[int] | None = None
        self.channels: int | None = None
        self._parts: list[list[torch.Tensor]] = []
        self._batches = 0

    @torch.no_grad()
    def add(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ConfigError(f"SWD needs square images [N, C, H, W], got {tuple(images.shape)}")
        levels = _swd_levels(images.shape[-1])
        if self.levels is None:
            self.levels, self.channels = levels, images.shape[1]
            self._parts = [[] for _ in levels]
        elif levels != self.levels or images.shape[1] != self.channels:
            raise ConfigError(
                f"SWD: images of shape {tuple(images.shape[1:])} do not match the earlier "
                f"{self.channels} x {self.levels[0]} x {self.levels[0]}"
            )
        pyramid = laplacian_pyramid(images.float(), len(levels))
        for i, (size, level) in enumerate(zip(levels, pyramid, strict=True)):
            # a different stream per batch and level, reproducible from the seed
            seed = self.seed * 1_000_003 + self._batches * 101 + i
            ys, xs = _patch_positions(images.shape[0], size, self.descriptors_per_image, seed)
            self._parts[i].append(_descriptors(level, ys, xs).cpu())
        self._batches += 1

    def descriptors(self, level: int) -> torch.Tensor:
        """All descriptors of pyramid level ``level`` (0 = finest), [M, C, 7, 7]."""
        if self.levels is None:
            raise ConfigError("SWD: no images were given")
        return torch.cat(self._parts[level])


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, *, projections: int, generator: torch.Generator
) -> float:
    """Sliced Wasserstein distance between two descriptor sets [M, D] of equal size.

    Random unit directions in blocks of 128 (as the reference); for each, the 1-D
    Wasserstein-1 distance of the projected sets, i.e. the mean |sorted a - sorted b|;
    returns the mean over all directions.
    """
    total, done = 0.0, 0
    while done < projections:
        k = min(SWD_PROJECTIONS_PER_REPEAT, projections - done)
        dirs = torch.randn(a.shape[1], k, generator=generator)
        dirs /= dirs.norm(dim=0, keepdim=True)
        # numpy's sort is several times faster than torch's on the CPU here
        pa = np.sort((a @ dirs).numpy(), axis=0)
        pb = np.sort((b @ dirs).numpy(), axis=0)
        total += float(np.abs(pa - pb).mean(dtype=np.float64)) * k
        done += k
    return total / projections


def swd_from_accumulators(
    real: SWDAccumulator, fake: SWDAccumulator, *, seed: int = 0, projections: int = 512
) -> dict[str, float]:
    """SWD (x 1e3) per pyramid level and their mean from two filled accumulators.

    Descriptors are normalised per channel with the mean and standard deviation of
    both sets pooled. (The reference normalises each set by its own statistics,
    which makes a global intensity or contrast change invisible - exactly what
    matters in HU - so we pool them; the distance stays symmetric.) Sets of
    different size are compared on a random subset of the larger one.
    """
    if real.levels is None or fake.levels is None:
        raise ConfigError("SWD: one of the image sets is empty")
    if real.levels != fake.levels or real.channels != fake.channels:
        raise ConfigError(
            f"SWD: real images ({real.channels} x {real.levels[0]} px) and generated images "
            f"({fake.channels} x {fake.levels[0]} px) differ in size"
        )
    g = torch.Generator().manual_seed(seed)
    result: dict[str, float] = {}
    for i, size in enumerate(real.levels):
        da, db = real.descriptors(i), fake.descriptors(i)
        m = min(len(da), len(db))
        if len(da) != len(db):
            # subsample the larger set (the same subset whichever way round)
            keep = torch.randperm(max(len(da), len(db)), generator=g)[:m]
            da = da[keep] if len(da) > m else da
            db = db[keep] if len(db) > m else db
        both = torch.cat([da, db])
        mean = both.mean(dim=(0, 2, 3), keepdim=True)
        std = both.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        da = ((da - mean) / std).reshape(m, -1)
        db = ((db - mean) / std).reshape(m, -1)
        result[f"swd_{size}"] = 1e3 * sliced_wasserstein(
            da, db, projections=projections, generator=g
        )
    result["swd_mean"] = float(np.mean([result[f"swd_{s}"] for s in real.levels]))
    return result


def swd(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    seed: int = 0,
    descriptors_per_image: int = 128,
    projections: int = 512,
) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance between two image sets [N, C, H, W].

    Images must be square with a power-of-two size >= 16 px and share one intensity
    range (the generator's [-1, 1]). Returns ``{"swd_<size>": ..., ..., "swd_16": ...,
    "swd_mean": ...}``, each x 1e3 (the customary scale). 0 for identical sets,
    symmetric in its arguments, deterministic for a given ``seed``.
    """
    acc_real = SWDAccumulator(seed=seed, descriptors_per_image=descriptors_per_image)
    acc_fake = SWDAccumulator(seed=seed, descriptors_per_image=descriptors_per_image)
    acc_real.add(real)
    acc_fake.add(fake)
    return swd_from_accumulators(acc_real, acc_fake, seed=seed, projections=projections)


# ---------------------------------------------------------------------------------------
# Frechet (Inception) distance
# ---------------------------------------------------------------------------------------


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (float64) of features [N, D]."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features)
    f = f.astype(np.float64, copy=False)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ConfigError(f"FID needs at least 2 feature vectors [N, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.

    As the reference implementations (TTUR, pytorch-fid): if the matrix square root
    is not finite (near-singular covariances, e.g. fewer samples than dimensions)
    ``eps`` is added to both diagonals; a small imaginary part from rounding is
    dropped, a large one means the statistics are unusable and raises ConfigError.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(
            f"FID statistics differ in size: mean {mu1.shape} vs {mu2.shape}, "
            f"covariance {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = float(np.max(np.abs(covmean.imag)))
            raise ConfigError(
                f"FID: the covariance square root has an imaginary part of {worst:.3g}; "
                "use more images than feature dimensions"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(
    real_features: np.ndarray | torch.Tensor, fake_features: np.ndarray | torch.Tensor
) -> float:
    """FID between two feature sets [N, D] (e.g. Inception pool3, D = 2048)."""
    mu1, s1 = feature_statistics(real_features)
    mu2, s2 = feature_statistics(fake_features)
    return frechet_distance(mu1, s1, mu2, s2)


def load_inception(weights: str | PathLike[str] | None, device: str | torch.device = "cpu"):
    """The Inception-v3 feature network with the user's weights, ready for :func:`fid`.

    Without a weights file FID is unavailable (nothing is downloaded): ConfigError.
    """
    from trainer.networks.inception import InceptionFeatures

    if weights is None:
        raise ConfigError(
            "FID needs --inception-weights FILE (an Inception-v3 state_dict, e.g. pytorch-fid's "
            "pt_inception-2015-12-05 or torchvision's inception_v3_google); "
            "use --metric swd without one"
        )
    return InceptionFeatures.from_file(weights).to(device).eval()


@torch.no_grad()
def inception_features(
    network: torch.nn.Module, images: Iterable[torch.Tensor], device: str | torch.device = "cpu"
) -> np.ndarray:
    """Pool3 features [N, 2048] (float64) for batches of images [B, C, H, W] in [-1, 1]."""
    out = [network(batch.to(device)).double().cpu().numpy() for batch in images]
    return np.concatenate(out) if out else np.zeros((0, 2048))


# ---------------------------------------------------------------------------------------
# Per-image errors (the paper's MAE in HU and RMSE)
# ---------------------------------------------------------------------------------------


def _as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _masked_difference(a, b, mask) -> np.ndarray:
    a, b = _as_float64(a), _as_float64(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    d = a - b
    if mask is None:
        return d.ravel()
    m = _as_float64(mask).astype(bool)
    if m.shape != d.shape:
        m = np.broadcast_to(m, d.shape)
    if not m.any():
        raise ValueError("the mask selects no pixels")
    return d[m]


def mae(a, b, mask=None) -> float:
    """Mean absolute error between ``a`` and ``b`` (same shape, numpy or torch), in their
    units: for CT pass HU images (inverse-normalised) to get the paper's MAE in HU.
    ``mask`` (boolean, same shape or broadcastable) restricts it to those pixels."""
    return float(np.mean(np.abs(_masked_difference(a, b, mask))))


def rmse(a, b, mask=None) -> float:
    """Root-mean-square error between ``a`` and ``b`` in their units: the paper reports
    MR error as RMSE on images in [-1, 1]. ``mask`` as in :func:`mae`."""
    return float(np.sqrt(np.mean(np.square(_masked_difference(a, b, mask)))))


def body_mask(image: np.ndarray | torch.Tensor, threshold: float) -> np.ndarray:
    """Boolean body mask of a 2-D slice [y, x] or a volume [z, y, x] (per slice).

    Pixels above ``threshold`` (in the image's units, e.g. -500 HU for CT, or -0.9 on
    the [-1, 1] scale), keeping the largest connected region of each slice and filling
    its holes (bowel gas, bladder in MR), so the table and noise specks fall outside.
    """
    arr = _as_float64(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"body_mask needs a slice [y, x] or volume [z, y, x], got {arr.shape}")
    slices = arr[None] if arr.ndim == 2 else arr
    out = np.zeros(slices.shape, dtype=bool)
    for i, sl in enumerate(slices):
        labels, n = scipy.ndimage.label(sl > threshold)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        out[i] = scipy.ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return out[0] if arr.ndim == 2 else out


# -- the paper's per-slice errors -----------------------------------------------------------

#: Body-mask threshold for CT, HU: air and lung-free outside is near -1000.
CT_BODY_HU = -500.0
#: Body-mask threshold for MR as a fraction of the slice's 99th percentile: MR units
#: vary by scanner, so a fixed number cannot serve every scan.
MR_BODY_FRACTION = 0.1


def truth_body_mask(truth_native: np.ndarray, modality: str) -> np.ndarray:
    """Body mask [y, x] of a ground-truth slice in native units (HU or MR units)."""
    if modality == "CT":
        threshold = CT_BODY_HU
    else:
        threshold = MR_BODY_FRACTION * float(np.percentile(truth_native, 99))
    return body_mask(truth_native, threshold)


def slice_error(
    generated_unit: np.ndarray, truth_unit: np.ndarray, modality: str, normalisation: Any
) -> dict[str, float]:
    """The paper's error of one generated slice against its truth, both ``[y, x]`` on
    [-1, 1]: CT ``{"mae_hu", "mae_hu_body"}`` (MAE in HU after the inverse
    normalisation), MR ``{"rmse", "rmse_body"}`` (RMSE on [-1, 1]). The body mask comes
    from the truth (:func:`truth_body_mask`); an empty mask gives NaN for ``*_body``.

    ``normalisation``: a :class:`trainer.data.normalise.Normalisation`.
    """
    truth_native = normalisation.to_native(np.asarray(truth_unit, np.float32), modality)
    mask = truth_body_mask(truth_native, modality)
    if modality == "CT":
        generated_native = normalisation.to_native(np.asarray(generated_unit, np.float32), "CT")
        whole = mae(generated_native, truth_native)
        body = mae(generated_native, truth_native, mask) if mask.any() else float("nan")
        return {"mae_hu": whole, "mae_hu_body": body}
    whole = rmse(generated_unit, truth_unit)
    body = rmse(generated_unit, truth_unit, mask) if mask.any() else float("nan")
    return {"rmse": whole, "rmse_body": body}


def slice_errors(
    generated_unit: np.ndarray,
    truth_unit: np.ndarray,
    modalities: Sequence[str],
    normalisation: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`slice_error` for a batch ``[N, y, x]``: ``(error [N], error_body [N])``,
    each MAE in HU for a CT slice and RMSE on [-1, 1] for an MR slice."""
    whole = np.empty(len(modalities), np.float64)
    body = np.empty(len(modalities), np.float64)
    for i, modality in enumerate(modalities):
        error = slice_error(generated_unit[i], truth_unit[i], modality, normalisation)
        whole[i], body[i] = error.values()
    return whole, body
