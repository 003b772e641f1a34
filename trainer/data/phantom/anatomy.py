"""One phantom patient's anatomy: the ordered paint strokes of any axial section.

:class:`Anatomy` gathers what is drawn once per patient (body irregularity, couch
height, bladder, bowel loops) and lists, for a craniocaudal position ``s`` (mm from
the femoral head centres), the layers to paint in order: body and fat, muscles,
bowel, vessels and organs, bones, couch. Later layers cover earlier ones.
"""

from __future__ import annotations

import math

import numpy as np

from trainer.data.phantom.bones import skeleton
from trainer.data.phantom.geometry import Geometry
from trainer.data.phantom.organs import Bladder, make_bowel, make_small_vessels, organs
from trainer.data.phantom.patient import PatientParams
from trainer.data.phantom.shapes import Capsule, HalfPlane, Intersection, Layer, Offset, Shell
from trainer.data.phantom.soft_tissue import body, body_layers, muscles
from trainer.data.phantom.tissues import LABEL

#: Craniocaudal range (mm from the femoral head centres) searched for the lowest
#: point of the body, which rests on the couch.
_BODY_S = np.linspace(-110.0, 170.0, 15)

#: Thickness of the CT couch top (mm).
COUCH_MM = 50.0


class Anatomy:
    """Everything needed to draw sections of one patient.

    Args:
        params: the patient.

    Attributes:
        pose: ``(yaw_rad, shift_x_mm, shift_y_mm)``: anatomical ``(u, v)`` maps to
            image ``(x, y) = R(yaw) (u, v) + shift``. The body and the couch under it
            are centred vertically in the image (as a radiographer sets the table
            height), then moved by the patient's own offsets.
        couch_y_mm: image ``y`` of the couch top (posterior edge of the body).
        fov_mm: in-plane field of view: the patient's, widened when body and couch
            need more room.
    """

    def __init__(self, params: PatientParams) -> None:
        self.params = params
        self.geometry = g = Geometry.of(params)
        rng = params.rng("outline")
        self.wobble = (list(rng.normal(0.0, 2.0, 4) * g.size), list(rng.uniform(0.0, 2 * np.pi, 4)))
        self.bladder = Bladder.of(params, g)
        self.bowel = make_bowel(params, g, self.bladder)
        self.small_vessels = make_small_vessels(params, g)
        yaw = math.radians(params.yaw_deg)
        top, bottom = self._vertical_extent(yaw)
        bottom -= 3.0  # flattened a little on the couch
        couch_bottom = bottom + COUCH_MM
        ty = params.shift_v_mm - 0.5 * (top + couch_bottom)
        self.pose = (yaw, params.shift_u_mm, ty)
        self.couch_y_mm = bottom + ty
        span = couch_bottom - top + 2.0 * abs(params.shift_v_mm)
        self.fov_mm = max(params.fov_mm, math.ceil(1.06 * span / 10.0) * 10.0)

    def image_half_plane(self, y_max_mm: float) -> HalfPlane:
        """Points with image ``y <= y_max_mm``, in anatomical coordinates."""
        yaw, _, ty = self.pose
        return HalfPlane(math.sin(yaw), math.cos(yaw), y_max_mm - ty)

    def _vertical_extent(self, yaw: float) -> tuple[float, float]:
        """Smallest and largest ``sin(yaw) u + cos(yaw) v`` (image ``y`` before the
        vertical shift) of the unflattened body: its most anterior and posterior
        points."""
        u, v = np.meshgrid(np.arange(-270.0, 270.0, 5.0), np.arange(-280.0, 300.0, 2.5))
        top, bottom = 0.0, 0.0
        nowhere = HalfPlane(0.0, 0.0, 1.0)  # sdf = -1 everywhere: no clipping
        for s in _BODY_S:
            inside = body(self.geometry, float(s), self.wobble, nowhere).sdf(u, v) < 0
            if inside.any():
                y = math.sin(yaw) * u[inside] + math.cos(yaw) * v[inside]
                top, bottom = min(top, float(y.min())), max(bottom, float(y.max()))
        return top, bottom

    def couch(self) -> list[Layer]:
        """The CT couch top under the patient: a 5 cm foam core in carbon-fibre shells,
        level in the image whatever the patient's rotation (invisible on MR)."""
        yaw, tx, ty = self.pose
        c, s = math.cos(yaw), math.sin(yaw)

        def to_anatomy(x: float, y: float) -> tuple[float, float]:
            dx, dy = x - tx, y - ty
            return (c * dx + s * dy, -s * dx + c * dy)

        half = 0.5 * COUCH_MM - 1.0
        mid = self.couch_y_mm + half + 1.0
        core = Capsule([to_anatomy(-215.0, mid), to_anatomy(215.0, mid)], half)
        return [
            Layer(LABEL["couch_foam"], core, rigid=True),
            Layer(LABEL["couch"], Shell(core, 2.5), rigid=True),
        ]

    def section(self, s: float) -> list[Layer]:
        """The layers of the axial section ``s`` mm above the femoral head centres,
        in painting order."""
        g = self.geometry
        table = self.image_half_plane(self.couch_y_mm)
        layers, outline, inner = body_layers(g, s, self.wobble, table)
        under_skin = Offset(outline, -3.0)
        for strand in self.small_vessels:
            layers += [Layer(x.label, Intersection(x.shape, under_skin)) for x in strand.layers(s)]
        layers += muscles(g, s, inner)
        layers += organs(self.params, g, self.bladder, self.bowel, s)
        layers += skeleton(g, s)
        layers += self.couch()
        return layers
