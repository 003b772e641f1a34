"""Write a :class:`Volume`: NIfTI (+ JSON sidecar), MetaImage, NRRD, HDF5 or a DICOM series.

Every write is atomic (temporary sibling, then rename) and refuses an existing
target unless ``overwrite`` is true. The provenance (synthetic or converted, model,
recipe) goes into a JSON sidecar for the ITK formats, into attributes for HDF5 and
into the DICOM headers; no patient identity of a source scan is ever written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import SimpleITK as sitk

from trainer.data.provenance import Provenance, conversion
from trainer.data.read import sidecar_path
from trainer.data.volume import Volume
from trainer.errors import ScanWriteError
from trainer.files import atomic_file, ensure_can_write

#: format name -> file name endings it is chosen by
FORMATS = {
    "nifti": (".nii.gz", ".nii"),
    "mha": (".mha",),
    "nrrd": (".nrrd",),
    "h5": (".h5", ".hdf5"),
    "dicom": (),  # a folder
}


def format_from_path(path: Path) -> str:
    """The output format implied by a target's name: a name without a known ending is
    a DICOM series folder."""
    name = path.name.lower()
    for fmt, endings in FORMATS.items():
        if name.endswith(endings) and endings:
            return fmt
    if path.suffix and path.suffix.lower() not in (".dcm", ".dicom"):
        raise ScanWriteError(
            f"cannot tell the output format from '{path.suffix}'; use .nii.gz, .mha, .nrrd, "
            ".h5, a folder name for DICOM, or --format",
            path,
        )
    return "dicom"


def output_format(path: Path, fmt: str | None = None) -> str:
    """The format to write ``path`` in: the one its name implies, or ``fmt`` when given,
    which must agree with the name, since readers (and SimpleITK's writer) go by the
    ending; a DICOM series is a folder whose name no file format claims."""
    if fmt is None:
        return format_from_path(path)
    if fmt not in FORMATS:
        raise ScanWriteError(f"unknown output format {fmt!r} ({', '.join(FORMATS)})", path)
    name, endings = path.name.lower(), FORMATS[fmt]
    if endings and not name.endswith(endings):
        raise ScanWriteError(
            f"format {fmt} needs a name ending in {' or '.join(endings)}, "
            "the ending it is read back by",
            path,
        )
    claimed = next((f for f, e in FORMATS.items() if e and name.endswith(e)), fmt)
    if claimed != fmt:
        raise ScanWriteError(
            f"the name says {claimed} but format {fmt} was asked for; "
            f"rename it or leave the format to the name",
            path,
        )
    return fmt


def write_volume(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    provenance: Provenance | None = None,
) -> Path:
    """Write ``volume`` to ``path`` in ``fmt`` (default: from the name). Returns the path.

    Raises ScanWriteError if the target exists (and ``overwrite`` is false), the
    format is unknown, or the write fails; nothing is left half-written.
    """
    path = Path(path)
    fmt = output_format(path, fmt)
    provenance = provenance or conversion(Path(volume.source).name if volume.source else "")
    try:
        if fmt == "dicom":
            from trainer.data.dicom_write import write_dicom_series

            return write_dicom_series(volume, path, provenance=provenance, overwrite=overwrite)
        if fmt == "h5":
            from trainer.data.hdf5_volume import write_h5_volume

            return write_h5_volume(volume, path, provenance=provenance, overwrite=overwrite)
        return _write_itk(volume, path, provenance, overwrite)
    except OSError as exc:
        raise ScanWriteError(f"could not be written ({exc.strerror or exc})", path) from None


def _write_itk(volume: Volume, path: Path, provenance: Provenance, overwrite: bool) -> Path:
    """NIfTI / MetaImage / NRRD through SimpleITK, with a JSON sidecar."""
    side = sidecar_path(path)
    ensure_can_write(path, overwrite)
    ensure_can_write(side, overwrite)
    sidecar = {
        "modality": volume.modality,
        "sex": volume.sex,
        "units": volume.units,
        "orientation_written": "LPS (SimpleITK physical space; readers reorient as needed)",
        "provenance": provenance.to_dict(),
    }
    with atomic_file(path, overwrite) as tmp_image, atomic_file(side, overwrite) as tmp_side:
        try:
            sitk.WriteImage(volume.to_sitk(), str(tmp_image), useCompression=True)
        except RuntimeError as exc:
            raise ScanWriteError(
                f"could not be written ({str(exc).strip().splitlines()[-1]})", path
            ) from None
        tmp_side.write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return path
