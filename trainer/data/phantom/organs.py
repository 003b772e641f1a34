"""Pelvic organs, bowel and vessels, section by section.

Bladder (filling varies), rectum and anal canal (wall, stool, gas), sigmoid and
small-bowel loops (3-D tubes drawn once per patient), iliac and femoral vessels,
small vessels in fat and lymph nodes; in men the prostate with its zones, seminal
vesicles, penile bulb and testes; in women the uterus (endometrium, junctional zone,
myometrium), cervix, vagina and ovaries.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from trainer.data.phantom.bones import SIDES, sacrum_centre_v
from trainer.data.phantom.geometry import Geometry, interp
from trainer.data.phantom.patient import PatientParams
from trainer.data.phantom.shapes import (
    Capsule3D,
    Ellipse,
    Ellipsoid3D,
    HalfPlane,
    Intersection,
    Layer,
    Offset,
    Shell,
    rotation,
)
from trainer.data.phantom.tissues import LABEL

L = LABEL


# -- bladder ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bladder:
    """An ellipsoidal bladder resting on the pelvic floor behind the pubis."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    wall_mm: float

    @classmethod
    def of(cls, p: PatientParams, g: Geometry) -> Bladder:
        ml = p.bladder_ml
        # An empty bladder is flat, a full one nearly round (lateral : AP : height).
        flat = interp(ml, [40, 400], [0.55, 0.92])
        b = (3000.0 * ml / (4.0 * math.pi * 1.2 * flat)) ** (1.0 / 3.0)
        radii = (1.2 * b, b, flat * b)
        base = 4.0 if not g.female else -8.0
        center = (p.bladder_shift_mm, -44.0 + 0.25 * b, base + 0.92 * radii[2])
        return cls(center, radii, interp(ml, [40, 150, 400], [7.0, 4.5, 3.0]))

    @property
    def top(self) -> float:
        return self.center[2] + self.radii[2]

    def layers(self, s: float) -> list[Layer]:
        outer = Ellipsoid3D(self.center, self.radii, rotation("u", -12.0), s)
        return [Layer(L["bladder_wall"], outer), Layer(L["urine"], Offset(outer, -self.wall_mm))]


# -- male ------------------------------------------------------------------------------


def male_organs(p: PatientParams, g: Geometry, s: float) -> list[Layer]:
    """Prostate (peripheral and transition zones, anterior stroma, capsule), seminal
    vesicles, penile bulb and crura, testes."""
    out: list[Layer] = []
    k = (p.prostate_ml / 30.0) ** (1.0 / 3.0)
    c = (0.0, 4.0, -12.0)
    r = (24.0 * k, 17.0 * k, 19.0 * k)
    if abs(s - c[2]) < r[2]:
        gland = Ellipsoid3D(c, r, np.eye(3), s)
        tz = interp(p.prostate_ml, [20, 80], [0.55, 0.8])  # benign enlargement is transitional
        out += [
            Layer(L["prostate_pz"], gland),
            Layer(
                L["prostate_tz"],
                Ellipsoid3D(
                    (0.0, -4.0 * k, c[2] + 3.0), (r[0] * tz, r[1] * tz, r[2] * tz), np.eye(3), s
                ),
            ),
            Layer(L["prostate_stroma"], Ellipse(0.0, -r[1] * 0.8, r[0] * 0.55, r[1] * 0.28)),
            Layer(L["prostate_stroma"], Shell(gland, 1.2)),
        ]
        if s > c[2] + 0.3 * r[2]:  # central zone round the ejaculatory ducts at the base
            out.append(
                Layer(L["prostate_stroma"], Ellipse(0.0, 0.45 * r[1], 0.4 * r[0], 0.3 * r[1]))
            )
    for side in SIDES:
        sv = Ellipsoid3D(
            (side * 22.0, 24.0 * k**0.5, c[2] + r[2] + 6.0),
            (21.0, 7.0, 8.0),
            rotation("s", side * 18.0),
            s,
        )
        out.append(Layer(L["seminal_vesicle"], sv))
        out.append(
            Layer(
                L["penile_bulb"],
                Capsule3D((side * 26.0, -12.0, -50.0), (side * 6.0, -62.0, -84.0), 6.5, 7.5, s),
            )
        )
        front = -g.core(-102.0)[1] - g.fat_thickness(-102.0)[0] * 0.5 - 8.0  # scrotum centre
        out.append(
            Layer(
                L["testis"],
                Ellipsoid3D((side * 16.0, front, -104.0), (14.0, 13.0, 20.0), np.eye(3), s),
            )
        )
        # spermatic cord, from the testis up over the pubis to the inguinal ring
        out.append(
            Layer(
                L["blood_vessel"],
                Capsule3D(
                    (side * 16.0, front - 6.0, -84.0), (side * 42.0, -84.0, 12.0), 4.0, 4.0, s
                ),
            )
        )
    out.append(
        Layer(L["penile_bulb"], Ellipsoid3D((0.0, 4.0, -64.0), (14.0, 12.0, 17.0), np.eye(3), s))
    )
    return out


