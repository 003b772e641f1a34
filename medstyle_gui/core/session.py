"""A session: everything the user set up in the explorer, saved and reopened as one file.

One HDF5 file (``.medstyle``). Layout (``format = "medstyle-session"``,
``format_version = 1``)::

    latents/{refined,encoder,paired_refined,paired_encoder}/index  [K] int32 slice numbers
    latents/{...}/w                                                [K, w_dim] float32
    seed_w                                                         [w_dim] float32 (optional)

Root attributes: ``format``, ``format_version``, ``created_utc``, ``software`` and
``state`` (JSON: the source and paired scan paths and series, slice index, moves, tau,
mix, window, seed, embedding errors) and ``extra`` (JSON: the model folder and whatever
the caller adds), and ``folder``: where the file was written. The scans themselves are
not copied: the session names them, and opening it reads them again. A session moved
together with its scans and model (a copied folder, an installed package) opens its own
copies: a saved path is looked for first at the same place relative to the session file
(:func:`relocate`). Written atomically; an existing file is replaced only when
asked; a damaged or foreign file is one line naming it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Collection
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

import trainer
from medstyle_gui.core.explore import MIX_SOURCES, ExplorerState
from trainer.errors import MedstyleError
from trainer.files import atomic_file

FORMAT = "medstyle-session"
FORMAT_VERSION = 1
SUFFIX = ".medstyle"
#: ExplorerState tables of latents and their group names in the file.
TABLES = {
    "latents": "refined",
    "encoder_latents": "encoder",
    "paired_latents": "paired_refined",
    "paired_encoder_latents": "paired_encoder",
}


class SessionError(MedstyleError):
    """A session file cannot be written or read."""


def _slot(slot) -> dict[str, Any] | None:
    if slot is None:
        return None
    path = os.path.abspath(slot.path) if slot.path else slot.path
    return {"path": path, "series_uid": slot.series_uid, "modality": slot.modality}


def _map_extra_paths(extra: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``extra`` with ``fn`` applied to its model folder and the paths of
    ``extra["opened"]`` (the paths a session names besides its scans')."""
    out = dict(extra)
    if isinstance(out.get("model"), str) and out["model"]:
        out["model"] = fn(out["model"])
    opened = out.get("opened")
    if isinstance(opened, dict):
        out["opened"] = {
            k: fn(v) if k in ("path", "ct", "mr") and isinstance(v, str) and v else v
            for k, v in opened.items()
        }
    return out


def _state_dict(state: ExplorerState) -> dict[str, Any]:
    return {
        "source": _slot(state.source),
        "paired": _slot(state.paired),
        "index": int(state.index),
        "moves": {str(k): float(v) for k, v in state.moves.items()},
        "tau": float(state.tau),
        "mix_layers": list(state.mix_layers),
        "mix_source": state.mix_source,
        "mix_slice": state.mix_slice,
        "mix_seed": int(state.mix_seed),
        "seed": int(state.seed),
        "window": None if state.window is None else [float(v) for v in state.window],
        "embed_errors": {
            str(i): {k: float(v) for k, v in e.items()} for i, e in state.embed_errors.items()
        },
    }


