"""Write a phantom cohort: N paired CT/MR studies with label maps and label tables.

Layout of ``OUT_DIR`` (what ``medstyle dataset build`` reads)::

    labels.csv     one row per slice: patient, sex, age, slice, slice_norm, z_mm
    patients.csv   one row per patient: patient, sex, age and anatomical parameters
    tissues.csv    the tissue table: label, name, CT HU, T2 signal, sources
    P0001/
      study.json   manifest: patient_id, sex, age, ct, mr, labels, aligned, ...
      ct.nii.gz, ct.nii.gz.json   CT in HU (int16) and its sidecar  (or a DICOM folder ct/)
      mr.nii.gz, mr.nii.gz.json   T2 MR in scanner units (uint16)   (or a DICOM folder mr/)
      tissue.nii.gz               uint8 tissue labels on the same grid

Patients are independent (each has its own seed), so they are made in parallel
processes; the cohort is the same whatever the number of processes. The whole
folder is written beside its final place and moved in when complete.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

import trainer
from trainer.data.phantom.patient import PatientParams, sample_patient, tissue_values
from trainer.data.phantom.study import PhantomStudy, check_options, labels_image, render_study
from trainer.data.phantom.tissues import MR_FLUID_UNITS, NAMES, SOURCES, tissue_table
from trainer.data.provenance import Provenance
from trainer.data.read import sidecar_path
from trainer.data.volume import Volume
from trainer.errors import ConfigError, ScanWriteError
from trainer.files import atomic_file, atomic_folder

FORMATS = ("nifti", "dicom")
GENERATOR = "medstyle phantom"


@dataclass(frozen=True)
class CohortOptions:
    """What ``medstyle phantom`` was asked for (recorded in every ``study.json``).

    Attributes:
        patients: number of patients.
        seed: cohort seed; the same seed gives the same cohort.
        size: pixels per row and column.
        slices: axial slices per study.
        slice_mm: slice spacing in mm.
        female_fraction: share of women (rounded to whole patients).
        fmt: ``"nifti"`` or ``"dicom"``.
        misalign_mm: length of each CT's random rigid misalignment (0: aligned).
    """

    patients: int
    seed: int
    size: int = 256
    slices: int = 88
    slice_mm: float = 3.0
    female_fraction: float = 0.5
    fmt: str = "nifti"
    misalign_mm: float = 0.0

    def check(self) -> None:
        if self.patients < 1:
            raise ConfigError(f"--patients {self.patients}: at least one patient is needed")
        if self.patients > 9999:
            raise ConfigError(f"--patients {self.patients} is more than 9999")
        if self.seed < 0:  # numpy's generators take no negative seeds
            raise ConfigError(f"--seed {self.seed}: a seed is a whole number from 0 up")
        if not 0.0 <= self.female_fraction <= 1.0:
            raise ConfigError(f"--female-fraction {self.female_fraction} is not between 0 and 1")
        if self.fmt not in FORMATS:
            raise ConfigError(f"--format {self.fmt!r} is not one of {', '.join(FORMATS)}")
        check_options(self.size, self.slices, self.slice_mm, self.misalign_mm)


def cohort_sexes(patients: int, female_fraction: float, seed: int) -> list[str]:
    """Sex of each patient: ``round(patients * female_fraction)`` women, in an order
    shuffled by ``seed``."""
    women = round(patients * female_fraction)
    sexes = np.array(["F"] * women + ["M"] * (patients - women))
    np.random.default_rng([seed, 4242]).shuffle(sexes)
    return [str(x) for x in sexes]


def cohort_patients(options: CohortOptions) -> list[PatientParams]:
    """The cohort's patients (``P0001`` ...), without drawing any images."""
    sexes = cohort_sexes(options.patients, options.female_fraction, options.seed)
    return [sample_patient(i + 1, sex, options.seed) for i, sex in enumerate(sexes)]


# -- one study ---------------------------------------------------------------------------


