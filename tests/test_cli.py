"""The command line as a user runs it on real scans."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from medstyle_gui.cli import main
from tests.conftest import pydicom_test_file
from trainer.data.read import read_volume


def _info(capsys, *argv: str) -> dict:
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_on_the_real_jpeg2000_ct_series(real_ct_dicom, capsys):
    facts = _info(capsys, str(real_ct_dicom))
    assert facts["modality"] == "CT" and facts["modality_source"] == "dicom"
    assert (facts["slices"], facts["rows"], facts["columns"]) == (20, 512, 512)
    np.testing.assert_allclose(facts["spacing_mm_zyx"], [2.0, 0.977, 0.977], atol=1e-3)
    assert -1030 <= facts["value_min"] <= -1020 and facts["units"] == "HU"
    assert facts["orientation"] == "LPS"


def test_info_on_the_real_t2_nifti_says_mr(real_t2_nifti, capsys):
    facts = _info(capsys, str(real_t2_nifti))
    assert facts["modality"] == "MR" and facts["slices"] == 19


def test_ct_small_hu_equal_pydicoms_modality_lut(capsys):
    path = pydicom_test_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    volume = read_volume(path)
    assert volume.modality == "CT" and volume.shape == (1, *expected.shape)
    # same HU; the row/column order may differ only by the LPS reorientation
    np.testing.assert_array_equal(np.sort(volume.array.ravel()), np.sort(expected.ravel()))
    facts = _info(capsys, str(path))
    assert facts["value_min"] == float(expected.min()) and facts["value_max"] == float(
        expected.max()
    )


def test_convert_dicom_series_to_dicom_and_back_keeps_hu(real_ct_dicom, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["convert", str(real_ct_dicom), str(out), "--format", "dicom"]) == 0
    original, exported = read_volume(real_ct_dicom), read_volume(out)
    np.testing.assert_array_equal(exported.array, original.array)
    np.testing.assert_allclose(exported.spacing_mm, original.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(exported.origin_lps_mm, original.origin_lps_mm, atol=1e-3)


def test_medstyle_runs_as_a_console_command():
    result = subprocess.run(
        [sys.executable, "-m", "medstyle_gui", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("medstyle ")


def test_no_command_without_a_display_prints_the_overview(monkeypatch, capsys) -> None:
    from medstyle_gui.cli import main

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "embed" in out and "gui" in out and "no display" in out
