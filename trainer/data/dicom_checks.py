"""Checks that DICOM objects make one regular, greyscale image volume.

Each check raises a :class:`~trainer.errors.MedstyleError` subclass whose one-line
message names the file (or folder) and the problem in words a radiologist would use:
what kind of object a non-image file is, where a slice is missing and by how many mm,
the gantry tilt angle, which file has a different matrix size.

Geometry follows DICOM: Image Position (Patient) is the LPS position in mm of the
centre of the first transmitted pixel, Image Orientation (Patient) holds the unit
vectors of increasing column index (the row direction) and of increasing row index,
and the slice normal is their cross product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from trainer.errors import InvalidScanError, ScanReadError

#: Two slices closer than this along the normal (mm) are at the same position.
DUPLICATE_TOLERANCE_MM = 1e-3
#: Spacing between neighbours may differ from the typical one by this fraction
#: (plus ``SPACING_TOLERANCE_MM``) before the series counts as unevenly spaced; it
#: absorbs the rounding of positions written with a few decimals.
SPACING_TOLERANCE = 0.01
SPACING_TOLERANCE_MM = 0.005
#: Largest angle (degrees) between the slice stacking direction and the slice normal
#: accepted as "straight"; beyond it the volume would be sheared (gantry tilt).
TILT_TOLERANCE_DEG = 0.1
#: Direction cosines may differ by this much between slices of one series.
ORIENTATION_TOLERANCE = 1e-3

# What an object is, by words in its SOP class name, for objects that hold no image
# volume (checked in order; the first match wins).
_NOT_IMAGE_BY_SOP_CLASS = (
    ("Media Storage Directory", "a DICOMDIR (an index of the files on a disc)"),
    ("Structure Set", "an RT Structure Set"),
    ("Plan Storage", "an RT Plan"),
    ("Treatment Record", "an RT Treatment Record"),
    ("SR Storage", "a Structured Report"),
    ("Segmentation", "a Segmentation"),
    ("Presentation State", "a Presentation State"),
    ("Key Object Selection", "a Key Object Selection document"),
    ("Registration", "a Spatial Registration"),
    ("Waveform", "a waveform"),
    ("Encapsulated", "an encapsulated document"),
    ("Raw Data", "raw data"),
    ("Spectroscopy", "an MR spectroscopy object"),
)
# The same by Modality, for files whose SOP Class UID is missing or unknown.
_NOT_IMAGE_BY_MODALITY = {
    "RTSTRUCT": "an RT Structure Set",
    "RTPLAN": "an RT Plan",
    "RTRECORD": "an RT Treatment Record",
    "SR": "a Structured Report",
    "SEG": "a Segmentation",
    "PR": "a Presentation State",
    "KO": "a Key Object Selection document",
    "REG": "a Spatial Registration",
    "DOC": "an encapsulated document",
    "ECG": "a waveform",
}


@dataclass
class Frame:
    """One 2-D image of a series: a single-frame file or one frame of a multi-frame file.

    Attributes:
        path: the file it lives in.
        index: frame index in a multi-frame file (0-based), ``None`` for a single frame.
        position: Image Position (Patient), LPS mm, shape ``[3]``; ``None`` if absent.
        orientation: Image Orientation (Patient), shape ``[6]``; ``None`` if absent.
        pixel_spacing_mm: ``(row spacing, column spacing)`` in mm, i.e. the distance
            between rows and between columns; ``None`` if absent.
        rows, columns: matrix size.
        samples_per_pixel: 1 for greyscale, 3 for colour.
        rescale: the dataset (or functional group item) holding this frame's Rescale
            Slope/Intercept or Modality LUT.
    """

    path: Path
    index: int | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing_mm: tuple[float, float] | None
    rows: int
    columns: int
    samples_per_pixel: int
    rescale: Dataset

    @property
    def name(self) -> str:
        """File name, with the frame number for a multi-frame file (for messages)."""
        return self.path.name if self.index is None else f"{self.path.name} frame {self.index + 1}"


# -- what kind of object ---------------------------------------------------------------


def sop_class(ds: Dataset) -> UID:
    """The SOP Class UID, from the dataset or else the file meta (some anonymisers blank
    the dataset's copy)."""
    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    return UID(uid)


def sop_class_name(ds: Dataset) -> str:
    """Readable SOP class, e.g. ``"CT Image Storage"`` (the UID if pydicom has no name)."""
    uid = sop_class(ds)
    return uid.name if uid else "unknown SOP class"


def not_an_image(ds: Dataset, has_pixels: bool) -> str | None:
    """What a DICOM object is when it holds no image volume, e.g. ``"an RT Structure
    Set"``; ``None`` for an image (or an RT Dose with a dose grid).

    Args:
        ds: the header (read without pixel data).
        has_pixels: whether the file holds a pixel data element.
    """
    name = sop_class_name(ds)
    for words, kind in _NOT_IMAGE_BY_SOP_CLASS:
        if words in name:
            return kind
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in _NOT_IMAGE_BY_MODALITY:
        return _NOT_IMAGE_BY_MODALITY[modality]
    if modality == "RTDOSE" and not has_pixels and "Rows" not in ds:
        return "an RT Dose without a dose grid"
    if not has_pixels and "Rows" not in ds and "Image Storage" not in name:
        return f"a DICOM object without an image ({name})"
    return None


def check_is_image(ds: Dataset, has_pixels: bool, path: Path, size_bytes: int) -> None:
    """Raise unless the file holds an image with pixel data.

    A file of an image class (or with Rows) but without pixel data was cut short: a
    truncated copy is the usual cause, so the message says so.
    """
    kind = not_an_image(ds, has_pixels)
    if kind is not None:
        raise InvalidScanError(f"is {kind}, not an image", path)
    check_not_truncated(ds, has_pixels, path, size_bytes)


def check_not_truncated(ds: Dataset, has_pixels: bool, path: Path, size_bytes: int) -> None:
    """Raise for an image file (by SOP class or Rows) that ends before its pixel data."""
    if not has_pixels and not_an_image(ds, has_pixels) is None:
        raise ScanReadError(
            f"is truncated: the file ends after {size_bytes} bytes, before its pixel data", path
        )


def check_greyscale(ds: Dataset, path: Path) -> None:
    """Raise for colour data (RGB, YBR, palette colour): the model sees greyscale only."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if samples != 1 or photometric == "PALETTE COLOR":
        what = f"{samples} samples per pixel" if samples != 1 else "a colour palette"
        raise InvalidScanError(
            f"holds colour {photometric or 'RGB'} pixel data ({what}); "
            "only greyscale CT or MR can be used",
            path,
        )


# -- one matrix, one orientation -------------------------------------------------------


def check_consistent(frames: Sequence[Frame], where: Path) -> None:
    """All frames share matrix size, orientation and pixel spacing (as the first one)."""
    first = frames[0]
    for f in frames[1:]:
        if (f.rows, f.columns) != (first.rows, first.columns):
            raise InvalidScanError(
                f"slices differ in size: {f.name} is {f.rows} x {f.columns} pixels, "
                f"{first.name} is {first.rows} x {first.columns}",
                where,
            )
        if (f.orientation is None) != (first.orientation is None) or (
            f.orientation is not None
            and np.abs(f.orientation - first.orientation).max() > ORIENTATION_TOLERANCE
        ):
            raise InvalidScanError(
                f"slice orientation changes within the series: {f.name} has "
                f"{_fmt(f.orientation)}, {first.name} has {_fmt(first.orientation)} "
                "(a localiser or a second stack in the same series?)",
                where,
            )
        if (f.pixel_spacing_mm is None) != (first.pixel_spacing_mm is None) or (
            f.pixel_spacing_mm is not None
            and not np.allclose(f.pixel_spacing_mm, first.pixel_spacing_mm, rtol=1e-3, atol=1e-4)
        ):
            raise InvalidScanError(
                f"pixel spacing changes within the series: {f.name} has "
                f"{_fmt(f.pixel_spacing_mm)} mm, "
                f"{first.name} has {_fmt(first.pixel_spacing_mm)} mm",
                where,
            )


def axes(orientation: np.ndarray, where: Path) -> np.ndarray:
    """3x3 matrix whose columns are the row direction, the column direction and the
    slice normal (LPS unit vectors), from Image Orientation (Patient).

    Cosines written with few decimals are re-orthonormalised; cosines that are not
    close to two perpendicular unit vectors are an error.
    """
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    if (
        abs(np.linalg.norm(row) - 1) > 0.01
        or abs(np.linalg.norm(col) - 1) > 0.01
        or abs(row @ col) > 0.01
    ):
        raise InvalidScanError(
            f"Image Orientation (Patient) {_fmt(orientation)} is not two perpendicular unit "
            "vectors",
            where,
        )
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return np.column_stack([row, col, np.cross(row, col)])


# -- order along the normal ------------------------------------------------------------


def check_gantry_tilt_tag(ds: Dataset, where: Path) -> None:
    """Raise when Gantry/Detector Tilt is not zero."""
    tilt = ds.get("GantryDetectorTilt")
    try:
        tilt_deg = float(tilt) if tilt not in (None, "") else 0.0
    except (TypeError, ValueError):
        return  # an unreadable value says nothing; the geometry check still runs
    if abs(tilt_deg) > 1e-3:
        raise InvalidScanError(
            f"was acquired with a gantry tilt of {tilt_deg:g} degrees; tilted series are not "
            "supported (resample it to straight axial slices first)",
            where,
        )


def sort_along_normal(frames: Sequence[Frame], normal: np.ndarray, where: Path) -> list[Frame]:
    """Frames ordered by position along the slice normal (inferior to superior for an
    axial scan), never by file name or Instance Number.

    Raises for slices without a position and for two slices at one position.
    """
    missing = [f for f in frames if f.position is None]
    if missing:
        raise InvalidScanError(
            f"{missing[0].name} has no Image Position (Patient), so the order of the "
            f"{len(frames)} slices is unknown",
            where,
        )
    ordered = sorted(frames, key=lambda f: float(f.position @ normal))  # type: ignore[operator]
    positions = np.array([f.position @ normal for f in ordered])  # type: ignore[operator]
    for k in np.flatnonzero(np.diff(positions) < DUPLICATE_TOLERANCE_MM):
        same = int(np.sum(np.abs(positions - positions[k]) < DUPLICATE_TOLERANCE_MM))
        raise InvalidScanError(
            f"{same} slices share slice position {positions[k]:.2f} mm "
            f"({ordered[k].name} and {ordered[k + 1].name}): duplicate slices, or several "
            "acquisitions or time points in one series",
            where,
        )
    return ordered


def check_stacked_along_normal(ordered: Sequence[Frame], normal: np.ndarray, where: Path) -> None:
    """Raise when the slices are not stacked along their normal (a gantry tilt the
    scanner did not write into the orientation): the volume would be sheared."""
    if len(ordered) < 2:
        return
    offsets = np.array([f.position - ordered[0].position for f in ordered])  # type: ignore[operator]
    along = offsets @ normal
    in_plane = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    k = int(np.argmax(in_plane))
    angle_deg = float(np.degrees(np.arctan2(in_plane[k], abs(along[k])))) if k else 0.0
    if angle_deg > TILT_TOLERANCE_DEG:
        raise InvalidScanError(
            f"slices are stacked at {angle_deg:.1f} degrees to their normal (gantry tilt: "
            f"{ordered[k].name} is shifted {in_plane[k]:.1f} mm in-plane from "
            f"{ordered[0].name}); tilted series are not supported",
            where,
        )


def slice_spacing_mm(ordered: Sequence[Frame], normal: np.ndarray, where: Path) -> float:
    """The distance between neighbouring slices along the normal (mm), after checking
    that it is the same everywhere (no missing slice, no change of spacing)."""
    positions = np.array([f.position @ normal for f in ordered])  # type: ignore[operator]
    gaps = np.diff(positions)
    expected = float(np.median(gaps))
    tolerance = SPACING_TOLERANCE * expected + SPACING_TOLERANCE_MM
    bad = np.flatnonzero(np.abs(gaps - expected) > tolerance)
    if bad.size:
        k = int(bad[np.argmax(np.abs(gaps[bad] - expected))])
        hint = ""
        missing = round(gaps[k] / expected) - 1
        if missing >= 1 and abs(gaps[k] - (missing + 1) * expected) <= tolerance:
            hint = f"; {missing} slice{'s' if missing > 1 else ''} missing?"
        raise InvalidScanError(
            f"slices are unevenly spaced: a gap of {gaps[k]:.2f} mm between slice positions "
            f"{positions[k]:.2f} and {positions[k + 1]:.2f} mm ({ordered[k].name} and "
            f"{ordered[k + 1].name}), expected {expected:.2f} mm{hint}",
            where,
        )
    # The mean over the whole stack is the best estimate of the true spacing.
    return float((positions[-1] - positions[0]) / (len(positions) - 1))


# -- values ----------------------------------------------------------------------------


def check_finite(array: np.ndarray, where: Path) -> None:
    """Raise when float pixel data holds NaN or infinite values."""
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            nan = int(np.isnan(array).sum())
            raise InvalidScanError(
                f"pixel data holds {nan} NaN and {int(bad.sum()) - nan} infinite values", where
            )


def _fmt(values: Sequence[float] | np.ndarray | None) -> str:
    if values is None:
        return "none"
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
