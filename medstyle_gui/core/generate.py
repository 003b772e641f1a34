"""Synthetic volumes: one latent walked along the calibrated slice direction.

A start latent (a random seed, or an embedded slice) is first moved across the
modality and sex decision surfaces when the user asks for a class it is not in, then
stepped ``units_per_slice`` at a time along the slice direction, inferior to
superior, one generated slice per step. The slice spacing comes from the same
calibration (``mm_per_slice``), the pixel size from the training data, so the volume
has true geometry in mm. Every volume carries its recipe (model hash, start, moves) in
a :class:`Provenance`, which the writers put into the sidecar / DICOM header.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medstyle_gui.core.latent import apply_directions, broadcast, manipulate, mix, parse_layers
from medstyle_gui.core.model import Model
from trainer.data.dataset import MODALITY_CODES, SEX_CODES, dataset_geometry, open_dataset
from trainer.data.provenance import Provenance
from trainer.data.volume import Volume
from trainer.errors import ConfigError, MedstyleError

if TYPE_CHECKING:
    from trainer.directions import Direction

#: Truncation of random starts: the paper's encoder and FID use 0.7.
DEFAULT_TRUNCATION = 0.7
#: A class move stops once the classifier is this sure of the asked class.
CLASS_CONFIDENCE = 0.99
#: Largest class move tried, in hidden-space units along the unit normal.
MAX_CLASS_MOVE = 100.0
#: Most slices one volume may have (a whole-body CT at 1 mm has about 1800).
MAX_SLICES = 4096
#: Truncation psi beyond this many times the distance to w_avg makes no images (at
#: 1e30 every pixel overflows to one value).
MAX_TRUNCATION = 2.0


@dataclass(frozen=True)
class GenerateRequest:
    """What to generate. Exactly one of ``seed`` and ``start_w`` is given."""

    slices: int
    seed: int | None = None
    start_w: np.ndarray | None = None  # [w_dim], e.g. an embedded slice's refined w
    start_label: str = ""  # where start_w came from (provenance), e.g. "latents.h5:12"
    modality: str | None = None  # "CT" / "MR": move there first (None: keep the start's)
    sex: str | None = None  # "F" / "M" (None: keep)
    truncation_psi: float = DEFAULT_TRUNCATION  # for a random start
    centre: float = 0.5  # where the start slice sits in the volume, 0 inferior .. 1 superior
    batch: int = 32  # slices rendered together
    mix_w: np.ndarray | None = None  # [w_dim] whose styles mix_layers take (walks along too)
    mix_layers: tuple[str, ...] = ()  # "8x8", "16-32", "fine"...: see core.latent.parse_layers
    mix_label: str = ""  # where mix_w came from (provenance)
    output_modality: str | None = None  # units of the images (None: the walked latent's)


@dataclass
class GeneratedVolume:
    volume: Volume
    provenance: Provenance
    w: np.ndarray | None = None  # [slices, w_dim], the walked latents


def model_geometry(model: Model) -> dict[str, float]:
    """Pixel and slice size (mm) of the training data: the bundle's record, else read from
    the training dataset if it is still where training found it."""
    training = model.manifest.get("training") or {}
    geometry = training.get("geometry") or {}
    if "pixel_mm" in geometry:
        return geometry
    data = training.get("data")
    if data and Path(data).is_file():
        try:
            with open_dataset(data) as f:
                return dataset_geometry(f)
        except MedstyleError:
            pass
    return {}


def start_latent(model: Model, request: GenerateRequest) -> torch.Tensor:
    """The start ``w [1, w_dim]``: a mapped random z (truncated) or the given one."""
    if (request.seed is None) == (request.start_w is None):
        raise ConfigError("give either a seed or a start latent (not both, not neither)")
    if request.start_w is not None:
        return _given_latent(model, request.start_w, "the start latent")
    gen = torch.Generator().manual_seed(int(request.seed))
    z = torch.randn(1, model.config.z_dim, generator=gen).to(model.device)
    with torch.no_grad():
        return model.G.map(z, truncation_psi=request.truncation_psi)[:, 0]


def _check_request(request: GenerateRequest, pixel_mm: float | None) -> None:
    """Refuse numbers that would make no volume, or a wrong one, before any work."""
    if not 1 <= request.slices <= MAX_SLICES:
        raise ConfigError(f"--slices must be from 1 to {MAX_SLICES} (got {request.slices})")
    psi = request.truncation_psi
    if request.seed is not None and not abs(psi) <= MAX_TRUNCATION:  # NaN fails too
        raise ConfigError(
            f"--truncation {psi:g}: psi must be from -{MAX_TRUNCATION:g} to {MAX_TRUNCATION:g} "
            "(1 is no truncation)"
        )
    if request.seed is not None and not -(2**63) <= request.seed < 2**63:
        raise ConfigError(f"--seed {request.seed}: too large (at most 2^63 - 1)")
    if pixel_mm is not None and not (math.isfinite(pixel_mm) and pixel_mm > 0):
        raise ConfigError(f"--pixel-mm {pixel_mm:g}: a pixel size is more than 0 mm")


def _direction(model: Model, name: str, why: str):
    if name not in model.directions:
        raise ConfigError(
            f"the model has no '{name}' direction, needed {why} "
            f"(fit directions with 'medstyle directions fit')"
        )
    return model.directions[name]


@torch.no_grad()
def move_to_class(
    model: Model, w: torch.Tensor, name: str, target: int
) -> tuple[torch.Tensor, float]:
    """Move ``w [1, w_dim]`` along direction ``name`` until its classifier gives class
    ``target`` with :data:`CLASS_CONFIDENCE`; returns the new w and the alpha used (0 if
    it already was). Holds the slice position when a conditional direction exists."""
    direction = model.directions.get(f"{name}|slice") or _direction(model, name, f"to set {name}")
    alpha = alpha_to_class(direction, w, target, model.w_mean)
    return (w if alpha == 0.0 else manipulate(w, direction, alpha, 1.0, model.w_mean)), alpha


@torch.no_grad()
def alpha_to_class(
    direction: Direction, w: torch.Tensor, target: int, w_mean: torch.Tensor | None = None
) -> float:
    """The smallest signed move (normal units, eq. 3 with tau 1) after which
    ``direction``'s classifier gives ``w [1, w_dim]`` class ``target`` with
    :data:`CLASS_CONFIDENCE`; 0 if it already does."""
    sign = 1.0 if target == 1 else -1.0

    def confident(alpha: float) -> bool:
        p = float(direction.probability(manipulate(w, direction, sign * alpha, 1.0, w_mean))[0])
        return (p if target == 1 else 1.0 - p) >= CLASS_CONFIDENCE

    if confident(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while not confident(hi):
        lo, hi = hi, hi * 2.0
        if hi > MAX_CLASS_MOVE:
            raise ConfigError(
                f"could not move the latent to class {direction.classes[target]} of "
                f"'{direction.name}' within {MAX_CLASS_MOVE:g} units"
            )
    for _ in range(30):  # bisection: the smallest move that is confident, to 1e-9 of hi
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if confident(mid) else (mid, hi)
    return sign * hi


def generate_volume(
    model: Model,
    request: GenerateRequest,
    *,
    pixel_mm: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GeneratedVolume:
    """Generate a synthetic volume ``[slices, R, R]`` in native units (HU or MR units).

    Needs the model's calibrated ``slice`` direction; ``modality`` / ``sex`` requests
    need those directions. ``pixel_mm`` overrides the training data's pixel size.
    """
    _check_request(request, pixel_mm)
    slice_dir = _direction(model, "slice", "to walk from slice to slice")
    calibration = getattr(slice_dir, "calibration", None) or {}
    if not calibration.get("units_per_slice"):
        raise ConfigError("the model's slice direction is not calibrated (refit directions)")
    w = start_latent(model, request)
    moves: list[dict[str, Any]] = []
    for name, value, codes in (
        ("modality", request.modality, MODALITY_CODES),
        ("sex", request.sex, SEX_CODES),
    ):
        if value is None:
            continue
        if value not in codes:
            raise ConfigError(f"unknown {name} {value!r} (one of {', '.join(codes)})")
        w, alpha = move_to_class(model, w, name, codes.index(value))
        moves.append({"direction": name, "target": value, "alpha": alpha})
    modality = request.output_modality or request.modality or _predicted_modality(model, w)
    target, layers = _mix_target(model, request)

    step = float(calibration["units_per_slice"])
    below = round(request.centre * (request.slices - 1))
    offsets = (np.arange(request.slices) - below) * step

    def walk(start_w: torch.Tensor, chunk: np.ndarray) -> torch.Tensor:
        moves = [[(slice_dir, float(a))] for a in chunk]
        return torch.cat([apply_directions(start_w, m, 1.0, model.w_mean) for m in moves])

    slice_ws, images = [], []
    for start in range(0, request.slices, request.batch):
        chunk = offsets[start : start + request.batch]
        ws = walk(w, chunk)
        slice_ws.append(ws.cpu())
        if target is None:
            images.append(model.synthesise(ws)[:, 0].cpu())
        else:  # the mixed-in latent walks too, so both stay at the same slice position
            mixed = mix(
                broadcast(ws, model.num_ws), broadcast(walk(target, chunk), model.num_ws), layers
            )
            images.append(model.G.synthesise(mixed, noise_mode="const")[:, 0].cpu())
        if progress is not None:
            progress(min(start + request.batch, request.slices), request.slices)
    unit = torch.cat(images).numpy()
    native = model.normalisation.to_native(unit, modality).astype(np.float32)

    geometry = model_geometry(model)
    pixel = pixel_mm if pixel_mm is not None else geometry.get("pixel_mm")
    if not pixel:
        raise ConfigError("the model does not record its pixel size; give --pixel-mm")
    slice_mm = float(calibration.get("mm_per_slice") or geometry.get("slice_mm") or pixel)
    start = (
        {"seed": request.seed, "truncation_psi": request.truncation_psi}
        if request.seed is not None
        else {"latent": request.start_label or "given"}
    )
    provenance = Provenance(
        synthetic=True,
        description=f"synthetic {modality} volume, a latent walked along the slice direction"
        + (f", {'/'.join(request.mix_layers)} styles mixed in" if target is not None else ""),
        model_sha256=model.sha256,
        recipe={
            "model": model.name,
            "start": start,
            "moves": moves,
            "walk": {
                "direction": "slice",
                "units_per_slice": step,
                "slices": request.slices,
                "start_slice": below,
            },
            "spacing_mm": [slice_mm, float(pixel), float(pixel)],
            **(
                {"mix": {"layers": list(request.mix_layers), "from": request.mix_label or "given"}}
                if target is not None
                else {}
            ),
        },
        source_files=[Path(request.start_label.split(":")[0]).name] if request.start_label else [],
    )
    volume = Volume(
        array=native,
        spacing_mm=(slice_mm, float(pixel), float(pixel)),
        modality=modality,
        sex=request.sex,
        patient_id=None,
        source=f"synthetic ({model.name})",
        modality_source="synthetic",
        meta={"description": provenance.description},
    )
    return GeneratedVolume(volume, provenance, torch.cat(slice_ws).numpy())


def _mix_target(model: Model, request: GenerateRequest) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(mix_w [1, w_dim] or None, layer mask [num_ws])`` of ``request``; None when no
    layer is chosen or no latent is given."""
    layers = parse_layers(model.G.cfg, request.mix_layers)
    if request.mix_w is None or not bool(layers.any()):
        return None, layers
    return _given_latent(model, request.mix_w, "the mix latent"), layers


def _given_latent(model: Model, values: np.ndarray, what: str) -> torch.Tensor:
    """``values`` as ``w [1, w_dim]`` on the model's device; ConfigError on a wrong size."""
    w = torch.as_tensor(np.asarray(values, np.float32)).reshape(1, -1)
    if w.shape[1] != model.w_dim:
        raise ConfigError(f"{what} has {w.shape[1]} values; the model's w has {model.w_dim}")
    return w.to(model.device)


def _predicted_modality(model: Model, w: torch.Tensor) -> str:
    direction = model.directions.get("modality")
    if direction is None:
        return "MR"
    return MODALITY_CODES[int(direction.predict(w)[0])]
