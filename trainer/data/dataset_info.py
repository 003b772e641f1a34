"""What a slice dataset holds (``medstyle dataset info``): counts by modality, sex and
patient, paired slices, normalisation, provenance; as JSON-ready facts or a table."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from trainer.data.dataset import (
    FORMAT,
    FORMAT_VERSION,
    MODALITY_CODES,
    SEX_CODES,
    UNKNOWN_SEX,
    attr_text,
    dataset_normalisation,
    open_dataset,
    read_labels,
)
from trainer.data.volume import MODALITIES


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about a slice dataset (JSON-ready): slices, size, counts by modality, by
    sex and by patient, paired slices, normalisation, when and by what it was built."""
    with open_dataset(path) as f:
        normalisation = dataset_normalisation(f).to_dict()
        size = int(f.attrs.get("size", f["images"].shape[-1]))
        attrs = {k: attr_text(f, k) for k in ("created_utc", "software")}
        sources = json.loads(attr_text(f, "sources") or "[]")
    labels = read_labels(path)
    modality, sex, patient = labels["modality"], labels["sex"], labels["patient"]
    patients = [str(p) for p in labels["patients"]]

    def by_modality(mask: np.ndarray) -> dict[str, int]:
        return {m: int(np.sum(mask & (modality == MODALITY_CODES.index(m)))) for m in MODALITIES}

    everything = np.ones(modality.shape, dtype=bool)
    sex_names = {**dict(enumerate(SEX_CODES)), UNKNOWN_SEX: "unknown"}
    by_patient = {}
    for index, pid in enumerate(patients):
        mask = patient == index
        by_patient[pid] = {
            "sex": sex_names.get(int(labels["patient_sex"][index]), "unknown"),
            **by_modality(mask),
            "paired": int(np.sum(mask & (labels["pair_index"] >= 0))),
        }
    return {
        "path": str(path),
        "format": f"{FORMAT} v{FORMAT_VERSION}",
        "slices": int(modality.size),
        "size": size,
        "patients": len(patients),
        "by_modality": by_modality(everything),
        "by_sex": {name: int(np.sum(sex == code)) for code, name in sex_names.items()},
        "by_sex_and_modality": {name: by_modality(sex == code) for code, name in sex_names.items()},
        "patients_by_sex": {
            name: int(np.sum(labels["patient_sex"] == code)) for code, name in sex_names.items()
        },
        "paired_slices": int(np.sum(labels["pair_index"] >= 0)),
        "by_patient": by_patient,
        "normalisation": normalisation,
        "studies_registered": sum(1 for s in sources if s.get("registered")),
        "n4": any(s.get("n4") for s in sources),
        **attrs,
    }


def format_dataset_info(info: dict[str, Any]) -> str:
    """``dataset_info``'s facts as a readable table."""
    norm = info["normalisation"]
    ct, mr = norm["CT"], norm["MR"]
    counts = info["by_modality"]
    patients_by_sex = ", ".join(f"{k} {v}" for k, v in info["patients_by_sex"].items())
    head = [
        ("dataset", info["path"]),
        ("format", info["format"]),
        (
            "slices",
            f"{info['slices']} of {info['size']} x {info['size']} pixels "
            f"(MR {counts['MR']}, CT {counts['CT']}; {info['paired_slices']} paired)",
        ),
        ("patients", f"{info['patients']} ({patients_by_sex})"),
        (
            "normalisation",
            f"CT [{ct['low']:g}, {ct['high']:g}] HU and MR [{mr['low']:g}, "
            f"{mr['high']:g}] -> [-1, 1], {norm['scheme']}",
        ),
        (
            "registration",
            f"{info['studies_registered']} of {info['patients']} studies "
            f"registered; N4 {'on' if info['n4'] else 'off'}",
        ),
        ("built", f"{info.get('created_utc', '')} by {info.get('software', '')}"),
    ]
    lines = [f"{key:<14} {value}" for key, value in head]
    by_sex = info["by_sex_and_modality"]
    sex_rows = [[sex, c["MR"], c["CT"], c["MR"] + c["CT"]] for sex, c in by_sex.items()]
    sex_rows.append(["all", counts["MR"], counts["CT"], info["slices"]])
    lines += ["", _table(["sex", "MR", "CT", "slices"], sex_rows), ""]
    patient_rows = [
        [pid, p["sex"], p["MR"], p["CT"], p["MR"] + p["CT"], p["paired"]]
        for pid, p in info["by_patient"].items()
    ]
    lines.append(_table(["patient", "sex", "MR", "CT", "slices", "paired"], patient_rows))
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Text columns left-aligned, numbers right-aligned, two spaces apart."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    )
