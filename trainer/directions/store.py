"""Directions in a model bundle: ``directions/<file>.pt`` per direction and an index.

Each file is a weights-only checkpoint (:mod:`trainer.checkpoint`)::

    format "medstyle-direction", format_version 1, name, classes [2], kind,
    normal [h_dim], offset, scale,
    logistic: {normal [w_dim], offset, scale}      the W baseline
    dense:    {config: DenseClassifier.config, state: state_dict} | None
    reverse:  {config: ReverseNet.config, state: state_dict} | None
    metrics, calibration, conditioned_on

``directions/index.json``: ``{"format": "medstyle-directions", "format_version": 1,
"directions": {name: {file, kind, classes, selected, logistic_accuracy, dense_accuracy,
reverse_r2, conditioned_on}}, "embedding": {refine_steps, refine_lr, latents, slices}}``
(how the latents the directions were fitted on were embedded: a latent refined another
way sits elsewhere in W, where the classifiers are less sure). Both go in through
:func:`trainer.bundle.add_bundle_file`, so the manifest records their hashes and
:func:`trainer.bundle.verify_bundle` checks them.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from trainer.bundle import (
    BundleError,
    add_bundle_file,
    read_bundle_manifest,
    verify_bundle,
)
from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainer.directions.model import DenseClassifier, Direction, DirectionError, ReverseNet
from trainer.errors import ScanWriteError

FORMAT = "medstyle-direction"
INDEX_FORMAT = "medstyle-directions"
FORMAT_VERSION = 1
FOLDER = "directions"
INDEX = f"{FOLDER}/index.json"


def direction_file(name: str) -> str:
    """Bundle-relative file of a direction: ``"modality|slice"`` -> ``directions/
    modality_given_slice.pt`` (only letters, digits, ``_+-`` in file names)."""
    stem = name.replace("|", "_given_").replace(",", "+")
    stem = re.sub(r"[^A-Za-z0-9_+-]", "_", stem)
    if not name or not stem.strip("_"):
        raise DirectionError(f"{name!r} is not a usable direction name")
    return f"{FOLDER}/{stem}.pt"


def _net_state(net: torch.nn.Module | None) -> dict[str, Any] | None:
    if net is None:
        return None
    return {"config": dict(net.config), "state": {k: v.cpu() for k, v in net.state_dict().items()}}


def direction_state(d: Direction) -> dict[str, Any]:
    """The plain checkpoint dict of a direction (see module doc)."""
    if d.kind == "dense" and not (
        isinstance(d.dense, DenseClassifier)
        and d.forward_net is d.dense.hidden
        and isinstance(d.reverse_net, ReverseNet)
    ):
        raise DirectionError(
            f"direction {d.name!r} cannot be saved: its nets were not made by fit_direction"
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": d.name,
        "classes": list(d.classes),
        "kind": d.kind,
        "normal": d.normal.detach().cpu(),
        "offset": d.offset,
        "scale": d.scale,
        "logistic": {
            "normal": d.logistic_normal.detach().cpu(),  # type: ignore[union-attr]
            "offset": d.logistic_offset,
            "scale": d.logistic_scale,
        },
        "dense": _net_state(d.dense),
        "reverse": _net_state(d.reverse_net),
        "metrics": d.metrics,
        "calibration": d.calibration,
        "conditioned_on": list(d.conditioned_on),
    }


def _build_net(entry: Any, cls: type, path: Path) -> Any:
    if entry is None:
        return None
    try:
        net = cls(**entry["config"])
        net.load_state_dict(entry["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, DirectionError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"holds a malformed {cls.__name__} ({reason})", path) from None
    return net


def direction_from_state(state: Mapping[str, Any], path: str | PathLike[str]) -> Direction:
    """Rebuild a :class:`Direction` from :func:`direction_state`'s dict (read from ``path``)."""
    path = Path(path)
    if state.get("format") != FORMAT:
        raise BundleError(f"is not a medstyle direction file (format is not {FORMAT})", path)
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"has direction format version {version!r}; this medstyle reads up to "
            f"{FORMAT_VERSION} (update medstyle)",
            path,
        )
    dense = _build_net(state.get("dense"), DenseClassifier, path)
    reverse = _build_net(state.get("reverse"), ReverseNet, path)
    try:
        kind = state["kind"]
        logistic = state["logistic"]
        return Direction(
            name=str(state["name"]),
            classes=tuple(state["classes"]),  # type: ignore[arg-type]
            kind=kind,
            normal=state["normal"],
            offset=state["offset"],
            scale=state["scale"],
            forward_net=dense.hidden if kind == "dense" and dense is not None else None,
            reverse_net=reverse if kind == "dense" else None,
            metrics=dict(state.get("metrics") or {}),
            calibration=state.get("calibration"),
            conditioned_on=[str(c) for c in state.get("conditioned_on") or []],
            logistic_normal=logistic["normal"],
            logistic_offset=logistic["offset"],
            logistic_scale=logistic["scale"],
            dense=dense,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"is a malformed direction file (bad or missing {exc})", path) from None
    except DirectionError as exc:
        raise BundleError(f"is a malformed direction file ({exc})", path) from None


