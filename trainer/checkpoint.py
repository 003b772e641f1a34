"""Checkpoints: atomic save, safe load, and the RNG states an exact resume needs.

A checkpoint is a plain dict of ``state_dict``s, tensors, numbers, strings, lists and
dicts (no class instances), written to a temporary file in the same folder, flushed
to disk and renamed over the target, so a crash (even SIGKILL) leaves either the old
file or the new one, never half of one. It is read with
``torch.load(weights_only=True)``, which refuses to build arbitrary Python objects:
a file that holds anything else - a pickle whose ``__reduce__`` would run code, a
pickled model object - is rejected before any of it runs.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from collections import OrderedDict
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.errors import MedstyleError
from trainer.files import atomic_file


class CheckpointError(MedstyleError):
    """A checkpoint or weights file is missing, corrupt, or not a plain-tensor file."""


_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device)


def _to_plain(value: Any, where: str) -> Any:
    """Check (and lightly convert) a value for a weights-only checkpoint.

    numpy scalars become Python numbers and numpy arrays tensors (the unpickler would
    refuse them); anything else that ``torch.load(weights_only=True)`` cannot read
    back raises TypeError here, at save time, rather than when resuming a week later.
    """
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if isinstance(value, (torch.Tensor, *_PLAIN_SCALARS)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Mapping):
        # state_dicts are OrderedDicts carrying `_metadata` (per-module versions that
        # load_state_dict uses to upgrade old layouts): keep both
        out: dict = OrderedDict() if isinstance(value, OrderedDict) else {}
        if hasattr(value, "_metadata"):
            out._metadata = _to_plain(value._metadata, f"{where}._metadata")  # type: ignore[attr-defined]
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is not a string or integer")
            out[k] = _to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, list | tuple):
        items = [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(
        f"checkpoint entry {where} is a {type(value).__name__}; only tensors, numbers, "
        "strings, lists and dicts can be saved"
    )


def save_checkpoint(
    state: Mapping[str, Any], path: str | PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``state`` (a plain dict, see module doc) to ``path`` atomically.

    The data is fsynced before the rename and the folder after it, so the file is
    whole on disk when this returns. ``overwrite`` must be true to replace an
    existing file (a training loop's ``latest.pt`` / ``best.pt``). Returns the path.
    """
    plain = _to_plain(dict(state), "state")
    with atomic_file(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            torch.save(plain, f)
            f.flush()
            os.fsync(f.fileno())
    target = Path(path)
    _fsync_folder(target.parent)
    return target


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not every file system allows it)."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: str | PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint (or any plain state_dict file) written by :func:`save_checkpoint`
    or ``torch.save``, with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` naming the file if it does not exist, is truncated
    or corrupt, holds Python objects other than tensors and containers (nothing in it
    is run), or is not a dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError("does not exist", path)
    if path.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" in text.lower() and "Unsupported operand" not in text:
            found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"is not a plain-tensor checkpoint: it holds Python objects{what} that could "
                "run code when loaded, so it was refused (medstyle reads only tensors, "
                "numbers, strings, lists and dicts)",
                path,
            ) from None
        # garbage bytes read as an (old-style) pickle stop at an unknown opcode
        raise CheckpointError("is not a readable checkpoint (corrupt data)", path) from None
    except PermissionError as exc:
        raise CheckpointError(f"could not be read ({exc.strerror or exc})", path) from None
    except Exception as exc:
        # arbitrary bytes fail in arbitrary ways (a cut-off zip is a bad seek,
        # garbage an IndexError deep in the unpickler...)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"is not a readable checkpoint (truncated or corrupt: {reason})", path
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"holds a {type(state).__name__}, not a checkpoint dict of state_dicts", path
        )
    return state


# ---------------------------------------------------------------------------------------
# Random number generator states
# ---------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python ``random``, numpy's legacy global generator, torch
    CPU and, when available, every CUDA device) as plain checkpoint values."""
    version, internal, gauss_next = random.getstate()
    # the legacy global generator is the one library code draws from: it is the state
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned. CUDA states are restored for as many
    devices as both the checkpoint and this machine have (a resume on another GPU
    count keeps the others as they are)."""
    try:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"]))
        npy = state["numpy"]
        keys = npy["keys"]  # a tensor, possibly moved to a GPU by map_location
        keys = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state(  # noqa: NPY002
            (
                npy["bit_generator"],
                keys.astype(np.int64).astype(np.uint32),
                int(npy["pos"]),
                int(npy["has_gauss"]),
                float(npy["cached_gaussian"]),
            )
        )
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's random number state is malformed ({exc})"
        ) from None
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(torch.as_tensor(cuda_state, dtype=torch.uint8).cpu(), device)
