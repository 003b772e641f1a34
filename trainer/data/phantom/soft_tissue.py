"""Body outline, skin, subcutaneous fat, fascia and muscles, section by section.

The body is a subfascial core (trunk, buttocks, thighs) wrapped in subcutaneous fat
whose thickness depends on direction and sex, with external genitalia at the lowest
levels. Muscles are thick polylines and 3-D capsules placed against the skeleton of
:mod:`trainer.data.phantom.bones`; whatever they leave free inside the body is fat,
as in a real pelvis (ischioanal fossae, perivesical and mesorectal fat, fat planes
between muscles).
"""

from __future__ import annotations

import numpy as np

from trainer.data.phantom.bones import SIDES, sacrum_centre_v, spine_centre_v
from trainer.data.phantom.geometry import Geometry, interp, window
from trainer.data.phantom.shapes import (
    AngularOffset,
    Cached,
    Capsule,
    Capsule3D,
    Egg,
    Ellipse,
    Ellipsoid3D,
    HalfPlane,
    Intersection,
    Layer,
    Offset,
    Shape,
    Shell,
    Union,
    Wobble,
)
from trainer.data.phantom.tissues import LABEL

MUSCLE, FAT, SKIN = LABEL["muscle"], LABEL["fat"], LABEL["skin"]


def core(g: Geometry, s: float) -> Shape:
    """The subfascial outline at ``s``: trunk, buttocks (with the natal cleft) and
    thighs."""
    w, a, p = g.core(s)
    cleft = window(s, -110.0, -5.0, 25.0)
    parts: list[Shape] = [Egg(0.0, 0.0, w, a, p - 22.0 * cleft, n=2.4)]
    lobes = window(s, -100.0, 30.0, 30.0)
    if lobes > 0:
        for side in SIDES:
            ru, rv = 0.38 * w, 38.0 * g.size * lobes
            parts.append(Ellipse(side * 0.36 * w, p - rv + 4.0, ru, rv))
    tu, tv, tr = g.thigh(s)
    if tr > 0:
        for side in SIDES:
            parts.append(Ellipse(side * tu, tv, tr, 0.95 * tr))
    return Union(parts, smooth=18.0)


def genitalia(g: Geometry, s: float) -> list[Shape]:
    """External genitalia below the pubis: scrotum and penis, or the labia."""
    if s > -40:
        return []
    if g.female:
        return [Ellipsoid3D((0.0, -60.0, -88.0), (18.0, 30.0, 22.0), np.eye(3), s)]
    # The scrotum hangs in front of the medial thighs; the penis lies on it.
    front = -g.core(s)[1] - g.fat_thickness(s)[0] * 0.5
    return [
        Ellipsoid3D((0.0, front - 8.0, -102.0), (34.0, 32.0, 38.0), np.eye(3), s),
        Capsule3D((0.0, front + 20.0, -66.0), (0.0, front - 20.0, -84.0), 14.0, 14.0, s),
    ]


def body(g: Geometry, s: float, wobble: tuple[list[float], list[float]], table: HalfPlane) -> Shape:
    """The skin surface at ``s``: core plus subcutaneous fat, flattened where the
    patient lies on the couch (``table``), with a patient-specific irregularity."""
    ant, lat, post = g.fat_thickness(s)
    outline: Shape = AngularOffset(core(g, s), 0.0, 0.0, ant, lat, post)
    outline = Wobble(outline, 0.0, 0.0, *wobble)
    extra = genitalia(g, s)
    if extra:
        outline = Union([outline, *extra], smooth=6.0)
    return Intersection(outline, table)


def body_layers(
    g: Geometry, s: float, wobble: tuple[list[float], list[float]], table: HalfPlane
) -> tuple[list[Layer], Shape, Shape]:
    """Fat-filled body and skin; also returns the body outline and the core."""
    outline = Cached(body(g, s, wobble, table))
    return [Layer(FAT, outline), Layer(SKIN, Shell(outline, 2.0))], outline.shape, core(g, s)


# -- muscles -----------------------------------------------------------------------------


