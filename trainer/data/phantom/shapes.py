"""Signed distance functions for drawing anatomy, one axial section at a time.

Every shape lives in the phantom's anatomical frame: ``u`` in mm towards the patient's
left, ``v`` in mm towards posterior (both 0 at the femoral heads' centre line), and,
for the 3-D shapes, the craniocaudal coordinate ``s`` in mm (0 at the femoral head
centres, growing superiorly). A shape returns a signed distance in mm (negative
inside) on a grid of ``u, v`` points, and a bounding box so that the renderer only
evaluates it where it can be. A section of a 3-D shape is a 2-D shape with ``s``
fixed at construction.

Distances are exact for circles, capsules and 3-D capsules, and a first-order
approximation for ellipses and ellipsoids (good enough for soft edges one pixel wide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A bounding box ``(u_min, u_max, v_min, v_max)`` in mm, or ``None`` when empty.
Box = tuple[float, float, float, float] | None

_FAR = 1e6  # a distance that stands for "nowhere near"


class Shape:
    """Base class: a 2-D signed distance field with a bounding box."""

    def box(self) -> Box:
        raise NotImplementedError

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Signed distance in mm at points ``(u, v)`` (broadcast arrays, mm)."""
        raise NotImplementedError


def _union_box(boxes: Sequence[Box]) -> Box:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _grow(box: Box, d: float) -> Box:
    if box is None:
        return None
    return (box[0] - d, box[1] + d, box[2] - d, box[3] + d)


@dataclass
class Ellipse(Shape):
    """Ellipse centred at ``(cu, cv)`` with semi-axes ``ru, rv`` (mm), turned by
    ``angle_deg`` (counter-clockwise from the u axis)."""

    cu: float
    cv: float
    ru: float
    rv: float
    angle_deg: float = 0.0

    def box(self) -> Box:
        if self.ru <= 0 or self.rv <= 0:
            return None
        r = max(self.ru, self.rv)
        return (self.cu - r, self.cu + r, self.cv - r, self.cv + r)

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.cu, v - self.cv
        if self.angle_deg:
            a = np.deg2rad(self.angle_deg)
            c, s = np.cos(a), np.sin(a)
            du, dv = c * du + s * dv, -s * du + c * dv
        k0 = np.sqrt((du / self.ru) ** 2 + (dv / self.rv) ** 2)
        k1 = np.sqrt((du / self.ru**2) ** 2 + (dv / self.rv**2) ** 2)
        return _ellipse_distance(k0, k1, np.sqrt(du * du + dv * dv), self.ru, self.rv)


def _ellipse_distance(
    k0: np.ndarray, k1: np.ndarray, dist: np.ndarray, *radii: float
) -> np.ndarray:
    """Signed distance to an ellipse(oid) from ``k0 = |p / r|``, ``k1 = |p / r^2|`` and
    the distance to the centre.

    Near the outline the first-order estimate ``k0 (k0 - 1) / k1`` is accurate; far
    out it underestimates an elongated shape badly, so it is never allowed below the
    bound ``|p - c| - max(r)``. At the very centre it is ``-min(r)``.
    """
    near = k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
    d = np.maximum(near, dist - max(radii))
    return np.where(k1 > 1e-9, d, -min(radii))


def circle(cu: float, cv: float, r: float) -> Ellipse:
    return Ellipse(cu, cv, r, r)


@dataclass
class Capsule(Shape):
    """A polyline thickened by a radius that changes linearly along each segment.

    ``points`` is ``[n, 2]`` (u, v) in mm, ``radii`` ``[n]`` in mm; one point makes a
    circle."""

    points: np.ndarray
    radii: np.ndarray

    def __post_init__(self) -> None:
        self.points = np.atleast_2d(np.asarray(self.points, dtype=np.float64))
        self.radii = np.broadcast_to(
            np.asarray(self.radii, dtype=np.float64), (len(self.points),)
        ).copy()

    def box(self) -> Box:
        if self.radii.max() <= 0:
            return None
        r = self.radii.max()
        return (
            self.points[:, 0].min() - r,
            self.points[:, 0].max() + r,
            self.points[:, 1].min() - r,
            self.points[:, 1].max() + r,
        )

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        p, r = self.points, self.radii
        if len(p) == 1:
            return np.hypot(u - p[0, 0], v - p[0, 1]) - r[0]
        best = None
        for i in range(len(p) - 1):
            a, b = p[i], p[i + 1]
            ab = b - a
            length2 = float(ab @ ab) or 1e-9
            t = np.clip(((u - a[0]) * ab[0] + (v - a[1]) * ab[1]) / length2, 0.0, 1.0)
            d = np.hypot(u - a[0] - t * ab[0], v - a[1] - t * ab[1]) - (
                r[i] + t * (r[i + 1] - r[i])
            )
            best = d if best is None else np.minimum(best, d)
        return best


