"""The explorer's whole state as plain data, and the pure functions the GUI renders from.

:class:`ExplorerState` is what the user has set up: the scan (and its paired scan of the
other modality), the current slice, the slices' latents, the moves along the model's
directions, the truncation, the style mix and the display window. The functions below
turn it into a :class:`~medstyle_gui.core.render.RenderRequest` and decide which slice
the render is scored against, so tests, the CLI and the GUI all agree. Nothing here
imports Qt; the loaders at the end are slow (file reading, registration, the encoder) and
take the progress callback and cancel event a GUI worker passes in.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from medstyle_gui.core.embed import EmbedCancelled, encode
from medstyle_gui.core.generate import GenerateRequest, start_latent
from medstyle_gui.core.latent import apply_directions
from medstyle_gui.core.latents import SliceSet, slices_from_volume
from medstyle_gui.core.model import Model
from medstyle_gui.core.render import RenderRequest
from trainer.data.volume import Volume
from trainer.directions import Direction

#: Classes of the built-in directions (see trainer.directions.latents.BUILT_IN).
MODALITY_CLASSES = ("MR", "CT")
SLICE_CLASSES = ("inferior", "superior")
#: Where a mixed-in style comes from.
MIX_SOURCES = ("paired", "slice", "seed")
#: Truncation of a random latent (the paper samples at 0.7).
SEED_TRUNCATION = 0.7
#: ExplorerState's tables of latents (slice -> w).
LATENT_TABLES = ("latents", "encoder_latents", "paired_latents", "paired_encoder_latents")
#: Slices run through the encoder together when a scan is opened.
ENCODE_BATCH = 16

Progress = Callable[[float, str], None]


@dataclass
class ScanSlot:
    """A loaded scan on the model matrix."""

    path: str  # what the user opened (file or DICOM folder)
    series_uid: str | None  # which series of a DICOM folder, None: the only one
    slices: SliceSet  # images [N, R, R] on [-1, 1] with their labels
    volume: Volume  # the scan on the model matrix: geometry and native units (HU / MR)
    modality: str  # "CT" | "MR"

    @property
    def num_slices(self) -> int:
        return int(self.volume.num_slices)

    def native(self, index: int) -> np.ndarray:
        """Slice ``index`` ``[R, R]`` in native units (HU for CT, MR units)."""
        return self.volume.array[index]


@dataclass
class ExplorerState:
    """Everything the user set up; the GUI's AppState owns one and changes it via setters."""

    source: ScanSlot | None = None
    paired: ScanSlot | None = None  # the other modality on the same grid (a paired study)
    index: int = 0  # current slice of source
    latents: dict[int, np.ndarray] = field(default_factory=dict)  # slice -> refined w [w_dim]
    encoder_latents: dict[int, np.ndarray] = field(default_factory=dict)  # slice -> E(x)
    embed_errors: dict[int, dict] = field(default_factory=dict)  # slice -> {"encoder", "refined"}
    paired_latents: dict[int, np.ndarray] = field(default_factory=dict)  # of the paired scan
    paired_encoder_latents: dict[int, np.ndarray] = field(default_factory=dict)
    seed_w: np.ndarray | None = None  # [w_dim] a random latent, shown when no scan is loaded
    seed: int = 0  # the seed seed_w was drawn with
    moves: dict[str, float] = field(default_factory=dict)  # direction -> alpha (normal units)
    tau: float = 1.0  # truncation toward the mean latent (1: none)
    mix_layers: tuple[str, ...] = ()  # style layers taking the mix latent ("8x8", "fine")
    mix_source: str = "paired"  # "paired" | "slice" | "seed"
    mix_slice: int | None = None  # source slice whose latent is mixed in ("slice")
    mix_seed: int = 0  # seed of the random mix latent ("seed")
    window: tuple[float, float] | None = None  # (level, width) in native units

    def copy(self) -> ExplorerState:
        """A copy whose tables can change without touching this one (arrays and scans are
        shared: nobody changes them in place). Background jobs work on one."""
        other = copy.copy(self)
        for name in (*LATENT_TABLES, "embed_errors", "moves"):
            setattr(other, name, dict(getattr(self, name)))
        return other

    def clear_scans(self) -> None:
        """Forget the scans and everything tied to their slices (moves and mix stay)."""
        self.source = self.paired = None
        self.index = 0
        self.mix_slice = None
        for name in (*LATENT_TABLES, "embed_errors"):
            getattr(self, name).clear()


# -- directions by meaning ------------------------------------------------------------------