def _polyline(
    s: float,
    table_s: list[float],
    pts: list[tuple[list[float], list[float]]],
    side: float,
    su: float = 1.0,
):
    return np.array(
        [(side * interp(s, table_s, us) * su, interp(s, table_s, vs)) for us, vs in pts]
    )


def muscles(g: Geometry, s: float, inner: Shape) -> list[Layer]:
    """All muscles at ``s``, clipped to the inside of the deep fascia."""
    mb, hx, pw = g.mb, g.hx, g.pw
    _, a, p = g.core(s)
    shapes: list[Shape] = []
    for side in SIDES:
        shapes += _hip_and_thigh(g, s, side)
        # Gluteus maximus: the bulk of the buttock, from sacrum and coccyx round to
        # the greater trochanter, inserting on the femur below.
        k = window(s, -100.0, 95.0, 20.0)
        if k > 0:
            gs = [-100, -60, -20, 20, 60, 95]
            pts = _polyline(
                s,
                gs,
                [
                    ([45, 24, 18, 26, 34, 44], [60, 80, 86, 88, 84, 80]),
                    ([90, 62, 60, 66, 76, 80], [70, 92, 94, 92, 86, 78]),
                    ([120, 110, 112, 112, 108, 100], [45, 60, 62, 62, 62, 60]),
                    ([hx + 50, hx + 52, hx + 56, hx + 48, 125, 112], [10, 10, 12, 20, 35, 48]),
                ],
                side,
                g.size,
            )
            pts[:, 1] *= p / 100.0
            radii = (
                np.array([12, 24, 22, 12])
                * mb
                * k
                * interp(s, gs, [0.6, 1.0, 1.05, 1.0, 0.7, 0.45])
            )
            shapes.append(Capsule(pts, radii))
        # Gluteus medius and minimus on the outer face of the iliac wing.
        k = window(s, -10.0, 152.0, 12.0)
        if k > 0:
            ms = [-10, 26, 60, 100, 140, 158]
            pts = _polyline(
                s,
                ms,
                [
                    ([hx + 30, 98, 100, 104, 108, 108], [22, 40, 50, 56, 60, 60]),
                    ([hx + 42, 118, 124, 130, 134, 126], [5, 12, 22, 28, 34, 42]),
                    ([hx + 36, 120, 130, 140, 140, 128], [-15, -22, -18, -4, 12, 30]),
                ],
                side,
                g.flare * pw,
            )
            shapes.append(
                Capsule(
                    pts, np.array([12, 15, 13]) * mb * k * interp(s, ms, [0.8, 1, 1, 0.9, 0.6, 0.3])
                )
            )
        # Iliacus in the iliac fossa, joining psoas into iliopsoas in front of the hip
        # and ending on the lesser trochanter.
        k = window(s, -62.0, 155.0, 10.0)
        if k > 0:
            js = [-60, -30, 0, 30, 60, 100, 140, 158]
            pts = _polyline(
                s,
                js,
                [
                    (
                        [hx + 22, hx + 4, hx - 14, 80, 86, 94, 100, 98],
                        [18, -22, -46, -42, -24, -8, 8, 28],
                    ),
                    (
                        [hx + 24, hx + 12, hx + 2, 96, 104, 112, 116, 110],
                        [18, -26, -50, -48, -40, -26, -8, 16],
                    ),
                ],
                side,
                pw * g.flare**0.5,
            )
            radii = np.array([1.0, 1.0]) * mb * k * interp(s, js, [8, 12, 15, 16, 14, 12, 8, 3])
            shapes.append(Capsule(pts, radii))
        # Psoas, beside the lumbar spine, down over the pelvic brim.
        k = window(s, 20.0, 400.0, 20.0)
        if k > 0:
            ps = [20, 60, 100, 140, 180]
            pu = side * interp(s, ps, [hx - 18, 62, 50, 40, 34]) * pw
            pv = interp(s, ps, [-42, -22, -2, 10, 14])
            shapes.append(
                Ellipse(
                    pu,
                    pv,
                    interp(s, ps, [12, 13, 15, 18, 20]) * mb * k,
                    interp(s, ps, [12, 13, 14, 16, 17]) * mb * k,
                )
            )
        # Obturator internus lining the side wall; its tendon leaves posteriorly.
        k = window(s, -48.0, 18.0, 8.0)
        if k > 0:
            shapes.append(
                Capsule(
                    [
                        (side * 42 * pw, -44),
                        (side * 46 * pw, -12),
                        (side * 48 * pw, 12),
                        (side * 50 * pw, 32),
                    ],
                    np.array([6.0, 9.5, 9.5, 7.0]) * mb * k,
                )
            )
            if -14 < s < 2:
                shapes.append(Capsule([(side * 52 * pw, 30), (side * (hx + 6), 36)], 4.0 * mb))
        # Obturator externus over the outside of the obturator foramen.
        k = window(s, -52.0, -20.0, 6.0)
        if k > 0:
            shapes.append(
                Capsule(
                    [(side * 38 * pw, -46), (side * 62 * pw, -30), (side * (hx - 8), 6)],
                    8.0 * mb * k,
                )
            )
        # Piriformis, from the front of the sacrum out through the greater sciatic notch.
        shapes.append(
            Capsule3D(
                (side * 26 * pw, 70.0, 78.0), (side * (hx + 28), 22.0, 18.0), 9.0 * mb, 6.0 * mb, s
            )
        )
        # Rectus abdominis just inside the anterior abdominal wall.
        k = window(s, -20.0, 400.0, 15.0)
        if k > 0:
            ra = 22.0 * g.size
            rb = interp(s, [-20, 40, 150], [3.0, 5.0, 7.5]) * mb * k
            shapes.append(Ellipse(side * (7.0 + ra), -a + 2.5 + rb, ra, rb))
        # Obliques and transversus: the anterolateral abdominal wall, reaching further
        # back the higher the section (it arises from the iliac crest).
        if s > 70:
            wall = Shell(Offset(inner, -1.0), 12.0 * mb)
            limit = interp(s, [70, 110, 150, 175], [-70, -40, -5, 40])
            shapes.append(
                Intersection(
                    Intersection(wall, HalfPlane(0.0, 1.0, limit)), HalfPlane(-side, 0.0, -40.0)
                )
            )
        # Erector spinae and multifidus behind the sacrum and lumbar spine.
        k = window(s, 45.0, 400.0, 20.0)
        if k > 0:
            es = [45, 100, 140, 180]
            back = sacrum_centre_v(s) if s < 125 else spine_centre_v(s) + 30
            shapes.append(
                Ellipse(
                    side * interp(s, es, [16, 24, 30, 32]),
                    back + interp(s, es, [18, 24, 36, 38]),
                    interp(s, es, [9, 16, 22, 24]) * mb * k,
                    interp(s, es, [5, 10, 15, 17]) * mb * k,
                )
            )
    # Levator ani: a sling round the rectum, widening upwards like a funnel.
    k = window(s, -62.0, -4.0, 6.0)
    thin: list[Shape] = []  # thin by nature, kept whatever their radius
    if k > 0:
        wide = interp(s, [-62, -4], [0.75, 1.45])
        back = interp(s, [-62, -30, -4], [58, 62, 64])
        thin.append(
            Capsule(
                [
                    (-26 * wide * pw, -36),
                    (-30 * wide * pw, 24),
                    (0.0, back),
                    (30 * wide * pw, 24),
                    (26 * wide * pw, -36),
                ],
                3.4 * mb * k,
            )
        )
    # External anal sphincter round the anal canal.
    k = window(s, -92.0, -48.0, 6.0)
    if k > 0:
        shapes.append(Ellipse(0.0, interp(s, [-92, -48], [42, 44]), 15.0 * k, 14.0 * k))
    limit = Offset(inner, -1.2)
    # A muscle fading out at the end of its range is dropped once thinner than a few
    # millimetres: a long hairline of muscle is never seen.
    kept = [sh for sh in shapes if not isinstance(sh, Capsule) or sh.radii.max() >= 4.0] + thin
    return [Layer(MUSCLE, Intersection(sh, limit)) for sh in kept] + thigh_septa(g, s)


