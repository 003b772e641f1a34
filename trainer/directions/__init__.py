"""Latent directions (Fetty et al. 2020): per-feature prediction models over W.

- :mod:`.model`: :class:`Direction` (normal, offset, Forward/Reverse nets), the dense nets,
  :func:`slice_classes`, :func:`conditional_direction`.
- :mod:`.fit`: :func:`fit_direction` (grouped split, logistic baseline, random search,
  the paper's selection rule :func:`select_model`).
- :mod:`.calibrate`: :func:`calibrate_slice` (normal units per slice and per mm).
- :mod:`.store`: :func:`save_directions` / :func:`load_directions` (bundle files).
- :mod:`.latents`: :func:`fit_directions` from a LATENTS.h5 (and an extra-labels CSV), and
  :func:`score_directions` on another one (held-out patients).
"""

from trainer.directions.calibrate import calibrate_slice
from trainer.directions.fit import fit_direction, grouped_split, select_model
from trainer.directions.latents import (
    direction_labels,
    fit_directions,
    read_label_csv,
    read_latents,
    score_directions,
)
from trainer.directions.model import (
    DenseClassifier,
    Direction,
    DirectionError,
    ReverseNet,
    conditional_direction,
    linear_direction,
    slice_classes,
)
from trainer.directions.store import (
    direction_file,
    directions_embedding,
    load_directions,
    save_directions,
)

__all__ = [
    "DenseClassifier",
    "Direction",
    "DirectionError",
    "ReverseNet",
    "calibrate_slice",
    "conditional_direction",
    "direction_file",
    "direction_labels",
    "directions_embedding",
    "fit_direction",
    "fit_directions",
    "grouped_split",
    "linear_direction",
    "load_directions",
    "read_label_csv",
    "read_latents",
    "save_directions",
    "score_directions",
    "select_model",
    "slice_classes",
]
