"""Find paired studies on disk: one patient's CT and MR.

A source given by the user is one of:

(a) a **study folder with a manifest** ``study.json`` (what ``medstyle phantom``
    writes)::

        {"patient_id": "P0001", "sex": "F", "age": 63, "ct": "ct.nii.gz",
         "mr": "mr.nii.gz", "labels": "tissue.nii.gz", "aligned": true}

    ``ct`` and ``mr`` are paths relative to the folder (files in any format
    :func:`trainer.data.read.read_volume` reads, or DICOM series sub-folders).
    ``aligned: true`` says the two scans already share patient coordinates, so no
    registration is needed;
(b) a **study folder without a manifest** whose entries (scan files in a known format
    and DICOM series sub-folders) are exactly one CT and one MR. Each entry is read to
    learn its modality (DICOM tag, JSON sidecar ``NAME.nii.gz.json`` or ``NAME.json``,
    or intensities), sex and patient id (the folder's name when the scans carry none);
(c) a **folder of study folders** (searched recursively, in sorted order).

A folder that holds scan entries is a study; its other sub-folders are not searched.
Hidden entries (names starting with ".") are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.volume import SEXES
from trainer.errors import DatasetError

MANIFEST = "study.json"

#: File name endings of scans a study folder may hold (the formats read_volume reads;
#: HDF5 is left out so a dataset built into a study folder is not taken for a scan).
SCAN_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm", ".dicom", ".ima")

#: How many files of a folder are looked at to decide whether it is a DICOM series.
_DICOM_PROBE_FILES = 8

#: How deep folders of folders are searched (a guard against link loops).
_MAX_DEPTH = 8


@dataclass(frozen=True)
class StudySource:
    """One patient's CT and MR scans on disk.

    Attributes:
        patient_id: the study's patient identifier (manifest, scans, or folder name).
        sex: ``"F"``, ``"M"`` or ``None`` when unknown.
        ct: the CT scan (file or DICOM series folder), as given (not resolved).
        mr: the MR scan, as given.
        aligned: true when CT and MR already share patient coordinates (manifest
            ``"aligned": true``), so registration is skipped.
        folder: the study folder, as given.
        age: age in years from the manifest, if any.
        labels: a label volume named by the manifest, if any.
        manifest: the manifest's other fields (empty without one).
    """

    patient_id: str
    sex: str | None
    ct: Path
    mr: Path
    aligned: bool
    folder: Path
    age: float | None = None
    labels: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (paths as given)."""
        return {
            "patient_id": self.patient_id,
            "sex": self.sex,
            "age": self.age,
            "folder": str(self.folder),
            "folder_name": self.folder.name,
            "ct": str(self.ct),
            "mr": str(self.mr),
            "aligned": self.aligned,
            "manifest": MANIFEST if self.manifest else None,
        }


def find_studies(sources: Sequence[str | os.PathLike[str]]) -> list[StudySource]:
    """Every paired study in ``sources`` (study folders or folders of them).

    Args:
        sources: folders as the user gave them (a ``study.json`` file stands for its
            folder).

    Returns:
        The studies in the order given (sorted within a folder of studies); a study
        reached twice is listed once.

    Raises:
        DatasetError: a source is missing or holds no study, a study is not exactly
            one CT and one MR, a manifest is malformed, or two studies share a
            patient id.
    """
    if not sources:
        raise DatasetError("no study folders given")
    studies: list[StudySource] = []
    for source in sources:
        source = Path(source)
        if source.is_file() and source.name == MANIFEST:
            source = source.parent
        if not source.exists():
            raise DatasetError("does not exist", source)
        if not source.is_dir():
            raise DatasetError("is not a folder; give study folders or folders of studies", source)
        found = _search(source, depth=0)
        if not found:
            raise DatasetError(
                f"no studies found (no {MANIFEST}, no CT and MR scans, no study sub-folders)",
                source,
            )
        studies.extend(found)
    return _unique(studies)


# -- searching --------------------------------------------------------------------------


def _search(folder: Path, depth: int) -> list[StudySource]:
    """Studies in ``folder``: itself if it is one, else those of its sub-folders."""
    if (folder / MANIFEST).is_file():
        return [read_manifest(folder)]
    scans, others = _scan_entries(folder)
    if scans:
        return [_study_from_scans(folder, scans)]
    if depth >= _MAX_DEPTH:
        return []
    found: list[StudySource] = []
    for sub in others:
        found.extend(_search(sub, depth + 1))
    return found


def _scan_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(scan entries, other sub-folders) of ``folder``, sorted by name."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot be listed ({exc.strerror})", folder) from None
    scans: list[Path] = []
    others: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            (scans if _is_dicom_folder(entry) else others).append(entry)
        elif entry.name.lower().endswith(SCAN_SUFFIXES):
            scans.append(entry)
    # Loose DICOM files directly in a folder make that folder one DICOM series.
    loose_dicom = [s for s in scans if s.is_file() and _is_dicom_name(s)]
    if loose_dicom:
        scans = [s for s in scans if s not in loose_dicom]
        if scans:
            names = ", ".join(s.name for s in scans[:3])
            raise DatasetError(
                f"holds loose DICOM files beside other scans ({names}); put each DICOM "
                "series in its own sub-folder",
                folder,
            )
        return [folder], []
    return scans, others