def save_session(
    path: str | PathLike[str],
    state: ExplorerState,
    extra: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``state`` (and ``extra``: JSON-ready values such as the model folder) to
    ``path``; ScanWriteError when it exists and ``overwrite`` is false."""
    import h5py

    path = Path(path)
    try:
        # absolute: a path relative to where it was saved from means nothing when opened
        extra_json = json.dumps(_map_extra_paths(extra or {}, os.path.abspath))
    except (TypeError, ValueError) as err:
        raise SessionError(f"the session's extra values are not JSON ({err})", path) from None
    with atomic_file(path, overwrite=overwrite) as tmp:
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
                f.attrs["software"] = f"medstyle {trainer.__version__}"
                f.attrs["state"] = json.dumps(_state_dict(state))
                f.attrs["extra"] = extra_json
                f.attrs["folder"] = str(path.resolve().parent)
                for attr, group in TABLES.items():
                    table: dict[int, np.ndarray] = getattr(state, attr)
                    keys = sorted(table)
                    g = f.create_group(f"latents/{group}")
                    g["index"] = np.asarray(keys, np.int32)
                    if keys:
                        g["w"] = np.stack([np.asarray(table[k], np.float32) for k in keys])
                if state.seed_w is not None:
                    f["seed_w"] = np.asarray(state.seed_w, np.float32)
        except OSError as err:
            raise SessionError(f"could not be written ({err})", path) from None
    return path


def _read_table(f, group: str) -> dict[int, np.ndarray]:
    g = f[f"latents/{group}"]
    index = g["index"][()]
    if len(index) == 0:
        return {}
    w = g["w"][()]
    if w.ndim != 2 or len(w) != len(index) or not np.isfinite(w).all():
        raise ValueError(f"latents/{group} has {len(index)} slices but w of shape {w.shape}")
    return {int(i): w[k].astype(np.float32) for k, i in enumerate(index)}


def _state_from(data: dict[str, Any], f) -> ExplorerState:
    state = ExplorerState(
        index=int(data.get("index", 0)),
        moves={str(k): float(v) for k, v in (data.get("moves") or {}).items()},
        tau=float(data.get("tau", 1.0)),
        mix_layers=tuple(str(x) for x in data.get("mix_layers") or ()),
        mix_source=str(data.get("mix_source", "paired")),
        mix_slice=None if data.get("mix_slice") is None else int(data["mix_slice"]),
        mix_seed=int(data.get("mix_seed", 0)),
        seed=int(data.get("seed", 0)),
    )
    if state.mix_source not in MIX_SOURCES:
        raise ValueError(f"unknown mix source {state.mix_source!r}")
    window = data.get("window")
    if window is not None:
        level, width = (float(v) for v in window)
        state.window = (level, width)
    for attr, group in TABLES.items():
        getattr(state, attr).update(_read_table(f, group))
    state.embed_errors = {
        int(i): {str(k): float(v) for k, v in e.items()}
        for i, e in (data.get("embed_errors") or {}).items()
    }
    if "seed_w" in f:
        state.seed_w = f["seed_w"][()].astype(np.float32)
    return state


def load_session(
    path: str | PathLike[str],
) -> tuple[ExplorerState, dict[str, dict[str, Any] | None], dict[str, Any]]:
    """Read a session: ``(state without scans, {"source": ..., "paired": ...}, extra)``.

    The scan entries are ``{"path", "series_uid", "modality"}`` (or None); opening them
    again is the caller's job (on a worker). SessionError names the file for a missing,
    foreign, newer or damaged file.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SessionError("does not exist" if not path.exists() else "is not a file", path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise SessionError(
            "is not a medstyle session file (unreadable HDF5: damaged, cut short or another "
            "format)",
            path,
        ) from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise SessionError("is not a medstyle session file", path)
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise SessionError(
                f"was written by a newer medstyle (session format {version}; "
                f"this one reads {FORMAT_VERSION})",
                path,
            )
        try:
            data = json.loads(str(f.attrs["state"]))
            extra = json.loads(str(f.attrs.get("extra", "{}")))
            state = _state_from(data, f)
            scans = {"source": data.get("source"), "paired": data.get("paired")}
            _relocate_paths(scans, extra, str(f.attrs.get("folder", "")), path.parent)
        except (KeyError, ValueError, TypeError, OSError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise SessionError(f"is damaged ({reason})", path) from None
    return state, scans, extra


def relocate(saved: str, saved_folder: str, folder: Path) -> str:
    """Where a saved path is now: the same place relative to the session file when
    something is there (the session moved together with its scans and model: a copied
    folder, an installed package), else ``saved`` as written. ``saved_folder``: where
    the session was written; ``folder``: where it is now."""
    if not saved or not saved_folder:
        return saved
    try:
        relative = os.path.relpath(saved, saved_folder)
    except ValueError:  # another drive (Windows)
        return saved
    moved = (folder / relative).resolve()
    return str(moved) if moved.exists() else saved


def _relocate_paths(
    scans: dict[str, dict[str, Any] | None], extra: dict[str, Any], saved: str, folder: Path
) -> None:
    """Apply :func:`relocate` in place to the scan paths, the model folder and the paths
    of ``extra["opened"]``."""
    for entry in scans.values():
        if entry and entry.get("path"):
            entry["path"] = relocate(entry["path"], saved, folder)
    extra.update(_map_extra_paths(extra, lambda p: relocate(p, saved, folder)))


def restore_into(
    target: ExplorerState, saved: ExplorerState, directions: Collection[str], latents: bool
) -> None:
    """Copy a loaded session's settings into ``target`` (whose scans are already open):
    latents when ``latents`` (same model), moves along ``directions`` the model has,
    truncation, mix, seed, window, and the slice index clamped to the scan."""
    if latents:
        for attr in (*TABLES, "embed_errors"):
            getattr(target, attr).update(getattr(saved, attr))
    target.moves = {k: v for k, v in saved.moves.items() if k in directions}
    target.tau, target.mix_layers = saved.tau, saved.mix_layers
    target.mix_source, target.mix_slice, target.mix_seed = (
        saved.mix_source,
        saved.mix_slice,
        saved.mix_seed,
    )
    target.seed = saved.seed
    if saved.seed_w is not None:
        target.seed_w = saved.seed_w
    if target.source is not None:
        target.index = int(min(max(saved.index, 0), target.source.num_slices - 1))
    target.window = saved.window