def _hip_and_thigh(g: Geometry, s: float, side: float) -> list[Shape]:
    """Muscles round the hip and in the upper thigh (one side)."""
    if s > 100:
        return []
    mb, hx, pw = g.mb, g.hx, g.pw
    u = side
    out: list[Shape] = [
        # sartorius, tensor fasciae latae, rectus femoris from the anterior spines
        Capsule3D(
            (u * (hx + 30), -52.0, 95.0), (u * (hx - 18), -76.0, -160.0), 6.0 * mb, 7.0 * mb, s
        ),
        Capsule3D(
            (u * (hx + 40), -42.0, 90.0), (u * (hx + 56), -12.0, -100.0), 7.0 * mb, 8.0 * mb, s
        ),
        Capsule3D(
            (u * (hx + 8), -44.0, 40.0), (u * (hx + 14), -70.0, -160.0), 10.0 * mb, 14.0 * mb, s
        ),
        # pectineus and the adductors from the pubis
        Capsule3D((u * 32 * pw, -58.0, -20.0), (u * (hx - 8), -6.0, -80.0), 8.0 * mb, 10.0 * mb, s),
        Capsule3D(
            (u * 28 * pw, -42.0, -48.0), (u * (hx - 12), -6.0, -190.0), 12.0 * mb, 30.0 * mb, s
        ),
        # hamstrings from the ischial tuberosity
        Capsule3D(
            (u * 52 * pw, 48.0, -58.0), (u * (hx + 2), 46.0, -190.0), 12.0 * mb, 24.0 * mb, s
        ),
        # vasti round the femoral shaft
        Capsule3D(
            (u * (hx + 38), 6.0, -58.0), (u * (hx + 16), 0.0, -260.0), 24.0 * mb, 33.0 * mb, s
        ),
    ]
    if -64 < s < -34:  # quadratus femoris, tuberosity to trochanter
        out.append(Capsule([(u * 62 * pw, 40.0), (u * (hx + 30), 24.0)], 8.0 * mb))
    # Below the hip the thigh is mostly muscle: fill its fascial outline.
    k = window(s, -400.0, -42.0, 30.0)
    tu, tv, tr = g.thigh(s)
    if k > 0 and tr > 0:
        out.append(Ellipse(u * tu, tv, (tr - 2.0) * k, (0.95 * tr - 2.0) * k))
    return out