def _provenance(params: PatientParams, options: CohortOptions) -> Provenance:
    return Provenance(
        synthetic=True,
        description=f"medstyle pelvic phantom {params.patient_id} (procedural, not a patient)",
        recipe={"generator": GENERATOR, "cohort_seed": options.seed, "patient": params.patient_id},
    )


def _itk(array: np.ndarray, like: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(like.spacing_mm)))
    image.SetOrigin(like.origin_lps_mm)
    image.SetDirection(tuple(like.direction.ravel()))
    return image


def _write_nifti(image: sitk.Image, path: Path, sidecar: dict[str, Any] | None) -> None:
    with atomic_file(path) as tmp:
        # Level 1: noise does not compress much better at higher levels, only slower.
        sitk.WriteImage(image, str(tmp), useCompression=True, compressionLevel=1)
    if sidecar is not None:
        with atomic_file(sidecar_path(path)) as tmp:
            tmp.write_text(json.dumps(sidecar, indent=2), encoding="utf-8")


def _sidecar(volume: Volume, params: PatientParams, provenance: Provenance) -> dict[str, Any]:
    return {
        "modality": volume.modality,
        "sex": params.sex,
        "patient_id": params.patient_id,
        "age": params.age,
        "units": volume.units,
        "phantom": True,
        "generator": GENERATOR,
        "orientation_written": "LPS (SimpleITK physical space; readers reorient as needed)",
        "provenance": provenance.to_dict(),
    }


def write_study(study: PhantomStudy, folder: Path, options: CohortOptions) -> dict[str, Any]:
    """Write one study into the existing empty ``folder``; returns its manifest."""
    params = study.params
    provenance = _provenance(params, options)
    if options.fmt == "dicom":
        from trainer.data.dicom_write import write_dicom_series

        for name, volume in (("ct", study.ct), ("mr", study.mr)):
            write_dicom_series(
                volume,
                folder / name,
                provenance=provenance,
                patient_name=f"PHANTOM^{params.patient_id}",
                patient_id=params.patient_id,
            )
        ct_name, mr_name = "ct", "mr"
    else:
        ct_name, mr_name = "ct.nii.gz", "mr.nii.gz"
        # Whole HU and whole scanner units, as scanners store them.
        ct = np.clip(np.rint(study.ct.array), -1024, 3071).astype(np.int16)
        mr = np.clip(np.rint(study.mr.array), 0, 65535).astype(np.uint16)
        _write_nifti(_itk(ct, study.ct), folder / ct_name, _sidecar(study.ct, params, provenance))
        _write_nifti(_itk(mr, study.mr), folder / mr_name, _sidecar(study.mr, params, provenance))
    _write_nifti(labels_image(study), folder / "tissue.nii.gz", None)

    ct_values, mr_values = tissue_values(params)
    manifest = {
        "patient_id": params.patient_id,
        "sex": params.sex,
        "age": params.age,
        "ct": ct_name,
        "mr": mr_name,
        "labels": "tissue.nii.gz",
        "aligned": study.aligned,
        "misalignment": study.misalignment,
        "labels_match": ["MR", "CT"] if study.aligned else ["MR"],
        "phantom": True,
        "seed": options.seed,
        "patient_seed": params.seed,
        "generator": GENERATOR,
        "software": f"medstyle {trainer.__version__}",
        "grid": {
            "size": options.size,
            "slices": options.slices,
            "slice_mm": options.slice_mm,
            "pixel_mm": round(study.mr.spacing_mm[1], 6),
            "fov_mm": round(study.mr.spacing_mm[1] * options.size, 3),
            "z0_mm": round(study.mr.origin_lps_mm[2], 4),
            "orientation": "LPS; slice 0 most inferior; z = 0 at the femoral head centres",
        },
        "label_names": {str(k): v for k, v in NAMES.items()},
        "tissue_values": {
            NAMES[k]: {
                "ct_hu": round(float(ct_values[k]), 2),
                "t2_relative": round(float(mr_values[k]), 4),
            }
            for k in NAMES
        },
        "mr_units_per_t2_relative": MR_FLUID_UNITS,
        "parameters": params.to_dict(),
    }
    with atomic_file(folder / "study.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _make_patient(
    root: str, params: PatientParams, options: CohortOptions
) -> tuple[dict, list[dict]]:
    """Worker: draw and write one patient; return its rows for the CSV tables."""
    study = render_study(
        params,
        size=options.size,
        slices=options.slices,
        slice_mm=options.slice_mm,
        misalign_mm=options.misalign_mm,
    )
    folder = Path(root) / params.patient_id
    folder.mkdir()
    write_study(study, folder, options)
    z = study.mr.slice_positions_mm
    norm = study.mr.normalised_slice_index
    slices = [
        {
            "patient": params.patient_id,
            "sex": params.sex,
            "age": params.age,
            "slice": k,
            "slice_norm": round(float(norm[k]), 6),
            "z_mm": round(float(z[k]), 3),
        }
        for k in range(study.mr.num_slices)
    ]
    row = {
        "patient": params.patient_id,
        **{k: v for k, v in params.to_dict().items() if k != "patient_id"},
    }
    return row, slices


