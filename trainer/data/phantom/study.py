"""One phantom study: a patient's paired CT and T2 MR on one grid, with its tissue
label map (and, optionally, a known rigid misalignment of the CT).

Geometry: LPS, ``array[z, y, x]``, slice 0 the most inferior (proximal femoral
shafts), row 0 anterior, column 0 the patient's right; the slice positions (S, mm)
are 0 at the centre of the femoral heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from trainer.data.phantom import physics
from trainer.data.phantom.anatomy import Anatomy
from trainer.data.phantom.patient import PatientParams, tissue_values
from trainer.data.phantom.render import Grid, SectionPainter, Warp
from trainer.data.phantom.tissues import LABEL
from trainer.data.volume import Volume
from trainer.errors import ConfigError

#: Slice 0 lies this far (mm) below the femoral head centres, before the patient's
#: own offset: the proximal femoral shafts, just below the lesser trochanters.
BOTTOM_BELOW_HEADS_MM = 100.0


@dataclass
class PhantomStudy:
    """A rendered phantom study.

    Attributes:
        params: the patient.
        ct: CT in HU (``modality="CT"``), LPS.
        mr: T2 MR in scanner units (``modality="MR"``), same grid.
        labels: ``[z, y, x]`` uint8 tissue labels on the same grid; they match the MR,
            and the CT too unless ``misalignment`` is set.
        mr_bias: ``[z, y, x]`` float32, the true multiplicative bias field of the MR
            (what N4 should find).
        misalignment: the true CT misalignment (:func:`physics.transform_record`), or
            ``None`` when CT and MR are aligned.
    """

    params: PatientParams
    ct: Volume
    mr: Volume
    labels: np.ndarray
    mr_bias: np.ndarray
    misalignment: dict[str, Any] | None = None

    @property
    def aligned(self) -> bool:
        return self.misalignment is None


def check_options(size: int, slices: int, slice_mm: float, misalign_mm: float) -> None:
    """Raise :class:`ConfigError` for options outside what the phantom can draw."""
    if not 16 <= size <= 1024:
        raise ConfigError(f"--size {size} is out of range (16..1024 pixels)")
    if not 1 <= slices <= 1000:
        raise ConfigError(f"--slices {slices} is out of range (1..1000)")
    if not 0.25 <= slice_mm <= 20:
        raise ConfigError(f"--slice-mm {slice_mm} is out of range (0.25..20 mm)")
    if not 0 <= misalign_mm <= 30:
        raise ConfigError(f"--misalign-mm {misalign_mm} is out of range (0..30 mm)")


def render_study(
    params: PatientParams,
    *,
    size: int = 256,
    slices: int = 88,
    slice_mm: float = 3.0,
    misalign_mm: float = 0.0,
) -> PhantomStudy:
    """Draw one patient's CT, MR and label map.

    Args:
        params: the patient.
        size: pixels per row and column (the field of view is the patient's).
        slices: number of axial slices, from the proximal femoral shafts upwards.
        slice_mm: slice spacing and thickness in mm.
        misalign_mm: length of a random rigid CT misalignment (0: aligned).

    Returns:
        The study; the same parameters always give the same images.
    """
    check_options(size, slices, slice_mm, misalign_mm)
    anatomy = Anatomy(params)
    ct_values, mr_values = tissue_values(params)
    grid = Grid(size, anatomy.fov_mm, slices, slice_mm)
    warp = Warp.random(params.rng("warp"))
    painter = SectionPainter(
        grid, anatomy.pose, ct_values, mr_values, warp, still_y_mm=anatomy.couch_y_mm
    )

    # The skeleton's craniocaudal scale: women's pelves are a little lower.
    height = params.pelvis_height * (0.96 if params.female else 1.0)
    s0 = -BOTTOM_BELOW_HEADS_MM + params.z_offset_mm
    z0_mm = s0 * height  # S coordinate of slice 0, 0 at the femoral heads

    # A misaligned CT is painted over extra slices so that moving it never pulls in
    # empty space at the ends.
    margin = math.ceil((misalign_mm + 0.06 * params.fov_mm) / slice_mm) + 1 if misalign_mm else 0
    ks = np.arange(-margin, slices + margin)
    ct = np.empty((len(ks), size, size), np.float32)
    mr = np.empty_like(ct)
    labels = np.empty(ct.shape, np.uint8)
    for i, k in enumerate(ks):
        s = s0 + k * slice_mm / height
        ct[i], mr[i], labels[i] = painter.paint(anatomy.section(float(s)), float(s))

    rng = params.rng("physics")
    fat = LABEL["fat"]
    marbling = float(np.clip(0.15 + 0.012 * (params.age - 50), 0.1, 0.6))
    physics.add_texture(
        ct, mr, labels, rng, marbling, (float(ct_values[fat]), float(mr_values[fat]))
    )

    px = grid.pixel_mm
    half = (size - 1) / 2.0 * px
    origin = (-half, -half, z0_mm)
    spacing = (slice_mm, px, px)
    body_width = 340.0 * params.body_scale + 2.0 * params.subcut_fat_mm
    inner = slice(margin, margin + slices)

    misalignment = None
    if misalign_mm:
        extended = Volume(ct, spacing, (-half, -half, z0_mm - margin * slice_mm)).to_sitk()
        reference = Volume(ct[inner], spacing, origin).to_sitk()
        center = reference.TransformContinuousIndexToPhysicalPoint(
            [(n - 1) / 2.0 for n in reference.GetSize()]
        )
        transform = physics.random_rigid(params.rng("misalignment"), misalign_mm, center)
        ct_moved = physics.move_ct(extended, reference, transform)
        misalignment = physics.transform_record(transform)
    else:
        ct_moved = ct[inner]
    ct_final = physics.ct_acquire(ct_moved, rng, physics.ct_noise_sd(body_width))
    snr = float(params.rng("mr snr").uniform(35.0, 70.0))
    bias = physics.bias_field((slices, size, size), params.rng("bias field"))
    mr_final = physics.mr_acquire(mr[inner], bias, rng, snr)

    common = {
        "sex": params.sex,
        "patient_id": params.patient_id,
        "source": f"medstyle phantom {params.patient_id}",
    }
    meta = {"phantom": True}
    return PhantomStudy(
        params=params,
        ct=Volume(
            ct_final,
            spacing,
            origin,
            modality="CT",
            modality_source="option",
            meta=dict(meta),
            **common,
        ),
        mr=Volume(
            mr_final,
            spacing,
            origin,
            modality="MR",
            modality_source="option",
            meta=dict(meta),
            **common,
        ),
        labels=np.ascontiguousarray(labels[inner]),
        mr_bias=bias,
        misalignment=misalignment,
    )


def labels_image(study: PhantomStudy) -> sitk.Image:
    """The label map as a uint8 SimpleITK image with the study's geometry."""
    image = sitk.GetImageFromArray(study.labels)
    ref = study.mr.to_sitk()
    image.CopyInformation(ref)
    return image