def _index_entry(d: Direction, file: str) -> dict[str, Any]:
    m = d.metrics
    return {
        "file": file,
        "kind": d.kind,
        "classes": list(d.classes),
        "selected": m.get("selected", d.kind),
        "logistic_accuracy": m.get("logistic_accuracy"),
        "dense_accuracy": m.get("dense_accuracy"),
        "reverse_r2": m.get("reverse_r2"),
        "conditioned_on": list(d.conditioned_on),
    }


def _read_index(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    return _read_index_table(folder, manifest).get("directions", {})


def directions_embedding(
    bundle: str | PathLike[str], manifest: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """How the latents the bundle's directions were fitted on were embedded
    (``{"refine_steps", "refine_lr", "latents", "slices"}``), or None when not recorded.
    ``manifest``: the bundle's, when the caller has read it already."""
    folder = Path(bundle)
    manifest = read_bundle_manifest(folder) if manifest is None else manifest
    embedding = _read_index_table(folder, manifest).get("embedding")
    return dict(embedding) if isinstance(embedding, dict) else None


def _read_index_table(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    path = folder / INDEX
    if INDEX not in manifest["files"]:
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot be read as JSON ({exc})", path) from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise BundleError(f"is not a medstyle direction index (format is not {INDEX_FORMAT})", path)
    if not isinstance(index.get("format_version"), int) or index["format_version"] > FORMAT_VERSION:
        raise BundleError(
            f"has format version {index.get('format_version')!r}; this medstyle reads up to "
            f"{FORMAT_VERSION} (update medstyle)",
            path,
        )
    if not isinstance(index.get("directions"), dict):
        raise BundleError("has no directions table", path)
    return index


def save_directions(
    bundle: str | PathLike[str],
    directions: Mapping[str, Direction],
    overwrite: bool = False,
    embedding: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Add ``directions`` (keyed by their names) to the bundle and update its index.
    ``embedding``: how their latents were embedded (see the module notes; None keeps what
    the index says).

    A direction already in the bundle is refused unless ``overwrite``; the index keeps the
    entries of directions saved before. Everything is checked before the first file is
    written. Returns the written direction files.
    """
    folder = Path(bundle)
    manifest = verify_bundle(folder)
    previous = _read_index_table(folder, manifest)
    entries = previous.get("directions", {})
    states, files = {}, {}
    for key, d in directions.items():
        if key != d.name:
            raise DirectionError(f"direction {d.name!r} is stored under another name {key!r}")
        file = direction_file(d.name)
        clash = [n for n, f in files.items() if f == file]
        clash += [n for n, e in entries.items() if e.get("file") == file and n != d.name]
        if clash:
            raise DirectionError(f"directions {d.name!r} and {clash[0]!r} map to one file {file}")
        if (d.name in entries or file in manifest["files"]) and not overwrite:
            raise ScanWriteError(
                f"already has a direction {d.name!r} (pass overwrite to replace it)", folder / file
            )
        if manifest.get("w_dim") not in (None, d.w_dim):
            raise DirectionError(
                f"direction {d.name!r} lives in a {d.w_dim}-d W; the model's w_dim is "
                f"{manifest['w_dim']}",
                folder,
            )
        states[d.name], files[d.name] = direction_state(d), file
    written = []
    with tempfile.TemporaryDirectory(prefix="medstyle-directions-") as tmp:
        for name, state in states.items():
            source = save_checkpoint(state, Path(tmp) / Path(files[name]).name)
            written.append(add_bundle_file(folder, source, files[name], overwrite=overwrite))
            entries[name] = _index_entry(directions[name], files[name])
        index = Path(tmp) / "index.json"
        table = {"format": INDEX_FORMAT, "format_version": FORMAT_VERSION, "directions": entries}
        kept = dict(embedding) if embedding is not None else previous.get("embedding")
        if kept is not None:
            table["embedding"] = kept
        index.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # the index is a table of contents, always rewritten; the directions it lists are not
        add_bundle_file(folder, index, INDEX, overwrite=True)
    return written


def load_directions(bundle: str | PathLike[str], *, verify: bool = True) -> dict[str, Direction]:
    """Every direction in the bundle's index, by name (an empty dict when there is none).

    ``verify``: check the hashes of the whole bundle first (pass False when the caller has
    just verified it). Files are read with ``torch.load(weights_only=True)``.
    """
    folder = Path(bundle)
    manifest = verify_bundle(folder) if verify else read_bundle_manifest(folder)
    out: dict[str, Direction] = {}
    for name, entry in _read_index(folder, manifest).items():
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or file not in manifest["files"]:
            raise BundleError(
                f"lists direction {name!r} with no file in the bundle", folder / INDEX
            )
        path = folder / file
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            raise BundleError(exc.reason, path) from None
        direction = direction_from_state(state, path)
        if direction.name != name:
            raise BundleError(f"holds direction {direction.name!r}, the index says {name!r}", path)
        out[name] = direction
    return out
