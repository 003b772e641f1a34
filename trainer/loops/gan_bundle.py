"""Model bundles from GAN training: the record of an ``--init-from`` bundle, the bundle of
a snapshot, and the bundle of any checkpoint of a run (``medstyle train bundle``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from trainer.errors import ConfigError, DatasetError
from trainer.files import ensure_can_write
from trainer.loops.gan_config import GANTrainConfig

CHECKPOINT_FORMAT = "medstyle-gan-checkpoint"


def init_record(folder: str) -> dict[str, Any]:
    """What a run started with ``--init-from`` records of its starting bundle, read once
    when it starts (the bundle may be replaced later, e.g. by this run's own result):
    its absolute path, its generator's hash and the thousands of real images its
    generator had seen over every run it continued (``kimg_total``) or its own (``kimg``)."""
    from trainer.bundle import GENERATOR_FILE, read_bundle_manifest

    manifest = read_bundle_manifest(folder)
    training = manifest.get("training") or {}
    return {
        "bundle": str(Path(folder).resolve()),
        "generator_sha256": manifest["files"][GENERATOR_FILE]["sha256"],
        "kimg": float(training.get("kimg_total", training.get("kimg", 0.0))),
    }


def write_model_bundle(
    folder: Path,
    *,
    cfg: GANTrainConfig,
    network_config: dict[str, Any],
    generator_state: dict[str, torch.Tensor],
    discriminator_state: dict[str, torch.Tensor],
    normalisation: dict[str, Any],
    images_seen: int,
    metric_value: float | None,
    geometry: dict[str, Any],
    init_from: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """The model bundle of a snapshot (G_ema ``generator_state``, D), with the training
    record the explorer and the model card read: images seen (over every run it continued:
    ``init_from`` is :func:`init_record` of the bundle this run started from), the
    metric, the data and its geometry, the whole config."""
    from trainer.bundle import write_bundle

    training: dict[str, Any] = {
        "images_seen": images_seen,
        "kimg": images_seen / 1000,
        "metric": cfg.metric,
        "metric_value": metric_value,
        "loss": cfg.loss,
        "data": str(cfg.data),
        "geometry": geometry,
        "config": cfg.to_dict(),
    }
    if init_from is not None:
        training["init_from"] = init_from
        training["kimg_total"] = init_from["kimg"] + images_seen / 1000
    return write_bundle(
        folder,
        generator_state=generator_state,
        discriminator_state=discriminator_state,
        w_avg=generator_state["w_avg"].detach().cpu(),
        config=network_config,
        normalisation=normalisation,
        training=training,
        overwrite=overwrite,
    )


def bundle_from_checkpoint(
    checkpoint: str | Path, out: str | Path, *, overwrite: bool = False
) -> Path:
    """Write the model bundle of any snapshot of a GAN run: ``checkpoint`` is a run folder
    (its ``checkpoints/best.pt``) or a checkpoint file (``images-*.pt``, ``latest.pt``).
    A run keeps a bundle of its best snapshot by the metric only; another one may serve
    better (e.g. the one that reconstructs best)."""
    from trainer.checkpoint import load_checkpoint

    ensure_can_write(out, overwrite)  # before loading a checkpoint of hundreds of MB
    path = Path(checkpoint)
    if path.is_dir() and not (path / "checkpoints" / "best.pt").is_file():
        raise ConfigError(
            "has no checkpoints/best.pt (not a GAN run, or no snapshot measured yet); "
            "give a checkpoint file, such as its checkpoints/latest.pt",
            path,
        )
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise ConfigError("does not exist (a GAN run folder or checkpoint file)", path)
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError("is not a medstyle GAN training checkpoint", path)
    cfg = GANTrainConfig.from_dict(state["config"], path)
    images_seen = int(state["progress"]["images_seen"])
    geometry = state.get("geometry")
    if geometry is None:  # checkpoints written before the geometry was kept in them
        from trainer.data.dataset import dataset_geometry, open_dataset

        try:
            with open_dataset(cfg.data) as f:
                geometry = dataset_geometry(f)
        except DatasetError:
            geometry = {}
    log = path.parent.parent / "log.jsonl"
    return write_model_bundle(
        Path(out),
        cfg=cfg,
        network_config=state["network_config"],
        generator_state=state["G_ema"],
        discriminator_state=state["D"],
        normalisation=state["normalisation"],
        images_seen=images_seen,
        metric_value=logged_metric(log, images_seen, cfg.metric),
        geometry=geometry,
        init_from=state.get("init_from") or (cfg.init_from and init_record(cfg.init_from)),
        overwrite=overwrite,
    )


def logged_metric(log: Path, images_seen: int, metric: str) -> float | None:
    """The metric a run's log.jsonl holds for its snapshot at ``images_seen`` (None if none)."""
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "snapshot" and record.get("images_seen") == images_seen:
            value = record.get(metric)
            return float(value) if isinstance(value, int | float) else None
    return None
