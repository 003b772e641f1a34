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


def test_info_says_how_many_voxels_were_padding(tmp_path, capsys):
    """CT_small with its first 10 rows set to its Pixel Padding Value (-2000 stored,
    -3024 HU): info counts them, in text and JSON, and reads them as air."""
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    pixels = ds.pixel_array.copy()
    pixels[:10] = -2000
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "padded.dcm"
    ds.save_as(path)
    facts = _info(capsys, str(path))
    assert facts["padding_voxels"] == 10 * pixels.shape[1] and facts["value_min"] == -1024.0
    assert "set to air (-1024 HU)" in facts["padding_note"]
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"padding_voxels      {10 * pixels.shape[1]}" in text
    assert "1280 voxels (7.8 %) held the pixel padding value -2000 (stored)" in text


def test_convert_dicom_series_to_dicom_and_back_keeps_hu(real_ct_dicom, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["convert", str(real_ct_dicom), str(out), "--format", "dicom"]) == 0
    original, exported = read_volume(real_ct_dicom), read_volume(out)
    np.testing.assert_array_equal(exported.array, original.array)
    np.testing.assert_allclose(exported.spacing_mm, original.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(exported.origin_lps_mm, original.origin_lps_mm, atol=1e-3)
    # The source's 3 mm slice thickness, not its 2 mm spacing.
    assert exported.meta["slice_thickness_mm"] == 3.0


def test_convert_float_mr_to_dicom_keeps_precision_and_warns_of_outliers(tmp_path):
    """An MR normalised to [0, 1] survives NIfTI -> DICOM -> reader within 1e-3 of its
    range, silently; with one outlier at 5000 the coarse step is one line on stderr."""
    import SimpleITK as sitk

    array = np.random.default_rng(0).uniform(0, 1, (4, 16, 16)).astype(np.float32)
    outlier = array.copy()
    outlier[0, 0, 0] = 5000.0
    for name, values in (("mr", array), ("outlier", outlier)):
        sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / f"{name}.nii.gz"))
    runs = [
        subprocess.run(
            [sys.executable, "-m", "medstyle_gui", "convert", str(tmp_path / f"{name}.nii.gz"),
             str(tmp_path / name), "--format", "dicom"],
            capture_output=True, text=True,
        )
        for name in ("mr", "outlier")
    ]  # fmt: skip
    assert [run.returncode for run in runs] == [0, 0]
    assert runs[0].stderr == ""
    source, back = read_volume(tmp_path / "mr.nii.gz"), read_volume(tmp_path / "mr")
    assert back.modality == "MR"
    assert np.abs(back.array - source.array).max() <= 1e-3
    [line] = runs[1].stderr.splitlines()
    assert line.startswith(str(tmp_path / "outlier")) and "steps of" in line


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


def _options(parser, path=()):
    """Every (command words, option action) of ``parser`` and its subcommands."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield path, action


def test_modality_and_sex_are_taken_in_either_case_everywhere(make_volume, tmp_path, capsys):
    """``--modality ct`` and ``--sex f``, as users type them, on every command that takes
    them (each is found by walking the parser, so a new command cannot forget it)."""
    from medstyle_gui.cli import build_parser
    from trainer.data.write import write_volume

    takers = {
        (" ".join(path), flag): action
        for path, action in _options(build_parser())
        for flag in ("--modality", "--sex")
        if flag in action.option_strings
    }
    assert {cmd for cmd, _flag in takers} >= {"info", "convert", "embed", "generate", "train gan"}
    for (cmd, flag), action in takers.items():
        for typed in {"--modality": ("ct", "Mr"), "--sex": ("f", "m")}[flag]:
            value = action.type(typed) if action.type else typed
            assert value == typed.upper(), (cmd, flag, typed)
            assert action.choices is None or value in action.choices, (cmd, flag, typed)
    # and end to end: an MR-looking scan read as CT because the user said "ct"
    scan = write_volume(make_volume(modality="MR"), tmp_path / "scan.nii.gz")
    facts = _info(capsys, str(scan), "--modality", "ct")
    assert facts["modality"] == "CT" and facts["modality_source"] == "option"


def test_train_gan_help_states_the_smallest_resolution(capsys):
    """The smallest final resolution the help names is the network's smallest."""
    import re

    import pytest

    from trainer.errors import ConfigError
    from trainer.networks import StyleGANConfig

    with pytest.raises(SystemExit):
        main(["train", "gan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    smallest = int(re.search(r"--resolution RESOLUTION final resolution in px: (\d+),", text)[1])
    StyleGANConfig(img_resolution=smallest)
    with pytest.raises(ConfigError):
        StyleGANConfig(img_resolution=smallest // 2)


def test_pair_of_two_peoples_real_scans_fails_in_one_line(
    real_ct_dicom, real_data, tmp_path, capsys
):
    """The real abdomen CT and another person's real pelvic T2 (DICOM), taken at their
    word (``--no-register``): they lie a metre apart, and the study is refused."""
    study = tmp_path / "study"
    mr = real_data / "prostatex0001_t2_dicom"
    argv = ["pair", str(real_ct_dicom), str(mr), "--out", str(study), "--size", "32"]
    assert main([*argv, "--no-register", "--no-n4"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1
    assert err.startswith(
        "medstyle: error: CT ct_abdomen_dicom and MR prostatex0001_t2_dicom do not make a "
        "plausible pair: the MR's middle lands outside the CT"
    )
    assert "only 0% of the MR's body has CT body under it (at least 60%)" in err
    assert "--force" in err and not study.exists()
