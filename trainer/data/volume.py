"""The Volume: one 3-D scan in native units, in the project's canonical orientation.

Canonical orientation is LPS, what SimpleITK's ``DICOMOrient(image, "LPS")`` gives:
``array[z, y, x]`` with column index x running from the patient's right to left
(column 0 is the patient's right: the radiological view), row index y from anterior
to posterior (row 0 anterior) and slice index z from inferior to superior (slice 0 is
the most inferior, the paper's normalised slice index 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

MODALITIES = ("CT", "MR")
SEXES = ("F", "M")

#: Value of empty space (air) in native units, used to pad when resampling.
AIR_VALUE = {"CT": -1024.0, "MR": 0.0}


@dataclass
class Volume:
    """A scan in native units and LPS orientation.

    Attributes:
        array: ``[z, y, x]`` float32, HU for CT, scanner units for MR.
        spacing_mm: voxel size ``(z, y, x)`` in mm, in array axis order.
        origin_lps_mm: patient (L, P, S) coordinates in mm of the centre of voxel
            ``array[0, 0, 0]``.
        direction: 3x3 direction cosines of the oriented image, column ``i`` the
            patient-space direction of SimpleITK axis ``i`` (x, y, z); the identity
            for a scan acquired straight axially.
        modality: ``"CT"``, ``"MR"`` or ``None`` when nothing says which.
        sex: ``"F"``, ``"M"`` or ``None`` when unknown.
        patient_id: the identifier the source carried (may identify a person: it is
            shown to the user but never written into an export).
        source: where the volume was read from (path, or a description).
        source_direction: direction cosines of the file before reorientation, so an
            export can say where the data came from.
        modality_source: how the modality was decided: ``"dicom"``, ``"sidecar"``,
            ``"option"``, ``"intensity"``, ``"dataset"`` or ``"unknown"``.
        meta: other facts worth showing (series UID, transfer syntax, description).
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str | None = None
    sex: str | None = None
    patient_id: str | None = None
    source: str = ""
    source_direction: np.ndarray | None = None
    modality_source: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.ascontiguousarray(self.array, dtype=np.float32)
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be [z, y, x], got shape {self.array.shape}")
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)  # type: ignore[assignment]
        self.origin_lps_mm = tuple(float(o) for o in self.origin_lps_mm)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if self.modality is not None and self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES} or None, got {self.modality!r}")
        if self.sex is not None and self.sex not in SEXES:
            raise ValueError(f"sex must be one of {SEXES} or None, got {self.sex!r}")

    # -- geometry ---------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` voxel counts."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def num_slices(self) -> int:
        return self.array.shape[0]

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit vector (LPS) along which slice index z grows (towards superior)."""
        return self.direction[:, 2].copy()

    @property
    def slice_origins_lps_mm(self) -> np.ndarray:
        """``[z, 3]`` LPS position in mm of voxel ``(k, 0, 0)`` of each slice."""
        k = np.arange(self.num_slices, dtype=np.float64)[:, None]
        return np.asarray(self.origin_lps_mm) + k * self.spacing_mm[0] * self.slice_normal

    @property
    def slice_positions_mm(self) -> np.ndarray:
        """``[z]`` position of each slice in mm along the slice normal (the S coordinate
        for an axial scan), increasing from inferior to superior."""
        return self.slice_origins_lps_mm @ self.slice_normal

    @property
    def normalised_slice_index(self) -> np.ndarray:
        """``[z]`` slice index scaled to [0, 1]: 0 the most inferior, 1 the most superior
        (the paper's label for longitudinal slice position)."""
        n = self.num_slices
        if n == 1:
            return np.zeros(1, dtype=np.float32)
        return (np.arange(n, dtype=np.float32) / (n - 1)).astype(np.float32)

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Field of view ``(z, y, x)`` in mm (voxel count times spacing)."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm, strict=True))  # type: ignore[return-value]

    @property
    def units(self) -> str:
        return "HU" if self.modality == "CT" else "MR units" if self.modality == "MR" else "a.u."

    @property
    def air_value(self) -> float:
        """Native value of air, for padding (-1024 HU for CT, 0 for MR)."""
        return AIR_VALUE.get(self.modality or "", float(self.array.min()))

    # -- SimpleITK --------------------------------------------------------------------

    def to_sitk(self) -> sitk.Image:
        """The volume as a SimpleITK image (float32) with its LPS geometry."""
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(tuple(reversed(self.spacing_mm)))
        image.SetOrigin(self.origin_lps_mm)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, **fields: Any) -> Volume:
        """Reorient a 3-D scalar SimpleITK image to LPS and wrap it.

        ``fields`` are the other :class:`Volume` attributes (modality, sex, ...).
        """
        source_direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        oriented = sitk.DICOMOrient(image, "LPS")
        array = sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False)
        fields.setdefault("source_direction", source_direction)
        return cls(
            array=array,
            spacing_mm=tuple(reversed(oriented.GetSpacing())),
            origin_lps_mm=oriented.GetOrigin(),
            direction=np.asarray(oriented.GetDirection()).reshape(3, 3),
            **fields,
        )

    def with_array(self, array: np.ndarray, **changes: Any) -> Volume:
        """A copy with a new array of the same shape (and optional other changes)."""
        if array.shape != self.array.shape and "spacing_mm" not in changes:
            raise ValueError(f"array shape {array.shape} differs from {self.array.shape}")
        return dataclasses.replace(self, array=array, **changes)

    # -- description ------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Plain facts for ``medstyle info`` (JSON-serialisable)."""
        a = self.array
        z, y, x = self.shape
        return {
            "source": self.source,
            "modality": self.modality,
            "modality_source": self.modality_source,
            "units": self.units,
            "sex": self.sex,
            "patient_id": self.patient_id,
            "slices": z,
            "rows": y,
            "columns": x,
            "shape_zyx": [z, y, x],
            "spacing_mm_zyx": [round(s, 6) for s in self.spacing_mm],
            "extent_mm_zyx": [round(e, 3) for e in self.extent_mm],
            "orientation": "LPS",
            "origin_lps_mm": [round(o, 4) for o in self.origin_lps_mm],
            "direction": [round(float(d), 6) for d in self.direction.ravel()],
            "slice_positions_mm": [
                round(float(self.slice_positions_mm[0]), 3),
                round(float(self.slice_positions_mm[-1]), 3),
            ],
            "value_min": float(a.min()),
            "value_max": float(a.max()),
            "value_mean": float(a.mean()),
            **{k: v for k, v in self.meta.items() if _is_plain(v)},
        }


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) or (
        isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value)
    )
