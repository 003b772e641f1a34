"""Phantom patients: the parameters that make each one different.

A patient is a sex, an age and a set of continuous anatomical parameters drawn from
plausible adult ranges (the paper's cohort: older adults with pelvic cancers, women
mean age 68, men 70). Every number is in mm, ml or a unitless scale near 1; the
anatomy (:mod:`trainer.data.phantom.anatomy`) reads them. Drawing is deterministic for
a seed, and each patient gets its own seed so patients can be made in any order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.data.phantom.tissues import BY_NAME, TISSUES


@dataclass(frozen=True)
class PatientParams:
    """One phantom patient. Lengths in mm, volumes in ml, angles in degrees.

    Attributes:
        patient_id: e.g. ``"P0001"``.
        sex: ``"F"`` or ``"M"``.
        age: years.
        seed: seed of this patient's random texture, noise and bowel loops.
        body_scale: in-plane size of the muscles and bones' surroundings (1 = average).
        ap_ratio: anteroposterior depth of the body relative to its width (1 = average).
        subcut_fat_mm: subcutaneous fat thickness at the hips.
        visceral_fat: 0..1, fat inside the pelvis and abdomen (spreads organs and bowel).
        muscle_bulk: scale of the muscles' thickness (1 = average).
        pelvis_width: lateral scale of the bony pelvis (sex difference added on top).
        pelvis_height: craniocaudal scale of the skeleton.
        bone_scale: femoral head and shaft size.
        trabecular_hu: CT number of pelvic trabecular bone (falls with age).
        iliac_flare: how far the iliac wings open laterally (1 = average).
        bladder_ml: bladder filling.
        bladder_shift_mm: lateral shift of the bladder.
        rectum_radius_mm: rectal ampulla radius.
        rectal_gas: 0..1, share of the rectal lumen holding gas.
        prostate_ml: prostate volume (men; 0 for women).
        uterus_scale: uterine size (women; 0 for men).
        uterus_tilt_deg: anteversion of the uterine body from the vertical.
        uterus_shift_mm: lateral deviation of the uterus.
        bowel_gas: 0..1, share of bowel loops holding gas.
        yaw_deg: rotation of the patient about the table's long axis (in the axial plane).
        shift_u_mm, shift_v_mm: in-plane offset of the patient in the field of view.
        z_offset_mm: where the stack starts relative to the femoral heads.
        fov_mm: in-plane field of view for the body's width (widened when the body
            and the couch under it need more room; ``study.json`` records the grid's).
    """

    patient_id: str
    sex: str
    age: int
    seed: int
    body_scale: float
    ap_ratio: float
    subcut_fat_mm: float
    visceral_fat: float
    muscle_bulk: float
    pelvis_width: float
    pelvis_height: float
    bone_scale: float
    trabecular_hu: float
    iliac_flare: float
    bladder_ml: float
    bladder_shift_mm: float
    rectum_radius_mm: float
    rectal_gas: float
    prostate_ml: float
    uterus_scale: float
    uterus_tilt_deg: float
    uterus_shift_mm: float
    bowel_gas: float
    yaw_deg: float
    shift_u_mm: float
    shift_v_mm: float
    z_offset_mm: float
    fov_mm: float

    @property
    def female(self) -> bool:
        return self.sex == "F"

    def to_dict(self) -> dict[str, Any]:
        """JSON/CSV-ready values, rounded."""
        return {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(self).items()
        }

    def rng(self, stream: str) -> np.random.Generator:
        """A random generator of this patient for one purpose (``"texture"``, ...), so
        that changing how one thing is drawn does not change the others."""
        return np.random.default_rng([self.seed, sum(map(ord, stream)), len(stream)])


def _clipped(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def sample_patient(index: int, sex: str, seed: int) -> PatientParams:
    """Draw patient number ``index`` (1-based, gives ``P0001``) of ``sex`` for cohort
    ``seed``. The same arguments always give the same patient."""
    rng = np.random.default_rng([seed, index, 7919])
    female = sex == "F"
    age = round(_clipped(rng, 68.0 if female else 70.0, 9.0, 45, 90))
    # Body habitus: a latent "adiposity" drives fat, a latent "frame" drives size.
    adiposity = rng.normal()
    frame = rng.normal()
    subcut = (32.0 if female else 17.0) + 7.0 * adiposity
    body_scale = 1.0 + 0.05 * frame + 0.02 * adiposity - (0.04 if female else 0.0)
    # Trabecular CT number falls about 2-3 HU a year in older adults (Schreiber 2011).
    trabecular = 330.0 - 2.5 * age + rng.normal(0.0, 25.0) - (10.0 if female else 0.0)
    prostate = 0.0
    if not female:  # benign enlargement with age
        prostate = float(np.clip(22.0 + 0.6 * (age - 50) + rng.gamma(2.0, 6.0), 18.0, 90.0))
    uterus = 0.0
    if female:  # the uterus shrinks after the menopause
        uterus = float(np.clip(1.25 - 0.01 * (age - 50) + rng.normal(0.0, 0.12), 0.75, 1.45))
    body_width = 340.0 * body_scale + 2.0 * subcut
    fov = float(np.clip(np.ceil((body_width * 1.12 + 30.0) / 10.0) * 10.0, 400.0, 520.0))
    return PatientParams(
        patient_id=f"P{index:04d}",
        sex=sex,
        age=age,
        seed=int(rng.integers(0, 2**31 - 1)),
        body_scale=float(np.clip(body_scale, 0.86, 1.14)),
        ap_ratio=_clipped(rng, 1.0 + 0.03 * adiposity, 0.05, 0.88, 1.14),
        subcut_fat_mm=float(np.clip(subcut, 6.0, 55.0)),
        visceral_fat=float(np.clip(0.35 + 0.2 * adiposity + (0.0 if female else 0.25), 0.0, 1.0)),
        muscle_bulk=_clipped(rng, 0.88 if female else 1.1, 0.07, 0.72, 1.3),
        pelvis_width=_clipped(rng, 1.0, 0.035, 0.92, 1.08),
        pelvis_height=_clipped(rng, 1.0, 0.035, 0.92, 1.08),
        bone_scale=_clipped(rng, 0.93 if female else 1.02, 0.04, 0.85, 1.12),
        trabecular_hu=float(np.clip(trabecular, 90.0, 300.0)),
        iliac_flare=_clipped(rng, 1.0, 0.06, 0.86, 1.14),
        bladder_ml=float(np.clip(rng.gamma(2.5, 70.0) + 40.0, 40.0, 550.0)),
        bladder_shift_mm=_clipped(rng, 0.0, 5.0, -12.0, 12.0),
        rectum_radius_mm=_clipped(rng, 20.0, 3.5, 13.0, 28.0),
        rectal_gas=float(np.clip(rng.beta(0.8, 2.5), 0.0, 0.8)),
        prostate_ml=prostate,
        uterus_scale=uterus,
        uterus_tilt_deg=_clipped(rng, 55.0, 15.0, 15.0, 85.0) if female else 0.0,
        uterus_shift_mm=_clipped(rng, 0.0, 6.0, -15.0, 15.0) if female else 0.0,
        bowel_gas=float(rng.beta(1.5, 3.0)),
        yaw_deg=_clipped(rng, 0.0, 1.5, -4.0, 4.0),
        shift_u_mm=_clipped(rng, 0.0, 5.0, -12.0, 12.0),
        shift_v_mm=_clipped(rng, 0.0, 4.0, -10.0, 10.0),
        z_offset_mm=_clipped(rng, 0.0, 4.0, -9.0, 9.0),
        fov_mm=fov,
    )


def tissue_values(params: PatientParams) -> tuple[np.ndarray, np.ndarray]:
    """This patient's CT (HU) and relative T2 value of every tissue label, each drawn
    within the literature range of :data:`~trainer.data.phantom.tissues.TISSUES`.

    Returns:
        ``(ct_hu, t2_relative)``, arrays indexed by label.
    """
    rng = params.rng("tissue values")
    n = max(t.label for t in TISSUES) + 1
    ct = np.zeros(n, dtype=np.float32)
    mr = np.zeros(n, dtype=np.float32)
    for t in TISSUES:
        # A beta(3, 3) draw stays inside the range and favours its middle.
        ct[t.label] = t.ct_range[0] + (t.ct_range[1] - t.ct_range[0]) * rng.beta(3, 3)
        mr[t.label] = t.mr_range[0] + (t.mr_range[1] - t.mr_range[0]) * rng.beta(3, 3)
    # Trabecular bone follows age; the femoral head's trabeculae are denser.
    for name, extra in (("red_marrow_bone", 0.0), ("fatty_marrow_bone", 60.0)):
        t = BY_NAME[name]
        ct[t.label] = np.clip(params.trabecular_hu + extra, *t.ct_range)
    return ct, mr
