"""What a folder of DICOM files holds, as patient -> study -> series (the DICOM browser).

One pass over the folder's headers (no pixel data), the same pass
:func:`trainer.data.dicom_read.read_dicom` makes, so every series listed here can be
opened with its UID. Non-image objects (RT Structure Sets, plans, reports) are listed
too, marked, so the user sees why they cannot be opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trainer.data.dicom_read import SeriesInfo, _scan_folder, _series_info
from trainer.errors import ScanReadError


@dataclass(frozen=True)
class SeriesEntry:
    """One series: its facts from :class:`SeriesInfo` plus where it was found."""

    info: SeriesInfo
    folder: Path  # the folder that was indexed (open it with series_uid=info.uid)

    @property
    def uid(self) -> str:
        return self.info.uid

    @property
    def openable(self) -> bool:
        """True for an image series (a volume can be read from it)."""
        return self.info.is_image


@dataclass
class StudyEntry:
    uid: str
    date: str  # StudyDate as written (YYYYMMDD) or ""
    description: str
    series: list[SeriesEntry] = field(default_factory=list)

    def label(self) -> str:
        """``2022-12-08  CT abdomen`` (date, description), or the UID when both lack."""
        date = self.date
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        text = "  ".join(t for t in (date, self.description) if t)
        return text or self.uid or "(no study UID)"


@dataclass
class PatientEntry:
    name: str  # PatientName as written ("" when anonymised away)
    patient_id: str
    studies: list[StudyEntry] = field(default_factory=list)

    def label(self) -> str:
        """``Name (ID)``, or a stand-in for an anonymised patient."""
        if self.name and self.patient_id:
            return f"{self.name} ({self.patient_id})"
        return self.name or self.patient_id or "(no patient name)"


def index_dicom_folder(folder: str | os.PathLike[str]) -> list[PatientEntry]:
    """Patients, their studies and series in ``folder`` (searched recursively).

    Raises:
        ScanReadError: the folder does not exist, holds no DICOM, or a DICOM file in
            it is damaged (the message names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ScanReadError("is not a folder" if folder.exists() else "does not exist", folder)
    patients: dict[tuple[str, str], PatientEntry] = {}
    studies: dict[str, StudyEntry] = {}
    for uid, headers in _scan_folder(folder).items():
        ds = headers[0].ds
        name = str(ds.get("PatientName", "") or "").replace("^", " ").strip()
        pid = str(ds.get("PatientID", "") or "").strip()
        patient = patients.setdefault((name, pid), PatientEntry(name, pid))
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        study = studies.get(study_uid)
        if study is None:
            study = StudyEntry(
                study_uid,
                str(ds.get("StudyDate", "") or ""),
                str(ds.get("StudyDescription", "") or ""),
            )
            studies[study_uid] = study
            patient.studies.append(study)
        study.series.append(SeriesEntry(_series_info(uid, headers), folder))
    return list(patients.values())