@dataclass
class Capsule3D(Shape):
    """Section at height ``s`` of a 3-D segment ``p0 -> p1`` (u, v, s in mm) thickened
    by radii ``r0 -> r1``; a sphere when ``p0 == p1``. Oblique segments cut as ellipses."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    r0: float
    r1: float
    s: float

    def __post_init__(self) -> None:
        a = np.asarray(self.p0, dtype=np.float64)
        b = np.asarray(self.p1, dtype=np.float64)
        self._a, self._ab = a, b - a
        self._len2 = float(self._ab @ self._ab)

    def box(self) -> Box:
        a, b, r = self._a, self._a + self._ab, max(self.r0, self.r1)
        if self.s < min(a[2], b[2]) - r or self.s > max(a[2], b[2]) + r:
            return None
        if self._len2 > 0 and abs(self._ab[2]) > 1e-6:
            # Only the part of the segment within r of this section can reach it.
            t0 = (self.s - r - a[2]) / self._ab[2]
            t1 = (self.s + r - a[2]) / self._ab[2]
            t0, t1 = np.clip(sorted((t0, t1)), 0.0, 1.0)
            ends = np.array([a + t0 * self._ab, a + t1 * self._ab])
        else:
            ends = np.array([a, b])
        return (
            ends[:, 0].min() - r,
            ends[:, 0].max() + r,
            ends[:, 1].min() - r,
            ends[:, 1].max() + r,
        )

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, ab = self._a, self._ab
        du, dv, ds = u - a[0], v - a[1], self.s - a[2]
        if self._len2 == 0:
            t = 0.0
        else:
            t = np.clip((du * ab[0] + dv * ab[1] + ds * ab[2]) / self._len2, 0.0, 1.0)
        dist = np.sqrt((du - t * ab[0]) ** 2 + (dv - t * ab[1]) ** 2 + (ds - t * ab[2]) ** 2)
        return dist - (self.r0 + t * (self.r1 - self.r0))


def sphere(center: tuple[float, float, float], r: float, s: float) -> Capsule3D:
    return Capsule3D(center, center, r, r, s)


@dataclass
class Ellipsoid3D(Shape):
    """Section at height ``s`` of an ellipsoid with semi-axes ``radii`` (mm) along the
    columns of the 3x3 rotation ``axes`` (in u, v, s), centred at ``center``."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    axes: np.ndarray
    s: float

    def __post_init__(self) -> None:
        self.axes = np.asarray(self.axes, dtype=np.float64)
        r = np.asarray(self.radii, dtype=np.float64)
        # Half-extent of the ellipsoid along each world axis (for the box and the
        # quick test whether this section cuts it at all).
        self._half = np.sqrt(((self.axes * r[None, :]) ** 2).sum(axis=1))

    def box(self) -> Box:
        c, h = self.center, self._half
        if abs(self.s - c[2]) >= h[2]:
            return None
        return (c[0] - h[0], c[0] + h[0], c[1] - h[1], c[1] + h[1])

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        c, r, m = self.center, self.radii, self.axes
        du, dv, ds = u - c[0], v - c[1], self.s - c[2]
        # Local coordinates: projections on the ellipsoid's axes.
        q = [du * m[0, i] + dv * m[1, i] + ds * m[2, i] for i in range(3)]
        k0 = np.sqrt(sum((q[i] / r[i]) ** 2 for i in range(3)))
        k1 = np.sqrt(sum((q[i] / r[i] ** 2) ** 2 for i in range(3)))
        return _ellipse_distance(k0, k1, np.sqrt(du * du + dv * dv + ds * ds), *r)


