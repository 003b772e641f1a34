"""Make one paired study from a patient's CT and MR, as a folder a dataset can use.

``medstyle pair CT MR --out DIR`` (and the GUI's "open paired study") call
:func:`pair_scans`: N4 on the MR, the CT rigidly registered to the MR and resampled
onto its slices, both on the N x N model matrix. The folder gets ``ct.nii.gz``,
``mr.nii.gz`` (with sidecars) and a ``study.json`` manifest that records the
registration and its plausibility check (:mod:`trainer.data.pair_check`), so
``medstyle dataset build DIR`` takes it as it is. A pair that fails the check is
refused, or with ``force`` kept and marked ``"aligned": false``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.data.provenance import Provenance
from trainer.data.read import read_pair
from trainer.data.register import PairedStudy, prepare_pair
from trainer.data.write import write_volume
from trainer.errors import RegistrationError
from trainer.files import atomic_folder, ensure_can_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairResult:
    """Where the pair went and how it was made."""

    folder: Path
    pair: PairedStudy
    manifest: dict[str, Any]


def pair_scans(
    ct_path: str | os.PathLike[str],
    mr_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    size: int = 256,
    register: bool = True,
    n4: bool = True,
    overwrite: bool = False,
    ct_series: str | None = None,
    mr_series: str | None = None,
    patient: str | None = None,
    force: bool = False,
) -> PairResult:
    """Pair a CT and an MR of one patient into the study folder ``out_dir``.

    Args:
        ct_path, mr_path: the scans (any format :func:`read_volume` reads).
        out_dir: the study folder to create (atomically; an existing one only with
            ``overwrite``).
        size: model matrix N (a power of two up to 512).
        register: rigidly register CT to MR (else trust the scans' coordinates).
        n4: N4 bias-field correct the MR.
        ct_series, mr_series: which series of a DICOM folder holding several.
        patient: the label written into the manifest (default: ``out_dir``'s name;
            the scans' own patient IDs are never copied).
        force: keep a pair that fails the plausibility check (with a warning),
            marked ``"aligned": false`` so ``dataset build`` refuses it.

    Raises:
        RegistrationError: the pair fails the check and ``force`` is false (nothing
            is written); or registration itself failed.
    """
    out_dir = Path(out_dir)
    ensure_can_write(out_dir, overwrite)  # fail before the slow work
    ct, mr = read_pair(ct_path, mr_path, ct_series, mr_series)
    sex = mr.sex or ct.sex
    pair = prepare_pair(ct, mr, size=size, register=register, n4=n4)
    check = pair.check
    names = f"CT {Path(ct_path).name} and MR {Path(mr_path).name}"
    failures = "; ".join(check.failures)
    if failures and not force:
        raise RegistrationError(
            f"{names} do not make a plausible pair: {failures}; nothing written "
            "(pass --force to keep it, marked not aligned)"
        )
    manifest = {
        "patient_id": patient or out_dir.name,
        "sex": sex,
        "ct": "ct.nii.gz",
        "mr": "mr.nii.gz",
        "aligned": check.passed,
        "size": size,
        "pairing": pair.to_dict(),
        "pairing_check": check.to_dict(),
        "source_files": {"CT": Path(ct_path).name, "MR": Path(mr_path).name},
        "generator": "medstyle pair",
    }
    provenance = Provenance(
        synthetic=False,
        description="paired study: CT registered to MR, resampled to the model matrix",
        recipe={"size": size, "register": register, "n4": pair.n4_applied},
        source_files=[Path(ct_path).name, Path(mr_path).name],
    )
    with atomic_folder(out_dir, overwrite) as tmp:
        write_volume(pair.ct, tmp / "ct.nii.gz", provenance=provenance)
        write_volume(pair.mr, tmp / "mr.nii.gz", provenance=provenance)
        (tmp / "study.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if failures:
        log.warning(
            "%s: kept although its pairing check failed (%s); study.json marks it not "
            "aligned and 'medstyle dataset build' refuses it",
            out_dir,
            failures,
        )
    return PairResult(folder=out_dir, pair=pair, manifest=manifest)
