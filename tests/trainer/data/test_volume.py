"""Volume geometry: LPS reorientation gives the same array whatever the file's
direction cosines; slice positions and normalised index run inferior -> superior."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from trainer.data.read import read_volume
from trainer.data.volume import Volume


def _reoriented_copy(
    volume: Volume, flip_xyz: tuple[bool, bool, bool], permute: tuple[int, int, int]
):
    """The same physical image stored with flipped and permuted axes (as another scanner
    or converter might write it)."""
    image = volume.to_sitk()
    flipped = sitk.Flip(image, list(flip_xyz))
    return sitk.PermuteAxes(flipped, list(permute))


@pytest.mark.parametrize(
    ("flip", "permute"),
    [
        ((True, False, False), (0, 1, 2)),  # RPS: columns stored left -> right
        ((False, True, True), (0, 1, 2)),  # LAI: rows from posterior, slices from superior
        ((True, True, False), (0, 1, 2)),  # RAS, as NIfTI tools like it
        ((False, False, True), (1, 0, 2)),  # x and y swapped
        ((True, False, True), (2, 1, 0)),  # stored as sagittal-like axis order
    ],
)
def test_flipped_direction_cosines_load_to_identical_array(make_volume, tmp_path, flip, permute):
    volume = make_volume(shape=(5, 7, 9), spacing=(3.0, 1.5, 1.25))
    stored = _reoriented_copy(volume, flip, permute)
    assert not np.array_equal(sitk.GetArrayFromImage(stored), volume.array) or flip == (False,) * 3
    path = tmp_path / "flipped.nii.gz"
    sitk.WriteImage(stored, str(path))

    loaded = read_volume(path, modality="CT")

    np.testing.assert_array_equal(loaded.array, volume.array)
    np.testing.assert_allclose(loaded.spacing_mm, volume.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(loaded.origin_lps_mm, volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(loaded.direction, np.eye(3), atol=1e-6)


def test_slice_positions_and_normalised_index_run_inferior_to_superior(make_volume):
    volume = make_volume(shape=(5, 4, 4), spacing=(2.5, 1.0, 1.0))
    volume.origin_lps_mm = (10.0, 20.0, -100.0)
    np.testing.assert_allclose(volume.slice_positions_mm, [-100, -97.5, -95, -92.5, -90])
    np.testing.assert_allclose(volume.normalised_slice_index, [0, 0.25, 0.5, 0.75, 1])
    assert volume.normalised_slice_index.dtype == np.float32


def test_to_sitk_round_trip_keeps_geometry(make_volume):
    volume = make_volume()
    back = Volume.from_sitk(volume.to_sitk(), modality="CT")
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.spacing_mm == volume.spacing_mm


def test_summary_reports_shape_spacing_and_units(make_volume):
    facts = make_volume(shape=(3, 4, 5), spacing=(2.0, 0.5, 0.5)).summary()
    assert facts["slices"] == 3 and facts["rows"] == 4 and facts["columns"] == 5
    assert facts["spacing_mm_zyx"] == [2.0, 0.5, 0.5]
    assert facts["units"] == "HU"
    assert facts["orientation"] == "LPS"
