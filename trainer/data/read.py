"""Read any supported scan into a :class:`Volume` (LPS, native units).

Formats: a DICOM series folder, a single or multi-frame DICOM file (see
``dicom_read``), NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD
(``.nrrd``, ``.nhdr``) and the project's HDF5 files (one volume, or a slice dataset
from which one patient and modality is chosen with ``series_uid="P0001/CT"``).

Modality, in order of precedence: the caller's ``modality`` (the ``--modality``
option), DICOM's Modality tag, a JSON sidecar beside the file (see
:func:`find_sidecar`: ``scan.nii.gz.json``, or ``scan.json`` as BIDS names it, e.g.
``{"modality": "MR", "sex": "M"}``), and last the intensities (CT has air near -1000
HU; MR is non-negative). ``Volume.modality_source`` says which decided.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from trainer.data.declared_size import check_declared_size
from trainer.data.volume import MODALITIES, SEXES, Volume
from trainer.errors import InvalidScanError, ScanReadError

#: File name endings read with SimpleITK, and the format's name for messages.
ITK_FORMATS = {
    ".nii.gz": "NIfTI",
    ".nii": "NIfTI",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
}
HDF5_SUFFIXES = (".h5", ".hdf5")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", "")
SUPPORTED = (
    "a DICOM folder or file, NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd), NRRD (.nrrd) "
    "or HDF5 (.h5)"
)

#: Below this 1st-percentile value a scan with no other clue is taken to be CT.
_CT_AIR_THRESHOLD = -500.0


def read_volume(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    modality: str | None = None,
) -> Volume:
    """Read a scan from ``path`` into a Volume in LPS orientation and native units.

    Args:
        path: a DICOM series folder, a DICOM file, or a NIfTI/MHA/NRRD/HDF5 file.
        series_uid: which series of a folder holding several (DICOM SeriesInstanceUID,
            or ``PATIENT/MODALITY`` for a slice dataset).
        modality: ``"CT"`` or ``"MR"`` to override what the file says.

    Raises:
        ScanReadError: missing, empty, truncated or unknown files.
        InvalidScanError: readable data we cannot use (4-D, colour, NaN, gaps, tilt).
    """
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise ScanReadError(f"unknown modality {modality!r} (CT or MR)", path)
    if not path.exists():
        raise ScanReadError("does not exist", path)
    if not os.access(path, os.R_OK):
        raise ScanReadError("cannot be read (permission denied)", path)

    if path.is_dir():
        volume = _read_dicom(path, series_uid)
    else:
        if path.stat().st_size == 0:
            raise ScanReadError("is empty (0 bytes)", path)
        kind = scan_format(path)
        if kind == "HDF5":
            volume = _read_hdf5(path, series_uid)
        elif kind == "DICOM":
            volume = _read_dicom(path, series_uid)
        else:
            volume = _read_itk(path, kind)

    check_finite(volume.array, path)
    if modality is not None:
        volume.modality, volume.modality_source = modality, "option"
    elif volume.modality is None:
        volume.modality, volume.modality_source = infer_modality(volume.array), "intensity"
    return volume


#: Modality sources that are the scan's own record, not a guess from its intensities.
_RECORDED = ("dicom", "sidecar", "hdf5", "dataset")


def read_pair(
    ct_path: str | os.PathLike[str],
    mr_path: str | os.PathLike[str],
    ct_series: str | None = None,
    mr_series: str | None = None,
) -> tuple[Volume, Volume]:
    """Read a patient's CT and MR, given in that order. A guess of the modality from
    intensities gives way to the order, but one scan given twice, or a scan whose own
    header or sidecar names the other modality, is refused: swapped or repeated arguments
    would otherwise treat a CT as an MR."""
    if Path(ct_path).resolve() == Path(mr_path).resolve() and ct_series == mr_series:
        raise InvalidScanError("is given as both the CT and the MR", ct_path)
    pair = []
    for path, series, modality in ((ct_path, ct_series, "CT"), (mr_path, mr_series, "MR")):
        volume = read_volume(path, series_uid=series)
        if volume.modality != modality and volume.modality_source in _RECORDED:
            raise InvalidScanError(
                f"is given as the {modality} but its {volume.modality_source} says "
                f"{volume.modality}; give the CT first, then the MR",
                path,
            )
        volume.modality, volume.modality_source = modality, "option"
        pair.append(volume)
    return pair[0], pair[1]


def scan_format(path: Path) -> str:
    """The format of a file from its name (and, for DICOM, its 'DICM' marker)."""
    name = path.name.lower()
    for suffix, kind in ITK_FORMATS.items():
        if name.endswith(suffix):
            return kind
    if name.endswith(HDF5_SUFFIXES):
        return "HDF5"
    if path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_marker(path):
        return "DICOM"
    raise ScanReadError(f"unknown file format; expected {SUPPORTED}", path)


def infer_modality(array: np.ndarray) -> str:
    """Guess CT or MR from intensities: CT has air near -1000 HU, MR is non-negative."""
    low = float(np.percentile(array[:: max(1, array.shape[0] // 8)], 1))
    return "CT" if low < _CT_AIR_THRESHOLD else "MR"


def check_finite(array: np.ndarray, path: Path) -> None:
    """Raise InvalidScanError if any voxel is NaN or infinite."""
    if np.isfinite(array).all():
        return
    nan = int(np.isnan(array).sum())
    inf = int(np.isinf(array).sum())
    what = ", ".join(
        p for p in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if p
    )
    raise InvalidScanError(f"has {what} voxel values; fix or mask them before loading", path)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar medstyle writes for the image ``path``: its whole file name and
    ``.json`` (``scan.nii.gz.json``, ``scan.mha.json``), so that images of one name in
    several formats never share (or overwrite) one sidecar."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def stem_sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``scan.json`` beside ``scan.nii.gz`` (the image's endings replaced): the BIDS-style
    name a user writes by hand, and the one medstyle wrote before each image had its own."""
    path = Path(path)
    name = path.name
    for suffix in ITK_FORMATS:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def find_sidecar(path: str | os.PathLike[str]) -> Path | None:
    """The JSON sidecar that describes the image ``path``: its own (:func:`sidecar_path`)
    if there is one, else the BIDS-style ``scan.json`` (:func:`stem_sidecar_path`), else
    None."""
    for side in (sidecar_path(path), stem_sidecar_path(path)):
        if side.is_file():
            return side
    return None


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of ``path`` if there is one; validated modality and sex."""
    side = find_sidecar(path)
    if side is None:
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScanReadError(f"sidecar is not valid JSON ({exc})", side) from None
    if not isinstance(data, dict):
        raise ScanReadError("sidecar must hold a JSON object", side)
    if data.get("modality") not in (None, *MODALITIES):
        raise ScanReadError(f"sidecar modality {data['modality']!r} is not CT or MR", side)
    if data.get("sex") not in (None, *SEXES):
        data["sex"] = None
    return data


# -- per format -----------------------------------------------------------------------


def _read_itk(path: Path, kind: str) -> Volume:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise ScanReadError(
            f"is not a readable {kind} file (corrupt or not {kind})", path
        ) from None
    dim, size = reader.GetDimension(), reader.GetSize()
    if reader.GetNumberOfComponents() != 1:
        raise InvalidScanError(
            f"has {reader.GetNumberOfComponents()} components per voxel (colour or vector data); "
            "medstyle reads grey-scale scans",
            path,
        )
    if dim == 4 and size[3] > 1:
        raise InvalidScanError(
            f"is 4-D ({' x '.join(map(str, size))}); extract one 3-D volume first", path
        )
    if dim > 4 or dim < 2:
        raise InvalidScanError(f"is {dim}-D; medstyle reads 2-D slices and 3-D volumes", path)
    check_declared_size(path, kind, reader)  # before anything allocates the declared size
    if kind == "NIfTI":
        _check_nifti_data(path)
    try:
        with _itk_warnings_silenced():  # ITK prints its own lines for damaged files
            image = reader.Execute()
    except RuntimeError:
        raise ScanReadError(
            f"is truncated or corrupt (the {kind} data cannot be read)", path
        ) from None
    image = _as_3d(image)
    side = read_sidecar(path)
    return Volume.from_sitk(
        sitk.Cast(image, sitk.sitkFloat32),
        modality=side.get("modality"),
        modality_source="sidecar" if side.get("modality") else "unknown",
        sex=side.get("sex"),
        patient_id=side.get("patient_id"),
        source=str(path),
        meta={"format": kind},
    )


@contextlib.contextmanager
def _itk_warnings_silenced() -> Iterator[None]:
    """Keep ITK's (and MetaIO's, which writes straight to the C stderr) chatter about
    damaged files off the user's terminal: the exception we raise says it in one line."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _check_nifti_data(path: Path) -> None:
    """ITK's NIfTI reader silently zero-fills a truncated file and turns NaN voxels into
    0, so the voxel data is checked once with nibabel before trusting it."""
    import nibabel

    try:
        data = np.asanyarray(nibabel.load(path).dataobj)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise ScanReadError(f"is truncated or corrupt ({exc})", path) from None
    check_finite(data, path)


def _as_3d(image: sitk.Image) -> sitk.Image:
    """A 2-D image as a one-slice volume; a 4-D image with one time point as 3-D."""
    if image.GetDimension() == 4:
        return sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() == 2:
        return sitk.JoinSeries([image])
    return image


def _read_dicom(path: Path, series_uid: str | None) -> Volume:
    from trainer.data.dicom_read import read_dicom

    return read_dicom(path, series_uid)


def _read_hdf5(path: Path, series: str | None) -> Volume:
    from trainer.data import hdf5_volume

    if hdf5_volume.is_volume_file(path):
        return hdf5_volume.read_h5_volume(path)
    from trainer.data import dataset

    if dataset.is_slice_dataset(path):
        if series is None:
            names = dataset.list_dataset_series(path)
            shown = ", ".join(names[:12]) + (
                f" and {len(names) - 12} more" if len(names) > 12 else ""
            )
            raise ScanReadError(
                f"is a slice dataset of {len(names)} scans; choose one with --series "
                f"PATIENT/MODALITY ({shown})",
                path,
            )
        return dataset.read_dataset_volume(path, series)
    raise ScanReadError("is an HDF5 file but not a medstyle volume or slice dataset", path)


def _has_dicom_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"
