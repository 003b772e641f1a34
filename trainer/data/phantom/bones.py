"""The skeleton, section by section: femora, hip bones (ilium, acetabulum, pubis,
ischium), sacrum, coccyx and the lowest lumbar vertebrae.

Each bone is one solid outline painted as cortical bone, then the same outline shrunk
by the cortical thickness painted as marrow, so every bone has a cortical shell and a
trabecular (or fatty medullary) inside. Coordinates and tables: see
:mod:`trainer.data.phantom.geometry`.
"""

from __future__ import annotations

import numpy as np

from trainer.data.phantom.geometry import Geometry, interp, window
from trainer.data.phantom.shapes import (
    Capsule,
    Capsule3D,
    Difference,
    Ellipse,
    Ellipsoid3D,
    HalfPlane,
    Intersection,
    Layer,
    Offset,
    Shape,
    Union,
    rotation,
    sphere,
)
from trainer.data.phantom.tissues import LABEL

CORTEX, RED, FATTY, MEDULLA = (
    LABEL["cortical_bone"],
    LABEL["red_marrow_bone"],
    LABEL["fatty_marrow_bone"],
    LABEL["medullary_fat"],
)
SIDES = (-1.0, 1.0)  # patient's right (u < 0), left (u > 0)


def solid_bone(outer: Shape, cortex_mm: float, marrow: int) -> list[Layer]:
    """A bone: cortical shell ``cortex_mm`` thick around a ``marrow`` inside."""
    return [Layer(CORTEX, outer), Layer(marrow, Offset(outer, -cortex_mm))]


# -- femur ---------------------------------------------------------------------------


def femoral_head_centre(g: Geometry, side: float) -> tuple[float, float, float]:
    return (side * g.hx, 0.0, 0.0)


def femur(g: Geometry, s: float, side: float) -> list[Layer]:
    """Head, neck, greater and lesser trochanter and shaft of one femur.

    The neck runs inferolaterally at a neck-shaft angle of about 130 degrees with about
    12 degrees of anteversion; the shaft leans about 8 degrees medially as it
    descends. Cortex is thin (1.5 mm) at the head and thick (6 mm) in the shaft.
    """
    b = g.bs
    hu = side * g.hx
    head = (hu, 0.0, 0.0)
    neck_base = (hu + side * 34 * b, 7 * b, -27 * b)
    parts = [
        sphere(head, g.head_r, s),
        Capsule3D(head, neck_base, 15 * b, 15.5 * b, s),
        Ellipsoid3D((hu + side * 46 * b, 10 * b, -24 * b), (16 * b, 21 * b, 26 * b), np.eye(3), s),
        Capsule3D(neck_base, (hu + side * 38 * b, 8 * b, -52 * b), 19 * b, 18 * b, s),
        sphere((hu + side * 24 * b, 18 * b, -56 * b), 9 * b, s),
        Capsule3D(
            (hu + side * 36 * b, 8 * b, -52 * b),
            (hu - side * 4 * b, 0.0, -260 * b),
            17 * b,
            13.5 * b,
            s,
        ),
    ]
    outer = Union(parts, smooth=7.0)
    cortex = interp(s / b, [-250, -95, -65, -35], [6.5, 5.5, 2.5, 1.5]) * b
    marrow = FATTY if s > -75 * b else MEDULLA
    return solid_bone(outer, cortex, marrow)


# -- hip bone ------------------------------------------------------------------------

# The ilium in axial section: a thick polyline from the sacroiliac joint (point 0)
# round the side wall to the anterior spines (point 3), given at heights _IL_S.
_IL_S = [26, 45, 70, 100, 130, 150, 162]
_IL = [
    # (u, v, radius) tables for points 0..3
    ([68, 64, 63, 63, 63, 64, 70], [42, 52, 62, 66, 70, 72, 66], [15, 13, 12, 13, 12, 9, 4]),
    ([94, 94, 95, 99, 102, 103, 104], [22, 30, 40, 47, 51, 54, 54], [17, 9, 4, 2.6, 2.6, 4.5, 3]),
    (
        [104, 112, 123, 130, 132, 129, 120],
        [-6, -6, 2, 11, 21, 30, 40],
        [15, 8, 3.2, 2.4, 2.4, 4.5, 3],
    ),
    ([92, 100, 114, 124, 126, 124, 116], [-34, -42, -44, -36, -16, 8, 34], [10, 8, 6, 6, 4, 4, 3]),
]


