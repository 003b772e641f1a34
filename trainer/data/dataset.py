"""HDF5 slice datasets: paired CT/MR studies as normalised 2-D slices with labels.

``build_dataset`` reads each study (see :mod:`trainer.data.studies`), puts CT and MR on
the same ``size`` x ``size`` grid with the same slices
(:func:`trainer.data.register.prepare_pair`: CT registered rigidly to MR, MR N4
bias-corrected, both resampled), maps intensities to [-1, 1] with the paper's
normalisation and appends the slices to the file study by study, so memory holds one
study at a time whatever the number of studies.

Layout (``format = "medstyle-slices"``, ``format_version = 1``). One row per slice;
each study adds its MR slices then its CT slices, each inferior to superior::

    images          [N, size, size] float32  slice normalised to [-1, 1] (gzip, one slice
                                             a chunk); [i, 0, 0] is anterior right (LPS)
    modality        [N] uint8     0 MR, 1 CT (attribute "names")
    sex             [N] int8      0 F, 1 M, -1 unknown (attribute "names")
    patient         [N] int32     row of "patients"
    slice_index     [N] int32     slice number in its volume, 0 the most inferior
    slice_norm      [N] float32   slice_index scaled to [0, 1] (0 inferior, 1 superior:
                                  the paper's longitudinal slice position)
    z_mm            [N] float32   slice position along the slice normal, mm
    pair_index      [N] int64     row of the same slice in the other modality, -1 if none
    patients        [P] string    patient ids
    patient_sex     [P] int8      as "sex"
    series/         one row per volume (a patient's CT or MR):
      patient       [S] int32     row of "patients"
      modality      [S] uint8     as "modality"
      first_row     [S] int64     its first row; its rows are consecutive
      num_slices    [S] int32     its number of rows
      spacing_mm    [S, 3] float64     voxel size (z, y, x), mm
      origin_lps_mm [S, 3] float64     LPS position of voxel [0, 0, 0], mm
      direction     [S, 3, 3] float64  direction cosines (as Volume.direction)

Root attributes: ``format``, ``format_version``, ``size``, ``normalisation`` (JSON of
:meth:`Normalisation.to_dict`), ``sources`` (JSON list, one entry per study: folder and
scan paths as given, sex, whether registered, the registration result, whether N4 ran),
``created_utc`` and ``software``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

import trainer
from trainer.data.normalise import PAPER, Normalisation
from trainer.data.studies import StudySource, find_studies
from trainer.data.volume import Volume
from trainer.errors import DatasetError, MedstyleError
from trainer.files import atomic_file, ensure_can_write

if TYPE_CHECKING:  # for the annotation only; build_dataset imports register.py when it runs
    from trainer.data.register import RigidRegistration

FORMAT = "medstyle-slices"
FORMAT_VERSION = 1
SUFFIXES = (".h5", ".hdf5")

#: Codes stored in ``modality`` and ``sex`` (the index in the tuple is the code).
MODALITY_CODES = ("MR", "CT")
SEX_CODES = ("F", "M")
UNKNOWN_SEX = -1

#: Per-slice label columns and their types.
LABELS = {
    "modality": "u1",
    "sex": "i1",
    "patient": "i4",
    "slice_index": "i4",
    "slice_norm": "f4",
    "z_mm": "f4",
    "pair_index": "i8",
}
#: Per-volume geometry and placement, in the ``series`` group.
_SERIES_FIELDS = tuple(
    f"series/{name}"
    for name in "patient modality first_row num_slices spacing_mm origin_lps_mm direction".split()
)
#: Rows per chunk of the 1-D label columns (small, so a few chunks hold a study).
_LABEL_CHUNK = 1024


# -- building ---------------------------------------------------------------------------


def build_dataset(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    size: int = 256,
    overwrite: bool = False,
    register: bool = True,
    n4: bool = True,
    progress: bool = True,
) -> Path:
    """Build an HDF5 slice dataset at ``out`` from paired CT/MR studies.

    Args:
        sources: study folders or folders of studies (see :func:`find_studies`).
        out: the ``.h5`` file to write (atomically: a temporary sibling, then rename).
        size: the model matrix N; slices are stored ``[N, N]``.
        overwrite: replace ``out`` if it exists.
        register: register CT to MR rigidly (skipped anyway for studies whose
            manifest says ``"aligned": true``).
        n4: N4 bias-field correction of the MR.
        progress: show a tqdm bar, one step per study.

    Returns:
        ``out``.

    Raises:
        ScanWriteError: ``out`` exists and ``overwrite`` is false (checked first).
        DatasetError: no studies, a study that is not one CT and one MR, or one whose
            pairing fails its plausibility check (:mod:`trainer.data.pair_check`:
            unrelated scans, no overlap, mostly constant slices), now or when
            ``medstyle pair`` made it.
        ConfigError: ``size`` is not a power of two in 4..512.
        MedstyleError: a scan cannot be read or registered (names the file).
    """
    from tqdm import tqdm

    from trainer.data.resample import check_matrix_size

    out = Path(out)
    if not out.name.lower().endswith(SUFFIXES):
        raise DatasetError("a slice dataset is an HDF5 file: name it .h5", out)
    check_matrix_size(size)
    ensure_can_write(out, overwrite)
    studies = find_studies(sources)

    records: list[dict[str, Any]] = []
    with atomic_file(out, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            writer = _SliceWriter(f, size)
            bar = tqdm(studies, desc="studies", unit="study", disable=not progress)
            for study in bar:
                bar.set_postfix_str(study.patient_id)
                record, registration = _add_study(
                    writer, study, size=size, register=register, n4=n4
                )
                if registration is not None and progress:
                    bar.write(f"{study.patient_id}: CT registered to MR: {registration.describe()}")
                records.append(record)
            _write_attrs(f, size, records)
    return out


def _add_study(
    writer: _SliceWriter, study: StudySource, *, size: int, register: bool, n4: bool
) -> tuple[dict[str, Any], RigidRegistration | None]:
    """Read, pair, normalise and append one study; return its ``sources`` record and
    the registration (``None`` when the scans' own coordinates were used)."""
    from trainer.data.register import prepare_pair

    recorded = study.manifest.get("pairing_check")
    if isinstance(recorded, dict) and recorded.get("passed") is False:
        raise DatasetError(
            f"study {study.patient_id} failed its pairing check when it was paired "
            f"({'; '.join(map(str, recorded.get('failures') or []))}) and is marked not "
            "aligned; pair its scans again or leave it out",
            study.folder,
        )
    ct = _read_scan(study, "CT")
    mr = _read_scan(study, "MR")
    sex = study.sex or ct.sex or mr.sex
    registered = register and not study.aligned
    # A manifest may pair scans that name different patients on purpose: its word wins.
    pair = prepare_pair(
        ct, mr, size=size, register=registered, n4=n4, compare_patients=not study.manifest
    )
    del ct, mr  # only the paired volumes stay in memory
    if not pair.check.passed:
        raise DatasetError(
            f"study {study.patient_id}: its CT and MR do not make a plausible pair "
            f"({'; '.join(pair.check.failures)}); fix the scans or leave the study out",
            study.folder,
        )
    rows = writer.add_patient(study.patient_id, sex, pair.mr, pair.ct)
    registration = pair.registration
    record = {
        **study.to_dict(),
        "sex": sex,
        "registered": registered,
        "registration": registration.to_dict() if registration is not None else None,
        "pairing_check": pair.check.to_dict(),
        "n4": pair.n4_applied,
        "slices": {"MR": int(pair.mr.num_slices), "CT": int(pair.ct.num_slices)},
        "first_row": rows,
    }
    return record, registration


def _read_scan(study: StudySource, modality: str) -> Volume:
    """Read the study's CT or MR; the manifest's word on modality wins over a guess from
    intensities, but a DICOM tag or sidecar that disagrees is an error."""
    from trainer.data.read import read_volume

    path = study.ct if modality == "CT" else study.mr
    volume = read_volume(path)
    if volume.modality != modality:
        if volume.modality_source in ("dicom", "sidecar"):
            raise DatasetError(
                f"is listed as the {modality} of study {study.folder} but its "
                f"{volume.modality_source} says {volume.modality}",
                path,
            )
        volume.modality, volume.modality_source = modality, "manifest"
    return volume


class _SliceWriter:
    """Appends patients to the resizable, chunked, compressed datasets of an open file."""

    def __init__(self, f: h5py.File, size: int) -> None:
        self.f = f
        self.size = size
        self.rows = 0
        f.create_dataset(
            "images",
            shape=(0, size, size),
            maxshape=(None, size, size),
            dtype="f4",
            chunks=(1, size, size),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        for name, dtype in LABELS.items():
            _column(f, name, dtype)
        f["modality"].attrs["names"] = list(MODALITY_CODES)
        f["sex"].attrs["names"] = list(SEX_CODES)
        f["sex"].attrs["unknown"] = UNKNOWN_SEX
        f["images"].attrs["units"] = "normalised [-1, 1]; see the root attribute normalisation"
        f["z_mm"].attrs["units"] = "mm"
        _column(f, "patients", h5py.string_dtype())
        _column(f, "patient_sex", "i1")
        series = f.create_group("series")
        for name, dtype in (("patient", "i4"), ("modality", "u1"), ("first_row", "i8")):
            _column(series, name, dtype)
        _column(series, "num_slices", "i4")
        _column(series, "spacing_mm", "f8", (3,))
        _column(series, "origin_lps_mm", "f8", (3,))
        _column(series, "direction", "f8", (3, 3))

    def add_patient(self, patient_id: str, sex: str | None, mr: Volume, ct: Volume) -> int:
        """Append one patient's MR then CT slices; return the first new row."""
        for volume in (mr, ct):
            if volume.shape[1:] != (self.size, self.size):
                raise DatasetError(
                    f"{volume.modality} of patient {patient_id} is {volume.shape[1:]} pixels "
                    f"in-plane after resampling, not {self.size} x {self.size}",
                    volume.source or None,
                )
        patient = _append(self.f["patients"], [patient_id])
        sex_code = SEX_CODES.index(sex) if sex in SEX_CODES else UNKNOWN_SEX
        _append(self.f["patient_sex"], [sex_code])
        first = self.rows
        mr_rows = np.arange(first, first + mr.num_slices)
        ct_rows = np.arange(first + mr.num_slices, first + mr.num_slices + ct.num_slices)
        mr_pair, ct_pair = _pair_rows(mr, ct, mr_rows, ct_rows)
        for volume, pair_index in ((mr, mr_pair), (ct, ct_pair)):
            self._append_volume(volume, patient, sex_code, pair_index)
        return first

    def _append_volume(
        self, volume: Volume, patient: int, sex_code: int, pair_index: np.ndarray
    ) -> None:
        n = volume.num_slices
        code = MODALITY_CODES.index(volume.modality)
        series = self.f["series"]
        _append(series["patient"], [patient])
        _append(series["modality"], [code])
        _append(series["first_row"], [self.rows])
        _append(series["num_slices"], [n])
        _append(series["spacing_mm"], [volume.spacing_mm])
        _append(series["origin_lps_mm"], [volume.origin_lps_mm])
        _append(series["direction"], [volume.direction])
        _append(self.f["images"], PAPER.to_unit(volume.array, volume.modality))
        columns = {
            "modality": np.full(n, code),
            "sex": np.full(n, sex_code),
            "patient": np.full(n, patient),
            "slice_index": np.arange(n),
            "slice_norm": volume.normalised_slice_index,
            "z_mm": volume.slice_positions_mm,
            "pair_index": pair_index,
        }
        for name, values in columns.items():
            _append(self.f[name], values)
        self.rows += n


def _column(group: h5py.Group, name: str, dtype: Any, inner: tuple[int, ...] = ()) -> None:
    """An empty resizable, chunked, compressed dataset of rows of shape ``inner``."""
    group.create_dataset(
        name,
        shape=(0, *inner),
        maxshape=(None, *inner),
        dtype=dtype,
        chunks=(_LABEL_CHUNK, *inner),
        compression="gzip",
    )


def _append(dataset: h5py.Dataset, values: Any) -> int:
    """Append rows to a resizable dataset; return the index of the first new row."""
    values = np.asarray(values, dtype=dataset.dtype) if dataset.dtype.kind != "O" else values
    first = dataset.shape[0]
    dataset.resize(first + len(values), axis=0)
    dataset[first:] = values
    return first


def _pair_rows(
    mr: Volume, ct: Volume, mr_rows: np.ndarray, ct_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each MR slice the row of the CT slice at the same position (and back), -1 where
    the other scan has no slice within a tenth of a slice spacing."""
    mr_pair = np.full(mr.num_slices, -1, dtype=np.int64)
    ct_pair = np.full(ct.num_slices, -1, dtype=np.int64)
    if not mr.num_slices or not ct.num_slices:
        return mr_pair, ct_pair
    z_mr, z_ct = mr.slice_positions_mm, ct.slice_positions_mm
    tolerance = 0.1 * min(mr.spacing_mm[0], ct.spacing_mm[0])
    nearest = np.abs(z_mr[:, None] - z_ct[None, :]).argmin(axis=1)
    close = np.abs(z_mr - z_ct[nearest]) <= tolerance
    mr_pair[close] = ct_rows[nearest[close]]
    ct_pair[nearest[close]] = mr_rows[close]
    return mr_pair, ct_pair


def _write_attrs(f: h5py.File, size: int, records: list[dict[str, Any]]) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["size"] = size
    f.attrs["normalisation"] = json.dumps(PAPER.to_dict())
    f.attrs["sources"] = json.dumps(records, default=_json_default)
    f.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    f.attrs["software"] = f"medstyle {trainer.__version__}"


def _json_default(value: Any) -> Any:
    """JSON for numpy scalars and arrays, paths and anything else (as text)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- reading ----------------------------------------------------------------------------


def is_slice_dataset(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an HDF5 file written by :func:`build_dataset`; false for
    anything else (missing, not HDF5, another HDF5 file), never an error."""
    try:
        with h5py.File(path, "r") as f:
            return attr_text(f, "format") == FORMAT
    except (OSError, ValueError):
        return False


def open_dataset(path: str | os.PathLike[str]) -> h5py.File:
    """Open a slice dataset read-only, checking that it is one this version reads.

    Raises:
        DatasetError: missing, not HDF5, another kind of HDF5 file, a newer format
            version, or a damaged file (a dataset missing).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError("does not exist", path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DatasetError(
            "is not a readable HDF5 file (corrupt or another format)", path
        ) from None
    try:
        found = attr_text(f, "format")
        if found != FORMAT:
            what = f"format '{found}'" if found else "no format attribute"
            raise DatasetError(
                f"is an HDF5 file but not a medstyle slice dataset ({what}; "
                "build one with 'medstyle dataset build')",
                path,
            )
        version = int(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise DatasetError(
                f"was written in slice dataset format {version}; this medstyle reads up to "
                f"{FORMAT_VERSION} (update medstyle)",
                path,
            )
        for name in (*LABELS, "images", "patients", "patient_sex", *_SERIES_FIELDS):
            if name not in f:
                raise DatasetError(f"is damaged: its '{name}' dataset is missing", path)
    except BaseException:
        f.close()
        raise
    return f


def read_labels(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All per-slice label columns of a dataset (``modality``, ``sex``, ``patient``,
    ``slice_index``, ``slice_norm``, ``z_mm``, ``pair_index``), each ``[N]``, plus
    ``patients`` (``[P]`` str) and ``patient_sex`` (``[P]``)."""
    with open_dataset(path) as f:
        labels = {name: f[name][()] for name in LABELS}
        labels["patients"] = np.asarray(f["patients"].asstr()[()], dtype=object)
        labels["patient_sex"] = f["patient_sex"][()]
    return labels


def dataset_normalisation(f: h5py.File) -> Normalisation:
    """The intensity mapping a dataset was built with."""
    try:
        return Normalisation.from_dict(json.loads(attr_text(f, "normalisation")))
    except (json.JSONDecodeError, MedstyleError):
        raise DatasetError(
            "is damaged: its normalisation attribute is malformed", f.filename
        ) from None


def dataset_geometry(f: h5py.File) -> dict[str, float]:
    """Median voxel size of a dataset's volumes: ``{"pixel_mm", "slice_mm"}`` (in-plane
    pixel and slice spacing, mm). A model trained on it draws slices of this size."""
    spacing = f["series/spacing_mm"][()]
    if len(spacing) == 0:
        return {}
    return {
        "pixel_mm": float(np.median(spacing[:, 1])),
        "slice_mm": float(np.median(spacing[:, 0])),
    }


def list_dataset_series(path: str | os.PathLike[str]) -> list[str]:
    """The volumes in a dataset as ``PATIENT/MODALITY`` names (e.g. ``"P0001/CT"``), in
    the order they were added."""
    with open_dataset(path) as f:
        patients = f["patients"].asstr()[()]
        return [
            f"{patients[p]}/{MODALITY_CODES[m]}"
            for p, m in zip(f["series/patient"][()], f["series/modality"][()], strict=True)
        ]


def read_dataset_volume(path: str | os.PathLike[str], series: str) -> Volume:
    """One patient's slices of one modality stacked back into a Volume in native units.

    Args:
        path: a slice dataset.
        series: ``"PATIENT/MODALITY"``, e.g. ``"P0001/CT"`` (modality in any case).

    Returns:
        ``[z, size, size]`` float32 in HU (CT) or MR units, on the dataset's grid
        (``spacing_mm``, origin and direction as built), ``modality_source="dataset"``.

    Raises:
        DatasetError: the series is not in the dataset (the message lists those that
            are) or the file is not a slice dataset.
    """
    names = list_dataset_series(path)
    patient_id, _, modality = series.rpartition("/")
    wanted = f"{patient_id}/{modality.upper()}"
    if wanted not in names:
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        raise DatasetError(f"has no series '{series}'; it holds {shown}", path)
    index = names.index(wanted)
    with open_dataset(path) as f:
        normalisation = dataset_normalisation(f)
        group = f["series"]
        first, n = int(group["first_row"][index]), int(group["num_slices"][index])
        images = f["images"][first : first + n]
        sex_code = int(f["sex"][first]) if n else UNKNOWN_SEX
        volume = Volume(
            array=normalisation.to_native(images, modality.upper()),
            spacing_mm=tuple(group["spacing_mm"][index]),
            origin_lps_mm=tuple(group["origin_lps_mm"][index]),
            direction=group["direction"][index],
            modality=modality.upper(),
            sex=SEX_CODES[sex_code] if sex_code in (0, 1) else None,
            patient_id=patient_id,
            source=str(path),
            modality_source="dataset",
            meta={"format": "slice dataset", "series": wanted, "first_row": first},
        )
    return volume


def attr_text(f: h5py.File, name: str) -> str:
    """A root attribute as text ('' when missing)."""
    value = f.attrs.get(name, "")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
