"""Reading and writing the ITK formats and HDF5 volumes: round trips, sidecars,
modality decisions, and safe writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medstyle_gui.cli import main
from trainer.data.provenance import Provenance
from trainer.data.read import read_volume
from trainer.data.write import write_volume
from trainer.errors import ScanWriteError


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii", "scan.mha", "scan.nrrd", "scan.h5"])
def test_round_trip_keeps_array_geometry_and_labels(make_volume, tmp_path, name):
    volume = make_volume(modality="MR", sex="F")
    volume.origin_lps_mm = (-120.0, -80.5, 33.0)
    path = write_volume(volume, tmp_path / name)

    back = read_volume(path)

    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(back.origin_lps_mm, volume.origin_lps_mm, atol=1e-4)
    assert back.modality == "MR" and back.modality_source in ("sidecar", "hdf5")
    assert back.sex == "F"


def test_nifti_sidecar_records_provenance_and_no_identity(make_volume, tmp_path):
    volume = make_volume(patient_id="Doe^Jane-12345")
    prov = Provenance(synthetic=True, description="synthetic CT", model_sha256="ab" * 32)
    write_volume(volume, tmp_path / "syn.nii.gz", provenance=prov)
    text = (tmp_path / "syn.nii.gz.json").read_text()
    sidecar = json.loads(text)
    assert sidecar["provenance"]["synthetic"] is True
    assert sidecar["provenance"]["model_sha256"] == "ab" * 32
    assert "Doe" not in text and "12345" not in text


def test_convert_nifti_reproduces_simpleitk_dicomorient_lps(real_t2_nifti, tmp_path):
    out = tmp_path / "t2.nii.gz"
    assert main(["convert", str(real_t2_nifti), str(out)]) == 0

    expected = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(real_t2_nifti)), "LPS"))
    converted = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    np.testing.assert_array_equal(converted, expected.astype(np.float32))
    assert read_volume(out).modality == "MR"


def test_real_t2_nifti_loads_as_mr_from_its_intensities(real_t2_nifti):
    volume = read_volume(real_t2_nifti)
    assert volume.modality == "MR" and volume.modality_source == "intensity"
    assert volume.shape == (19, 384, 384)
    np.testing.assert_allclose(volume.spacing_mm, (3.0, 0.5, 0.5), atol=1e-4)
    assert volume.array.min() >= 0 and 1000 < volume.array.max() < 1200


def test_modality_option_overrides_and_ct_is_inferred_from_air(make_volume, tmp_path):
    path = tmp_path / "plain.mha"
    sitk.WriteImage(make_volume(modality="CT").to_sitk(), str(path))  # no sidecar
    assert read_volume(path).modality == "CT"
    assert read_volume(path).modality_source == "intensity"
    forced = read_volume(path, modality="MR")
    assert forced.modality == "MR" and forced.modality_source == "option"


def test_existing_target_is_never_overwritten_without_permission(make_volume, tmp_path):
    target = tmp_path / "keep.nii.gz"
    target.write_bytes(b"precious")
    with pytest.raises(ScanWriteError, match="already exists"):
        write_volume(make_volume(), target)
    assert target.read_bytes() == b"precious"
    write_volume(make_volume(), target, overwrite=True)
    assert read_volume(target).shape == make_volume().shape


def test_failed_write_leaves_no_file_and_no_debris(make_volume, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken)
    with pytest.raises(ScanWriteError, match="disk full"):
        write_volume(make_volume(), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_two_d_image_reads_as_one_slice(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 9), 300, np.float32)), str(path))
    volume = read_volume(path, modality="MR")
    assert volume.shape == (1, 8, 9)


def test_outputs_get_ordinary_permissions_not_private_temp_ones(make_volume, tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = write_volume(make_volume(), tmp_path / "shared.nii.gz")
        folder = write_volume(make_volume(), tmp_path / "series", fmt="dicom")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
