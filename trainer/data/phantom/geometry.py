"""Per-patient geometry shared by the anatomy modules: where the skeleton sits and how
the body outline changes along the craniocaudal axis.

Coordinates (see :mod:`trainer.data.phantom.shapes`): ``u`` mm to the patient's left,
``v`` mm posterior, ``s`` mm superior, all 0 at the centre of the femoral heads. The
tables below are for an average adult; a patient's parameters scale them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.data.phantom.patient import PatientParams


def interp(s: float, knots: list[float], values: list[float]) -> float:
    """Piecewise-linear ``values`` over ``knots`` at ``s`` (held constant outside)."""
    return float(np.interp(s, knots, values))


def window(s: float, lo: float, hi: float, ramp: float = 8.0) -> float:
    """1 inside ``[lo, hi]``, 0 outside, linear ramps ``ramp`` mm wide inside the ends:
    lets a structure grow and fade rather than pop in and out between slices."""
    return float(np.clip(min(s - lo, hi - s) / ramp, 0.0, 1.0))


# Subfascial ("core") outline of the trunk for an average adult: half-width W,
# anterior extent A and posterior extent P (mm from the femoral-head line) against s.
_CORE_S = [-130, -100, -80, -60, -40, -20, 0, 30, 60, 100, 140, 180]
_CORE_W = [30, 40, 75, 118, 150, 160, 162, 160, 150, 138, 132, 130]
_CORE_A = [25, 35, 60, 80, 92, 98, 100, 100, 98, 98, 100, 102]
_CORE_P = [70, 84, 100, 110, 116, 118, 120, 120, 118, 110, 100, 98]


@dataclass(frozen=True)
class Geometry:
    """Derived sizes of one patient (mm unless said otherwise).

    Attributes:
        hx: distance of each femoral head centre from the midline.
        head_r: femoral head radius.
        pw: lateral scale of the pelvic ring, sex difference included.
        flare: lateral scale of the iliac wings.
        bs: bone size scale.
        mb: muscle thickness scale.
        size: in-plane body scale.
        ap: anteroposterior scale of the body.
        fat: subcutaneous fat thickness at the hips.
        visceral: 0..1, intra-abdominal fat (pushes the abdominal wall forward).
        female: sex.
    """

    hx: float
    head_r: float
    pw: float
    flare: float
    bs: float
    mb: float
    size: float
    ap: float
    fat: float
    visceral: float
    female: bool

    @classmethod
    def of(cls, p: PatientParams) -> Geometry:
        female = p.female
        pw = p.pelvis_width * (1.12 if female else 1.0)
        return cls(
            hx=88.0 * p.pelvis_width * (1.05 if female else 1.0),
            head_r=24.0 * p.bone_scale,
            pw=pw,
            flare=p.iliac_flare * (1.12 if female else 1.0),
            bs=p.bone_scale,
            mb=p.muscle_bulk,
            size=p.body_scale,
            ap=p.ap_ratio,
            fat=p.subcut_fat_mm,
            visceral=p.visceral_fat,
            female=female,
        )

    # -- body outline ------------------------------------------------------------------

    def core(self, s: float) -> tuple[float, float, float]:
        """``(W, A, P)``: half-width, anterior and posterior extent of the subfascial
        trunk at ``s``. Women have wider hips; the thighs are added separately."""
        w = interp(s, _CORE_S, _CORE_W) * self.size
        if self.female:
            w *= 1.0 + 0.08 * window(s, -90.0, 60.0, 40.0)
        a = interp(s, _CORE_S, _CORE_A) * self.size * self.ap
        # Visceral fat (more in men) rounds the abdomen above the pelvic brim.
        a *= 1.0 + 0.3 * (self.visceral - 0.4) * window(s, 20.0, 400.0, 50.0)
        # Behind, the core wraps the sacrum and spine, which do not scale with habitus.
        p = interp(s, _CORE_S, _CORE_P) * self.size**0.3 * self.ap**0.3
        return w, a, p

    def thigh(self, s: float) -> tuple[float, float, float]:
        """``(centre |u|, centre v, radius)`` of each thigh's subfascial outline; the
        radius is 0 above the hips, where the thighs have merged into the trunk."""
        r = interp(s, [-140, -80, -50, -20], [70, 72, 66, 0]) * self.size * self.mb**0.5
        cu = self.hx + interp(s, [-140, -60, -20], [14, 16, 16]) * self.size
        return cu, 6.0, r

    def fat_thickness(self, s: float) -> tuple[float, float, float]:
        """Subcutaneous fat ``(anterior, lateral, posterior)`` in mm at ``s``: women carry
        more over the hips and thighs, men over the abdomen."""
        f = self.fat
        hips = window(s, -150.0, 40.0, 60.0)
        belly = window(s, 30.0, 400.0, 60.0)
        if self.female:  # gynoid: hips, buttocks and thighs
            lateral = f * (0.9 + 0.5 * hips)
            anterior = f * (0.85 + 0.25 * belly)
            posterior = f * (0.9 + 0.4 * hips)
        else:  # android: the abdomen
            lateral = f * (0.75 + 0.25 * belly)
            anterior = f * (0.85 + 0.7 * belly)
            posterior = f * 0.75
        return anterior, lateral, posterior