# -- female ----------------------------------------------------------------------------


def female_organs(p: PatientParams, g: Geometry, bladder: Bladder, s: float) -> list[Layer]:
    """Uterus (myometrium, junctional zone, endometrium), cervix with its canal,
    vagina, urethra and ovaries. The uterine body is anteverted over the bladder; a
    full bladder tips it back."""
    out: list[Layer] = []
    k = p.uterus_scale
    us = p.uterus_shift_mm
    cervix_lo, cervix_hi = (us * 0.3, 30.0, -14.0), (us * 0.6, 16.0, 20.0)
    out.append(
        Layer(
            L["cervical_stroma"], Capsule3D(cervix_lo, cervix_hi, 13.0 * k**0.5, 14.0 * k**0.5, s)
        )
    )
    out.append(Layer(L["endometrium"], Capsule3D(cervix_lo, cervix_hi, 2.5, 2.5, s)))
    tilt = math.radians(np.clip(p.uterus_tilt_deg - 0.05 * (p.bladder_ml - 150.0), 10.0, 85.0))
    axis = np.array([us / 300.0, -math.sin(tilt), math.cos(tilt)])
    axis /= np.linalg.norm(axis)
    length = 36.0 * k
    center = np.array(cervix_hi) + axis * (length * 0.9)
    # Local frame: long axis along `axis`, the second axis lateral, the third AP.
    lateral = np.array([1.0, 0.0, 0.0])
    ap = np.cross(axis, lateral)
    frame = np.stack([lateral, ap, axis], axis=1)
    radii = (27.0 * k, 19.0 * k, length)
    body = Ellipsoid3D(tuple(center), radii, frame, s)
    if body.box() is not None:
        endo_half = interp(p.age, [45, 52, 60], [4.0, 2.5, 1.6])
        out += [
            Layer(L["myometrium"], body),
            Layer(
                L["junctional_zone"],
                Ellipsoid3D(
                    tuple(center), (0.55 * radii[0], 0.5 * radii[1], 0.8 * length), frame, s
                ),
            ),
            Layer(
                L["endometrium"],
                Ellipsoid3D(tuple(center), (0.4 * radii[0], endo_half, 0.7 * length), frame, s),
            ),
        ]
    # Vagina: a flattened tube from the cervix down and forward to the introitus.
    vag_axis = np.array([0.0, 25.0, 56.0]) / math.hypot(25.0, 56.0)
    vframe = np.stack(
        [np.array([1.0, 0.0, 0.0]), np.cross(vag_axis, [1.0, 0.0, 0.0]), vag_axis], axis=1
    )
    out.append(Layer(L["vagina"], Ellipsoid3D((0.0, 16.0, -44.0), (16.0, 6.5, 32.0), vframe, s)))
    out.append(
        Layer(L["bladder_wall"], Capsule3D((0.0, -20.0, -66.0), (0.0, -28.0, -14.0), 4.0, 4.5, s))
    )
    for side in SIDES:
        size = interp(p.age, [45, 55, 70], [1.0, 0.8, 0.65])
        ov = Ellipsoid3D(
            (side * 52.0 * g.pw, 22.0, 36.0), (13.0 * size, 9.0 * size, 11.0 * size), np.eye(3), s
        )
        out.append(Layer(L["ovary"], ov))
    return out


