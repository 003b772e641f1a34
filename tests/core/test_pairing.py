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
    assert "pairing check: passed (Mattes MI" in out

    manifest = json.loads((study / "study.json").read_text())
    assert manifest["aligned"] is True and manifest["patient_id"] == "study"
    assert manifest["pairing_check"]["passed"] is True
    assert manifest["pairing_check"]["body_overlap"] > 0.9
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


def test_a_pair_that_fails_its_check_is_refused_or_kept_marked(tmp_path, capsys, caplog):
    """``--no-register`` on a CT a metre from the MR: the CT on the MR's slices would be
    all air. Refused, nothing written; with ``--force`` kept, marked not aligned, with a
    warning; ``dataset build`` then refuses the study."""
    mr = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "MR")
    ct = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "CT")
    ct.origin_lps_mm = (0.0, 0.0, 1000.0)
    ct_path = write_volume(ct, tmp_path / "ct_scan.nii.gz")
    mr_path = write_volume(mr, tmp_path / "t2_scan.nii.gz")
    study = tmp_path / "study"
    argv = ["pair", str(ct_path), str(mr_path), "--out", str(study), "--size", "16"]
    argv += ["--no-register", "--no-n4"]

    before = sorted(tmp_path.iterdir())
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(
        "medstyle: error: CT ct_scan.nii.gz and MR t2_scan.nii.gz do not make a plausible pair: "
        "the MR's middle lands outside the CT"
    )
    assert "12 of 12 CT slices are one constant value" in err
    assert err.endswith("nothing written (pass --force to keep it, marked not aligned)")
    assert sorted(tmp_path.iterdir()) == before  # nothing written, no debris

    assert main([*argv, "--force"]) == 0
    out = capsys.readouterr().out
    assert "pairing check: FAILED: the MR's middle lands outside the CT" in out
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{study}: kept although its pairing check failed (")
    assert warning.endswith(
        "study.json marks it not aligned and 'medstyle dataset build' refuses it"
    )
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["aligned"] is False and manifest["pairing_check"]["passed"] is False
    assert manifest["pairing_check"]["constant_slices"] == {"CT": 12, "MR": 0}

    data = tmp_path / "data.h5"
    argv = ["dataset", "build", str(study), "--out", str(data), "--size", "16", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not data.exists()
    assert err.startswith(f"medstyle: error: {study}: study study failed its pairing check")


def test_the_explorer_gets_the_verdict_on_a_pair(tmp_path):
    """The GUI's "open paired study" (core.explore.load_pair) loads a pair that fails
    the check without an error, and both slots carry the verdict."""
    from pathlib import Path

    from medstyle_gui.core.explore import load_pair
    from medstyle_gui.core.model import load_model

    demo = Path(__file__).resolve().parents[2] / "resources" / "models" / "demo"
    mr = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "MR")
    ct = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "CT")
    mr.sex, ct.sex = "F", "M"  # the scans disagree on who they are
    ct_path = write_volume(ct, tmp_path / "ct.nii.gz")
    mr_path = write_volume(mr, tmp_path / "mr.nii.gz")

    mr_slot, ct_slot, _, _ = load_pair(load_model(demo), ct_path, mr_path, encode=False)
    verdict = mr_slot.volume.meta["pairing_check"]
    assert verdict == ct_slot.volume.meta["pairing_check"]
    assert verdict["passed"] is False and verdict["failures"] == ["the CT says sex M, the MR F"]
    assert verdict["body_overlap"] > 0.7 and verdict["mattes_mi"] < -0.5
