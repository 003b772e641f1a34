"""Bad input, as a user meets it on the command line: one clear line on stderr that
names the file and the problem, a non-zero exit, no traceback, and nothing written."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medstyle_gui.cli import main
from tests.conftest import REAL_DATA, pydicom_test_file

Builder = Callable[[Path], "tuple[list[str], str]"]
"""Makes a bad input in a folder; returns the extra CLI arguments (the scan and
options) and a regular expression the error line must match."""


def _nifti(tmp: Path, array: np.ndarray, name: str = "scan.nii.gz", vector: bool = False) -> Path:
    path = tmp / name
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


def _real_series_copy(tmp: Path) -> Path:
    src = REAL_DATA / "ct_abdomen_dicom"
    if not src.is_dir():
        pytest.skip(f"real scans not found at {REAL_DATA}")
    dst = tmp / "series"
    shutil.copytree(src, dst)
    return dst


def _sorted_by_z(folder: Path) -> list[Path]:
    files = list(folder.iterdir())
    return sorted(
        files,
        key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]),
    )


def missing_path(tmp):
    return [str(tmp / "nowhere.nii.gz")], "does not exist"


def empty_file(tmp):
    (tmp / "empty.nii.gz").touch()
    return [str(tmp / "empty.nii.gz")], "empty"


def empty_dicom_file(tmp):
    (tmp / "slice.dcm").touch()
    return [str(tmp / "slice.dcm")], "empty"


def truncated_nifti(tmp):
    path = _nifti(tmp, np.random.default_rng(0).normal(size=(8, 32, 32)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [str(path)], "truncated|corrupt"


def truncated_metaimage(tmp):
    path = tmp / "scan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 32, 32), np.float32)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [str(path)], "truncated|corrupt"


def text_posing_as_nifti(tmp):
    (tmp / "notes.nii").write_text("this is not an image\n" * 40)
    return [str(tmp / "notes.nii")], "not a readable NIfTI"


def unknown_extension(tmp):
    (tmp / "scan.txt").write_text("hello")
    return [str(tmp / "scan.txt")], "unknown file format"


def four_d_nifti(tmp):
    image = sitk.JoinSeries([sitk.Image([8, 8, 4], sitk.sitkFloat32)] * 3)
    sitk.WriteImage(image, str(tmp / "fmri.nii.gz"))
    return [str(tmp / "fmri.nii.gz")], "4-D"


def rgb_nifti(tmp):
    path = _nifti(tmp, np.zeros((4, 8, 8, 3), np.uint8), "rgb.nii.gz", vector=True)
    return [str(path)], "colour"


def nan_voxels(tmp):
    array = np.zeros((4, 8, 8), np.float32)
    array[1, 2, 3] = np.nan
    return [str(_nifti(tmp, array))], "NaN"


def inf_voxels(tmp):
    array = np.zeros((4, 8, 8), np.float32)
    array[0, 0, 0] = np.inf
    return [str(_nifti(tmp, array))], "infinite"


def broken_sidecar(tmp):
    path = _nifti(tmp, np.zeros((4, 8, 8), np.float32))
    (tmp / "scan.json").write_text("{modality: MR")
    return [str(path)], "scan.json: sidecar is not valid JSON"


def folder_without_dicom(tmp):
    folder = tmp / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing here")
    return [str(folder)], "no DICOM"


def unreadable_folder(tmp, monkeypatch):
    folder = tmp / "locked"
    folder.mkdir()
    real_access = __import__("os").access
    monkeypatch.setattr(
        "os.access", lambda p, mode: False if Path(p) == folder else real_access(p, mode)
    )
    return [str(folder)], "permission denied"


def rtstruct(tmp):
    path = tmp / "rs.dcm"
    shutil.copy(pydicom_test_file("rtstruct.dcm"), path)
    return [str(path)], "RT Structure Set"


def structured_report(tmp):
    path = tmp / "sr.dcm"
    shutil.copy(pydicom_test_file("test-SR.dcm"), path)
    return [str(path)], "Structured Report|SR"


def segmentation(tmp):
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "SEG"
    path = tmp / "seg.dcm"
    ds.save_as(path)
    return [str(path)], "Segmentation"


def truncated_dicom(tmp):
    path = tmp / "MR_truncated.dcm"
    shutil.copy(pydicom_test_file("MR_truncated.dcm"), path)
    return [str(path)], "truncated|corrupt|incomplete"


def rgb_dicom(tmp):
    path = tmp / "rgb.dcm"
    shutil.copy(pydicom_test_file("SC_rgb.dcm"), path)
    return [str(path)], "colour|RGB"


def missing_slice(tmp):
    folder = _real_series_copy(tmp)
    _sorted_by_z(folder)[10].unlink()
    return [str(folder)], r"gap of 4(\.0+)? ?mm.*expected 2(\.0+)? ?mm"


def uneven_spacing(tmp):
    folder = _real_series_copy(tmp)
    for f in _sorted_by_z(folder)[12:]:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[2] += 0.7
        ds.save_as(f)
    return [str(folder)], "spacing|gap"


def gantry_tilt(tmp):
    folder = _real_series_copy(tmp)
    for k, f in enumerate(_sorted_by_z(folder)):
        ds = pydicom.dcmread(f)
        ds.GantryDetectorTilt = 12.0
        ds.ImagePositionPatient[1] += k * 2.0 * np.tan(np.radians(12.0))
        ds.save_as(f)
    return [str(folder)], "tilt"


def duplicate_positions(tmp):
    folder = _real_series_copy(tmp)
    files = _sorted_by_z(folder)
    ds = pydicom.dcmread(files[5])
    ds.ImagePositionPatient = pydicom.dcmread(files[4]).ImagePositionPatient
    ds.save_as(files[5])
    return [str(folder)], "duplicate|same position"


def two_series_without_choice(tmp):
    folder = _real_series_copy(tmp)
    for f in _sorted_by_z(folder)[:3]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.save_as(f)
    return [str(folder)], "--series"


def unknown_series_uid(tmp):
    folder = _real_series_copy(tmp)
    return [str(folder), "--series", "1.2.3.4.5"], "1.2.3.4.5"


def foreign_hdf5(tmp):
    with h5py.File(tmp / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    return [str(tmp / "other.h5")], "not a medstyle"


def corrupt_hdf5(tmp):
    (tmp / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    return [str(tmp / "bad.h5")], "not a readable HDF5"


def gzip_of_garbage(tmp):
    with gzip.open(tmp / "noise.nii.gz", "wb") as f:
        f.write(b"\x01\x02" * 500)
    return [str(tmp / "noise.nii.gz")], "not a readable NIfTI|truncated|corrupt"


CASES: dict[str, Callable] = {
    f.__name__: f
    for f in (
        missing_path, empty_file, empty_dicom_file, truncated_nifti, truncated_metaimage,
        text_posing_as_nifti,
        unknown_extension, four_d_nifti, rgb_nifti, nan_voxels, inf_voxels, broken_sidecar,
        folder_without_dicom, unreadable_folder, rtstruct, structured_report, segmentation,
        truncated_dicom, rgb_dicom, missing_slice, uneven_spacing, gantry_tilt,
        duplicate_positions, two_series_without_choice, unknown_series_uid, foreign_hdf5,
        corrupt_hdf5, gzip_of_garbage,
    )
}  # fmt: skip


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_clear_line(code: int, err: str, pattern: str, names: str) -> None:
    import re

    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert re.search(pattern, lines[0], re.IGNORECASE), lines[0]
    assert names in lines[0], f"the message should name {names}: {lines[0]}"


@pytest.mark.parametrize("case", CASES)
def test_bad_scan_gives_one_clear_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    builder = CASES[case]
    args, pattern = (
        builder(tmp_path, monkeypatch) if case == "unreadable_folder" else builder(tmp_path)
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    code, err = _run(["convert", args[0], str(out_dir / "converted.nii.gz"), *args[1:]], capsys)

    names = Path(args[0]).name.split(".")[0]  # the scan, or its sidecar
    _assert_one_clear_line(code, err, pattern, names)
    assert list(out_dir.iterdir()) == [], "a failed conversion must write nothing"
    code, err = _run(["info", *args], capsys)
    _assert_one_clear_line(code, err, pattern, names)


def test_existing_target_is_refused_and_kept(tmp_path, capsys, make_volume):
    from trainer.data.write import write_volume

    src = write_volume(make_volume(), tmp_path / "src.nii.gz")
    target = tmp_path / "target.nii.gz"
    target.write_bytes(b"keep me")
    code, err = _run(["convert", str(src), str(target)], capsys)
    _assert_one_clear_line(code, err, "already exists.*--overwrite", "target.nii.gz")
    assert target.read_bytes() == b"keep me"


def test_unknown_output_format_is_refused(tmp_path, capsys, make_volume):
    from trainer.data.write import write_volume

    src = write_volume(make_volume(), tmp_path / "src.nii.gz")
    code, err = _run(["convert", str(src), str(tmp_path / "out.png")], capsys)
    _assert_one_clear_line(code, err, "output format", "out.png")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "argv",
    [["dataset", "build", "x", "--out", "y.h5", "--size", "300"], ["convert"], ["frobnicate"]],
)
def test_bad_options_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "usage" not in err, err
