"""Configuration of a GAN training run: one dataclass, the one source of truth.

Defaults follow Fetty et al. 2020 (StyleGAN with progressive growing): Adam
beta=(0, 0.99), lr 1e-3 (the mapping network's 1e-4 comes from its lr multiplier in
the network), EMA of G with decay 0.999, style mixing with probability 0.9, WGAN-GP
(lambda 10, drift 1e-3) and a batch size that shrinks from 256 to 8 as the
resolution grows. Options come in three layers, later ones winning: these defaults,
a ``--config file.json`` and command-line flags (:meth:`GANTrainConfig.resolve`). The
resolved config is written into the run folder and into every checkpoint.

Progressive growing is a schedule in images shown (not steps, so it does not depend
on the batch size): the first resolution trains for ``stabilise_kimg``; every later
resolution first fades in over ``fade_kimg`` (``alpha`` 0 -> 1) and then stabilises
for ``stabilise_kimg``; the final resolution trains until ``kimg`` is reached.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError

LOSSES = ("wgan-gp", "r1")
METRICS = ("swd", "fid")
NETWORK_PRESETS = ("paper", "slim")

#: The paper's batch size per resolution (256 at low resolution down to 8 at 256+ px).
PAPER_BATCH_SIZES = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 8}


@dataclass
class GANTrainConfig:
    """Everything a GAN training run needs; ``to_dict``/``from_dict`` round-trip JSON."""

    data: str = ""  # HDF5 slice dataset (medstyle dataset build)
    out: str = ""  # run folder
    modality: str | None = None  # "CT", "MR" or None for both
    resolution: int | None = None  # final image size, px; None: the dataset's size
    start_resolution: int = 8  # progressive growing starts here, px
    fade_kimg: float = 600.0  # thousands of images per fade-in phase
    stabilise_kimg: float = 600.0  # thousands of images per stabilise phase
    kimg: float = 12000.0  # thousands of real images shown in the whole run
    batch_sizes: dict[int, int] = field(default_factory=lambda: dict(PAPER_BATCH_SIZES))
    network: str = "paper"  # StyleGANConfig preset: "paper" (full width) or "slim" (CPU)
    network_overrides: dict[str, Any] = field(default_factory=dict)  # StyleGANConfig fields
    lr: float = 1e-3  # Adam learning rate of G and D
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas
    # G_ema = d G_ema + (1 - d) G per step, with d = min(ema_decay, (1 + step) / (10 + step))
    ema_decay: float = 0.999
    style_mixing_prob: float = 0.9
    loss: str = "wgan-gp"  # "wgan-gp" or "r1" (non-saturating + R1)
    gp_lambda: float = 10.0  # WGAN-GP gradient penalty weight
    drift: float = 1e-3  # WGAN-GP drift term weight (keeps D(real) near 0)
    r1_gamma: float = 10.0  # R1 penalty weight (loss "r1")
    tick_kimg: float = 4.0  # log a line every this many kimg
    snapshot_kimg: float = 100.0  # samples, metric, snapshot checkpoint
    checkpoint_kimg: float | None = None  # latest.pt every this many kimg; None: snapshot_kimg
    metric: str = "swd"  # "swd" or "fid" (needs inception_weights)
    metric_images: int = 10000  # generated and real images per metric evaluation
    inception_weights: str | None = None  # state_dict file for FID's Inception network
    sample_grid: int = 4  # samples/ PNG grids are sample_grid x sample_grid images
    seed: int = 0
    workers: int = 2  # DataLoader worker processes per rank
    device: str | None = None  # "cpu", "cuda"; None: CUDA when there is one
    channels_last: bool = False
    bf16: bool = False  # bfloat16 autocast (GPUs; CPUs with AVX512-BF16 or AMX: 1.75x here)
    # a model bundle whose G_ema and D the run starts from (fresh optimisers): continues the
    # training of a shipped model whose run folder is gone; trains at its resolution only
    init_from: str | None = None

    # -- derived ---------------------------------------------------------------------

    def resolutions(self, final: int) -> list[int]:
        """Training resolutions from ``start_resolution`` to ``final``, px."""
        return [
            2**k for k in range(int(math.log2(self.start_resolution)), int(math.log2(final)) + 1)
        ]

    def batch_size(self, resolution: int) -> int:
        """Global batch size (over all processes) at ``resolution``: the entry for it,
        else the one for the nearest lower resolution listed."""
        lower = [r for r in self.batch_sizes if r <= resolution]
        if not lower:
            return self.batch_sizes[min(self.batch_sizes)]
        return self.batch_sizes[max(lower)]

    def phase_at(self, images_seen: int, final: int) -> Phase:
        """Where the schedule is after ``images_seen`` real images."""
        res = self.resolutions(final)
        kimg = images_seen / 1000.0
        start = 0.0
        for i, r in enumerate(res):
            if i > 0:
                if kimg < start + self.fade_kimg:
                    alpha = (kimg - start) / self.fade_kimg if self.fade_kimg > 0 else 1.0
                    return Phase(r, alpha, "fade", i)
                start += self.fade_kimg
            if i == len(res) - 1 or kimg < start + self.stabilise_kimg:
                return Phase(r, 1.0, "stabilise", i)
            start += self.stabilise_kimg
        raise AssertionError("unreachable")  # the last resolution always returns

    # -- validation and (de)serialisation -------------------------------------------

    def validate(self) -> GANTrainConfig:
        """Raise :class:`ConfigError` naming the first bad option; return self."""

        def power_of_two(name: str, value: int, low: int) -> None:
            if value < low or value > 512 or value & (value - 1):
                raise ConfigError(f"{name} {value} is not a power of two between {low} and 512")

        if not self.data:
            raise ConfigError("no training data (pass --data DATA.h5)")
        if not self.out:
            raise ConfigError("no run folder (pass --out RUN_DIR)")
        if self.resolution is not None:
            power_of_two("resolution", self.resolution, 32)  # StyleGANConfig's smallest
        power_of_two("start resolution", self.start_resolution, 4)
        if self.resolution is not None and self.start_resolution > self.resolution:
            raise ConfigError(
                f"start resolution {self.start_resolution} is above the resolution "
                f"{self.resolution}"
            )
        for name in ("fade_kimg", "stabilise_kimg", "tick_kimg", "snapshot_kimg"):
            if not getattr(self, name) >= 0 or (name != "fade_kimg" and getattr(self, name) == 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be positive")
        if not self.kimg > 0:
            raise ConfigError("kimg must be positive")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes.values()):
            raise ConfigError("batch sizes must be positive whole numbers")
        for res in self.batch_sizes:  # "RES:N": a resolution the schedule can reach
            power_of_two("batch size resolution", res, 4)
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r} (wgan-gp or r1)")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown metric {self.metric!r} (swd or fid)")
        if self.metric == "fid" and not self.inception_weights:
            raise ConfigError("metric fid needs --inception-weights FILE (or use --metric swd)")
        if self.metric == "fid" and not Path(self.inception_weights).is_file():
            raise ConfigError("does not exist (--inception-weights)", self.inception_weights)
        if self.network not in NETWORK_PRESETS:
            raise ConfigError(f"unknown network preset {self.network!r} (paper or slim)")
        if self.modality not in (None, "CT", "MR"):
            raise ConfigError(f"unknown modality {self.modality!r} (CT or MR)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"EMA decay {self.ema_decay} is not in [0, 1)")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ConfigError(f"style mixing probability {self.style_mixing_prob} is not in [0, 1]")
        if not self.lr > 0:
            raise ConfigError("learning rate must be positive")
        if self.metric_images < 2 or self.sample_grid < 1 or self.workers < 0:
            raise ConfigError("metric images >= 2, sample grid >= 1 and workers >= 0, please")
        from trainer.distributed import check_device  # torch: only once the rest is sound

        check_device(self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["batch_sizes"] = {str(k): v for k, v in sorted(self.batch_sizes.items())}
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], source: str | os.PathLike[str] | None = None
    ) -> GANTrainConfig:
        """Build from a (possibly partial) dict; unknown keys are an error naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown option '{unknown[0]}' in the training config", source)
        d = dict(d)
        try:
            if "batch_sizes" in d:
                d["batch_sizes"] = {int(k): int(v) for k, v in d["batch_sizes"].items()}
            if "betas" in d:
                b0, b1 = d["betas"]
                d["betas"] = (float(b0), float(b1))
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(
                "batch_sizes or betas is malformed in the training config", source
            ) from None
        check_option_types(cls, d, source)
        return cls(**d)

    @classmethod
    def resolve(
        cls, overrides: dict[str, Any], config_file: str | os.PathLike[str] | None = None
    ) -> GANTrainConfig:
        """Defaults, then ``config_file`` (JSON), then ``overrides`` (flags that were set)."""
        d: dict[str, Any] = {}
        if config_file is not None:
            d.update(read_config_file(config_file))
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, config_file).validate()