def thigh_septa(g: Geometry, s: float) -> list[Layer]:
    """Fat planes between the thigh's muscle groups (quadriceps, adductors,
    hamstrings): thin curved bands from the femur outwards; fat round the femoral
    vessels and the sciatic nerve."""
    k = window(s, -400.0, -48.0, 20.0)
    _, tv, tr = g.thigh(s)
    if k <= 0 or tr <= 0:
        return []
    out: list[Layer] = []
    for side in SIDES:
        # the femoral shaft centre at this height (see bones.femur)
        t = np.clip((s + 52.0 * g.bs) / (-208.0 * g.bs), 0.0, 1.0)
        fu = side * (g.hx + (36.0 - 40.0 * t) * g.bs)
        # (direction from the femur, bend, reach as a share of the thigh radius)
        for du, dv, bend, reach in (
            (-0.9, -0.45, 0.35, 0.85),
            (-0.5, 0.87, -0.3, 0.8),
            (0.75, 0.66, 0.3, 0.75),
        ):
            n = np.array([-dv, du])  # normal: the plane curves towards it
            pts = []
            for f in (0.0, 0.5, 1.0):
                r = 16.0 + f * (tr * reach - 16.0)
                off = bend * 14.0 * f * (1.0 - f) * 4.0
                pts.append((fu + side * (du * r + n[0] * off), tv + dv * r + n[1] * off))
            out.append(Layer(FAT, Capsule(pts, [0.4, 1.1 * k, 0.6 * k])))
        out.append(
            Layer(FAT, Ellipse(side * (g.hx - 10.0), -50.0 + 0.1 * (s + 60.0), 12.0 * k, 9.0 * k))
        )
        out.append(Layer(FAT, Ellipse(fu - side * 8.0, tv + 38.0, 5.0 * k, 4.0 * k)))
    return out