# -- the cohort --------------------------------------------------------------------------


def _check_target(out_dir: Path, overwrite: bool) -> bool:
    """Whether an existing ``out_dir`` may be replaced; raise if it may not."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ScanWriteError("exists and is not a folder", out_dir)
    if any(out_dir.iterdir()) and not overwrite:
        raise ScanWriteError("is not empty (pass --overwrite to replace it)", out_dir)
    return True


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_cohort(
    out_dir: str | os.PathLike[str],
    options: CohortOptions,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Draw and write a phantom cohort into ``out_dir``.

    Args:
        out_dir: folder to create; an existing empty folder is used, a non-empty one
            only replaced with ``overwrite`` (after the new cohort is complete).
        options: cohort size, seed, grid and format.
        overwrite: replace a non-empty ``out_dir``.
        workers: processes (default: one per CPU, at most one per patient).
        progress: show a progress bar on stderr.

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: an option is out of range.
        ScanWriteError: ``out_dir`` is not empty (without ``overwrite``) or cannot be
            written.
    """
    from tqdm import tqdm

    options.check()
    out_dir = Path(out_dir)
    replace = _check_target(out_dir, overwrite)
    patients = cohort_patients(options)
    workers = max(1, min(workers or os.cpu_count() or 1, len(patients)))
    results: dict[str, tuple[dict, list[dict]]] = {}
    try:
        with atomic_folder(out_dir, overwrite=replace) as tmp:
            bar = tqdm(total=len(patients), unit="patient", disable=not progress, file=sys.stderr)
            if workers == 1:
                for params in patients:
                    results[params.patient_id] = _make_patient(str(tmp), params, options)
                    bar.update()
            else:
                # Fresh interpreters: no state (threads, open files) is inherited.
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                    jobs = [pool.submit(_make_patient, str(tmp), p, options) for p in patients]
                    for job in as_completed(jobs):
                        row, _ = job.result()
                        results[row["patient"]] = job.result()
                        bar.update()
            bar.close()
            ordered = [results[p.patient_id] for p in patients]
            _write_csv(tmp / "patients.csv", [row for row, _ in ordered])
            _write_csv(tmp / "labels.csv", [s for _, slices in ordered for s in slices])
            _write_csv(
                tmp / "tissues.csv",
                [{**t, "sources": "; ".join(t["sources"])} for t in tissue_table()],  # type: ignore[arg-type]
            )
            with atomic_file(tmp / "sources.json") as side:
                side.write_text(json.dumps(SOURCES, indent=2), encoding="utf-8")
    except OSError as exc:
        raise ScanWriteError(f"could not be written ({exc.strerror or exc})", out_dir) from None
    return out_dir
