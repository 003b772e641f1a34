"""The StyleGAN training loop (Fetty et al. 2020): progressive growing, WGAN-GP or
non-saturating + R1, EMA of G, style mixing, on one process or many under torchrun.

Run folder (``cfg.out``)::

    config.json            the resolved GANTrainConfig (and the network's StyleGANConfig)
    log.jsonl              one JSON line per tick and per snapshot
    samples/images-*.png   G_ema on fixed seeds at each snapshot
    checkpoints/latest.pt  everything needed to resume; images-*.pt per snapshot; best.pt
    bundle/                the model bundle of the best snapshot (trainer.bundle)
    tensorboard/           events, when the tensorboard package is installed

Reproducibility: the data order is a seeded permutation per epoch, and every step
re-seeds the random generators from (seed, step, rank), so a run resumed from a
checkpoint draws exactly what the uninterrupted run would have drawn. The latents and
gradient-penalty mixing weights of a step are drawn for the global batch and each rank
takes its share, so N processes with batch B/N see what one process with batch B sees.
"""

from __future__ import annotations

import copy
import math
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer import distributed
from trainer.errors import ConfigError, DatasetError
from trainer.files import atomic_file
from trainer.loops.batch_sampler import GlobalBatchSampler, real_batches
from trainer.loops.gan_bundle import CHECKPOINT_FORMAT, init_record, write_model_bundle
from trainer.loops.gan_config import GANTrainConfig, Phase
from trainer.loops.gan_losses import d_loss, g_loss
from trainer.loops.run_folder import RunFolder
from trainer.networks.stylegan import Discriminator, Generator, StyleGANConfig

# -- data -------------------------------------------------------------------------------