def ilium_section(g: Geometry, s: float, side: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The iliac polyline ``(points [4, 2], radii [4])`` at ``s``, or ``None`` above
    the crest or below the acetabular roof. Women's wings are lower and flare wider."""
    s_eff = s / (0.93 if g.female else 1.0) / g.bs**0.3
    fade = window(s_eff, 22.0, 164.0, 6.0)
    if fade <= 0:
        return None
    points, radii = [], []
    for i, (us, vs, rs) in enumerate(_IL):
        scale = g.pw if i == 0 else g.pw * g.flare
        points.append((side * interp(s_eff, _IL_S, us) * scale, interp(s_eff, _IL_S, vs)))
        radii.append(interp(s_eff, _IL_S, rs) * g.bs * fade)
    return np.array(points), np.array(radii)


def hip_bone(g: Geometry, s: float, side: float) -> list[Layer]:
    """One hip bone: ilium, acetabulum, pubis (body, superior and inferior rami),
    ischium with tuberosity and spine. Men have a narrower pubic arch."""
    b, pw = g.bs, g.pw
    male = not g.female
    parts: list[Shape] = []
    ilium = ilium_section(g, s, side)
    if ilium is not None:
        parts.append(Capsule(*ilium))
    # Acetabulum: a bony cup round the head, open laterally and inferiorly.
    head = femoral_head_centre(g, side)
    if s > -17 * b:
        cup = Difference(sphere(head, g.head_r + 11.5 * b, s), sphere(head, g.head_r + 2.5, s))
        parts.append(Intersection(cup, HalfPlane(side, 0.0, g.hx + 9 * b)))
    # Pubis.
    parts.append(Capsule3D((side * 14 * pw, -66, -6), (side * 62 * pw, -34, 6), 10 * b, 12 * b, s))
    parts.append(
        Ellipsoid3D(
            (side * 14 * pw, -64, -22 * b), (9 * b, 17 * b, 21 * b), rotation("s", -side * 25), s
        )
    )
    arch = 1.0 if male else 1.3  # women: wider subpubic angle
    parts.append(
        Capsule3D(
            (side * 15 * pw * arch, -56, -40 * b),
            (side * 42 * pw * arch**0.6, 20, -60 * b),
            8 * b,
            9 * b,
            s,
        )
    )
    # Ischium, tuberosity and spine.
    tub_u = side * (50 if male else 58) * pw
    parts.append(Capsule3D((side * 72 * pw, 30, 2), (tub_u * 1.05, 40, -42 * b), 13 * b, 14 * b, s))
    parts.append(Ellipsoid3D((tub_u, 42, -50 * b), (14 * b, 20 * b, 15 * b), np.eye(3), s))
    parts.append(Capsule3D((side * 62 * pw, 44, 14), (side * 46 * pw, 56, 16), 5 * b, 4 * b, s))
    return solid_bone(Union(parts, smooth=5.0), 1.7 * b, RED)


# -- sacrum, coccyx, lumbar spine ----------------------------------------------------

_SAC_S = [15, 40, 70, 100, 125]
_SAC_V = [80, 76, 64, 46, 32]  # centre of the sacral body section
_SAC_HW = [16, 28, 40, 48, 50]  # half-width with the alae
_SAC_T = [7, 9, 11, 13, 15]  # anteroposterior half-thickness of the body


def sacrum_centre_v(s: float) -> float:
    """``v`` of the sacral (or coccygeal) body centre at ``s``."""
    if s < 15:
        return interp(s, [-28, 15], [60, 80])
    return interp(s, _SAC_S, _SAC_V)


def spine_centre_v(s: float) -> float:
    """``v`` of the lumbar vertebral body centre (lordosis brings it forward)."""
    return interp(s, [125, 220], [24, 8])


def sacrum(g: Geometry, s: float) -> list[Layer]:
    """Sacrum (S5 to S1 with alae, canal and foramina) and coccyx."""
    b = g.bs
    if s < -28 or s > 127:
        return []
    fat, csf = LABEL["fat"], LABEL["csf"]
    v = sacrum_centre_v(s)
    if s < 15:  # coccyx
        w = interp(s, [-28, 15], [5, 13]) * b
        return solid_bone(Ellipse(0.0, v, w, 5.5 * b), 1.3, RED)
    hw = interp(s, _SAC_S, _SAC_HW) * g.pw * b
    t = interp(s, _SAC_S, _SAC_T) * b
    body_w = interp(s, _SAC_S, [12, 16, 19, 21, 24]) * b
    parts: list[Shape] = [
        Ellipse(0.0, v, body_w, t),
        Capsule([(-hw + 0.6 * t, v + 3), (hw - 0.6 * t, v + 3)], 0.75 * t),
        Capsule([(-14 * b, v + t + 1), (0, v + t + 11 * b), (14 * b, v + t + 1)], 3.5 * b),
        Capsule([(0, v + t), (0, v + t + 15 * b)], 3.5 * b),
    ]
    layers = solid_bone(Union(parts, smooth=4.0), 1.5, RED)
    # The sacral canal: dural sac (CSF) at the top, fat and nerve roots lower down.
    layers.append(Layer(csf if s > 105 else fat, Ellipse(0.0, v + t + 3.5 * b, 9 * b, 4 * b)))
    if 40 < s < 118:  # anterior sacral foramina
        for side in SIDES:
            layers.append(Layer(fat, Ellipse(side * 0.52 * hw, v + 1, 4.0 * b, 3.2 * b)))
    return layers


def lumbar_spine(g: Geometry, s: float) -> list[Layer]:
    """L5 (and L4 above it when the stack reaches that high): vertebral bodies,
    intervertebral discs, posterior arch round a CSF-filled canal, spinous and
    transverse processes."""
    b = g.bs
    if s < 124:
        return []
    v = spine_centre_v(s)
    layers: list[Layer] = []
    # Discs at 124-132 (L5/S1), 160-168 (L4/5), 196-204 ...; bodies between them.
    k, rest = divmod(s - 124, 36.0)
    in_disc = rest < 8.0
    if in_disc:
        layers.append(Layer(LABEL["disc"], Ellipse(0.0, v, 25 * b, 17 * b)))
        layers.append(Layer(LABEL["cartilage"], Ellipse(0.0, v, 10 * b, 7 * b)))
    else:
        layers += solid_bone(Ellipse(0.0, v, 25 * b, 17 * b), 1.2, RED)
    arch = [
        Capsule(
            [(-15 * b, v + 16), (-17 * b, v + 28), (0, v + 36), (17 * b, v + 28), (15 * b, v + 16)],
            4.5 * b,
        ),
        Capsule([(0, v + 36), (0, v + 58 * b)], 5 * b),
    ]
    if not in_disc and k == 0:  # the broad L5 transverse processes
        arch.append(
            Capsule(
                [(-46 * b, v + 16), (-18 * b, v + 20), (18 * b, v + 20), (46 * b, v + 16)], 6 * b
            )
        )
    layers += solid_bone(Union(arch, smooth=3.0), 1.3, RED)
    layers.append(Layer(LABEL["csf"], Ellipse(0.0, v + 25, 11 * b, 7.5 * b)))
    return layers


def skeleton(g: Geometry, s: float) -> list[Layer]:
    """Every bone in the section at ``s``, hip joint cartilage included."""
    layers: list[Layer] = []
    for side in SIDES:
        head = femoral_head_centre(g, side)
        # Articular cartilage of the hip: a 2.5 mm band round the head, seen where
        # the acetabulum covers it.
        layers.append(Layer(LABEL["cartilage"], sphere(head, g.head_r + 2.5, s)))
        layers += hip_bone(g, s, side)
        layers += femur(g, s, side)
    layers.append(
        Layer(LABEL["cartilage"], Ellipse(0.0, -63, 3.0, 12 * g.bs)) if -40 < s < -4 else None
    )
    layers += sacrum(g, s)
    layers += lumbar_spine(g, s)
    return [layer for layer in layers if layer is not None]