@dataclass(frozen=True)
class Phase:
    """A point of the progressive-growing schedule."""

    resolution: int  # training resolution, px
    alpha: float  # fade-in weight of the newest block, 0..1 (1 when stabilising)
    name: str  # "fade" or "stabilise"
    index: int  # index of the resolution in the schedule (0 = start resolution)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object of training options; :class:`ConfigError` if unreadable."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("does not exist", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"is not a readable JSON file ({err})", path) from None
    if not isinstance(d, dict):
        raise ConfigError("must hold a JSON object of training options", path)
    return d


#: How a config's value types are named to the user.
_TYPE_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    dict: "an object",
    tuple: "a list",
    list: "a list",
    type(None): "null",
}


def check_option_types(cls: type, d: dict[str, Any], source: str | os.PathLike[str] | None) -> None:
    """Refuse a value of the wrong JSON type for a field of the config dataclass ``cls``
    (``"kimg": "lots"``), naming the option, before any comparison trips over it."""
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        hint = hints[key]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = [typing.get_origin(a) or a for a in (typing.get_args(hint) if union else (hint,))]
        if Any in allowed:
            continue
        if isinstance(value, bool):  # JSON true is no number
            fits = bool in allowed
        else:
            fits = isinstance(value, tuple(allowed)) or (
                float in allowed and isinstance(value, int)
            )
        if not fits:
            wanted = " or ".join(_TYPE_WORDS.get(a, a.__name__) for a in allowed)
            raise ConfigError(f"option '{key}' is {value!r}; it takes {wanted}", source)


def parse_batch_sizes(text: str) -> dict[int, int]:
    """``"64"`` (every resolution) or ``"8:256,32:64,256:8"`` (resolution:batch)."""
    try:
        if ":" not in text:
            return {4: int(text)}
        pairs = (item.split(":") for item in text.split(",") if item.strip())
        return {int(r): int(b) for r, b in pairs}
    except ValueError:
        raise ConfigError(
            f"batch sizes {text!r} are not 'N' or 'RES:N,RES:N' (e.g. 8:256,32:64)"
        ) from None
