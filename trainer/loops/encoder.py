"""Training the image -> w encoder on generated images (Fetty et al. 2020, section 2.4).

The bundle's G_ema is a fixed decoder. Each step draws z, maps it to ``w`` at truncation
0.7, renders ``x = G(w)`` (const noise, so an image is a pure function of w) and trains E on
``||w - E(x)||_2 + l1(x, G(E(x)))`` with RAdam; an EMA copy of E is what ships. Under
torchrun every process takes its share of the global batch and the gradients are averaged
(:mod:`trainer.distributed`), as in the GAN loop.

Run folder (``cfg.out``)::

    config.json            the resolved EncoderTrainConfig, the encoder config, the generator hash
    log.jsonl              a validation line before the first step, then one line per tick
    checkpoints/latest.pt  everything needed to resume exactly
    encoder.pt             the EMA encoder at the end (also added to the bundle)
    tensorboard/           events, when the tensorboard package is installed

Reproducibility: the latents of step k come from a generator seeded with (seed, k) and
drawn for the global batch, so a resumed run draws what the uninterrupted run would have,
and N processes with batch B/N see what one process with batch B sees. The validation
batch is drawn once from its own seed and never trained on.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainer import distributed
from trainer.bundle import (
    ENCODER_FILE,
    GENERATOR_FILE,
    BundleError,
    read_bundle_generator,
    sha256_file,
)
from trainer.errors import ConfigError
from trainer.files import ensure_can_write
from trainer.loops.encoder_config import EncoderTrainConfig
from trainer.loops.run_folder import RunFolder
from trainer.networks.encoder import Encoder, EncoderConfig, encoder_file_state
from trainer.networks.stylegan import Generator, StyleGANConfig

CHECKPOINT_FORMAT = "medstyle-encoder-checkpoint"
_VAL_CHUNK = 16  # validation images per forward pass (bounded memory at 256+ px)


def encoder_losses(
    G: Generator, E: Encoder, w: torch.Tensor, x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The paper's two terms for a batch: ``w [N, w_dim]`` and its image ``x [N, C, R, R]``.

    ``loss_w`` = mean over N of the Euclidean distance ``||w - E(x)||_2``; ``loss_img`` =
    mean absolute difference between ``x`` and ``G(E(x))`` on the [-1, 1] scale.
    """
    w_hat = E(x)
    x_hat = G.synthesise(w_hat.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
    return {
        "loss_w": (w - w_hat).float().norm(dim=1).mean(),
        "loss_img": F.l1_loss(x_hat.float(), x.float()),
    }


def check_existing_encoder(cfg: EncoderTrainConfig) -> None:
    """Refuse, before any work, to train for a bundle that already has an encoder unless
    ``cfg.replace_encoder``."""
    if (Path(cfg.model) / ENCODER_FILE).exists() and not cfg.replace_encoder:
        raise BundleError(
            f"already has an {ENCODER_FILE} (pass --replace to train a new one)", cfg.model
        )


def check_run(cfg: EncoderTrainConfig, world_size: int) -> None:
    """Checks that need no network: the bundle's encoder slot (the bundle must take the
    new encoder.pt at the end, so a read-only one fails now) and the batch split."""
    check_existing_encoder(cfg)
    if Path(cfg.model).is_dir():  # a missing bundle: the bundle reader says it better
        ensure_can_write(Path(cfg.model) / ENCODER_FILE, overwrite=True)
    if cfg.batch % world_size:
        raise ConfigError(f"batch size {cfg.batch} does not split over {world_size} processes")


def train_encoder(
    cfg: EncoderTrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Path:
    """Train (or with ``resume`` continue) the encoder run ``cfg.out``; return the run folder.

    At the end the EMA encoder is written to ``cfg.out/encoder.pt`` and added to the bundle
    ``cfg.model``. ``stop`` (e.g. a GUI's cancel button) is asked after every step; when it
    returns True the run saves ``checkpoints/latest.pt`` and returns without touching the
    bundle (continue it with ``resume=True``). Under torchrun every process calls this;
    rank 0 alone writes files.
    """
    info = distributed.init(cfg.device)
    try:
        return _Run(cfg, info, resume).train(progress and info.is_main, stop)
    finally:
        distributed.cleanup()


class _Run:
    def __init__(self, cfg: EncoderTrainConfig, info: distributed.DistInfo, resume: bool) -> None:
        self.cfg, self.info, self.out = cfg, info, Path(cfg.out)
        check_run(cfg, info.world_size)
        if not resume and self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError("already holds a run (pass --resume to continue it)", self.out)
        state = read_bundle_generator(cfg.model)  # verifies the bundle's hashes
        self.generator_sha256 = sha256_file(Path(cfg.model) / GENERATOR_FILE)
        self.g_cfg = StyleGANConfig.from_dict(state["config"])
        dev = info.device
        self.G = Generator(self.g_cfg)
        self.G.load_state_dict(state["G_ema"])
        self.G = self.G.to(dev).eval().requires_grad_(False)
        self.enc_cfg = EncoderConfig.for_generator(self.g_cfg, backbone=cfg.backbone)

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.E = Encoder(self.enc_cfg).to(dev)
        with torch.no_grad():
            self.E.w_avg.copy_(self.G.w_avg)
        self.E_ema = copy.deepcopy(self.E).eval().requires_grad_(False)
        self.opt = torch.optim.RAdam(self.E.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.images_seen, self.step = 0, 0
        self.folder: RunFolder | None = None  # rank 0: config, log, TensorBoard
        self.val_w, self.val_x = self._validation_batch()
        if resume:
            self._load(self.out / "checkpoints" / "latest.pt")
        distributed.broadcast_module(self.E)
        distributed.broadcast_module(self.E_ema)
        distributed.barrier()  # every rank has checked the run folder before rank 0 writes
        if info.is_main:
            self._prepare_folder(resume)
        distributed.barrier()

    # -- samples --------------------------------------------------------------------------

    @torch.no_grad()
    def _render(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [N, z_dim]`` -> ``(w [N, w_dim], x [N, C, R, R])`` at the run's truncation."""
        ws = self.G.map(z.to(self.info.device), truncation_psi=self.cfg.truncation_psi)
        return ws[:, 0], self.G.synthesise(ws, noise_mode="const")

    def _validation_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # step k's latents come from seed * 1_000_003 + k; torch keeps only the low 32 bits
        # of a seed, so the held-out batch takes "step -1", which no run reaches
        gen = torch.Generator().manual_seed(_step_seed(self.cfg.seed, -1))
        z = torch.randn(self.cfg.val_images, self.g_cfg.z_dim, generator=gen)
        pairs = [self._render(chunk) for chunk in z.split(_VAL_CHUNK)]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The EMA encoder's losses on the held-out batch: ``val_loss_w``, ``val_loss_img``,
        ``val_loss`` (weighted sum), each the mean over the batch."""
        sums = {"loss_w": 0.0, "loss_img": 0.0}
        for w, x in zip(self.val_w.split(_VAL_CHUNK), self.val_x.split(_VAL_CHUNK), strict=True):
            for k, v in encoder_losses(self.G, self.E_ema, w, x).items():
                sums[k] += float(v) * w.shape[0]
        n = self.val_w.shape[0]
        out = {f"val_{k}": v / n for k, v in sums.items()}
        out["val_loss"] = (
            self.cfg.w_loss_weight * out["val_loss_w"]
            + self.cfg.image_loss_weight * out["val_loss_img"]
        )
        return out

    # -- folder, log, checkpoints ---------------------------------------------------------

    def _prepare_folder(self, resume: bool) -> None:
        resolved = {
            **self.cfg.to_dict(),
            "encoder_config": self.enc_cfg.to_dict(),
            "generator_sha256": self.generator_sha256,
        }
        self.folder = RunFolder(self.out, resolved, resume=resume, images_seen=self.images_seen)

    def _log(self, record: dict[str, Any]) -> None:
        self.folder.log(record)

    def _state(self) -> dict[str, Any]:
        from trainer.checkpoint import rng_state

        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "encoder_config": self.enc_cfg.to_dict(),
            "generator_sha256": self.generator_sha256,
            "E": self.E.state_dict(),
            "E_ema": self.E_ema.state_dict(),
            "opt": self.opt.state_dict(),
            "progress": {"images_seen": self.images_seen, "step": self.step},
            "rng": rng_state(),
        }

    def _load(self, path: Path) -> None:
        from trainer.checkpoint import load_checkpoint, set_rng_state

        if not path.exists():
            raise ConfigError("has no checkpoint to resume from (start without --resume)", path)
        state = load_checkpoint(path, map_location=self.info.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError("is not a medstyle encoder training checkpoint", path)
        if state["encoder_config"] != self.enc_cfg.to_dict():
            raise ConfigError("was written for another encoder configuration than this run's", path)
        if state["generator_sha256"] != self.generator_sha256:
            raise ConfigError(
                f"was trained against another generator than the one in {self.cfg.model}", path
            )
        self.E.load_state_dict(state["E"])
        self.E_ema.load_state_dict(state["E_ema"])
        self.opt.load_state_dict(state["opt"])
        self.images_seen = int(state["progress"]["images_seen"])
        self.step = int(state["progress"]["step"])
        set_rng_state(state["rng"])

    def _save_checkpoint(self) -> None:
        from trainer.checkpoint import save_checkpoint

        save_checkpoint(self._state(), self.out / "checkpoints" / "latest.pt", overwrite=True)

    def _finish(self, val: dict[str, float]) -> None:
        """Write encoder.pt into the run folder and add it to the bundle."""
        from trainer.bundle import add_bundle_file
        from trainer.checkpoint import save_checkpoint

        training = {
            "images_seen": self.images_seen,
            "kimg": self.images_seen / 1000,
            "steps": self.step,
            "world_size": self.info.world_size,
            "generator_sha256": self.generator_sha256,
            **val,
            "config": self.cfg.to_dict(),
        }
        path = self.out / ENCODER_FILE
        save_checkpoint(encoder_file_state(self.E_ema, training), path, overwrite=True)
        check_existing_encoder(self.cfg)  # again: another run may have added one meanwhile
        add_bundle_file(self.cfg.model, path, ENCODER_FILE, overwrite=self.cfg.replace_encoder)
        record = {"event": "done", "images_seen": self.images_seen, "kimg": self.images_seen / 1000}
        self._log({**record, "world_size": self.info.world_size, **val})

    # -- training -------------------------------------------------------------------------

    def _train_step(self) -> dict[str, torch.Tensor]:
        cfg, world = self.cfg, self.info.world_size
        # the step's latents are drawn for the global batch; this rank takes every world-th
        torch.manual_seed(cfg.seed * 1_000_003 + self.step * 1009 + self.info.rank + 1)
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, self.step))
        z = torch.randn(cfg.batch, self.g_cfg.z_dim, generator=gen)[self.info.rank :: world]
        w, x = self._render(z)
        stats = encoder_losses(self.G, self.E, w, x)
        loss = cfg.w_loss_weight * stats["loss_w"] + cfg.image_loss_weight * stats["loss_img"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.E.parameters())
        self.opt.step()
        # EMA warmed up as in the GAN loop, so E_ema is not dominated by the initial weights
        decay = min(cfg.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            for p_ema, p in zip(self.E_ema.parameters(), self.E.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - decay)
            for b_ema, b in zip(self.E_ema.buffers(), self.E.buffers(), strict=True):
                b_ema.copy_(b)
        return {**stats, "loss": loss}

    def _stop_requested(self, stop: Callable[[], bool] | None) -> bool:
        if stop is None:
            return False
        # every rank must agree, or the others would wait forever in the next all-reduce
        return distributed.average({"stop": float(bool(stop()))}, self.info.device)["stop"] > 0

    def train(self, progress: bool, stop: Callable[[], bool] | None = None) -> Path:
        cfg, info = self.cfg, self.info
        total = round(cfg.kimg * 1000)
        every = {"tick": int(cfg.tick_kimg * 1000), "snapshot": int(cfg.snapshot_kimg * 1000)}
        every = {k: max(v, 1) for k, v in every.items()}
        next_at = {k: (self.images_seen // v + 1) * v for k, v in every.items()}
        if info.is_main and self.images_seen == 0:
            self._log({"event": "validation", "images_seen": 0, "kimg": 0.0, **self.validate()})
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total, initial=min(self.images_seen, total), unit="img", unit_scale=True
            )
        sums: dict[str, torch.Tensor] = {}
        count, t_tick, images_tick = 0, time.perf_counter(), self.images_seen
        while self.images_seen < total:
            stats = self._train_step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            count += 1
            self.step += 1
            self.images_seen += cfg.batch
            if bar is not None:
                bar.update(cfg.batch)
            done = self.images_seen >= total
            stopped = not done and self._stop_requested(stop)  # the last step finishes anyway
            if self.images_seen >= next_at["tick"] or done or stopped:
                means = distributed.average({k: v / count for k, v in sums.items()}, info.device)
                elapsed = time.perf_counter() - t_tick
                rate = (self.images_seen - images_tick) / max(elapsed, 1e-9)
                if info.is_main:
                    record = {"event": "tick", "images_seen": self.images_seen}
                    record.update(kimg=self.images_seen / 1000, step=self.step, batch=cfg.batch)
                    record.update(**means, images_per_s=rate, time_s=elapsed, **self.validate())
                    self._log(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{means['loss']:.3f}", img_s=f"{rate:.0f}")
                if not all(math.isfinite(v) for v in means.values()):  # every rank stops
                    raise ConfigError(f"training diverged at {self.images_seen} images: {means}")
                sums, count, t_tick, images_tick = {}, 0, time.perf_counter(), self.images_seen
                next_at["tick"] = (self.images_seen // every["tick"] + 1) * every["tick"]
            if self.images_seen >= next_at["snapshot"] or done or stopped:
                if info.is_main:
                    self._save_checkpoint()
                next_at["snapshot"] = (self.images_seen // every["snapshot"] + 1) * every[
                    "snapshot"
                ]
                distributed.barrier()
            if stopped:
                if info.is_main:
                    self._log({"event": "stopped", "images_seen": self.images_seen})
                break
        else:
            # one broadcast at the end: the ranks must not have drifted apart (same answer on all)
            if not distributed.all_equal(self.E_ema):
                raise ConfigError("the processes' encoders drifted apart (a distributed bug)")
            if info.is_main:
                self._finish(self.validate())
            distributed.barrier()
        if bar is not None:
            bar.close()
        if self.folder is not None:
            self.folder.close()
        return self.out


def _step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s latents (the low 32 bits, all that torch's generator keeps)."""
    return (seed * 1_000_003 + step) % (1 << 32)
