"""Paired studies: rigid CT-to-MR registration, N4, resampling to the model matrix.

Registration is checked against known rigid motions: the real T2 (thin: 19 slices of
3 mm) with a non-monotonic intensity remap standing in for the CT, and a thicker
synthetic pelvis with CT and MR values on different grids.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from trainer.data.pair_check import MAX_MATTES_MI, check_pairing
from trainer.data.register import (
    PairedStudy,
    RigidRegistration,
    n4_correct,
    prepare_pair,
    register_rigid,
    resample_to,
    resample_to_matrix,
)
from trainer.data.volume import Volume
from trainer.errors import ConfigError, InvalidScanError, RegistrationError

# -- helpers --------------------------------------------------------------------------


def known_motion(center_lps_mm, angle_deg=4.0, shift_mm=6.0) -> sitk.Euler3DTransform:
    """A rigid motion of ``angle_deg`` about an oblique axis and ``shift_mm`` along an
    oblique direction, rotating about ``center_lps_mm``."""
    axis = np.array([0.3, 0.2, 0.93])
    direction = np.array([1.0, -1.0, 0.5])
    versor = sitk.VersorRigid3DTransform()
    versor.SetCenter(tuple(center_lps_mm))
    versor.SetRotation(tuple(axis / np.linalg.norm(axis)), math.radians(angle_deg))
    versor.SetTranslation(tuple(shift_mm * direction / np.linalg.norm(direction)))
    euler = sitk.Euler3DTransform()
    euler.SetCenter(versor.GetCenter())
    euler.SetMatrix(versor.GetMatrix())
    euler.SetTranslation(versor.GetTranslation())
    return euler


def field_of_view_corners(volume: Volume) -> list[tuple[float, float, float]]:
    """LPS mm of the 8 corner voxel centres. The gap between two rigid maps is affine,
    so its length is largest at a corner of the box: the worst error over the whole
    field of view is the worst over these 8 points."""
    image = volume.to_sitk()
    nx, ny, nz = image.GetSize()
    return [
        image.TransformIndexToPhysicalPoint((i, j, k))
        for i in (0, nx - 1)
        for j in (0, ny - 1)
        for k in (0, nz - 1)
    ]


def worst_displacement_mm(found: sitk.Transform, true: sitk.Transform, volume: Volume) -> float:
    return max(
        float(np.linalg.norm(np.subtract(found.TransformPoint(p), true.TransformPoint(p))))
        for p in field_of_view_corners(volume)
    )


def residual_angle_deg(found: sitk.Euler3DTransform, true: sitk.Euler3DTransform) -> float:
    """Angle of the rotation ``found o true^-1``."""
    residual = np.reshape(found.GetMatrix(), (3, 3)) @ np.reshape(true.GetMatrix(), (3, 3)).T
    return math.degrees(math.acos(np.clip((np.trace(residual) - 1) / 2, -1, 1)))


def centre_lps_mm(volume: Volume) -> tuple[float, float, float]:
    image = volume.to_sitk()
    return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])


def voxel_lps_mm(volume: Volume) -> np.ndarray:
    """``[z, y, x, 3]`` LPS position in mm of every voxel centre."""
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in volume.shape), indexing="ij")
    index_xyz = np.stack([i, j, k], axis=-1)
    steps = volume.direction * np.array(volume.spacing_mm[::-1])  # column a: mm per step
    return np.asarray(volume.origin_lps_mm) + index_xyz @ steps.T


# Tissue values of a small synthetic pelvis, (CT in HU, MR in T2 units). The order of
# the MR values is not the CT's (fat bright on T2, bone dark), so only a statistical
# metric such as mutual information can match them.
TISSUES = {
    "air": (-1000.0, 0.0),
    "fat": (-100.0, 900.0),
    "muscle": (45.0, 300.0),
    "bone": (900.0, 150.0),
    "bladder": (5.0, 1500.0),
    "gas": (-900.0, 20.0),
}


def pelvis_phantom(
    shape, spacing_mm, modality: str, motion: sitk.Euler3DTransform | None = None
) -> Volume:
    """A pelvis-like volume centred on LPS (0, 0, 0), drawn analytically on its own grid.

    With ``motion`` the anatomy is moved by it: the value at point p is the phantom's
    value at ``motion^-1(p)``.
    """
    nz, ny, nx = shape
    origin = -0.5 * (np.array([nx, ny, nz]) - 1) * np.array(spacing_mm[::-1])
    volume = Volume(np.zeros(shape, np.float32), spacing_mm, tuple(origin), modality=modality)
    points = voxel_lps_mm(volume).reshape(-1, 3)
    if motion is not None:  # p -> motion^-1(p) = M^T (p - c - t) + c, for all points at once
        matrix = np.reshape(motion.GetMatrix(), (3, 3))
        centre, shift = np.array(motion.GetCenter()), np.array(motion.GetTranslation())
        points = (points - centre - shift) @ matrix + centre
    x, y, z = (points[:, a].reshape(shape) for a in range(3))

    def inside(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1

    body_z = np.abs(z) < 70
    labels = np.full(shape, "air", dtype=object)
    labels[inside(0, 0, 0, 150, 100, 1e9) & body_z] = "fat"
    labels[inside(0, 0, 0, 125, 82, 1e9) & body_z] = "muscle"
    for side in (-1, 1):  # femoral heads and a hip bone that slants with z
        labels[inside(side * 75, 5, -25, 24, 24, 24)] = "bone"
        labels[inside(side * (60 + 0.4 * z), 25, 20, 14, 30, 40)] = "bone"
    labels[inside(0, 65, 10, 25, 14, 55)] = "bone"  # sacrum
    labels[inside(0, -35, 15, 40, 30, 30)] = "bladder"
    labels[inside(0, 40, -5, 12, 10, 60)] = "gas"  # rectum
    column = 0 if modality == "CT" else 1
    values = np.zeros(shape, np.float32)
    for name, pair in TISSUES.items():
        values[labels == name] = pair[column]
    # A little blur: partial volume, as a scanner gives, and smooth metric gradients.
    return volume.with_array(ndimage.gaussian_filter(values, 0.7), source=f"phantom {modality}")


# -- registration ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_t2(real_t2_nifti) -> Volume:
    """The real T2 at 1.5 mm in-plane (128 x 128 x 19) so registration stays quick."""
    image = sitk.ReadImage(str(real_t2_nifti), sitk.sitkFloat32)
    full = Volume.from_sitk(image, modality="MR", source="pelvis_t2")
    return resample_to_matrix(full, 128)


def test_recovers_known_motion_on_real_t2(real_t2: Volume) -> None:
    mr = real_t2
    # Non-monotonic remap: bright and dark tissues end up at similar values, so a
    # correlation or squared-difference metric has nothing to hold on to.
    scaled = mr.array / mr.array.max()
    remapped = (1000 * np.cos(3 * np.pi * scaled)).astype(np.float32)
    ct_like = mr.with_array(remapped, modality="CT", source="remapped_t2")
    true = known_motion(centre_lps_mm(mr))
    moved = resample_to(ct_like, ct_like, true.GetInverse())  # anatomy moved by `true`

    start = time.perf_counter()
    found = register_rigid(mr, moved)
    seconds = time.perf_counter() - start

    identity = sitk.Euler3DTransform()
    assert worst_displacement_mm(identity, true, mr) > 6.0  # the task was not trivial
    assert worst_displacement_mm(found.transform, true, mr) < 1.0
    assert residual_angle_deg(found.transform, true) < 1.0
    assert found.iterations > 0 and found.overlap_fraction > 0.8 and found.converged
    print(f"real T2 registration: {seconds:.1f} s, {found.to_dict()}")


def test_recovers_known_motion_on_thick_synthetic_pair() -> None:
    # MR: 3 mm slices over 120 mm; CT: its own, larger grid with 2 mm slices.
    mr = pelvis_phantom((40, 96, 128), (3.0, 2.5, 2.5), "MR")
    true = known_motion(centre_lps_mm(mr))
    ct = pelvis_phantom((70, 90, 120), (2.0, 3.0, 3.0), "CT", motion=true)
    found = register_rigid(mr, ct, seed=3)
    assert worst_displacement_mm(found.transform, true, mr) < 1.0
    assert residual_angle_deg(found.transform, true) < 1.0


def test_registration_report_is_json_ready() -> None:
    mr = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "MR")
    ct = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "CT")
    found = register_rigid(mr, ct)
    assert isinstance(found, RigidRegistration)
    report = json.loads(json.dumps(found.to_dict()))
    assert len(report["rotation_deg_xyz"]) == 3 and len(report["translation_mm_lps"]) == 3
    assert report["stop_condition"] and report["iterations"] == found.iterations
    # The same scans and seed give the same answer: a run can be repeated.
    again = register_rigid(mr, ct)
    assert np.allclose(found.transform.GetParameters(), again.transform.GetParameters())


@pytest.mark.parametrize(
    "ct_array, reason",
    [
        (np.full((8, 16, 16), -1024.0), "constant"),
        (np.zeros((2, 16, 16)), "at least 4"),
    ],
)
def test_registration_refuses_unusable_scans(ct_array, reason) -> None:
    mr = Volume(np.random.default_rng(0).random((8, 16, 16)), (3, 2, 2), modality="MR")
    ct = Volume(ct_array, (3, 2, 2), modality="CT", source="ct_folder")
    with pytest.raises(RegistrationError, match=reason) as err:
        register_rigid(mr, ct)
    assert "ct_folder" in str(err.value) and "\n" not in str(err.value)


# -- N4 -------------------------------------------------------------------------------


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_flattens_a_known_smooth_bias_field() -> None:
    shape, spacing = (24, 64, 64), (4.0, 3.0, 3.0)
    flat = Volume(np.zeros(shape, np.float32), spacing, modality="MR")
    lps = voxel_lps_mm(flat) - np.array([94.5, 94.5, 46.0])  # about the centre
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    body = (x / 85) ** 2 + (y / 70) ** 2 + (z / 40) ** 2 <= 1
    rng = np.random.default_rng(1)
    tissue = np.where(body, 500.0 + rng.normal(0, 5, shape), 0.0)
    bias = np.exp(0.3 * x / 85 - 0.2 * (y / 70) ** 2 + 0.1 * z / 40)  # smooth, about +-30 %
    mr = flat.with_array((tissue * bias).astype(np.float32), source="biased")

    corrected = n4_correct(mr)

    core = ndimage.binary_erosion(body, iterations=3)
    before = coefficient_of_variation(mr.array[core])
    after = coefficient_of_variation(corrected.array[core])
    assert before > 0.1
    assert after < 0.4 * before
    # MR units stay MR units: the mean level in the body is kept, air stays air.
    assert corrected.array[core].mean() == pytest.approx(mr.array[core].mean(), rel=0.05)
    assert np.all(corrected.array[~body] == 0)
    assert corrected.shape == mr.shape and corrected.spacing_mm == mr.spacing_mm
    assert corrected.meta["n4"]["shrink_xyz"][:2] == [4, 4]


def test_n4_refuses_an_empty_scan() -> None:
    empty = Volume(np.zeros((4, 16, 16)), (3, 1, 1), modality="MR", source="blank.nii")
    with pytest.raises(InvalidScanError, match=r"blank\.nii"):
        n4_correct(empty)


def test_n4_corrects_a_small_thin_mr() -> None:
    """The grid of ``medstyle phantom --size 32 --slices 8``: 14.4 mm pixels, 3 mm
    slices. Shrinking z as far as the pixels are wide left one slice, and ITK refused
    with "Zero-valued spacing"; now every axis keeps enough voxels."""
    mr = pelvis_phantom((8, 32, 32), (3.0, 14.375, 14.375), "MR")
    corrected = n4_correct(mr)
    assert corrected.meta["n4"]["shrink_xyz"] == [4, 4, 1]
    body = mr.array > 100
    assert np.isfinite(corrected.array).all()
    assert corrected.array[body].mean() == pytest.approx(mr.array[body].mean(), rel=0.01)


def test_n4_too_small_mr_is_skipped_with_a_warning(caplog) -> None:
    ct = pelvis_phantom((1, 32, 32), (3.0, 14.375, 14.375), "CT")
    mr = pelvis_phantom((1, 32, 32), (3.0, 14.375, 14.375), "MR")
    mr.source = "one_slice.nii.gz"
    with pytest.raises(InvalidScanError, match=r"one_slice\.nii\.gz: N4 .*needs 2 along each"):
        n4_correct(mr)
    pair = prepare_pair(ct, mr, size=32, register=False, n4=True)
    assert not pair.n4_applied and pair.to_dict()["n4_applied"] is False
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("one_slice.nii.gz: N4 bias correction skipped")


def test_an_itk_failure_in_n4_is_one_plain_line(monkeypatch) -> None:
    """Whatever ITK still refuses comes out as a RegistrationError naming the MR."""
    import trainer.data.register as register

    mr = pelvis_phantom((8, 32, 32), (3.0, 14.375, 14.375), "MR")
    mr.source = "thin_t2.nii.gz"
    monkeypatch.setattr(register, "_shrink_factors", lambda volume, shrink: [4, 4, 8])
    with pytest.raises(RegistrationError) as err:
        n4_correct(mr)
    message = str(err.value)
    assert message.startswith("thin_t2.nii.gz: N4 bias correction failed") and "\n" not in message
    assert "--no-n4" in message


def test_bad_options_are_config_errors(make_volume) -> None:
    mr = make_volume(modality="MR")
    with pytest.raises(ConfigError, match="shrink"):
        n4_correct(mr, shrink=0)
    with pytest.raises(ConfigError, match="seed"):
        register_rigid(mr, make_volume(), seed=-1)


# -- resampling to the model matrix ---------------------------------------------------


def oblique_direction(degrees: float = 10.0) -> np.ndarray:
    angle = math.radians(degrees)  # tilted about L, as the real T2 is
    return np.array(
        [[1, 0, 0], [0, math.cos(angle), math.sin(angle)], [0, -math.sin(angle), math.cos(angle)]]
    )


def test_resample_to_matrix_keeps_a_circle_round_and_pads_with_air() -> None:
    # 120 x 32 voxels of 0.6 x 1.5 mm: 72 mm wide, 48 mm tall, oblique slices.
    shape, spacing = (3, 32, 120), (5.0, 1.5, 0.6)
    ct = Volume(
        np.full(shape, 40.0, np.float32),
        spacing,
        direction=oblique_direction(),
        modality="CT",
        source="ct",
    )
    lps = voxel_lps_mm(ct)
    centre = voxel_lps_mm(ct)[1, 14, 70]  # off the middle, so a shift would show
    in_plane = lps - centre
    radius_mm = 15.0
    # Distance within the slice plane (along the image's own x and y axes).
    u = in_plane @ ct.direction[:, 0]
    v = in_plane @ ct.direction[:, 1]
    ct.array[(u**2 + v**2) <= radius_mm**2] = 1000.0

    out = resample_to_matrix(ct, 64)

    assert out.shape == (3, 64, 64)
    pixel_mm = 72.0 / 64
    assert out.spacing_mm == pytest.approx((5.0, pixel_mm, pixel_mm))
    # Round: the disc is as tall as it is wide, and its area is pi r^2.
    disc = out.array[1] > 520
    rows, cols = np.nonzero(disc)
    height = (rows.max() - rows.min() + 1) * pixel_mm
    width = (cols.max() - cols.min() + 1) * pixel_mm
    assert height == pytest.approx(width, abs=pixel_mm)
    assert disc.sum() * pixel_mm**2 == pytest.approx(math.pi * radius_mm**2, rel=0.05)
    # Its centre has not moved in the patient.
    centroid_lps = voxel_lps_mm(out)[1][disc].mean(axis=0)
    assert np.linalg.norm(centroid_lps - centre) < pixel_mm / 2
    # 48 mm of scan in a 72 mm square: 12 mm of air above and below (about 10 rows).
    assert np.all(out.array[:, :9] == -1024) and np.all(out.array[:, -9:] == -1024)
    assert np.all(out.array[:, 32, :] > -1024)  # across the middle: all scan
    # Slices are untouched.
    assert np.allclose(out.slice_positions_mm, ct.slice_positions_mm)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_resample_to_matrix_keeps_physical_positions(axis: int) -> None:
    # Each voxel holds its own L (or P, or S) coordinate: after resampling, a voxel
    # must still hold its own coordinate, wherever the grid put it.
    shape, spacing = (5, 50, 80), (3.0, 1.2, 0.7)
    ramp = Volume(
        np.zeros(shape, np.float32),
        spacing,
        (-20.0, 35.0, 110.0),
        direction=oblique_direction(),
        modality="MR",
    )
    offset = 1000.0  # keeps every value clear of the air padding (0)
    ramp = ramp.with_array((voxel_lps_mm(ramp)[..., axis] + offset).astype(np.float32))
    out = resample_to_matrix(ramp, 32)
    position = voxel_lps_mm(out)[..., axis]
    # Pixels near the scan's edge mix with air (and the anti-aliasing blur): skip them.
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    inside = ndimage.binary_erosion(out.array != 0, in_plane, iterations=2)
    assert inside.sum() > 0.5 * out.array.size
    assert np.abs(out.array[inside] - offset - position[inside]).max() < 0.01


@pytest.mark.parametrize("size", [3, 100, 1024, 0, True, 256.0])
def test_resample_to_matrix_refuses_sizes_a_model_cannot_have(size, make_volume) -> None:
    with pytest.raises(ConfigError, match="power of two"):
        resample_to_matrix(make_volume(), size)


def test_resample_to_uses_the_reference_grid_and_air(make_volume) -> None:
    ct = make_volume(modality="CT")
    shifted = Volume(np.zeros((6, 20, 24)), ct.spacing_mm, (10.0, 0.0, 0.0), modality="MR")
    out = resample_to(ct, shifted)
    assert out.shape == shifted.shape and out.origin_lps_mm == shifted.origin_lps_mm
    assert out.modality == "CT"
    # 10 mm to the left: the last 8 columns (1.25 mm each) lie outside the CT.
    assert np.all(out.array[:, :, -8:] == -1024)
    assert np.allclose(out.array[:, :, :10], ct.array[:, :, 8:18], atol=1e-3)


# -- the pair -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_pair() -> tuple[Volume, Volume, sitk.Transform]:
    mr = pelvis_phantom((24, 48, 64), (5.0, 5.0, 5.0), "MR")
    true = known_motion(centre_lps_mm(mr), angle_deg=3.0, shift_mm=8.0)
    ct = pelvis_phantom((40, 50, 70), (4.0, 5.0, 5.0), "CT", motion=true)
    ct.modality = None  # the pair says which is which
    return ct, mr, true


def test_prepare_pair_puts_ct_and_mr_on_one_grid(small_pair) -> None:
    ct, mr, true = small_pair
    pair = prepare_pair(ct, mr, size=32)
    assert isinstance(pair, PairedStudy) and pair.n4_applied
    assert pair.ct.shape == pair.mr.shape == (24, 32, 32)
    assert pair.ct.spacing_mm == pair.mr.spacing_mm
    assert pair.ct.origin_lps_mm == pair.mr.origin_lps_mm
    assert np.array_equal(pair.ct.direction, pair.mr.direction)
    assert (pair.ct.modality, pair.mr.modality) == ("CT", "MR")
    assert pair.registration is not None
    assert worst_displacement_mm(pair.registration.transform, true, mr) < 3.0  # 5 mm voxels
    assert pair.to_dict()["registration"]["iterations"] > 0
    # CT bone lies on dark MR bone, CT fat on bright MR fat: the pair lines up.
    bone = pair.ct.array > 500
    fat = (pair.ct.array > -150) & (pair.ct.array < -50)
    assert pair.mr.array[bone].mean() < 0.5 * pair.mr.array[fat].mean()
    # 64 x 48 voxels in a square: rows above and below are air.
    assert np.all(pair.ct.array[:, 0] == -1024) and np.all(pair.mr.array[:, 0] == 0)


def test_prepare_pair_without_registration_or_n4(small_pair) -> None:
    ct, mr, _ = small_pair
    pair = prepare_pair(ct, mr, size=16, register=False, n4=False)
    assert pair.registration is None and not pair.n4_applied
    assert pair.to_dict()["registration"] is None
    assert pair.ct.shape == pair.mr.shape == (24, 16, 16)
    assert np.array_equal(pair.mr.array, resample_to_matrix(mr, 16).array)


def test_prepare_pair_checks_before_the_slow_work(small_pair) -> None:
    ct, mr, _ = small_pair
    with pytest.raises(ConfigError):
        prepare_pair(ct, mr, size=300)
    with pytest.raises(InvalidScanError, match="given as the CT"):
        prepare_pair(mr, mr, size=16)


# -- is the pair plausible? -------------------------------------------------------------


def test_a_good_pair_passes_the_check_and_carries_it(small_pair) -> None:
    ct, mr, _ = small_pair
    pair = prepare_pair(ct, mr, size=32, n4=False)
    check = pair.check
    assert check.passed, check.describe()
    assert check.mattes_mi is not None and check.mattes_mi < -0.5
    assert check.body_overlap > 0.9 and check.centre_offset < 0.3
    assert check.constant_slices == {"CT": 0, "MR": 0}
    # both paired volumes carry the verdict (a GUI slot made from either has it)
    assert pair.ct.meta["pairing_check"] == pair.mr.meta["pairing_check"] == check.to_dict()
    assert check.describe().startswith("passed (Mattes MI")


def test_scans_that_do_not_overlap_fail_the_check(small_pair) -> None:
    """``--no-register`` on scans a metre apart: the CT on the MR's grid is all air."""
    ct, mr, _ = small_pair
    far = dataclasses.replace(ct, origin_lps_mm=(0.0, 0.0, 1000.0))
    check = prepare_pair(far, mr, size=16, register=False, n4=False).check
    assert not check.passed
    assert check.body_overlap == 0.0 and check.centre_offset > 1.0
    assert check.constant_slices["CT"] == mr.num_slices
    text = "; ".join(check.failures)
    assert "lands outside the CT" in text and "only 0% of the MR's body" in text
    assert f"{mr.num_slices} of {mr.num_slices} CT slices are one constant value" in text