# -- rectum, anal canal ----------------------------------------------------------------


def rectum(p: PatientParams, g: Geometry, s: float) -> list[Layer]:
    """Anal canal and rectum: wall, stool and (anterior, non-dependent) gas.

    The rectum follows the sacral curve and fills the room between the organs in
    front and the sacrum behind; its radius is the patient's, squeezed where that
    room is short."""
    if s < -92 or s > 72:
        return []
    if s < -48:  # anal canal: collapsed, mucosa round a slit
        v = interp(s, [-92, -48], [42, 44])
        return [
            Layer(L["bowel_wall"], Ellipse(0.0, v, 8.0, 7.0)),
            Layer(L["stool"], Ellipse(0.0, v, 2.0, 1.5)),
        ]
    front = interp(
        s,
        [-48, -35, 0, 20, 40, 72],
        [8, 17, 19, 28, 30, 30] if not g.female else [8, 20, 26, 30, 30, 30],
    )
    back = (sacrum_centre_v(s) - interp(s, [-28, 15, 125], [5.5, 7, 15])) if s > -28 else 72.0
    back -= 4.0
    room = max(back - front, 10.0)
    shape = interp(s, [-48, -30, 0, 35, 60, 72], [0.4, 0.65, 0.9, 1.0, 0.8, 0.7])
    r = min(p.rectum_radius_mm * shape, 0.5 * room)
    v = front + 0.5 * room
    u = interp(s, [30, 72], [0.0, 12.0])  # drifts left towards the sigmoid
    wall = Ellipse(u, v, r * 1.1, r)
    lumen = Offset(wall, -3.0)
    out = [Layer(L["bowel_wall"], wall), Layer(L["stool"], lumen)]
    if p.rectal_gas > 0.05 and r > 8:
        level = v - r + 2.0 * r * p.rectal_gas
        out.append(Layer(L["bowel_gas"], Intersection(lumen, HalfPlane(0.0, 1.0, level))))
    return out


# -- bowel loops -----------------------------------------------------------------------


@dataclass(frozen=True)
class Tube:
    """A bowel loop: a 3-D polyline ``points [n, 3]`` (u, v, s mm) of one radius,
    with a wall and a content label (and optionally gas in its anterior part)."""

    points: np.ndarray
    radius: float
    wall_mm: float
    content: int
    gas: float

    def layers(self, s: float) -> list[Layer]:
        walls: list[Layer] = []
        contents: list[Layer] = []
        gas: list[Layer] = []
        pts = self.points
        near = np.nonzero(np.abs(pts[:, 2] - s) < self.radius + 20.0)[0]
        done: set[int] = set()
        for i in near:
            for j in (i - 1, i):
                if j < 0 or j + 1 >= len(pts) or j in done:
                    continue
                done.add(j)
                seg = Capsule3D(tuple(pts[j]), tuple(pts[j + 1]), self.radius, self.radius, s)
                if seg.box() is None:
                    continue
                # Walls first, then contents: a joint between segments must not
                # show a wall across the lumen.
                walls.append(Layer(L["bowel_wall"], seg))
                lumen = Offset(seg, -self.wall_mm)
                contents.append(Layer(self.content, lumen))
                if self.gas > 0:
                    v = (pts[j, 1] + pts[j + 1, 1]) / 2.0
                    level = v - self.radius + 2.0 * self.radius * self.gas
                    gas.append(
                        Layer(L["bowel_gas"], Intersection(lumen, HalfPlane(0.0, 1.0, level)))
                    )
        return walls + contents + gas


