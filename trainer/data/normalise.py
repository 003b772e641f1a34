"""The paper's intensity mapping between native units and the network's [-1, 1].

Fetty et al. 2020: MR ``[0, 2500] -> [-1, 1]``, CT ``[-1024, 1500] -> [-1, 1]``,
linear and without clipping (values outside the range map outside [-1, 1]). The
constants travel with every dataset and model (``to_dict`` / ``from_dict``) so a
model is always decoded with the mapping it was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.errors import ConfigError


@dataclass(frozen=True)
class IntensityWindow:
    """Native-unit range ``[low, high]`` that maps linearly onto ``[-1, 1]``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ConfigError(f"normalisation range [{self.low}, {self.high}] is empty")


@dataclass(frozen=True)
class Normalisation:
    """Per-modality intensity windows; the paper's values by default."""

    ct: IntensityWindow = IntensityWindow(-1024.0, 1500.0)
    mr: IntensityWindow = IntensityWindow(0.0, 2500.0)

    def window(self, modality: str) -> IntensityWindow:
        if modality == "CT":
            return self.ct
        if modality == "MR":
            return self.mr
        raise ConfigError(f"no intensity normalisation for modality {modality!r} (CT or MR)")

    def to_unit(self, values: np.ndarray, modality: str) -> np.ndarray:
        """Native units (HU / MR units) -> [-1, 1], no clipping. Keeps the dtype of
        floating inputs (float32 stays float32)."""
        w = self.window(modality)
        values = np.asarray(values)
        dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float32
        scale = 2.0 / (w.high - w.low)
        return ((values - w.low) * scale - 1.0).astype(dtype, copy=False)

    def to_native(self, values: np.ndarray, modality: str) -> np.ndarray:
        """[-1, 1] -> native units (HU / MR units): the exact inverse of :meth:`to_unit`."""
        w = self.window(modality)
        values = np.asarray(values)
        dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float32
        return ((values + 1.0) * (0.5 * (w.high - w.low)) + w.low).astype(dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form recorded in datasets and model bundles."""
        return {"scheme": "linear-no-clip", "CT": asdict(self.ct), "MR": asdict(self.mr)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        try:
            return cls(ct=IntensityWindow(**d["CT"]), mr=IntensityWindow(**d["MR"]))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"normalisation record is malformed: {d!r}") from exc


#: The paper's mapping.
PAPER = Normalisation()