def _at_resolution(images: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Average-pool ``[N, C, S, S]`` to ``resolution``; while a block fades in, blend with
    the upsampled half-resolution image as the generator's output is blended."""
    if images.shape[-1] != resolution:
        images = F.avg_pool2d(images, images.shape[-1] // resolution)
    if alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")
        images = torch.lerp(low, images, alpha)
    return images


# -- the run ----------------------------------------------------------------------------


def network_config(cfg: GANTrainConfig, final_resolution: int) -> StyleGANConfig:
    """The StyleGANConfig a run trains: the preset at the run's resolution, plus overrides."""
    preset = StyleGANConfig.paper if cfg.network == "paper" else StyleGANConfig.slim
    d = preset(final_resolution).to_dict()
    d.update(cfg.network_overrides)
    d["img_resolution"] = final_resolution
    return StyleGANConfig.from_dict(d)


def check_run(
    cfg: GANTrainConfig, world_size: int, dataset: Any = None, *, resume: bool = False
) -> int:
    """Check ``cfg`` against its dataset and the number of processes before anything
    starts; return the final resolution (px). ``dataset``: an open SliceDataset. A
    resumed run needs no ``--init-from`` bundle any more (its checkpoint has the weights)."""
    from trainer.data.torch_dataset import SliceDataset

    dataset = dataset if dataset is not None else SliceDataset(cfg.data, modality=cfg.modality)
    final = cfg.resolution or dataset.size
    if final > dataset.size:
        raise ConfigError(f"resolution {final} is above the dataset's {dataset.size} px", cfg.data)
    if cfg.start_resolution > final:
        raise ConfigError(
            f"start resolution {cfg.start_resolution} is above the resolution {final}"
        )
    for r in cfg.resolutions(final):
        if cfg.batch_size(r) % world_size:
            raise ConfigError(
                f"batch size {cfg.batch_size(r)} at {r} px does not split over "
                f"{world_size} processes"
            )
        if cfg.batch_size(r) > len(dataset):
            raise DatasetError(
                f"has {len(dataset)} slices, fewer than one batch ({cfg.batch_size(r)} at {r} px)",
                cfg.data,
            )
    net_cfg = network_config(cfg, final)  # raises ConfigError for bad network overrides
    if cfg.init_from is not None and not resume:
        _check_init_bundle(cfg, net_cfg, final)
    return final


def _check_init_bundle(cfg: GANTrainConfig, net_cfg: StyleGANConfig, final: int) -> None:
    """``--init-from``: the bundle must hold D and this run's network, and the run must
    train at the final resolution only (its lower-resolution layers are trained already)."""
    from trainer.bundle import read_bundle_manifest

    manifest = read_bundle_manifest(cfg.init_from)  # BundleError names a bad folder
    if not manifest.get("has_discriminator"):
        raise ConfigError("has no discriminator to continue training with", cfg.init_from)
    if StyleGANConfig.from_dict(manifest["config"]).to_dict() != net_cfg.to_dict():
        raise ConfigError(
            "holds another network than this run's (match --network, --resolution and "
            "the config file's network_overrides)",
            cfg.init_from,
        )
    if cfg.start_resolution != final:
        raise ConfigError(
            f"--init-from continues a trained model at its resolution: pass "
            f"--start-resolution {final} (no progressive growing)"
        )


def train_gan(
    cfg: GANTrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Path:
    """Train (or with ``resume`` continue) the run ``cfg.out``; return the run folder.

    Under torchrun every process calls this; rank 0 alone writes files. ``stop`` (e.g. a
    SIGTERM flag, see :mod:`trainer.train_cli`) is asked after every step; when it says
    so, the run saves ``checkpoints/latest.pt``, logs a "stopped" line and returns, so
    ``--resume`` continues from exactly there.
    """
    info = distributed.init(cfg.device)
    try:
        return _Run(cfg, info, resume).train(progress and info.is_main, stop)
    finally:
        distributed.cleanup()


def measure_training_speed(
    cfg: GANTrainConfig, *, steps: int = 10, warmup: int = 3
) -> dict[str, Any]:
    """Training speed: whole steps (D with its penalty, then G, EMA) at the final
    resolution, fully faded in, on one real batch of ``cfg.data``; median over ``steps``
    after ``warmup``. ``cfg.out`` must be a scratch folder (the run folder is created).

    Returns ``{"network", "resolution", "batch", "device", "bf16", "channels_last",
    "ms_per_step", "images_per_s"}``.
    """
    if steps < 1 or warmup < 0:
        raise ConfigError(f"steps must be >= 1 and warmup >= 0 (got {steps}, {warmup})")
    info = distributed.init(cfg.device)
    try:
        run = _Run(cfg, info, resume=False)
        phase = Phase(resolution=run.final, alpha=1.0, name="stabilise", index=0)
        batch = cfg.batch_size(run.final) // info.world_size
        images = torch.stack([run.dataset[i % len(run.dataset)][0] for i in range(batch)])
        reals = _at_resolution(images.to(info.device), run.final, 1.0)
        if cfg.channels_last:
            reals = reals.contiguous(memory_format=torch.channels_last)
        seconds = []
        for _ in range(warmup + steps):
            start = time.perf_counter()
            stats = run._train_step(reals, phase)
            float(stats["loss_G"].detach())  # waits for the device
            seconds.append(time.perf_counter() - start)
            run.step += 1
        median = statistics.median(seconds[warmup:])
        return {
            "network": cfg.network,
            "resolution": run.final,
            "batch": batch * info.world_size,
            "device": str(info.device),
            "bf16": cfg.bf16,
            "channels_last": cfg.channels_last,
            "ms_per_step": round(median * 1e3, 2),
            "images_per_s": round(batch * info.world_size / median, 2),
        }
    finally:
        distributed.cleanup()


class _Run:
    def __init__(self, cfg: GANTrainConfig, info: distributed.DistInfo, resume: bool) -> None:
        from trainer.data.dataset import dataset_geometry, dataset_normalisation, open_dataset
        from trainer.data.torch_dataset import SliceDataset

        self.cfg, self.info, self.out = cfg, info, Path(cfg.out)
        self.dataset = SliceDataset(cfg.data, modality=cfg.modality)
        with open_dataset(cfg.data) as f:
            self.normalisation = dataset_normalisation(f).to_dict()
            self.geometry = dataset_geometry(f)
        self.final = check_run(cfg, info.world_size, self.dataset, resume=resume)
        self.net_cfg = network_config(cfg, self.final)

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        dev = info.device
        self.G = Generator(self.net_cfg).to(dev)
        self.D = Discriminator(self.net_cfg).to(dev)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if cfg.channels_last:
            for m in (self.G, self.D, self.G_ema):
                m.to(memory_format=torch.channels_last)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.images_seen, self.step, self.epoch, self.offset = 0, 0, 0, 0
        self.best: dict[str, Any] | None = None  # {"value", "images_seen", "file"}
        self.folder: RunFolder | None = None  # rank 0: config, log, TensorBoard
        self.inception: Any = None  # FID's feature network (rank 0, metric "fid")
        self.init_from: dict[str, Any] | None = None  # init_record() of --init-from
        if resume:
            self._load(self.out / "checkpoints" / "latest.pt")
        elif cfg.init_from is not None:
            self._init_from_bundle(cfg.init_from)
        if cfg.init_from is not None and self.init_from is None:  # resumed from a checkpoint
            self.init_from = init_record(cfg.init_from)  # written before the record was kept
        distributed.broadcast_module(self.G)
        distributed.broadcast_module(self.D)
        distributed.broadcast_module(self.G_ema)
        if info.is_main:
            self._prepare_folder(resume)
        distributed.barrier()

    # -- folder, log, checkpoints ---------------------------------------------------------

    def _prepare_folder(self, resume: bool) -> None:
        resolved = {**self.cfg.to_dict(), "network_config": self.net_cfg.to_dict()}
        self.folder = RunFolder(
            self.out,
            resolved,
            resume=resume,
            images_seen=self.images_seen,
            subfolders=("samples", "checkpoints"),
        )

    def _log(self, record: dict[str, Any]) -> None:
        self.folder.log(record)

    def _state(self) -> dict[str, Any]:
        from trainer.checkpoint import rng_state

        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "network_config": self.net_cfg.to_dict(),
            "normalisation": self.normalisation,
            "geometry": self.geometry,
            "init_from": self.init_from,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "progress": {
                "images_seen": self.images_seen,
                "step": self.step,
                "epoch": self.epoch,
                "offset": self.offset,
                "phase": self.cfg.phase_at(self.images_seen, self.final).__dict__,
                "best": self.best,
            },
            "rng": rng_state(),
        }

    def _load(self, path: Path) -> None:
        from trainer.checkpoint import load_checkpoint, set_rng_state

        if not path.exists():
            raise ConfigError("has no checkpoint to resume from (start without --resume)", path)
        state = load_checkpoint(path, map_location=self.info.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError("is not a medstyle GAN training checkpoint", path)
        if state["network_config"] != self.net_cfg.to_dict():
            raise ConfigError("was written for another network configuration than this run's", path)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        p = state["progress"]
        self.images_seen, self.step = int(p["images_seen"]), int(p["step"])
        self.epoch, self.offset = int(p["epoch"]), int(p["offset"])
        self.best = p["best"]
        self.init_from = state.get("init_from")
        set_rng_state(state["rng"])

    def _init_from_bundle(self, folder: str) -> None:
        """Start G and G_ema from the bundle's G_ema (the bundle keeps no other G) and D
        from its D (:func:`check_run` made sure it has one), and record where the run
        started; the optimisers start afresh (Adam's moments rebuild in a few hundred
        steps)."""
        from trainer.bundle import read_bundle_generator

        state = read_bundle_generator(folder)
        self.init_from = init_record(folder)
        self.G.load_state_dict(state["G_ema"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.D.load_state_dict(state["D"])

    def _save(self, name: str) -> Path:
        from trainer.checkpoint import save_checkpoint

        path = self.out / "checkpoints" / name
        save_checkpoint(self._state(), path, overwrite=True)
        return path

    # -- snapshots ------------------------------------------------------------------------

    @torch.no_grad()
    def _generate(self, n: int, phase: Phase, seed: int, batch: int = 64) -> torch.Tensor:
        """``n`` images of G_ema ``[n, C, r, r]`` on CPU from seeded latents."""
        z = torch.randn(n, self.net_cfg.z_dim, generator=torch.Generator().manual_seed(seed))
        out = [
            self.G_ema(
                z[i : i + batch].to(self.info.device),
                resolution=phase.resolution,
                alpha=phase.alpha,
                noise_mode="const",
            )
            .float()
            .cpu()
            for i in range(0, n, batch)
        ]
        return torch.cat(out)

    def _snapshot(self, phase: Phase, in_sync: bool) -> None:
        """Samples, metric, snapshot checkpoint and, for a new best, best.pt and bundle/."""
        name = f"images-{self.images_seen:09d}"
        grid = self._generate(self.cfg.sample_grid**2, phase, seed=self.cfg.seed + 1000)
        _save_grid(grid, self.out / "samples" / f"{name}.png", self.cfg.sample_grid)
        record: dict[str, Any] = {"event": "snapshot", "images_seen": self.images_seen}
        record.update(kimg=self.images_seen / 1000, resolution=phase.resolution, alpha=phase.alpha)
        record.update(world_size=self.info.world_size, ranks_in_sync=in_sync)
        value = self._metric(phase)
        if value is not None:
            record[self.cfg.metric] = value
        path = self._save(f"{name}.pt")
        # metrics at a lower resolution or mid fade-in are not comparable with the final model's
        eligible = value is not None and phase.resolution == self.final and phase.alpha == 1.0
        if eligible and (self.best is None or value < self.best["value"]):
            self.best = {"value": value, "images_seen": self.images_seen, "file": path.name}
            shutil.copyfile(path, self.out / "checkpoints" / ".best.pt.tmp")
            (self.out / "checkpoints" / ".best.pt.tmp").replace(
                self.out / "checkpoints" / "best.pt"
            )
            self._write_bundle()
            record["best"] = True
        self._log(record)

    def _metric(self, phase: Phase) -> float | None:
        """SWD (x 1e3) or FID of G_ema against real images at the training resolution."""
        from trainer import metrics

        if self.cfg.metric == "swd" and phase.resolution < metrics.SWD_MIN_RESOLUTION:
            return None  # SWD's coarsest pyramid level is 16 px
        n = min(self.cfg.metric_images, len(self.dataset))
        pick = torch.randperm(
            len(self.dataset), generator=torch.Generator().manual_seed(self.cfg.seed)
        )[:n]
        reals = torch.stack([self.dataset[int(i)][0] for i in pick])
        reals = _at_resolution(reals, phase.resolution, phase.alpha)
        fakes = self._generate(n, phase, seed=self.cfg.seed + 2000)
        if self.cfg.metric == "swd":
            return metrics.swd(reals, fakes, seed=self.cfg.seed)["swd_mean"]
        if self.inception is None:  # loaded at the first snapshot, kept for the next
            self.inception = metrics.load_inception(self.cfg.inception_weights, self.info.device)
        net = self.inception
        feats = [
            metrics.inception_features(net, x.split(64), self.info.device) for x in (reals, fakes)
        ]
        return metrics.fid(*feats)

    def _write_bundle(self) -> None:
        write_model_bundle(
            self.out / "bundle",
            cfg=self.cfg,
            network_config=self.net_cfg.to_dict(),
            generator_state=self.G_ema.state_dict(),
            discriminator_state=self.D.state_dict(),
            normalisation=self.normalisation,
            images_seen=self.images_seen,
            metric_value=self.best["value"] if self.best else None,
            geometry=self.geometry,
            init_from=self.init_from,
        )

    # -- training -------------------------------------------------------------------------

    def _seed_step(self) -> torch.Generator:
        """Re-seed torch for this step and rank; return the step's global-batch generator."""
        torch.manual_seed(self.cfg.seed * 1_000_003 + self.step * 1009 + self.info.rank + 1)
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)

    def _train_step(self, reals: torch.Tensor, phase: Phase) -> dict[str, torch.Tensor]:
        cfg, G, D, dev = self.cfg, self.G, self.D, self.info.device
        # drawn for the global batch; this rank takes its share as the sampler does
        world = self.info.world_size
        global_batch = reals.shape[0] * world
        rows = torch.arange(self.info.rank, global_batch, world)
        gen = self._seed_step()
        z = torch.randn(2, global_batch, self.net_cfg.z_dim, generator=gen)[:, rows].to(dev)
        eps = torch.rand(global_batch, 1, 1, 1, generator=gen)[rows].to(dev)
        num_layers = 2 * (int(math.log2(phase.resolution)) - 1)  # style inputs in use at this size
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16)

        def fakes(z_pair: torch.Tensor, update_w_avg: bool) -> torch.Tensor:
            # the mapping MLP is cheap and w_avg is tracked in float32: bf16 for synthesis only
            ws = G.map(z_pair[0], update_w_avg=update_w_avg)
            if cfg.style_mixing_prob > 0:
                ws = G.mix_styles(
                    ws, G.map(z_pair[1]), prob=cfg.style_mixing_prob, num_layers=num_layers
                )
            with autocast:
                return G.synthesise(ws, resolution=phase.resolution, alpha=phase.alpha)

        # discriminator
        D.requires_grad_(True)
        with torch.no_grad():
            fake = fakes(z, update_w_avg=False)
        with autocast:
            loss_d, stats = d_loss(cfg, D, reals, fake, eps, phase)
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        distributed.average_gradients(D.parameters())
        self.opt_D.step()

        # generator
        D.requires_grad_(False)
        z = torch.randn(2, global_batch, self.net_cfg.z_dim, generator=gen)[:, rows].to(dev)
        fake = fakes(z, update_w_avg=True)
        with autocast:
            loss_g = g_loss(cfg, D(fake, resolution=phase.resolution, alpha=phase.alpha))
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        distributed.average_gradients(G.parameters())
        self.opt_G.step()
        distributed.average_tensor_(G.w_avg)  # w_avg moved toward each rank's own batch mean

        # EMA of the weights, warmed up so G_ema is not dominated by the random initial
        # weights early on (0.999 alone keeps 78% of them after 250 steps); buffers
        # (w_avg, const noise) are copied
        decay = min(cfg.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), G.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - decay)
            for b_ema, b in zip(self.G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        return {**stats, "loss_G": loss_g}

    def _stop_requested(self, stop: Callable[[], bool] | None) -> bool:
        if stop is None:
            return False
        # every rank must agree, or the others would wait forever in the next all-reduce
        return distributed.average({"stop": float(bool(stop()))}, self.info.device)["stop"] > 0

    def train(self, progress: bool, stop: Callable[[], bool] | None = None) -> Path:
        cfg, info = self.cfg, self.info
        total = round(cfg.kimg * 1000)
        every = {
            "tick": int(cfg.tick_kimg * 1000),
            "snapshot": int(cfg.snapshot_kimg * 1000),
            "checkpoint": int((cfg.checkpoint_kimg or cfg.snapshot_kimg) * 1000),
        }
        next_at = {k: (self.images_seen // v + 1) * v for k, v in every.items()}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total, initial=min(self.images_seen, total), unit="img", unit_scale=True
            )
        resolution, batches, sums, count = None, None, {}, 0
        t_tick, images_tick = time.perf_counter(), self.images_seen
        while self.images_seen < total:
            phase = cfg.phase_at(self.images_seen, self.final)
            if phase.resolution != resolution:  # a new batch size: a new loader from here
                resolution = phase.resolution
                sampler = GlobalBatchSampler(
                    len(self.dataset),
                    cfg.batch_size(resolution),
                    rank=info.rank,
                    world_size=info.world_size,
                    seed=cfg.seed,
                    epoch=self.epoch,
                    offset=self.offset,
                )
                batches = real_batches(self.dataset, sampler, cfg.workers)
            reals = next(batches)
            self.epoch, self.offset = sampler.epoch, sampler.offset
            reals = _at_resolution(reals.to(info.device), resolution, phase.alpha)
            if cfg.channels_last:
                reals = reals.contiguous(memory_format=torch.channels_last)
            stats = self._train_step(reals, phase)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            count += 1
            self.step += 1
            self.images_seen += cfg.batch_size(resolution)
            if bar is not None:
                bar.update(cfg.batch_size(resolution))
                bar.set_postfix(res=resolution, alpha=f"{phase.alpha:.2f}", refresh=False)

            done = self.images_seen >= total
            stopped = not done and self._stop_requested(stop)  # the last step finishes anyway
            if self.images_seen >= next_at["tick"] or done:
                means = distributed.average({k: v / count for k, v in sums.items()}, info.device)
                elapsed = time.perf_counter() - t_tick
                rate = (self.images_seen - images_tick) / max(elapsed, 1e-9)
                if info.is_main:
                    record = {
                        "event": "tick",
                        "images_seen": self.images_seen,
                        "kimg": self.images_seen / 1000,
                    }
                    record.update(
                        step=self.step, phase=phase.name, resolution=resolution, alpha=phase.alpha
                    )
                    record.update(
                        batch=cfg.batch_size(resolution), **means, images_per_s=rate, time_s=elapsed
                    )
                    self._log(record)
                    if bar is not None:
                        bar.set_postfix(
                            res=resolution, alpha=f"{phase.alpha:.2f}", img_s=f"{rate:.0f}"
                        )
                if not all(math.isfinite(v) for v in means.values()):  # every rank stops
                    raise ConfigError(f"training diverged at {self.images_seen} images: {means}")
                sums, count, t_tick, images_tick = {}, 0, time.perf_counter(), self.images_seen
                next_at["tick"] = (self.images_seen // every["tick"] + 1) * every["tick"]
            snapshot = self.images_seen >= next_at["snapshot"] or done
            checkpoint = self.images_seen >= next_at["checkpoint"] or snapshot
            phase_now = cfg.phase_at(self.images_seen - 1, self.final)  # the phase just trained
            if snapshot:
                # a check that costs one broadcast per snapshot: DDP must not drift apart
                in_sync = distributed.all_equal(self.G) and distributed.all_equal(self.D)
                if info.is_main:
                    self._snapshot(phase_now, in_sync)
            if checkpoint and info.is_main:
                self._save("latest.pt")
            for k in ("snapshot", "checkpoint"):
                if self.images_seen >= next_at[k]:
                    next_at[k] = (self.images_seen // every[k] + 1) * every[k]
            if snapshot or checkpoint:
                distributed.barrier()
            if stopped:
                if info.is_main:
                    if not checkpoint:
                        self._save("latest.pt")
                    self._log({"event": "stopped", "images_seen": self.images_seen})
                distributed.barrier()
                break
        if bar is not None:
            bar.close()
        if self.folder is not None:
            self.folder.close()
        return self.out


def _save_grid(images: torch.Tensor, path: Path, columns: int) -> None:
    """``[N, 1, r, r]`` in [-1, 1] -> a PNG grid, each tile at least 64 px (nearest)."""
    from PIL import Image

    n, _, r, _ = images.shape
    rows = math.ceil(n / columns)
    tiles = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    grid = np.zeros((rows * r, columns * r), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        y, x = divmod(i, columns)
        grid[y * r : (y + 1) * r, x * r : (x + 1) * r] = tile
    scale = max(1, 64 // r)
    img = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    )
    with atomic_file(path, overwrite=True) as tmp:
        img.save(tmp, format="PNG")