def make_bowel(p: PatientParams, g: Geometry, bladder: Bladder) -> list[Tube]:
    """Sigmoid colon and small-bowel loops: smooth random walks in 3-D, kept inside
    the peritoneal cavity above the bladder and in front of the sacrum and psoas, so
    that loops cross a section at every angle (round and oval cuts)."""
    rng = p.rng("bowel")
    low = max(bladder.top - 8.0, 30.0)
    top = 260.0

    def clamp(q: np.ndarray) -> np.ndarray:
        """Pull a point into the cavity: an ellipse in its section, above ``low``."""
        q = q.copy()
        q[2] = min(max(q[2], low), top)
        w, a, _ = g.core(float(q[2]))
        cu, cv, ru, rv = 0.0, -0.25 * a, 0.55 * w, 0.52 * a
        du, dv = (q[0] - cu) / ru, (q[1] - cv) / rv
        k = math.hypot(du, dv)
        if k > 1.0:
            q[0], q[1] = cu + du / k * ru, cv + dv / k * rv
        return q

    def walk(start: np.ndarray, steps: int, step_mm: float, drift: np.ndarray) -> np.ndarray:
        pts = [clamp(start)]
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        for _ in range(steps):
            d = d + 0.55 * rng.normal(size=3) + drift
            d /= np.linalg.norm(d)
            nxt = clamp(pts[-1] + step_mm * d)
            d = (nxt - pts[-1]) / max(np.linalg.norm(nxt - pts[-1]), 1e-6)  # bounce off walls
            pts.append(nxt)
        return np.array(pts)

    tubes: list[Tube] = []
    # Sigmoid: from the rectosigmoid junction up to the left and forward.
    sig = walk(np.array([12.0, 45.0, 70.0]), 26, 9.0, np.array([0.25, -0.25, 0.15]))
    tubes.append(Tube(sig, rng.uniform(14, 18), 2.5, L["stool"], 0.5 * p.bowel_gas))
    # Small-bowel loops, more where there is less visceral fat to push them apart.
    for _ in range(int(rng.integers(6, 10))):
        start = np.array([rng.uniform(-70, 70), rng.uniform(-80, 10), rng.uniform(low, top)])
        pts = walk(start, int(rng.integers(14, 30)), 8.0, np.zeros(3))
        gas = rng.uniform(0.25, 0.6) if rng.random() < p.bowel_gas else 0.0
        content = L["bowel_fluid"] if rng.random() < 0.65 else L["stool"]
        tubes.append(Tube(pts, rng.uniform(9, 13), 2.0, content, gas))
    return tubes


@dataclass(frozen=True)
class Strand:
    """A thin solid 3-D polyline (small vessel) or a lymph node (one point)."""

    points: np.ndarray
    radius: float
    label: int

    def layers(self, s: float) -> list[Layer]:
        pts = self.points
        if len(pts) == 1:
            node = Ellipsoid3D(
                tuple(pts[0]), (self.radius, 0.75 * self.radius, 1.3 * self.radius), np.eye(3), s
            )
            return [Layer(self.label, node)] if node.box() is not None else []
        out = []
        for j in np.nonzero(np.abs(pts[:-1, 2] - s) < 12.0)[0]:
            seg = Capsule3D(tuple(pts[j]), tuple(pts[j + 1]), self.radius, self.radius, s)
            if seg.box() is not None:
                out.append(Layer(self.label, seg))
        return out


