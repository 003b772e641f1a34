"""Where an output came from, written beside (NIfTI sidecar) or into (DICOM, HDF5) it.

Synthetic output is always marked as such (DESIGN.md): the provenance carries the
model hash and the latent recipe, and never any identifying data of a source scan.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import trainer


@dataclass(frozen=True)
class Provenance:
    """What made an output.

    Attributes:
        synthetic: true for images made by a generator (or a phantom), false for a
            plain format conversion of a real scan.
        description: one human line, e.g. "synthetic CT from MR by style mixing".
        model_sha256: hash of the model bundle that generated the data, if any.
        recipe: the latent recipe (directions, alphas, mixed layers, seeds, ...).
        source_files: file names (not full paths, which can hold a patient's name)
            the output was derived from.
    """

    synthetic: bool
    description: str
    model_sha256: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    source_files: list[str] = field(default_factory=list)
    software: str = f"medstyle {trainer.__version__}"
    created_utc: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def one_line(self, limit: int = 1024) -> str:
        """A compact single-line text (for DICOM DerivationDescription, max 1024 chars)."""
        parts = ["SYNTHETIC" if self.synthetic else "CONVERTED", self.description, self.software]
        if self.model_sha256:
            parts.append(f"model sha256 {self.model_sha256[:16]}")
        if self.recipe:
            parts.append("recipe " + json.dumps(self.recipe, sort_keys=True, separators=(",", ":")))
        return "; ".join(parts)[:limit]


def conversion(source_name: str) -> Provenance:
    """Provenance for a plain format conversion of a scan (not synthetic)."""
    return Provenance(
        synthetic=False, description="format conversion by medstyle", source_files=[source_name]
    )
