"""Prepare a session offline: open a scan or a paired study as the explorer does, refine
every slice's latent (both modalities of a pair), and save it as a ``.medstyle`` session.

Refinement is the slow part of exploring (hundreds of optimiser steps per slice); done
once here, on a GPU server or overnight, the explorer then opens the session with every
slice ready (``medstyle session``; the bundled demo ships one made this way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from medstyle_gui.core.embed import REFINE_LR, REFINE_STEPS, EmbedProgress, embed_images
from medstyle_gui.core.explore import ExplorerState, ScanSlot, load_pair, load_scan
from medstyle_gui.core.model import Model
from medstyle_gui.core.session import save_session
from trainer.errors import ConfigError
from trainer.files import ensure_can_write


def describe_inputs(
    paths: Sequence[str | PathLike[str]], series_uid: str | None = None
) -> dict[str, Any]:
    """What the explorer opens for ``paths``: ``{"kind": "pair", "ct", "mr", "swapped"}``
    for a study folder (``mr`` None) or a CT and an MR, ``{"kind": "scan", "path",
    "series_uid"}`` for one scan (``series_uid``: which series of a DICOM folder, its UID
    or its listed number). ConfigError for anything else, and for ``series_uid`` with a
    pair."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and not (paths[0] / "study.json").is_file():
        return {"kind": "scan", "path": str(paths[0]), "series_uid": series_uid}
    if len(paths) not in (1, 2):
        raise ConfigError("give one scan, one paired study folder, or a CT and an MR")
    if series_uid is not None:
        raise ConfigError(
            f"--series {series_uid} chooses a series of one scan, not a pair", paths[0]
        )
    if len(paths) == 1:
        return {"kind": "pair", "ct": str(paths[0]), "mr": None, "swapped": False}
    return {"kind": "pair", "ct": str(paths[0]), "mr": str(paths[1]), "swapped": False}


def build_session(
    model: Model,
    paths: Sequence[str | PathLike[str]],
    out: str | PathLike[str],
    *,
    steps: int = REFINE_STEPS,
    lr: float = REFINE_LR,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    bf16: bool = False,
) -> tuple[Path, ExplorerState]:
    """Open ``paths`` (see :func:`describe_inputs`), embed every slice of the source and of
    its pair with ``steps`` refinement steps at rate ``lr``, ``batch`` slices at a time,
    and save the session to ``out`` (on the middle slice). ``progress(slices_done, slices_total)``;
    ``bf16``: see :func:`~medstyle_gui.core.embed.embed_images`.

    Returns the file and the state saved (with its scans).
    """
    ensure_can_write(out, overwrite)  # fail before the slow part
    opened = describe_inputs(paths)
    state = ExplorerState()
    if opened["kind"] == "pair":
        state.source, state.paired, mr_w, ct_w = load_pair(model, opened["ct"], opened["mr"])
        state.encoder_latents.update(mr_w)
        state.paired_encoder_latents.update(ct_w)
    else:
        state.source, enc_w = load_scan(model, opened["path"])
        state.encoder_latents.update(enc_w)
    slots = [s for s in (state.source, state.paired) if s is not None]
    total = sum(s.num_slices for s in slots)
    done = 0

    def embed(slot: ScanSlot):
        def step(p: EmbedProgress) -> None:
            if progress is not None and p.step == steps:  # a batch finished
                progress(done + p.slices_done + p.batch_slices, total)

        return embed_images(
            model,
            slot.slices.images,
            slot.slices.modalities,
            steps=steps,
            batch=batch,
            lr=lr,
            progress=step,
            bf16=bf16,
        )

    assert state.source is not None
    result = embed(state.source)
    rows = range(state.source.num_slices)
    state.latents.update(result.latents_by_slice(rows)[0])
    state.embed_errors.update(result.errors_by_slice(rows))
    done += len(rows)
    if state.paired is not None:
        paired = embed(state.paired)
        state.paired_latents.update(paired.latents_by_slice(range(state.paired.num_slices))[0])
    state.index = state.source.num_slices // 2
    extra = {
        "model": str(model.folder),
        "model_sha256": model.sha256,
        "opened": opened,
        "refinement": {"steps": steps, "lr": lr},
    }
    return save_session(out, state, extra, overwrite=overwrite), state