def rotation(about: str, degrees: float) -> np.ndarray:
    """3x3 rotation matrix about the u, v or s axis (right-handed)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = {"u": (1, 2), "v": (2, 0), "s": (0, 1)}[about]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@dataclass
class Union(Shape):
    """Union of shapes; ``smooth`` (mm) blends them with a rounded fillet."""

    shapes: Sequence[Shape]
    smooth: float = 0.0

    def __post_init__(self) -> None:
        self.shapes = [sh for sh in self.shapes if sh.box() is not None]

    def box(self) -> Box:
        return _union_box([sh.box() for sh in self.shapes])

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = None
        for sh in self.shapes:
            d = sh.sdf(u, v)
            if out is None:
                out = d
            elif self.smooth > 0:
                k = self.smooth
                h = np.clip(0.5 + 0.5 * (d - out) / k, 0.0, 1.0)
                out = d + (out - d) * h - k * h * (1.0 - h)
            else:
                out = np.minimum(out, d)
        if out is None:
            return np.full(np.broadcast(u, v).shape, _FAR)
        return out


@dataclass
class Difference(Shape):
    """``a`` with ``b`` cut out."""

    a: Shape
    b: Shape

    def box(self) -> Box:
        return self.a.box()

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        da = self.a.sdf(u, v)
        if self.b.box() is None:
            return da
        return np.maximum(da, -self.b.sdf(u, v))


@dataclass
class Intersection(Shape):
    """Points inside both ``a`` and ``b`` (the box is ``a``'s)."""

    a: Shape
    b: Shape

    def box(self) -> Box:
        return self.a.box() if self.b.box() is not None else None

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.maximum(self.a.sdf(u, v), self.b.sdf(u, v))


@dataclass
class HalfPlane(Shape):
    """Points with ``nu * u + nv * v <= c`` (``(nu, nv)`` a unit normal); no box of its
    own, so use it only inside an :class:`Intersection`."""

    nu: float
    nv: float
    c: float

    def box(self) -> Box:
        return (-_FAR, _FAR, -_FAR, _FAR)

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.nu * u + self.nv * v - self.c


@dataclass
class Offset(Shape):
    """``shape`` grown by ``d`` mm (shrunk when ``d`` is negative)."""

    shape: Shape
    d: float

    def box(self) -> Box:
        box = self.shape.box()
        if box is None or (self.d < 0 and min(box[1] - box[0], box[3] - box[2]) < -2 * self.d):
            return None
        return _grow(box, self.d)

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.shape.sdf(u, v) - self.d


@dataclass
class Shell(Shape):
    """The band of ``shape`` within ``thickness`` mm inside its boundary."""

    shape: Shape
    thickness: float

    def box(self) -> Box:
        return self.shape.box()

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        half = 0.5 * self.thickness
        return np.abs(self.shape.sdf(u, v) + half) - half


@dataclass
class Wobble(Shape):
    """``shape`` with its outline pushed in and out by ``amplitude_mm * f(angle)``,
    ``f`` a sum of cosines (harmonics 2, 3, ...) about ``(cu, cv)``: body outlines
    that are not perfect curves."""

    shape: Shape
    cu: float
    cv: float
    amplitudes_mm: Sequence[float]
    phases: Sequence[float]

    def box(self) -> Box:
        return _grow(self.shape.box(), float(np.sum(np.abs(self.amplitudes_mm))))

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        theta = np.arctan2(v - self.cv, u - self.cu)
        push = sum(
            a * np.cos((k + 2) * theta + ph)
            for k, (a, ph) in enumerate(zip(self.amplitudes_mm, self.phases, strict=True))
        )
        return self.shape.sdf(u, v) - push


@dataclass
class Egg(Shape):
    """Superellipse centred at ``(cu, cv)`` with half-width ``ru``, extent ``ra``
    towards anterior (``v < cv``) and ``rp`` towards posterior; exponent ``n`` (2 is
    an ellipse, larger is boxier): a body outline."""

    cu: float
    cv: float
    ru: float
    ra: float
    rp: float
    n: float = 2.4

    def box(self) -> Box:
        return (self.cu - self.ru, self.cu + self.ru, self.cv - self.ra, self.cv + self.rp)

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        n = self.n
        dv = v - self.cv
        rv = np.where(dv < 0, self.ra, self.rp)
        x = np.abs(u - self.cu) / self.ru + 1e-9
        y = np.abs(dv) / rv + 1e-9
        xn1, yn1 = x ** (n - 1), y ** (n - 1)
        g = xn1 * x + yn1 * y
        f = g ** (1.0 / n)
        # Divide the implicit function by its gradient's length: a distance near the
        # outline, which is all a soft edge needs.
        common = f / g
        grad = common * np.sqrt((xn1 / self.ru) ** 2 + (yn1 / rv) ** 2)
        near = (f - 1.0) / np.maximum(grad, 1e-9)
        # Far out the estimate falls short for a wide outline; |p - c| - max(r) bounds it.
        far = np.hypot(u - self.cu, dv) - max(self.ru, self.ra, self.rp)
        return np.maximum(near, far)


@dataclass
class AngularOffset(Shape):
    """``shape`` grown by a thickness that depends on direction from ``(cu, cv)``:
    ``anterior`` (towards -v), ``lateral`` and ``posterior`` mm, blended smoothly.
    Used for subcutaneous fat, which is not equally thick all round."""

    shape: Shape
    cu: float
    cv: float
    anterior: float
    lateral: float
    posterior: float

    def box(self) -> Box:
        return _grow(self.shape.box(), max(self.anterior, self.lateral, self.posterior))

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.cu, v - self.cv
        sin = dv / np.maximum(np.hypot(du, dv), 1e-6)
        front = np.maximum(-sin, 0.0) ** 2
        back = np.maximum(sin, 0.0) ** 2
        t = (
            self.lateral
            + (self.anterior - self.lateral) * front
            + (self.posterior - self.lateral) * back
        )
        return self.shape.sdf(u, v) - t


class Cached(Shape):
    """``shape`` remembering its last result, for a shape painted twice over the same
    pixels (the body, as fat and again as skin)."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self._key: tuple | None = None
        self._value: np.ndarray | None = None

    def box(self) -> Box:
        return self.shape.box()

    def sdf(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        key = (u.__array_interface__["data"][0], u.shape, v.__array_interface__["data"][0])
        if key != self._key:
            self._key, self._value = key, self.shape.sdf(u, v)
        return self._value  # type: ignore[return-value]


@dataclass
class Layer:
    """One paint stroke of a section: tissue ``label`` wherever ``shape`` is inside
    (partly, at its soft edge), over whatever was painted before. A ``rigid`` layer
    (the couch) belongs to the scanner and is not bent with the anatomy."""

    label: int
    shape: Shape
    rigid: bool = False
