"""The model bundle: a folder that holds a trained model and everything needed to use it.

Layout (DESIGN.md)::

    bundle.json     manifest: format, format_version, resolution, channels, z_dim, w_dim,
                    num_ws, normalisation constants, network config, training summary,
                    and the sha256 and size of every other file in the folder
    generator.pt    {"format": "medstyle-generator", "format_version": 1,
                     "G_ema": state_dict, "D": state_dict (if kept), "w_avg": [w_dim],
                     "config": StyleGANConfig.to_dict()}
    encoder.pt      {"format": "medstyle-encoder", "format_version": 1, "E": state_dict
                     of the EMA encoder, "config": EncoderConfig.to_dict(), "training": {...}}
                    (trainer.loops.encoder; read with :func:`read_bundle_encoder`)
    directions/...  added by later steps with :func:`add_bundle_file`

The manifest's ``files`` table is generic (relative POSIX path -> hash and size), so
new parts need no format change. :func:`verify_bundle` checks every listed file.
All writes are atomic: a bundle folder appears whole or not at all.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import trainer
from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainer.errors import ConfigError, MedstyleError
from trainer.files import atomic_file, atomic_folder

if TYPE_CHECKING:
    from trainer.networks.encoder import Encoder

BUNDLE_FORMAT = "medstyle-bundle"
BUNDLE_FORMAT_VERSION = 1
GENERATOR_FORMAT = "medstyle-generator"
MANIFEST = "bundle.json"
GENERATOR_FILE = "generator.pt"
ENCODER_FILE = "encoder.pt"


class BundleError(MedstyleError):
    """A model bundle is missing, malformed, from a newer version, or fails its hashes."""


def sha256_file(path: str | PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``folder`` except the manifest itself."""
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST or any(part.startswith(".") for part in Path(name).parts):
            continue  # the manifest cannot hash itself; dot files are temporaries
        table[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


def _json_ready(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the bundle's {what} cannot be written as JSON ({exc})") from None


def _write_manifest(folder: Path, manifest: dict[str, Any], *, overwrite: bool) -> None:
    with atomic_file(folder / MANIFEST, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_bundle(
    folder: str | PathLike[str],
    *,
    generator_state: Mapping[str, torch.Tensor],
    discriminator_state: Mapping[str, torch.Tensor] | None,
    w_avg: torch.Tensor,
    config: Mapping[str, Any],
    normalisation: Mapping[str, Any],
    training: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a model bundle folder and return its path.

    Args:
        folder: the bundle folder to create (refused if it exists, unless ``overwrite``;
            then the old one is replaced only once the new one is complete).
        generator_state: the EMA generator's ``state_dict`` (``G_ema``).
        discriminator_state: D's ``state_dict`` (refinement needs its first-conv
            features), or None to ship a generator-only bundle.
        w_avg: the tracked mean of W, shape [w_dim] (the truncation centre).
        config: ``StyleGANConfig.to_dict()``: needs ``img_resolution``, ``img_channels``,
            ``z_dim`` and ``w_dim``.
        normalisation: ``Normalisation.to_dict()``: the intensity windows the model was
            trained with.
        training: JSON-ready summary, e.g. ``{"dataset": ..., "kimg": ...,
            "metrics": {"swd_mean": ...}, "best_snapshot": ...}``.
    """
    folder = Path(folder)
    try:
        resolution = int(config["img_resolution"])
        channels = int(config["img_channels"])
        z_dim, w_dim = int(config["z_dim"]), int(config["w_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the network config lacks {exc} (StyleGANConfig.to_dict())") from None
    if resolution < 4 or resolution & (resolution - 1):
        raise ConfigError(f"the network config's img_resolution {resolution} is not a power of 2")
    w_avg = torch.as_tensor(w_avg).detach().float().cpu()
    if tuple(w_avg.shape) != (w_dim,):
        raise ConfigError(f"w_avg has shape {tuple(w_avg.shape)}, expected [{w_dim}] (w_dim)")

    generator = {
        "format": GENERATOR_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "G_ema": {k: v.detach().cpu() for k, v in generator_state.items()},
        "w_avg": w_avg,
        "config": dict(config),
    }
    if discriminator_state is not None:
        generator["D"] = {k: v.detach().cpu() for k, v in discriminator_state.items()}
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "software": f"medstyle {trainer.__version__}",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resolution": resolution,
        "channels": channels,
        "z_dim": z_dim,
        "w_dim": w_dim,
        "num_ws": 2 * (int(math.log2(resolution)) - 1),
        "has_discriminator": discriminator_state is not None,
        "normalisation": _json_ready(dict(normalisation), "normalisation"),
        "config": _json_ready(dict(config), "network config"),
        "training": _json_ready(dict(training), "training summary"),
    }
    with atomic_folder(folder, overwrite=overwrite) as tmp:
        save_checkpoint(generator, tmp / GENERATOR_FILE)
        manifest["files"] = _file_table(tmp)
        _write_manifest(tmp, manifest, overwrite=False)
    return folder


def read_bundle_manifest(folder: str | PathLike[str]) -> dict[str, Any]:
    """Read and check ``bundle.json`` (format and version); hashes are not checked
    here (see :func:`verify_bundle`)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError("is not a model bundle folder (it does not exist)", folder)
    if not path.is_file():
        raise BundleError(f"is not a model bundle folder (no {MANIFEST})", folder)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot be read as JSON ({exc})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"is not a medstyle model manifest (format is not {BUNDLE_FORMAT})", path)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"has format version {version!r}; this medstyle reads up to version "
            f"{BUNDLE_FORMAT_VERSION} (update medstyle)",
            path,
        )
    if not isinstance(manifest.get("files"), dict):
        raise BundleError("has no files table", path)
    return manifest


def verify_bundle(folder: str | PathLike[str]) -> dict[str, Any]:
    """Check that every file the manifest lists exists with its recorded sha256 and
    size; return the manifest. A missing or altered file raises BundleError naming it."""
    folder = Path(folder)
    manifest = read_bundle_manifest(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise BundleError("is missing from the model bundle", path)
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise BundleError(
                "does not match the hash in bundle.json (altered or damaged; re-export it)", path
            )
    return manifest


def read_bundle_generator(folder: str | PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Load ``generator.pt`` (weights only) after checking the bundle's hashes."""
    folder = Path(folder)
    manifest = verify_bundle(folder) if verify else read_bundle_manifest(folder)
    if GENERATOR_FILE not in manifest["files"]:
        raise BundleError(f"has no {GENERATOR_FILE}", folder)
    state = load_checkpoint(folder / GENERATOR_FILE)
    if state.get("format") != GENERATOR_FORMAT or "G_ema" not in state:
        raise CheckpointError(
            "is not a medstyle generator file (no G_ema)", folder / GENERATOR_FILE
        )
    return state


def read_bundle_encoder(folder: str | PathLike[str], *, verify: bool = True) -> Encoder | None:
    """The bundle's image -> w encoder (eval mode, no gradients), or None when the bundle
    has no ``encoder.pt``.

    Read with ``torch.load(weights_only=True)`` after checking the bundle's hashes. Raises
    :class:`BundleError` for a bad bundle folder or an encoder that does not fit the
    generator (another w_dim or resolution), :class:`CheckpointError` for a bad file.
    """
    from trainer.networks.encoder import encoder_from_state

    folder = Path(folder)
    manifest = verify_bundle(folder) if verify else read_bundle_manifest(folder)
    path = folder / ENCODER_FILE
    if ENCODER_FILE not in manifest["files"]:
        if path.exists():  # copied in by hand: its hash was never recorded
            raise BundleError(
                "is not listed in bundle.json (add it with add_bundle_file, not by copying)", path
            )
        return None
    encoder = encoder_from_state(load_checkpoint(path), path)
    got = (encoder.cfg.w_dim, encoder.cfg.img_resolution, encoder.cfg.img_channels)
    want = (manifest.get("w_dim"), manifest.get("resolution"), manifest.get("channels"))
    if got != want:
        raise BundleError(
            f"encodes {got[2]}-channel {got[1]} px images to {got[0]}-d w, but the bundle's "
            f"generator makes {want[2]}-channel {want[1]} px images from {want[0]}-d w",
            path,
        )
    return encoder


def add_bundle_file(
    folder: str | PathLike[str],
    source: str | PathLike[str],
    name: str,
    *,
    overwrite: bool = False,
) -> Path:
    """Copy ``source`` into the bundle as ``name`` (a relative path such as
    ``encoder.pt`` or ``directions/sex.json``) and record its hash in the manifest.

    The copy and the new manifest are each written atomically; the bundle is
    verified first so a damaged bundle is not blessed with fresh hashes.
    """
    folder = Path(folder)
    manifest = verify_bundle(folder)
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or rel.as_posix() == MANIFEST or not rel.parts:
        raise ConfigError(f"{name!r} is not a valid file name inside a model bundle")
    if not Path(source).is_file():
        raise BundleError("does not exist (nothing to add to the bundle)", source)
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, overwrite=overwrite) as tmp:
        shutil.copyfile(source, tmp)
    manifest["files"][rel.as_posix()] = {
        "sha256": sha256_file(target),
        "bytes": target.stat().st_size,
    }
    _write_manifest(folder, manifest, overwrite=True)
    return target