def is_modality_direction(direction: Direction) -> bool:
    """MR <-> CT directions: "modality" and conditional ones such as "modality|slice"."""
    return tuple(direction.classes) == MODALITY_CLASSES


def is_slice_direction(direction: Direction) -> bool:
    """Inferior <-> superior directions: "slice" and conditional ones."""
    return tuple(direction.classes) == SLICE_CLASSES


def units_per_slice(model: Model, name: str = "slice") -> float | None:
    """Normal units per slice of a slice direction: its own calibration, else that of the
    model's "slice" direction (conditional directions carry none); None when uncalibrated."""
    for key in (name, "slice"):
        direction = model.directions.get(key)
        calibration = (direction.calibration or {}) if direction is not None else {}
        value = calibration.get("units_per_slice")
        if value is not None and abs(float(value)) > 1e-9:
            return float(value)
    return None


def active_moves(state: ExplorerState, model: Model) -> tuple[tuple[str, float], ...]:
    """The non-zero moves along directions the model has, in the order they were set."""
    return tuple(
        (name, float(alpha))
        for name, alpha in state.moves.items()
        if alpha != 0.0 and name in model.directions
    )


# -- latents ----------------------------------------------------------------------------------


def seeded_w(model: Model, seed: int, psi: float = SEED_TRUNCATION) -> np.ndarray:
    """``[w_dim]`` float32: the mapped random z of ``seed``, truncated by ``psi`` (as
    ``medstyle generate --seed`` draws it). Remembered per model, since a mix from a seed
    asks for it at every slider step."""
    key = (id(model), model.sha256, int(seed), float(psi))
    w = _SEEDS.get(key)
    if w is None:
        request = GenerateRequest(slices=1, seed=int(seed), truncation_psi=psi)
        w = start_latent(model, request)[0].detach().cpu().numpy().astype(np.float32)
        if len(_SEEDS) >= 64:
            _SEEDS.clear()
        _SEEDS[key] = w
    return w


_SEEDS: dict[tuple, np.ndarray] = {}


def slice_w(latents: dict[int, np.ndarray], encoder: dict[int, np.ndarray], i: int):
    """The refined latent of slice ``i``, else the encoder's guess, else None."""
    w = latents.get(i)
    return encoder.get(i) if w is None else w


def current_w(state: ExplorerState, model: Model | None = None) -> np.ndarray | None:
    """``[w_dim]`` of the current slice (refined, else the encoder's guess), else ``seed_w``.

    ``model`` is unused; it is taken so every function here has one signature."""
    if state.source is not None:
        w = slice_w(state.latents, state.encoder_latents, state.index)
        if w is not None:
            return w
    return state.seed_w


def mix_w(state: ExplorerState, model: Model) -> np.ndarray | None:
    """``[w_dim]`` whose styles are mixed in, or None (no layers chosen, or the slice it
    should come from is not embedded: the GUI then offers to embed it).

    ``"paired"``: the paired scan's slice at the current index; ``"slice"``: another slice
    of the source (``mix_slice``); ``"seed"``: a random latent of ``mix_seed``."""
    if not state.mix_layers:
        return None
    if state.mix_source == "paired":
        if state.paired is None:
            return None
        return slice_w(state.paired_latents, state.paired_encoder_latents, state.index)
    if state.mix_source == "slice":
        if state.mix_slice is None:
            return None
        return slice_w(state.latents, state.encoder_latents, state.mix_slice)
    return seeded_w(model, state.mix_seed)


def moved_w(state: ExplorerState, model: Model) -> np.ndarray | None:
    """``[w_dim]`` after the moves and truncation (before any mix), as the renderer makes it."""
    w = current_w(state, model)
    if w is None:
        return None
    moves = [(model.directions[name], alpha) for name, alpha in active_moves(state, model)]
    with torch.no_grad():
        t = torch.as_tensor(np.asarray(w, np.float32), device=model.device)[None]
        out = apply_directions(t, moves, float(state.tau), model.w_mean)
    return out[0].cpu().numpy()


# -- what is rendered and what it is scored against ------------------------------------------


def _crosses(state: ExplorerState, model: Model, target: np.ndarray | None) -> bool:
    if state.source is None:
        return False
    if state.mix_source == "paired" and state.mix_layers and target is not None:
        return True
    moves = active_moves(state, model)
    if not any(is_modality_direction(model.directions[name]) for name, _ in moves):
        return False
    judge = model.directions.get("modality") or model.directions[moves[0][0]]
    w = moved_w(state, model)
    if w is None:
        return False
    with torch.no_grad():
        label = judge.classes[int(judge.predict(torch.as_tensor(w)[None])[0])]
    return label != state.source.modality


