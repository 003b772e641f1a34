"""The phantom's tissues: label numbers, CT numbers (HU) and T2-weighted signal.

CT values are unenhanced, 120 kVp, adult. The T2 signal is relative to urine (= 1)
on a T2-weighted turbo (fast) spin-echo image, and becomes scanner-like units by
:data:`MR_FLUID_UNITS` (the paper's MR window is 0..2500). ``ct_sd`` and ``mr_sd``
are the spread *within* the tissue (texture: fat septa, trabeculae, stool), not image
noise, which :mod:`trainer.data.phantom.physics` adds on top. Each row names its
sources (keys of :data:`SOURCES`); ``docs/phantom.md`` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass

#: MR units of urine (relative signal 1.0): bladder urine at about 1800 of the
#: paper's 0..2500 window, so fat lands near 1350 and muscle near 250.
MR_FLUID_UNITS = 1800.0


@dataclass(frozen=True)
class Tissue:
    """One label of the tissue map.

    Attributes:
        label: value in ``tissue.nii.gz`` (uint8).
        name: short name (snake_case).
        ct_hu: typical CT number, HU.
        ct_range: the literature range ``(low, high)`` in HU a patient's value is drawn from.
        ct_sd: texture spread within the tissue, HU.
        mr: typical T2-TSE signal relative to urine.
        mr_range: range ``(low, high)`` of the relative signal a patient's value is drawn from.
        mr_sd: texture spread within the tissue, relative units.
        sources: keys of :data:`SOURCES`.
    """

    label: int
    name: str
    ct_hu: float
    ct_range: tuple[float, float]
    ct_sd: float
    mr: float
    mr_range: tuple[float, float]
    mr_sd: float
    sources: tuple[str, ...]


_T = Tissue
# fmt: off
TISSUES: tuple[Tissue, ...] = (
    # label, name, HU, HU range, HU sd, T2, T2 range, T2 sd, sources
    _T(0, "air",               -1000, (-1000, -1000), 0, 0.0, (0.0, 0.0), 0.0, ("book",)),
    _T(1, "skin",                 40, (30, 60), 10, 0.35, (0.3, 0.4), 0.04, ("book", "px")),
    _T(2, "fat", -100, (-115, -85), 6, 0.75, (0.68, 0.8), 0.02, ("book", "px", "pai")),
    _T(3, "muscle",               50, (40, 60), 7, 0.15, (0.12, 0.19), 0.02, ("book", "px", "deb")),
    _T(4, "cortical_bone",      1300, (1100, 1600), 120, 0.02, (0.0, 0.04), 0.01, ("buzug",)),
    _T(5, "red_marrow_bone",     180, (90, 300), 60, 0.42, (0.35, 0.5), 0.08, ("schr", "deb")),
    _T(6, "fatty_marrow_bone",   250, (150, 380), 70, 0.68, (0.6, 0.75), 0.07, ("schr", "px")),
    _T(7, "medullary_fat",       -40, (-70, 0), 25, 0.72, (0.65, 0.78), 0.05, ("book", "px")),
    _T(8, "cartilage",           100, (80, 120), 12, 0.3, (0.25, 0.35), 0.03, ("book", "jordan")),
    _T(9, "disc",                 80, (70, 100), 12, 0.4, (0.3, 0.5), 0.05, ("book",)),
    _T(10, "csf",                  8, (0, 15), 5, 1.0, (0.95, 1.05), 0.03, ("book",)),
    _T(11, "urine",                5, (0, 12), 4, 1.0, (1.0, 1.0), 0.02, ("book", "px")),
    _T(12, "bladder_wall",        40, (35, 50), 8, 0.15, (0.12, 0.2), 0.03, ("book", "px")),
    _T(13, "bowel_wall",          40, (35, 50), 10, 0.22, (0.18, 0.28), 0.04, ("book",)),
    _T(14, "stool",                0, (-40, 30), 60, 0.25, (0.18, 0.35), 0.12, ("book", "px")),
    _T(15, "bowel_gas",        -1000, (-1000, -980), 10, 0.0, (0.0, 0.02), 0.0, ("book",)),
    _T(16, "bowel_fluid",         12, (5, 20), 6, 0.85, (0.75, 0.95), 0.05, ("book",)),
    _T(17, "blood_vessel",        45, (38, 55), 6, 0.06, (0.03, 0.1), 0.02, ("book",)),
    _T(18, "prostate_pz",         35, (30, 42), 8, 0.6, (0.5, 0.7), 0.08, ("pirads", "deb")),
    _T(19, "prostate_tz",         38, (32, 45), 8, 0.3, (0.24, 0.36), 0.08, ("pirads", "px")),
    _T(20, "prostate_stroma",     42, (35, 50), 6, 0.12, (0.09, 0.16), 0.02, ("book", "pirads")),
    _T(21, "seminal_vesicle",     25, (15, 35), 8, 0.85, (0.75, 0.95), 0.16, ("book", "pirads")),
    _T(22, "penile_bulb",         40, (35, 50), 8, 0.7, (0.6, 0.8), 0.05, ("book",)),
    _T(23, "testis",              35, (28, 42), 6, 0.8, (0.7, 0.9), 0.04, ("book",)),
    _T(24, "myometrium",          45, (38, 55), 8, 0.45, (0.38, 0.52), 0.05, ("scoutt", "deb")),
    _T(25, "junctional_zone",     45, (38, 55), 6, 0.15, (0.12, 0.2), 0.03, ("book", "scoutt")),
    _T(26, "endometrium",         35, (28, 45), 6, 0.8, (0.7, 0.9), 0.05, ("book", "scoutt")),
    _T(27, "cervical_stroma",     45, (38, 55), 6, 0.14, (0.1, 0.18), 0.03, ("book", "scoutt")),
    _T(28, "vagina",              40, (35, 50), 8, 0.28, (0.22, 0.34), 0.05, ("book",)),
    _T(29, "ovary",               30, (25, 40), 8, 0.55, (0.45, 0.65), 0.1, ("book",)),
    _T(30, "lymph_node",          35, (25, 45), 6, 0.35, (0.3, 0.42), 0.04, ("book",)),
    _T(31, "couch",              300, (250, 350), 20, 0.0, (0.0, 0.0), 0.0, ("device",)),
    _T(32, "couch_foam",        -850, (-880, -820), 10, 0.0, (0.0, 0.0), 0.0, ("device",)),
)
# fmt: on

BY_NAME: dict[str, Tissue] = {t.name: t for t in TISSUES}
LABEL: dict[str, int] = {t.name: t.label for t in TISSUES}
NAMES: dict[int, str] = {t.label: t.name for t in TISSUES}

#: Where the numbers come from.
SOURCES: dict[str, str] = {
    "book": (
        "CT numbers of soft tissues, fat, water and bone as tabulated in CT textbooks: "
        "Prokop M, Galanski M. Spiral and Multislice Computed Tomography of the Body. "
        "Thieme, 2003; Buzug TM. Computed Tomography: From Photon Statistics to Modern "
        "Cone-Beam CT. Springer, 2008 (fat -50 to -100 HU, water 0, soft tissue 20-60, "
        "blood 40-65); relative T2 appearance as described in radiology texts"
    ),
    "buzug": "Buzug TM. Computed Tomography. Springer, 2008: bone 700 to 3000 HU",
    "schr": (
        "Schreiber JJ, Anderson PA, Rosas HG, Buchholz AL, Au AG. Hounsfield units for "
        "assessing bone mineral density and strength: a tool for osteoporosis management. "
        "J Bone Joint Surg Am 2011;93:1057-63 (trabecular HU falls with age, roughly "
        "120-250 HU in older adults)"
    ),
    "deb": (
        "de Bazelaire CMJ, Duhamel GD, Rofsky NM, Alsop DC. MR imaging relaxation times "
        "of abdominal and pelvic tissues measured in vivo at 3.0 T. Radiology "
        "2004;230:652-9 (T1/T2 ms: muscle 898/29, subcutaneous fat 382/68, L4 marrow "
        "586/49, prostate 1597/74, myometrium 1514/79, endometrium 1453/59, cervix 1616/83)"
    ),
    "pai": (
        "Pai A, Li X, Majumdar S. A comparative study at 3 Tesla of sequence dependence "
        "of T2 quantitation in the knee. Magn Reson Imaging 2008;26:1215-20 (apparent T2 "
        "of fat and marrow 41-143 ms, longest on fast spin echo: why fat is bright on "
        "T2 TSE)"
    ),
    "jordan": (
        "Jordan CD, Saranathan M, Bangerter NK, Hargreaves BA, Gold GE. Musculoskeletal "
        "MRI at 3.0 T and 7.0 T: a comparison of relaxation times and image contrast. "
        "Eur J Radiol 2013;82:734-9 (cartilage, muscle, fluid, marrow, fat at 3 T)"
    ),
    "pirads": (
        "Weinreb JC et al. PI-RADS Prostate Imaging - Reporting and Data System: 2015, "
        "version 2. Eur Urol 2016;69:16-40 (peripheral zone high T2 signal, transition "
        "zone and anterior fibromuscular stroma low, seminal vesicles high)"
    ),
    "scoutt": (
        "Scoutt LM, Flynn SD, Luthringer DJ, McCauley TR, McCarthy SM. Uterine junctional "
        "zone: correlation between histologic findings and MR imaging. Radiology "
        "1991;179:409-13 (endometrium high, junctional zone low, myometrium intermediate "
        "on T2)"
    ),
    "px": (
        "measured here: region-of-interest means in the real T2 TSE of the pelvis in "
        "data/real (ProstateX case 0000) relative to bladder urine: subcutaneous fat "
        "0.73, femoral-head marrow 0.76, gluteal muscle about 0.15, transition zone "
        "0.27, rectal content about 0.2"
    ),
    "device": (
        "not a tissue: the CT couch top, carbon-fibre shells round a foam core (shell and "
        "core CT numbers typical of radiotherapy couch tops); invisible on MR"
    ),
}


def tissue_table() -> list[dict[str, object]]:
    """The table as plain rows (for ``study.json``, CSV and the docs)."""
    return [
        {
            "label": t.label,
            "name": t.name,
            "ct_hu": t.ct_hu,
            "ct_range_hu": list(t.ct_range),
            "t2_relative": t.mr,
            "t2_range_relative": list(t.mr_range),
            "mr_units": round(t.mr * MR_FLUID_UNITS, 1),
            "sources": list(t.sources),
        }
        for t in TISSUES
    ]