def make_small_vessels(p: PatientParams, g: Geometry) -> list[Strand]:
    """Small vessels in the pelvic and subcutaneous fat, and lymph nodes along the
    iliac vessels: the dots every real image shows in fat (painted before muscles and
    organs, so they stay in fat)."""
    rng = p.rng("small vessels")
    strands: list[Strand] = []
    for i in range(40):
        if i < 24:  # pelvic fat: perirectal, perivesical, side walls
            q = np.array([rng.uniform(-55, 55) * g.pw, rng.uniform(-45, 65), rng.uniform(-70, 120)])
            spread = np.array([1.0, 1.0, 0.8])
        else:  # subcutaneous veins, running mostly along the body
            s0 = rng.uniform(-110, 160)
            w, a, back = g.core(s0)
            ant, lat, post = g.fat_thickness(s0)
            t = rng.uniform(0, 2 * np.pi)
            ru, rv = w + 0.5 * lat, (a + 0.5 * ant) if np.sin(t) < 0 else (back + 0.5 * post)
            q = np.array([ru * np.cos(t), rv * np.sin(t), s0])
            spread = np.array([0.25, 0.25, 1.0])
        d = rng.normal(size=3) * spread
        pts = [q]
        for _ in range(int(rng.integers(6, 14))):
            d = d / max(np.linalg.norm(d), 1e-6) + 0.4 * rng.normal(size=3) * spread
            d /= max(np.linalg.norm(d), 1e-6)
            pts.append(pts[-1] + 7.0 * d)
        strands.append(Strand(np.array(pts), float(rng.uniform(0.9, 2.2)), L["blood_vessel"]))
    for side in SIDES:  # nodes beside the external and internal iliac vessels
        for _ in range(int(rng.integers(2, 5))):
            s0 = rng.uniform(20, 120)
            u = interp(s0, [20, 70, 120], [58, 50, 36]) * g.pw + rng.uniform(-6, 6)
            v = interp(s0, [20, 70, 120], [-30, -8, 4]) + rng.uniform(4, 14)
            strands.append(
                Strand(np.array([[side * u, v, s0]]), float(rng.uniform(3.0, 5.5)), L["lymph_node"])
            )
    return strands


# -- vessels ---------------------------------------------------------------------------

# Left-side paths (u, v, s); the right side mirrors them. Arteries, then veins.
_ARTERIES = [
    (
        [
            (4, -10, 190),
            (30, -6, 130),
            (46, -18, 90),
            (58, -36, 45),
            (-12, -55, 10),
            (-8, -60, -30),
            (-6, -52, -100),
            (-10, -38, -220),
        ],
        4.5,
    ),
    ([(30, -6, 130), (42, 18, 100), (50, 40, 66)], 3.5),
]
_VEINS = [
    (
        [
            (10, 6, 190),
            (24, 4, 130),
            (38, -10, 90),
            (50, -28, 45),
            (-22, -50, 10),
            (-18, -54, -30),
            (-14, -46, -100),
            (-16, -32, -220),
        ],
        6.5,
    ),
    ([(24, 6, 130), (38, 28, 100), (46, 46, 66)], 5.0),
]


def vessels(g: Geometry, s: float) -> list[Layer]:
    """Common, external and internal iliac and femoral arteries and veins. A negative
    ``u`` in the tables means "measured from the femoral head", where the vessels
    lie medial to it in the groin."""
    out: list[Layer] = []
    for paths in (_VEINS, _ARTERIES):
        for pts, r in paths:
            for side in SIDES:
                xyz = [(side * (g.hx + u if u < 0 else u * g.pw), v, z) for u, v, z in pts]
                for a, b in itertools.pairwise(xyz):
                    seg = Capsule3D(a, b, r, r, s)
                    if seg.box() is not None:
                        out.append(Layer(L["blood_vessel"], seg))
    return out


def organs(
    p: PatientParams, g: Geometry, bladder: Bladder, bowel: list[Tube], s: float
) -> list[Layer]:
    """Every organ, loop and vessel in the section at ``s`` (painting order)."""
    layers: list[Layer] = []
    for tube in bowel:
        layers += tube.layers(s)
    layers += vessels(g, s)
    layers += rectum(p, g, s)
    layers += bladder.layers(s)
    layers += female_organs(p, g, bladder, s) if g.female else male_organs(p, g, s)
    return layers
