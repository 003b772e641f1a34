"""Paint the layers of a section onto a pixel grid, with soft (partial-volume) edges.

Each layer covers a pixel by ``alpha = clip(0.5 - d / pixel, 0, 1)`` where ``d`` is
the signed distance (mm) from the pixel centre to the layer's outline: a pixel the
outline crosses gets the share of it that lies inside, as a finer grid averaged down
would give. CT and MR values are blended by that share (painter's order); the label
is the layer's where it covers at least half the pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainer.data.phantom.shapes import Layer


@dataclass(frozen=True)
class Grid:
    """The image grid of a study.

    Attributes:
        size: pixels per row and column.
        fov_mm: in-plane field of view (square).
        slices: number of axial slices.
        slice_mm: slice spacing (= thickness).
    """

    size: int
    fov_mm: float
    slices: int
    slice_mm: float

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.size

    def centres_mm(self) -> np.ndarray:
        """``[size]`` pixel-centre coordinates (mm) along a row or column, 0 at the
        middle of the field of view."""
        return ((np.arange(self.size) - (self.size - 1) / 2.0) * self.pixel_mm).astype(np.float32)


@dataclass(frozen=True)
class Warp:
    """A smooth random displacement of the anatomy (mm), a sum of plane waves in
    (u, v, s): it bends every straight line and perfect curve of the drawing a little,
    as no body is made of ellipses. ``waves`` rows are ``(ku, kv, ks, phase, amp_u,
    amp_v)`` with wave numbers in radians per mm."""

    waves: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude_mm: float = 1.8, n: int = 5) -> Warp:
        wavelength = rng.uniform(70.0, 180.0, n)
        direction = rng.normal(size=(n, 3))
        direction[:, 2] *= 0.6  # the body changes more slowly along its length
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        k = direction * (2 * np.pi / wavelength)[:, None]
        amp = rng.normal(0.0, amplitude_mm / np.sqrt(n / 2), (n, 2))
        return cls(np.column_stack([k, rng.uniform(0, 2 * np.pi, n), amp]))

    @property
    def max_mm(self) -> float:
        return float(np.abs(self.waves[:, 4:]).sum(axis=0).max()) if len(self.waves) else 0.0

    def displace(
        self, u: np.ndarray, v: np.ndarray, s: float, weight: np.ndarray | float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Displaced coordinates; ``weight`` (0..1 per pixel) scales the displacement."""
        du = np.zeros_like(u)
        dv = np.zeros_like(v)
        for ku, kv, ks, phase, au, av in self.waves:
            wave = np.sin(ku * u + kv * v + (ks * s + phase))
            du += au * wave
            dv += av * wave
        return u + du * weight, v + dv * weight

    def displace_grid(
        self, x: np.ndarray, y: np.ndarray, yaw: float, s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The displacement ``(du, dv)`` on the grid of image columns ``x`` and rows
        ``y`` (1-D, mm from the patient's centre), for a patient turned by ``yaw``:
        the same as :meth:`displace`, from 1-D sines and cosines (each wave is
        separable in x and y), which is many times cheaper than a 2-D sine."""
        c, sn = np.cos(yaw), np.sin(yaw)
        du = np.zeros((len(y), len(x)), np.float32)
        dv = np.zeros_like(du)
        for ku, kv, ks, phase, au, av in self.waves:
            # ku u + kv v with u = c x + s y, v = -s x + c y
            px = (ku * c - kv * sn) * x
            py = (ku * sn + kv * c) * y + (ks * s + phase)
            wave = np.outer(np.cos(py), np.sin(px)) + np.outer(np.sin(py), np.cos(px))
            du += au * wave
            dv += av * wave
        return du, dv


class SectionPainter:
    """Paints sections of one patient on one grid.

    Args:
        grid: the image grid.
        pose: ``(yaw_rad, shift_x_mm, shift_y_mm)`` of the patient in the image.
        ct_values, mr_values: value of each label (HU, relative T2 signal).
        warp: smooth displacement of the anatomy, or ``None``.
        still_y_mm: image ``y`` of the couch top: the warp fades out over the last
            5 cm before it, so that the body lies flat on the flat couch.
    """

    def __init__(
        self,
        grid: Grid,
        pose: tuple[float, float, float],
        ct_values: np.ndarray,
        mr_values: np.ndarray,
        warp: Warp | None = None,
        still_y_mm: float | None = None,
    ) -> None:
        self.grid = grid
        self.pose = pose
        self.ct_values = ct_values
        self.mr_values = mr_values
        self.warp = warp
        yaw, tx, ty = pose
        c, s = math.cos(yaw), math.sin(yaw)
        x = grid.centres_mm()
        self._dx, self._dy = (x - tx).astype(np.float32), (x - ty).astype(np.float32)
        dx, dy = self._dx[None, :], self._dy[:, None]
        # Anatomical coordinates of every pixel, computed once; a layer uses a view.
        self.u = (c * dx + s * dy).astype(np.float32)
        self.v = (-s * dx + c * dy).astype(np.float32)
        self._inv_px = 1.0 / grid.pixel_mm
        self._warp_weight: np.ndarray | float = 1.0
        if still_y_mm is not None:
            self._warp_weight = np.clip((still_y_mm - x[:, None]) / 50.0, 0.0, 1.0).astype(
                np.float32
            )

    def _pixel_box(
        self, box: tuple[float, float, float, float], margin_mm: float
    ) -> tuple[int, int, int, int] | None:
        """Row and column range ``(r0, r1, c0, c1)`` covering an anatomical box grown
        by ``margin_mm``."""
        box = (box[0] - margin_mm, box[1] + margin_mm, box[2] - margin_mm, box[3] + margin_mm)
        yaw, tx, ty = self.pose
        c, s = math.cos(yaw), math.sin(yaw)
        us = (box[0], box[1], box[0], box[1])
        vs = (box[2], box[2], box[3], box[3])
        xs = [c * u - s * v + tx for u, v in zip(us, vs, strict=True)]
        ys = [s * u + c * v + ty for u, v in zip(us, vs, strict=True)]
        n, px = self.grid.size, self.grid.pixel_mm
        half = (n - 1) / 2.0
        c0 = max(math.floor(min(xs) / px + half) - 1, 0)
        c1 = min(math.ceil(max(xs) / px + half) + 2, n)
        r0 = max(math.floor(min(ys) / px + half) - 1, 0)
        r1 = min(math.ceil(max(ys) / px + half) + 2, n)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def paint(
        self, layers: list[Layer], s: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Paint ``layers`` (the section at height ``s``) in order over air.

        Returns:
            ``(ct, mr, labels)``: ``[size, size]`` float32 HU, float32 relative T2,
            uint8 tissue labels.
        """
        n = self.grid.size
        ct = np.full((n, n), self.ct_values[0], dtype=np.float32)
        mr = np.full((n, n), self.mr_values[0], dtype=np.float32)
        labels = np.zeros((n, n), dtype=np.uint8)
        u, v, margin = self.u, self.v, 0.0
        if self.warp is not None:
            du, dv = self.warp.displace_grid(self._dx, self._dy, self.pose[0], s)
            u, v = u + du * self._warp_weight, v + dv * self._warp_weight
            margin = self.warp.max_mm
        for layer in layers:
            box = layer.shape.box()
            if box is None:
                continue
            pix = self._pixel_box(box, margin)
            if pix is None:
                continue
            r0, r1, c0, c1 = pix
            if layer.rigid:  # fixed to the scanner: not warped
                d = layer.shape.sdf(self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1])
            else:
                d = layer.shape.sdf(u[r0:r1, c0:c1], v[r0:r1, c0:c1])
            alpha = 0.5 - d * self._inv_px
            np.clip(alpha, 0.0, 1.0, out=alpha)
            cover = alpha >= 0.5
            if not cover.any() and not alpha.any():
                continue
            for image, values in ((ct, self.ct_values), (mr, self.mr_values)):
                sub = image[r0:r1, c0:c1]
                sub += alpha * (values[layer.label] - sub)
            labels[r0:r1, c0:c1][cover] = layer.label
        return ct, mr, labels
