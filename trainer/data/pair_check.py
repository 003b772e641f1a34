"""Is a CT/MR pair plausible? Checks run after the CT was put on the MR's grid.

A registration can "converge" on two scans that have nothing to do with each other
(two patients, an abdomen CT and a pelvis MR): the optimiser stops, the transform is
finite, and the study looks fine. So the pair is checked on what it gave:

- **mutual information**: the final Mattes MI (ITK's sign, more negative is better)
  says how much the CT tells about the MR; near 0 they share no structure;
- **where the MR lands in the CT**: the middle of the MR, mapped into the CT, must lie
  inside the CT's field of view (the translation measured against the CT's extent;
  the raw translation also holds the offset between two scanners' coordinates, which
  may be hundreds of mm for a good pair);
- **body overlap**: where the MR shows the body, the resampled CT must show it too;
- **constant slices**: a slice that is one value (all air: the CT does not reach it)
  is nothing to learn from;
- **who**: scans that name different patients, or different sexes, are not a pair.

The thresholds were calibrated with :func:`check_pairing` on phantom pairs
(``medstyle phantom --size 64 --slices 24``, aligned and with ``--misalign-mm 20``,
paired at 64 px), on a phantom CT against another phantom patient's MR, and on the
real abdomen CT against the two real pelvic T2 MRs of ``shared/data/real`` (another
person; at full resolution with N4, and both first put on a 64 px matrix without N4).
See each constant for what they gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from trainer.data.volume import Volume

__all__ = ["PairingCheck", "check_pairing", "constant_slices", "patient_mismatch"]

#: Largest (least negative) final Mattes MI a plausible pair has. Phantom CT/MR of
#: one patient -0.84 to -0.99 (also misaligned by 20 mm and registered back); a
#: phantom CT on another phantom patient's MR -0.63 to -0.66; the real abdomen CT on
#: either real pelvic MR -0.068 and -0.074 (-0.15 and -0.16 from 64 px copies: a
#: coarse MR inflates MI, and those fail on body overlap). Real CT/MR pairs of one
#: patient share less than a phantom's, so the bar sits at twice the unrelated pairs.
MAX_MATTES_MI = -0.15

#: How far the MR's middle may land from the CT's middle, in CT half-widths along the
#: worst axis (1: on the edge of the CT's field of view). Phantom pairs 0.00-0.38
#: (misaligned by 20 mm), a phantom CT on another patient's MR 0.12-0.61, the abdomen
#: CT registered onto a pelvic MR 0.12-1.04; the real pair taken at its word
#: (``--no-register``: a metre apart) 38. Only an MR outside the CT is refused.
MAX_CENTRE_OFFSET = 1.0

#: Least share of the MR's body voxels that must have CT body under them. Phantom
#: pairs 0.95-0.96, 0.77-0.89 misaligned by 20 mm over 72 mm of slices (0.74-0.76 for
#: 32 px, 8-slice phantoms misaligned by 5 mm); phantom CT on another patient's MR
#: 0.66-0.89; abdomen CT on a pelvic MR 0.43 and 0.50 (0.39 and 0.47 at 64 px); an
#: all-air CT 0.
MIN_BODY_OVERLAP = 0.6

#: Largest share of the CT's (or MR's) slices that may be one constant value. A
#: phantom misaligned by 20 mm over 24 slices has up to 2 all-air CT slices; an
#: all-air CT has all of them.
MAX_CONSTANT_SLICE_FRACTION = 0.5

#: Body masks: CT above this (HU) is body; MR above this share of its 99th percentile
#: of positive values is body (the MR background is noise, far below; on the real T2s
#: this mask covers 90-96 % of a field of view that lies inside the body).
CT_BODY_HU = -500.0
MR_BODY_FRACTION = 0.1


@dataclass(frozen=True)
class PairingCheck:
    """The verdict on a CT/MR pair and the numbers it rests on.

    Attributes:
        failures: one plain sentence per failed check (empty: the pair passed).
        mattes_mi: final Mattes MI of the registration, ``None`` without one.
        centre_offset: where the MR's middle lands in the CT, in CT half-widths from
            the CT's middle along the worst axis.
        body_overlap: share of the MR's body voxels with CT body under them, 0-1.
        constant_slices: ``{"CT": k, "MR": k}`` slices that are one value.
        num_slices: slices of the pair (both have the MR's).
    """

    failures: tuple[str, ...]
    mattes_mi: float | None
    centre_offset: float
    body_overlap: float
    constant_slices: dict[str, int] = field(default_factory=dict)
    num_slices: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        """One line: the verdict and the numbers."""
        mi = "no registration" if self.mattes_mi is None else f"Mattes MI {self.mattes_mi:.3f}"
        counts = ", ".join(f"{m} {k}/{self.num_slices}" for m, k in self.constant_slices.items())
        numbers = (
            f"{mi}, MR body with CT under it {self.body_overlap:.0%}, MR middle "
            f"{self.centre_offset:.2f} CT half-widths from the CT's middle, "
            f"constant slices {counts}"
        )
        if self.passed:
            return f"passed ({numbers})"
        return "FAILED: " + "; ".join(self.failures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as ``study.json`` records it (``"pairing_check"``)."""
        return {
            "passed": self.passed,
            "failures": list(self.failures),
            "mattes_mi": None if self.mattes_mi is None else round(self.mattes_mi, 4),
            "centre_offset_ct_half_widths": round(self.centre_offset, 3),
            "body_overlap": round(self.body_overlap, 3),
            "constant_slices": dict(self.constant_slices),
            "num_slices": self.num_slices,
            "thresholds": {
                "max_mattes_mi": MAX_MATTES_MI,
                "max_centre_offset": MAX_CENTRE_OFFSET,
                "min_body_overlap": MIN_BODY_OVERLAP,
                "max_constant_slice_fraction": MAX_CONSTANT_SLICE_FRACTION,
            },
        }


def check_pairing(
    ct: Volume,
    mr: Volume,
    paired_ct: Volume,
    paired_mr: Volume,
    transform: sitk.Transform | None,
    mattes_mi: float | None,
    *,
    compare_patients: bool = True,
) -> PairingCheck:
    """Check a pair made by :func:`trainer.data.register.prepare_pair`.

    Args:
        ct, mr: the scans as given (the CT's own grid gives its field of view).
        paired_ct, paired_mr: the pair on one grid, ``[z, N, N]`` each (CT in HU).
        transform: MR point -> CT point (the registration), ``None`` for the scans'
            own coordinates.
        mattes_mi: the registration's final metric, ``None`` without registration.
        compare_patients: also fail when ``ct`` and ``mr`` name different patients
            or sexes (:func:`patient_mismatch`).

    Returns:
        The verdict with its numbers.
    """
    n = paired_mr.num_slices
    constant = {"CT": constant_slices(paired_ct.array), "MR": constant_slices(paired_mr.array)}
    offset = centre_offset(mr, ct, transform)
    overlap = body_overlap(paired_ct.array, paired_mr.array)
    failures = []
    if mattes_mi is not None and mattes_mi > MAX_MATTES_MI:
        failures.append(
            f"Mattes MI {mattes_mi:.3f} is above {MAX_MATTES_MI}: the scans share almost "
            "no structure"
        )
    if offset > MAX_CENTRE_OFFSET:
        failures.append(
            f"the MR's middle lands outside the CT, {offset:.2f} CT half-widths from the "
            f"CT's middle (at most {MAX_CENTRE_OFFSET:g})"
        )
    if overlap < MIN_BODY_OVERLAP:
        failures.append(
            f"only {overlap:.0%} of the MR's body has CT body under it "
            f"(at least {MIN_BODY_OVERLAP:.0%})"
        )
    for modality, count in constant.items():
        if count > MAX_CONSTANT_SLICE_FRACTION * n:
            failures.append(f"{count} of {n} {modality} slices are one constant value")
    mismatch = patient_mismatch(ct, mr) if compare_patients else None
    if mismatch:
        failures.append(mismatch)
    return PairingCheck(tuple(failures), mattes_mi, offset, overlap, constant, n)


def patient_mismatch(ct: Volume, mr: Volume) -> str | None:
    """A sentence when the scans themselves name different patients or sexes."""
    if ct.patient_id and mr.patient_id and str(ct.patient_id) != str(mr.patient_id):
        return f"the CT and the MR name different patients ('{ct.patient_id}', '{mr.patient_id}')"
    if ct.sex and mr.sex and ct.sex != mr.sex:
        return f"the CT says sex {ct.sex}, the MR {mr.sex}"
    return None


def constant_slices(array: np.ndarray) -> int:
    """How many slices of ``[z, y, x]`` are one value throughout."""
    flat = array.reshape(array.shape[0], -1)
    return int(np.sum(flat.max(axis=1) == flat.min(axis=1)))


def centre_offset(fixed: Volume, moving: Volume, transform: sitk.Transform | None) -> float:
    """Where the middle of ``fixed`` lands in ``moving``: its distance from the moving
    scan's middle along the worst of the moving scan's axes, in half-widths (voxel
    count x spacing / 2) of that axis; above 1 it lies outside the moving scan."""
    point = _middle_lps_mm(fixed)
    if transform is not None:
        point = np.asarray(transform.TransformPoint(tuple(float(p) for p in point)))
    steps = moving.direction * np.array(moving.spacing_mm[::-1])  # column a: mm per step
    index_xyz = np.linalg.solve(steps, point - np.asarray(moving.origin_lps_mm))
    sizes_xyz = np.array(moving.shape[::-1], dtype=np.float64)
    return float(np.max(np.abs(index_xyz - (sizes_xyz - 1) / 2) / (sizes_xyz / 2)))


def body_overlap(ct_hu: np.ndarray, mr: np.ndarray) -> float:
    """Share of the MR's body voxels (``[z, y, x]``, same grid) where the CT shows body;
    0 when the MR shows none."""
    mr_body = _body(mr, _mr_body_threshold(mr))
    if not mr_body.any():
        return 0.0
    ct_body = _body(ct_hu, CT_BODY_HU)
    return float((mr_body & ct_body).sum() / mr_body.sum())


def _mr_body_threshold(mr: np.ndarray) -> float:
    positive = mr[mr > 0]
    if positive.size == 0:
        return np.inf
    return MR_BODY_FRACTION * float(np.percentile(positive, 99))


def _body(array: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels above ``threshold``, holes filled slice by slice (dark organs, gas and
    bone inside the body count as body)."""
    return np.stack([ndimage.binary_fill_holes(s > threshold) for s in array])


def _middle_lps_mm(volume: Volume) -> np.ndarray:
    """LPS position (mm) of the middle of a volume's field of view."""
    steps = volume.direction * np.array(volume.spacing_mm[::-1])
    half_index_xyz = (np.array(volume.shape[::-1], dtype=np.float64) - 1) / 2
    return np.asarray(volume.origin_lps_mm) + steps @ half_index_xyz
