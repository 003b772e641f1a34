"""`medstyle pair`: a CT and an MR of one patient become one study folder on the MR
grid, with the registration reported, ready for `medstyle dataset build`."""

from __future__ import annotations

import json

import numpy as np

from medstyle_gui.cli import main
from tests.trainer.data.test_register import (
    centre_lps_mm,
    known_motion,
    pelvis_phantom,
    worst_displacement_mm,
)
from trainer.data.read import read_volume
from trainer.data.write import write_volume


def test_pair_registers_writes_a_study_and_feeds_a_dataset(tmp_path, capsys):
    mr = pelvis_phantom((24, 48, 64), (5.0, 5.0, 5.0), "MR")
    true = known_motion(centre_lps_mm(mr), angle_deg=4.0, shift_mm=6.0)
    ct = pelvis_phantom((40, 50, 70), (4.0, 5.0, 5.0), "CT", motion=true)
    ct_path = write_volume(ct, tmp_path / "ct_scan.nii.gz")
    mr_path = write_volume(mr, tmp_path / "t2_scan.nii.gz")
    study = tmp_path / "study"

    argv = ["pair", str(ct_path), str(mr_path), "--out", str(study), "--size", "32", "--no-n4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "CT registered to MR: rotation" in out and "converged" in out

    manifest = json.loads((study / "study.json").read_text())
    assert manifest["aligned"] is True and manifest["patient_id"] == "study"
    registration = manifest["pairing"]["registration"]
    assert registration["converged"] and registration["iterations"] > 0
    paired_ct, paired_mr = read_volume(study / "ct.nii.gz"), read_volume(study / "mr.nii.gz")
    assert paired_ct.shape == paired_mr.shape == (24, 32, 32)
    assert (paired_ct.modality, paired_mr.modality) == ("CT", "MR")
    np.testing.assert_allclose(paired_ct.origin_lps_mm, paired_mr.origin_lps_mm)

    # registration recovered the known motion to well under a 5 mm voxel
    import SimpleITK as sitk

    found = sitk.Euler3DTransform()
    found.SetCenter(registration["center_lps_mm"])
    found.SetRotation(*np.radians(registration["rotation_deg_xyz"]))
    found.SetTranslation(registration["translation_mm_lps"])
    assert worst_displacement_mm(found, true, mr) < 2.0

    # the same command again does not overwrite the study
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err

    data = tmp_path / "data.h5"
    assert (
        main(["dataset", "build", str(study), "--out", str(data), "--size", "32", "--quiet"]) == 0
    )
    capsys.readouterr()
    assert main(["dataset", "info", str(data), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["slices"] == 48 and info["paired_slices"] == 48
