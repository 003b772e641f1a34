"""Configuration of an encoder training run: one dataclass, the one source of truth.

Defaults follow Fetty et al. 2020, section 2.4: RAdam with beta=(0, 0.99), EMA of the
encoder with decay 0.999, loss = ||w - E(G(w))||_2 + l1(G(w), G(E(G(w)))) with both terms
weighted 1, 224,000 generated images at truncation 0.7 in batches of 8.

The paper gives no learning rate for the encoder. The default 1e-4 is the rate the
StyleGAN-inversion encoders train at (pSp, e4e: 1e-4 for a ResNet encoder into W), and
the paper's own rate for its mapping network; RAdam's variance rectification removes the
need for a warm-up at that rate. Options come in three layers, later ones winning: these
defaults, a ``--config file.json`` and command-line flags (:meth:`EncoderTrainConfig.resolve`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from trainer.errors import ConfigError
from trainer.loops.gan_config import check_option_types, read_config_file
from trainer.networks.encoder import BACKBONES


@dataclass
class EncoderTrainConfig:
    """Everything an encoder training run needs; ``to_dict``/``from_dict`` round-trip JSON."""

    model: str = ""  # model bundle folder (its G_ema is the fixed decoder; encoder.pt goes in)
    out: str = ""  # run folder
    kimg: float = 224.0  # thousands of generated images shown in the whole run
    batch: int = 8  # global batch size (over all processes)
    lr: float = 1e-4  # RAdam learning rate (the paper gives none; see the module doc)
    betas: tuple[float, float] = (0.0, 0.99)  # RAdam betas
    # E_ema = d E_ema + (1 - d) E per step, with d = min(ema_decay, (1 + step) / (10 + step))
    ema_decay: float = 0.999
    truncation_psi: float = 0.7  # training latents are w_avg + psi (w - w_avg)
    w_loss_weight: float = 1.0  # weight of mean_N ||w - E(x)||_2
    image_loss_weight: float = 1.0  # weight of l1(x, G(E(x))) on [-1, 1] images
    backbone: str = "mirror"  # "mirror" (the paper's) or "resnet"
    tick_kimg: float = 4.0  # log a line (training and validation losses) every this many kimg
    snapshot_kimg: float = 16.0  # checkpoints/latest.pt every this many kimg
    val_images: int = 64  # held-out generated images (fixed seed) for the validation loss
    replace_encoder: bool = False  # replace an encoder.pt the bundle already has
    seed: int = 0
    device: str | None = None  # "cpu", "cuda"; None: CUDA when there is one

    def validate(self) -> EncoderTrainConfig:
        """Raise :class:`ConfigError` naming the first bad option; return self."""
        if not self.model:
            raise ConfigError("no model bundle (pass --model BUNDLE_DIR)")
        if not self.out:
            raise ConfigError("no run folder (pass --out RUN_DIR)")
        for name in ("kimg", "tick_kimg", "snapshot_kimg", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be positive")
        if self.batch < 1 or self.val_images < 1:
            raise ConfigError("batch and validation images must be at least 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"EMA decay {self.ema_decay} is not in [0, 1)")
        if not 0.0 < self.truncation_psi <= 1.0:
            raise ConfigError(f"truncation {self.truncation_psi} is not in (0, 1]")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas {self.betas} are not in [0, 1)")
        if self.w_loss_weight < 0 or self.image_loss_weight < 0:
            raise ConfigError("loss weights must not be negative")
        if self.w_loss_weight == 0 and self.image_loss_weight == 0:
            raise ConfigError("the w and image loss weights are both 0: nothing to train")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown encoder backbone {self.backbone!r} (mirror or resnet)")
        from trainer.distributed import check_device  # torch: only once the rest is sound

        check_device(self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], source: str | os.PathLike[str] | None = None
    ) -> EncoderTrainConfig:
        """Build from a (possibly partial) dict; unknown keys are an error naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown option '{unknown[0]}' in the training config", source)
        d = dict(d)
        if "betas" in d:
            try:
                b0, b1 = d["betas"]
                d["betas"] = (float(b0), float(b1))
            except (TypeError, ValueError):
                raise ConfigError("betas is malformed in the training config", source) from None
        check_option_types(cls, d, source)
        return cls(**d)

    @classmethod
    def resolve(
        cls, overrides: dict[str, Any], config_file: str | os.PathLike[str] | None = None
    ) -> EncoderTrainConfig:
        """Defaults, then ``config_file`` (JSON), then ``overrides`` (flags that were set)."""
        d: dict[str, Any] = {}
        if config_file is not None:
            d.update(read_config_file(config_file))
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, config_file).validate()