def crosses_modality(state: ExplorerState, model: Model) -> bool:
    """True when the render shows the other modality than the source: a modality move that
    takes the latent across the "modality" decision surface, or the paired slice's styles
    mixed in (the paper's style transfer, scored against the paired slice)."""
    return _crosses(state, model, mix_w(state, model))


def _other(modality: str) -> str:
    return "CT" if modality == "MR" else "MR"


#: How sure the "modality" direction must be of the other modality to warn (near 0.5 the
#: latent sits on the surface, which says nothing either way).
MISREAD_SURE = 0.6


def readings(direction: Direction, ws: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Which class ``direction``'s classifier gives each latent of ``ws [N, w_dim]``, and
    how sure it is: ``[N]`` class names and ``[N]`` probabilities of them (0.5..1)."""
    with torch.no_grad():
        t = torch.as_tensor(np.asarray(ws, np.float32), device=direction.device)
        p = direction.probability(t).double().cpu().numpy()
    upper = p >= 0.5
    labels = [direction.classes[1] if u else direction.classes[0] for u in upper]
    return labels, np.where(upper, p, 1.0 - p)


def reading(direction: Direction, w: np.ndarray) -> tuple[str, float]:
    """:func:`readings` of one latent ``w [w_dim]``: its class and how sure (0.5..1)."""
    labels, sure = readings(direction, np.asarray(w)[None])
    return labels[0], float(sure[0])


def _modality_judge(model: Model) -> Direction | None:
    """The model's "modality" direction when it separates MR from CT, else None."""
    direction = model.directions.get("modality")
    return direction if direction is not None and is_modality_direction(direction) else None


def misread_rows(model: Model, ws: np.ndarray, modalities: Sequence[str]) -> np.ndarray:
    """``[N]`` bool: latents ``ws [N, w_dim]`` of slices of ``modalities`` that the model's
    "modality" direction reads as the other modality, at least :data:`MISREAD_SURE` sure
    (all False without such a direction)."""
    direction = _modality_judge(model)
    if direction is None or len(ws) == 0:
        return np.zeros(len(ws), bool)
    labels, sure = readings(direction, ws)
    return np.array([a != b for a, b in zip(labels, modalities, strict=True)]) & (
        sure >= MISREAD_SURE
    )


def misread_note(
    state: ExplorerState, model: Model, w_final: np.ndarray | None, modality: str | None
) -> str:
    """A warning when the model's "modality" direction reads the rendered latent ``w_final
    [w_dim]`` (after the moves) as the other modality than the ``modality`` the slice is
    drawn as, at least :data:`MISREAD_SURE` sure; "" otherwise, and when nothing is to
    judge (no scan, a style mix, which draws the other modality on purpose, or no such
    direction).

    The encoder's guess for a scan unlike the training data (another body region, another
    contrast) can land among the other modality's latents, and the image is then poor
    (the demo's guess for an upper-abdomen CT: MR 65 %, 568 HU inside the body).
    Refinement mends the image (56 HU) but the refined latents of that CT still read as
    MR: the directions, fitted on the training scans' latents, do not carry over."""
    direction = _modality_judge(model)
    if (
        state.source is None
        or w_final is None
        or modality is None
        or direction is None
        or mix_w(state, model) is not None
    ):
        return ""
    label, sure = reading(direction, w_final)
    if label == modality or sure < MISREAD_SURE:
        return ""
    advice = (
        "its sliders may not mean here what they mean on the scans it was trained on"
        if state.index in state.latents
        else "refine the slice (Embed panel) before trusting the image or the sliders"
    )
    return (
        f"The model reads this latent as {label} ({100 * sure:.0f} %), not as the {modality} "
        f"it is drawn as: the scan may lie outside what the model learned; {advice}."
    )


def render_modality(state: ExplorerState, model: Model) -> str | None:
    """How the render is decoded: the paired modality when it crosses, else the source's;
    None without a scan (the renderer then asks the "modality" direction)."""
    return plan(state, model).modality


def slice_offset(state: ExplorerState, model: Model) -> int | None:
    """Slices of the open scan the slice moves ask for (``round(sum alpha / units per scan
    slice)``, see :func:`scan_units_per_slice`), or None when
    no slice move is set or the slice direction is not calibrated."""
    moves = [
        (n, a) for n, a in active_moves(state, model) if is_slice_direction(model.directions[n])
    ]
    if not moves:
        return None
    ups = scan_units_per_slice(state, model, moves[0][0])
    if ups is None:
        return None
    return round(sum(alpha for _, alpha in moves) / ups)


def scan_units_per_slice(state: ExplorerState, model: Model, name: str = "slice") -> float | None:
    """Normal units per slice *of the open scan*: the direction's units per mm times the
    scan's slice spacing, so a 6 mm scan steps one slice per 6 mm of the walk; without a
    scan (or a per-mm calibration) the training data's units per slice."""
    if state.source is not None:
        for key in (name, "slice"):
            direction = model.directions.get(key)
            calibration = (direction.calibration or {}) if direction is not None else {}
            per_mm = calibration.get("units_per_mm")
            if per_mm is not None and abs(float(per_mm)) > 1e-12:
                spacing_mm = float(state.source.volume.spacing_mm[0])
                return float(per_mm) * spacing_mm
    return units_per_slice(model, name)


def sought_slice(state: ExplorerState, model: Model) -> int | None:
    """The slice a slice move seeks: ``index + round(alpha / units_per_slice)`` (may lie
    outside the scan; :func:`ground_truth` says so), None without a slice move."""
    offset = slice_offset(state, model)
    return None if offset is None or state.source is None else state.index + offset


def _ground_truth(
    state: ExplorerState, model: Model, crosses: bool
) -> tuple[np.ndarray | None, str]:
    source = state.source
    if source is None:
        return None, f"random latent (seed {state.seed}): no ground truth"
    if slice_w(state.latents, state.encoder_latents, state.index) is None:
        return None, f"slice {state.index} is not embedded yet"
    slot, what = source, "source"
    if crosses:
        if state.paired is None:
            return None, f"no paired {_other(source.modality)} slice (open a paired study)"
        slot, what = state.paired, "paired"
    index = state.index
    sought = sought_slice(state, model)
    if sought is not None:
        if not 0 <= sought < slot.num_slices:
            return None, f"sought slice {sought} lies outside the scan (0-{slot.num_slices - 1})"
        index, what = sought, ("paired sought" if what == "paired" else "sought")
    offset = "" if index == state.index else f" ({index - state.index:+d})"
    return slot.native(index), f"{what} {slot.modality} slice {index}{offset}"


def ground_truth(state: ExplorerState, model: Model) -> tuple[np.ndarray | None, str]:
    """The slice ``[R, R]`` (native units) the render is scored against, and a label.

    The paired slice when the render crosses to the other modality (at the sought slice
    when a slice move is also set), the sought slice of the source for a slice move,
    else the source slice itself. None (with the reason as label) when there is none.
    """
    return _ground_truth(state, model, crosses_modality(state, model))


@dataclass(frozen=True)
class Plan:
    """What a render of the state takes, worked out once (a slider drag asks for it at
    every step): the latent, the mix latent, the decoding modality and the truth."""

    w: np.ndarray | None  # [w_dim], None: nothing to render
    mix_w: np.ndarray | None  # [w_dim], None: no mix
    modality: str | None  # "CT" | "MR", None: the renderer decides
    truth: np.ndarray | None  # [R, R] native units
    truth_label: str


def plan(state: ExplorerState, model: Model) -> Plan:
    """The :class:`Plan` of ``state``."""
    target = mix_w(state, model)
    crosses = _crosses(state, model, target)
    source = state.source
    modality = None if source is None else (_other(source.modality) if crosses else source.modality)
    truth, label = _ground_truth(state, model, crosses)
    return Plan(current_w(state, model), target, modality, truth, label)


def request_from(state: ExplorerState, model: Model, p: Plan, stamp: int) -> RenderRequest | None:
    """The render request of ``state`` with its plan ``p`` (None without a latent)."""
    if p.w is None:
        return None
    return RenderRequest(
        w=np.asarray(p.w, np.float32),
        moves=active_moves(state, model),
        tau=float(state.tau),
        mix_w=p.mix_w,
        mix_layers=tuple(state.mix_layers) if p.mix_w is not None else (),
        modality=p.modality,
        ground_truth=p.truth,
        stamp=int(stamp),
    )


def build_request(state: ExplorerState, model: Model, stamp: int) -> RenderRequest | None:
    """The render request of ``state`` (None when there is no latent to render)."""
    return request_from(state, model, plan(state, model), stamp)


# -- loading (slow: run on a worker) ---------------------------------------------------------


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise EmbedCancelled("cancelled")


def encode_slices(
    model: Model,
    slices: SliceSet,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict[int, np.ndarray]:
    """The encoder's guess ``{slice: w [w_dim]}`` for every slice (the mean latent without
    an encoder), ``ENCODE_BATCH`` at a time."""
    out: dict[int, np.ndarray] = {}
    n = len(slices.images)
    for start in range(0, n, ENCODE_BATCH):
        _check_cancel(cancel)
        x = torch.from_numpy(slices.images[start : start + ENCODE_BATCH, None]).to(model.device)
        w = encode(model, x).cpu().numpy().astype(np.float32)
        out.update({start + i: w[i] for i in range(len(w))})
        if progress is not None:
            progress(min(n, start + ENCODE_BATCH) / n, "encoding slices")
    return out


def slot_from_volume(model: Model, volume: Volume, path: str, series_uid: str | None) -> ScanSlot:
    """A scan slot: ``volume`` (modality known) on the model matrix."""
    slices = slices_from_volume(model, volume)
    assert slices.volume is not None and volume.modality is not None
    return ScanSlot(str(path), series_uid, slices, slices.volume, volume.modality)


def series_to_keep(volume: Volume, series_uid: str | None) -> str | None:
    """How to name again the series ``series_uid`` chose, for a session to reopen it: a
    DICOM series by its Series Instance UID (``NO_UID`` for the folder's files without
    one), which still names it when the folder gains or loses series, where a listed
    number N would then name another. None (the only series) and slice datasets'
    ``PATIENT/MODALITY`` stay as they are."""
    from trainer.data.dicom_read import NO_UID

    if series_uid is None or "series_uid" not in volume.meta:  # only DICOM volumes carry it
        return series_uid
    return volume.meta["series_uid"] or NO_UID


def load_scan(
    model: Model,
    path: str | PathLike[str],
    series_uid: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    encode: bool = True,
) -> tuple[ScanSlot, dict[int, np.ndarray]]:
    """Read a scan, put it on the model matrix and encode every slice (unless ``encode``
    is false: a session brings its latents). The slot names the series by what chooses
    it again (:func:`series_to_keep`), not by the listed number ``series_uid`` may be."""
    from trainer.data.read import read_volume

    say = progress or (lambda f, m: None)
    say(0.0, f"reading {Path(path).name}")
    volume = read_volume(path, series_uid=series_uid)
    _check_cancel(cancel)
    say(0.3, "resampling to the model matrix")
    slot = slot_from_volume(model, volume, str(path), series_to_keep(volume, series_uid))
    if not encode:
        return slot, {}
    latents = encode_slices(model, slot.slices, lambda f, m: say(0.4 + 0.6 * f, m), cancel)
    return slot, latents


def load_pair(
    model: Model,
    ct_path: str | PathLike[str],
    mr_path: str | PathLike[str] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    encode: bool = True,
) -> tuple[ScanSlot, ScanSlot, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """A paired study: ``(mr, ct, mr_latents, ct_latents)`` on one grid (the MR's slices).

    With ``mr_path`` None, ``ct_path`` is a study folder (``study.json`` or one CT and one
    MR scan inside); an aligned study is not registered. Otherwise the CT is rigidly
    registered to the MR after N4 on the MR, as ``medstyle pair`` does. Both slots'
    ``volume.meta["pairing_check"]`` hold the pair's plausibility check (a failed one
    is loaded all the same, for the user to look at). Without ``encode`` the latent
    tables are empty (a session brings its own).
    """
    from trainer.data.read import read_pair
    from trainer.data.register import prepare_pair
    from trainer.data.studies import find_studies

    say = progress or (lambda f, m: None)
    register = True
    if mr_path is None:
        study = find_studies([ct_path])[0]
        ct_path, mr_path, register = study.ct, study.mr, not study.aligned
    say(0.0, "reading the CT and the MR")
    ct, mr = read_pair(ct_path, mr_path)
    _check_cancel(cancel)
    say(0.2, "registering CT to MR" if register else "resampling the pair")
    pair = prepare_pair(ct, mr, size=model.resolution, register=register, n4=True)
    _check_cancel(cancel)
    mr_slot = slot_from_volume(model, pair.mr, str(mr_path), None)
    ct_slot = slot_from_volume(model, pair.ct, str(ct_path), None)
    if not encode:
        return mr_slot, ct_slot, {}, {}
    mr_w = encode_slices(model, mr_slot.slices, lambda f, m: say(0.6 + 0.2 * f, m), cancel)
    ct_w = encode_slices(model, ct_slot.slices, lambda f, m: say(0.8 + 0.2 * f, m), cancel)
    return mr_slot, ct_slot, mr_w, ct_w