def test_a_real_ct_on_another_patients_real_mr_fails_the_check(
    real_ct_dicom, real_t2_nifti
) -> None:
    """The abdomen CT registered onto the pelvic T2 of another person "converges"; the
    check says no (both on a 64 px matrix first so the test stays quick)."""
    from trainer.data.read import read_volume

    ct = resample_to_matrix(read_volume(real_ct_dicom), 64)
    mr = resample_to_matrix(read_volume(real_t2_nifti, modality="MR"), 64)
    pair = prepare_pair(ct, mr, size=32, n4=False)
    check = pair.check
    assert not check.passed
    assert check.body_overlap < 0.6 and check.mattes_mi > -0.3
    assert "of the MR's body has CT body under it" in "; ".join(check.failures)


def test_scans_naming_two_patients_fail_unless_told_otherwise(small_pair) -> None:
    ct, mr, _ = small_pair
    ct = dataclasses.replace(ct, patient_id="P0001", sex="F")
    mr = dataclasses.replace(mr, patient_id="P0002", sex="F")
    check = prepare_pair(ct, mr, size=16, register=False, n4=False).check
    assert check.failures == ("the CT and the MR name different patients ('P0001', 'P0002')",)
    kept = prepare_pair(ct, mr, size=16, register=False, n4=False, compare_patients=False)
    assert kept.check.passed
    mr = dataclasses.replace(mr, patient_id="P0001", sex="M")
    check = prepare_pair(ct, mr, size=16, register=False, n4=False).check
    assert check.failures == ("the CT says sex F, the MR M",)


def test_mutual_information_near_zero_fails(small_pair) -> None:
    """The final metric of unrelated scans (-0.07 for the real abdomen CT on a pelvic
    MR at full resolution) fails on its own."""
    ct, mr, _ = small_pair
    pair = prepare_pair(ct, mr, size=16, register=False, n4=False)
    check = check_pairing(ct, mr, pair.ct, pair.mr, None, mattes_mi=-0.07)
    assert check.failures == (
        f"Mattes MI -0.070 is above {MAX_MATTES_MI}: the scans share almost no structure",
    )
    assert check_pairing(ct, mr, pair.ct, pair.mr, None, mattes_mi=-0.5).passed
