"""Each image written has a JSON sidecar of its own (``X.nii.gz.json``, ``X.mha.json``):
one name in several formats side by side never collide, an overwrite touches only its
own sidecar, and a BIDS-style ``X.json`` (a user's, or an older medstyle's) still reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medstyle_gui.cli import main
from trainer.data.read import find_sidecar, read_volume, sidecar_path
from trainer.data.write import write_volume


def _provenance(image: Path) -> dict:
    side = find_sidecar(image)
    assert side is not None, f"{image} has no sidecar"
    return json.loads(side.read_text())


def test_one_name_in_several_formats_each_keeps_its_own_sidecar(real_t2_nifti, tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    nifti, mha, nrrd = folder / "X.nii.gz", folder / "X.mha", folder / "X.nrrd"
    assert main(["convert", str(real_t2_nifti), str(nifti)]) == 0
    assert main(["convert", str(real_t2_nifti), str(mha), "--modality", "CT"]) == 0
    assert main(["convert", str(real_t2_nifti), str(nrrd)]) == 0

    assert sorted(p.name for p in folder.iterdir()) == [
        "X.mha", "X.mha.json", "X.nii.gz", "X.nii.gz.json", "X.nrrd", "X.nrrd.json",
    ]  # fmt: skip
    assert read_volume(nifti).modality_source == "sidecar"
    assert read_volume(nifti).modality == "MR" and read_volume(mha).modality == "CT"
    for image in (nifti, mha, nrrd):
        source = _provenance(image)["provenance"]["source_files"]
        assert source == [real_t2_nifti.name]


def test_overwriting_one_image_leaves_the_others_sidecar_alone(real_t2_nifti, tmp_path):
    nifti, mha = tmp_path / "X.nii.gz", tmp_path / "X.mha"
    assert main(["convert", str(real_t2_nifti), str(nifti)]) == 0
    assert main(["convert", str(real_t2_nifti), str(mha)]) == 0
    kept = sidecar_path(nifti)
    before = (kept.read_bytes(), kept.stat().st_mtime_ns)
    os.utime(kept, ns=(1, 1))  # any rewrite would move the time stamp

    assert main(["convert", str(real_t2_nifti), str(mha), "--overwrite", "--modality", "CT"]) == 0

    assert kept.read_bytes() == before[0] and kept.stat().st_mtime_ns == 1
    assert read_volume(nifti).modality == "MR" and read_volume(mha).modality == "CT"


def test_a_users_bids_style_sidecar_is_read(make_volume, tmp_path):
    """README: ``scan.json`` beside ``scan.nii.gz`` with ``{"modality": "MR", "sex": "M"}``."""
    import SimpleITK as sitk

    for name in ("scan.nii.gz", "scan.mha"):
        path = tmp_path / name
        sitk.WriteImage(make_volume(modality="CT").to_sitk(), str(path))  # no sidecar
        (tmp_path / "scan.json").write_text('{"modality": "MR", "sex": "M"}')
        volume = read_volume(path)
        assert (volume.modality, volume.modality_source, volume.sex) == ("MR", "sidecar", "M")


def test_an_images_own_sidecar_wins_over_the_bids_style_one(make_volume, tmp_path):
    path = write_volume(make_volume(modality="CT"), tmp_path / "scan.nii.gz")
    (tmp_path / "scan.json").write_text('{"modality": "MR"}')  # e.g. from an older medstyle
    assert find_sidecar(path) == tmp_path / "scan.nii.gz.json"
    assert read_volume(path).modality == "CT"


@pytest.mark.parametrize("name", ["s.nii.gz", "s.nii", "s.mha", "s.nrrd"])
def test_writer_refuses_to_replace_an_existing_sidecar(make_volume, tmp_path, name):
    from trainer.errors import ScanWriteError

    sidecar_path(tmp_path / name).write_text("{}")
    with pytest.raises(ScanWriteError, match=r"\.json: already exists"):
        write_volume(make_volume(), tmp_path / name)
    assert not (tmp_path / name).exists()
