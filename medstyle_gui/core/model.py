"""A loaded model bundle: the networks and everything needed to use them, in one object.

``load_model(folder)`` checks the bundle's hashes, loads every part with weights-only
loading and returns a :class:`Model`: the EMA generator, the discriminator (refinement
compares its first-conv features), the encoder, the fitted directions, the intensity
normalisation the model was trained with, and the mean latent that eq. 3 and the
truncation trick pull toward. Every core function (embed, render, evaluate, generate)
takes a ``Model``; none of them reads bundle files itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from medstyle_gui.core.latent import mean_latent
from trainer.bundle import (
    GENERATOR_FILE,
    read_bundle_encoder,
    read_bundle_generator,
    verify_bundle,
)
from trainer.data.normalise import PAPER, Normalisation
from trainer.directions import Direction, directions_embedding, load_directions
from trainer.errors import ConfigError
from trainer.networks.encoder import Encoder
from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig


@dataclass
class Model:
    """Everything in a model bundle, on one device, ready for inference.

    The networks are in eval mode with ``requires_grad`` off: refinement optimises
    latents, never weights.
    """

    folder: Path
    manifest: dict[str, Any]
    G: Generator
    D: Discriminator | None
    encoder: Encoder | None
    directions: dict[str, Direction]
    normalisation: Normalisation
    w_avg: torch.Tensor  # [w_dim], the generator's tracked mean of W
    w_mean: torch.Tensor  # [w_dim], mean of 1,000 random w (seed 0): eq. 3's centre
    sha256: str  # of generator.pt: names the model in provenance records
    device: torch.device
    name: str = field(default="")
    #: how the directions' latents were embedded ({"refine_steps", "refine_lr", ...}), or
    #: None; see ``core.embed.refinement_settings``
    embedding: dict[str, Any] | None = None

    @property
    def config(self) -> StyleGANConfig:
        return self.G.cfg

    @property
    def resolution(self) -> int:
        """Image size in pixels (the model matrix is resolution x resolution)."""
        return self.G.cfg.img_resolution

    @property
    def num_ws(self) -> int:
        return self.G.num_ws

    @property
    def w_dim(self) -> int:
        return self.G.cfg.w_dim

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """``w [N, w_dim] -> ws [N, num_ws, w_dim]`` (one w for every style layer)."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    @torch.no_grad()
    def synthesise(self, w: torch.Tensor) -> torch.Tensor:
        """``w [N, w_dim] -> images [N, 1, R, R]`` on [-1, 1], deterministic noise."""
        return self.G.synthesise(self.broadcast(w.to(self.device)), noise_mode="const")


def _frozen(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    module.to(device).eval()
    module.requires_grad_(False)
    return module


def load_model(
    folder: str | PathLike[str], device: str | torch.device = "cpu", *, verify: bool = True
) -> Model:
    """Load a model bundle folder (see :mod:`trainer.bundle`).

    Raises BundleError / CheckpointError naming the file for a missing, altered or
    malformed bundle, and ConfigError for an unusable device.
    """
    folder = Path(folder)
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this machine has no CUDA GPU")
    manifest = verify_bundle(folder) if verify else None
    state = read_bundle_generator(folder, verify=False)
    cfg = StyleGANConfig.from_dict(state["config"])
    G = Generator(cfg)
    G.load_state_dict(state["G_ema"])
    G.w_avg.copy_(state["w_avg"])
    D = None
    if state.get("D") is not None:
        D = Discriminator(cfg)
        D.load_state_dict(state["D"])
        D = _frozen(D, device)
    G = _frozen(G, device)
    encoder = read_bundle_encoder(folder)
    if encoder is not None:
        encoder = _frozen(encoder, device)
    directions = load_directions(folder, verify=False)  # verified above (or not wanted)
    for direction in directions.values():
        direction.to(device)
    if manifest is None:
        from trainer.bundle import read_bundle_manifest

        manifest = read_bundle_manifest(folder)
    norm = manifest.get("normalisation")
    normalisation = Normalisation.from_dict(norm) if norm else PAPER
    return Model(
        folder=folder,
        manifest=manifest,
        G=G,
        D=D,
        encoder=encoder,
        directions=directions,
        normalisation=normalisation,
        w_avg=G.w_avg.detach().clone(),
        w_mean=mean_latent(G).detach(),
        sha256=manifest["files"][GENERATOR_FILE]["sha256"],
        device=device,
        name=str(manifest.get("name") or folder.name),
        embedding=directions_embedding(folder, manifest) if directions else None,
    )