def _is_dicom_name(path: Path) -> bool:
    return path.name.lower().endswith((".dcm", ".dicom", ".ima"))


def _is_dicom_folder(folder: Path) -> bool:
    """True when ``folder`` directly holds DICOM files (by name or 'DICM' marker)."""
    from pydicom.misc import is_dicom

    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return False
    for path in files[:_DICOM_PROBE_FILES]:
        if _is_dicom_name(path):
            return True
        try:
            if is_dicom(path):
                return True
        except OSError:
            continue
    return False


# -- study with a manifest --------------------------------------------------------------


def read_manifest(folder: Path) -> StudySource:
    """The study described by ``folder/study.json``.

    Raises:
        DatasetError: the manifest is not JSON, lacks ``ct`` or ``mr``, names a scan
            that does not exist, or has a sex other than F or M.
    """
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot be read ({exc})", path) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"is not valid JSON (line {exc.lineno}: {exc.msg})", path) from None
    if not isinstance(data, dict):
        raise DatasetError("must hold a JSON object", path)

    scans: dict[str, Path] = {}
    for key in ("ct", "mr"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise DatasetError(f'names no {key.upper()} scan (a "{key}" path is needed)', path)
        scan = folder / value
        if not scan.exists():
            raise DatasetError(f"names {key.upper()} scan '{value}', which does not exist", path)
        scans[key] = scan

    patient_id = data.get("patient_id", folder.name)
    if not isinstance(patient_id, str | int) or not str(patient_id).strip():
        raise DatasetError(f"patient_id {patient_id!r} is not a name", path)
    age = data.get("age")
    if age is not None and not isinstance(age, int | float):
        raise DatasetError(f"age {age!r} is not a number", path)
    labels = data.get("labels")
    return StudySource(
        patient_id=str(patient_id).strip(),
        sex=_parse_sex(data.get("sex"), path),
        ct=scans["ct"],
        mr=scans["mr"],
        aligned=bool(data.get("aligned", False)),
        folder=folder,
        age=None if age is None else float(age),
        labels=folder / labels if isinstance(labels, str) and labels else None,
        manifest=data,
    )


def _parse_sex(value: Any, where: Path) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().upper()
    text = {"FEMALE": "F", "MALE": "M", "O": "", "U": "", "UNKNOWN": ""}.get(text, text)
    if text == "":
        return None
    if text not in SEXES:
        raise DatasetError(f"sex {value!r} is not F or M", where)
    return text


# -- study without a manifest -----------------------------------------------------------


def _study_from_scans(folder: Path, scans: list[Path]) -> StudySource:
    """Read every scan entry of ``folder`` and pair its one CT with its one MR."""
    from trainer.data.read import read_volume

    by_modality: dict[str, list[Path]] = {"CT": [], "MR": []}
    sexes: dict[Path, str] = {}
    patient_ids: dict[Path, str] = {}
    for scan in scans:
        volume = read_volume(scan)
        if volume.modality not in by_modality:
            raise DatasetError(
                f"cannot tell whether '{scan.name}' is CT or MR; add a sidecar JSON "
                f'{{"modality": "CT"}} or a {MANIFEST}',
                folder,
            )
        by_modality[volume.modality].append(scan)
        if volume.sex:
            sexes[scan] = volume.sex
        if volume.patient_id:
            patient_ids[scan] = str(volume.patient_id)
        del volume  # keep at most one scan in memory while searching

    hint = f"a study holds one CT and one MR (or add a {MANIFEST} naming them)"
    for modality, other in (("CT", "MR"), ("MR", "CT")):
        found = by_modality[modality]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise DatasetError(f"has {len(found)} {modality} scans ({names}); {hint}", folder)
        if found and not by_modality[other]:
            raise DatasetError(
                f"has a {modality} scan ({found[0].name}) but no {other} scan; {hint}", folder
            )
    if len(set(sexes.values())) > 1:
        detail = ", ".join(f"{p.name} says {s}" for p, s in sexes.items())
        raise DatasetError(f"CT and MR disagree on the patient's sex ({detail})", folder)
    if len(set(patient_ids.values())) > 1:
        detail = ", ".join(f"{p.name} says '{i}'" for p, i in patient_ids.items())
        raise DatasetError(
            f"CT and MR belong to different patients ({detail}); add a {MANIFEST} to pair "
            "them anyway",
            folder,
        )
    return StudySource(
        patient_id=next(iter(patient_ids.values()), folder.name),
        sex=next(iter(sexes.values()), None),
        ct=by_modality["CT"][0],
        mr=by_modality["MR"][0],
        aligned=False,
        folder=folder,
    )


def _unique(studies: list[StudySource]) -> list[StudySource]:
    """Drop studies reached twice; refuse two different studies of one patient id."""
    seen_folders: set[Path] = set()
    by_patient: dict[str, StudySource] = {}
    unique: list[StudySource] = []
    for study in studies:
        resolved = study.folder.resolve()
        if resolved in seen_folders:
            continue
        seen_folders.add(resolved)
        earlier = by_patient.get(study.patient_id)
        if earlier is not None:
            raise DatasetError(
                f"patient id '{study.patient_id}' is used by two studies, {earlier.folder} "
                f"and {study.folder}; give each study its own patient_id",
                study.folder,
            )
        by_patient[study.patient_id] = study
        unique.append(study)
    return unique
