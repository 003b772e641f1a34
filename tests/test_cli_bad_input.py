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


def series_number_out_of_range(tmp):
    folder = _real_series_copy(tmp)  # one series: [1] is all there is
    return [str(folder), "--series", "2"], r"has no series 2.*\[1\]"


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


def _dims(n: int) -> bytes:
    """NIfTI-1 ``dim[0..7]`` (header bytes 40-55) of an ``n`` x ``n`` x ``n`` volume."""
    return np.array([3, n, n, n, 1, 1, 1, 1], "<i2").tobytes()


def huge_declared_nifti(tmp):
    path = _nifti(tmp, np.zeros((4, 4, 4), np.int16))
    header = bytearray(gzip.decompress(path.read_bytes()))
    header[40:56] = _dims(30000)  # 54 TB declared in a file of about 100 bytes
    path.write_bytes(gzip.compress(bytes(header)))
    return [str(path)], r"declares 30000 x 30000 x 30000 voxels \(54 TB\)"


def huge_declared_metaimage(tmp):
    path = tmp / "scan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(path))
    path.write_bytes(path.read_bytes().replace(b"DimSize = 4 4 4", b"DimSize = 30000 30000 30000"))
    return [str(path)], r"declares 30000 x 30000 x 30000 voxels .*128 bytes of data"


def huge_declared_nrrd(tmp):
    path = tmp / "scan.nrrd"
    image = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16))
    sitk.WriteImage(image, str(path), useCompression=True)
    path.write_bytes(path.read_bytes().replace(b"sizes: 4 4 4", b"sizes: 1024 1024 1024"))
    return [str(path)], r"declares 1024 x 1024 x 1024 voxels .*compressed data"


CASES: dict[str, Callable] = {
    f.__name__: f
    for f in (
        missing_path, empty_file, empty_dicom_file, truncated_nifti, truncated_metaimage,
        text_posing_as_nifti,
        unknown_extension, four_d_nifti, rgb_nifti, nan_voxels, inf_voxels, broken_sidecar,
        folder_without_dicom, unreadable_folder, rtstruct, structured_report, segmentation,
        truncated_dicom, rgb_dicom, missing_slice, uneven_spacing, gantry_tilt,
        duplicate_positions, two_series_without_choice, unknown_series_uid, foreign_hdf5,
        corrupt_hdf5, gzip_of_garbage, series_number_out_of_range, huge_declared_nifti,
        huge_declared_metaimage, huge_declared_nrrd,
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
    [
        ["dataset", "build", "x", "--out", "y.h5", "--size", "300"],
        ["convert"],
        ["frobnicate"],
        ["info", "x.nii.gz", "--modality", "pet"],  # either case is taken; PET is not
        ["generate", "--model", "m", "--slices", "3", "--out", "o.nii.gz", "--sex", "x"],
    ],
)
def test_bad_options_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "usage" not in err, err


def _gui_garbage_session(tmp):
    (tmp / "s.medstyle").write_bytes(b"not a session at all")
    return [str(tmp / "s.medstyle")], "not a medstyle session", "s.medstyle"


def _gui_truncated_session(tmp):
    from medstyle_gui import resources_path

    whole = Path(str(resources_path("demo", "demo.medstyle"))).read_bytes()
    (tmp / "cut.medstyle").write_bytes(whole[: len(whole) // 2])
    return [str(tmp / "cut.medstyle")], "not a medstyle session.*cut short", "cut.medstyle"


def _gui_existing_screenshot(tmp):
    (tmp / "shot.png").write_bytes(b"keep me")
    return [], "already exists.*--overwrite", "shot.png"


def _gui_series_of_a_pair(tmp):
    from medstyle_gui import resources_path

    study = str(resources_path("demo", "study"))
    return [study, "--series", "1"], "--series 1.*not a pair", "study"


GUI_CASES = {
    f.__name__[5:]: f
    for f in (
        _gui_garbage_session, _gui_truncated_session, _gui_existing_screenshot,
        _gui_series_of_a_pair,
    )
}  # fmt: skip


@pytest.mark.parametrize("case", GUI_CASES)
def test_gui_refuses_bad_input_before_a_window_opens(case, tmp_path, capsys):
    """``medstyle gui ... --screenshot``: what cannot open is one line and a non-zero exit
    before any window (so nothing of Qt runs here), and the screenshot is not written."""
    args, pattern, names = GUI_CASES[case](tmp_path)
    shot = tmp_path / "shot.png"
    before = shot.read_bytes() if shot.exists() else None
    code, err = _run(["gui", *args, "--screenshot", str(shot)], capsys)
    _assert_one_clear_line(code, err, pattern, names)
    assert (shot.read_bytes() if shot.exists() else None) == before


def test_gui_on_a_display_nobody_serves_is_one_line(capsys, monkeypatch):
    """``DISPLAY=:N medstyle gui`` with no X server there: one line naming it, before Qt
    (which would abort the process)."""
    import sys

    if sys.platform != "linux":
        pytest.skip("X11 displays: Linux")
    from tests.test_cli_gui import _dead_display

    display = _dead_display()
    monkeypatch.setenv("DISPLAY", display)
    for name in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    code, err = _run(["gui"], capsys)
    _assert_one_clear_line(code, err, "cannot reach display.*xvfb-run", display)


def test_train_gan_below_the_smallest_resolution_is_one_line(tmp_path, capsys):
    """``train gan --resolution 16``: the smallest its help names is 32, and the refusal
    says so with the option's name (not the network config's field)."""
    data = tmp_path / "data.h5"
    data.touch()
    code, err = _run(
        ["train", "gan", "--data", str(data), "--out", str(tmp_path / "run"), "--resolution", "16"],
        capsys,
    )
    _assert_one_clear_line(code, err, "resolution 16 is not a power of two between 32 and", "16")
    assert not (tmp_path / "run").exists()


# -- destinations that cannot be written: refused before the work, naming them ---------

DEMO_MODEL = Path(__file__).resolve().parents[1] / "resources" / "models" / "demo"


def _writers(tmp: Path, locked: Path) -> dict[str, tuple[list[str], str]]:
    """Every command that writes, with its destination in ``locked``: ``(argv, the
    destination's name)``. The inputs do not exist (or the work would be long), so an
    answer about the destination shows it was checked before any input was read."""
    nowhere, model = str(tmp / "nowhere.nii.gz"), str(DEMO_MODEL)
    phantom = ["phantom", "--patients", "1", "--size", "32", "--slices", "4", "--quiet"]
    return {
        "convert": (["convert", nowhere, str(locked / "x.nii.gz")], "x.nii.gz"),
        "pair": (["pair", nowhere, nowhere, "--out", str(locked / "study")], "study"),
        "dataset build": (["dataset", "build", nowhere, "--out", str(locked / "d.h5")], "d.h5"),
        "phantom": ([*phantom, str(locked / "cohort")], "cohort"),
        "phantom --montage": (
            [*phantom, str(tmp / "cohort"), "--montage", str(locked / "m.png")],
            "m.png",
        ),
        "phantom-montage": (["phantom-montage", nowhere, str(locked / "m.png")], "m.png"),
        "embed": (["embed", nowhere, "--model", model, "--out", str(locked / "l.h5")], "l.h5"),
        "session": (
            ["session", nowhere, "--model", model, "--out", str(locked / "s.medstyle")],
            "s.medstyle",
        ),
        "generate": (
            ["generate", "--model", model, "--seed", "1", "--slices", "4", "--quiet",
             "--out", str(locked / "g.nii.gz")],
            "g.nii.gz",
        ),
        "generate --preview": (
            ["generate", "--model", model, "--seed", "1", "--slices", "4", "--quiet",
             "--out", str(tmp / "g.nii.gz"), "--preview", str(locked / "p.png")],
            "p.png",
        ),
        "evaluate": (
            ["evaluate", "slice", "--model", model, "--data", nowhere, "--quiet",
             "--out", str(locked / "report")],
            "report",
        ),
        "train gan": (["train", "gan", "--data", nowhere, "--out", str(locked / "run")], "run"),
        "train encoder": (
            ["train", "encoder", "--model", model, "--out", str(locked / "run")],
            "run",
        ),
        "train bundle": (["train", "bundle", nowhere, "--out", str(locked / "b")], "b"),
        "gui --screenshot": (["gui", "--screenshot", str(locked / "shot.png")], "shot.png"),
    }  # fmt: skip


WRITERS = list(_writers(Path("t"), Path("l")))


def _lock(folder: Path, monkeypatch) -> None:
    """Make ``folder`` refuse new files. Its permissions say so; where they do not stop
    this process (root ignores them), the kernel's answer to everyone else, EACCES, is
    given where files and folders are created."""
    import errno
    import os
    import tempfile

    folder.chmod(0o555)
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except PermissionError:
        pass
    else:
        os.close(fd)
        os.unlink(probe)

        def refuse(make):
            def made(*args, dir=None, **kwargs):
                if dir is not None and Path(dir).resolve() == folder.resolve():
                    raise PermissionError(errno.EACCES, "Permission denied", str(folder))
                return make(*args, dir=dir, **kwargs)

            return made

        monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
        monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp))


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """An empty folder that refuses new files (see :func:`_lock`)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    _lock(folder, monkeypatch)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_destination_is_refused_before_the_work(command, tmp_path, locked, capsys):
    argv, name = _writers(tmp_path, locked)[command]
    code, err = _run(argv, capsys)
    pattern = r"cannot write into folder .*locked \(permission denied\)"
    _assert_one_clear_line(code, err, pattern, name)
    assert f"{locked}/." not in err, "the message names a hidden temporary file"
    assert list(locked.iterdir()) == []
    assert not (tmp_path / "cohort").exists() and not (tmp_path / "g.nii.gz").exists()


def test_directions_fit_into_a_read_only_bundle_is_refused_before_fitting(
    tmp_path, monkeypatch, capsys
):
    """The directions go into the bundle: a read-only one (an installed demo) is found
    before the latents are even read, not after the fitting."""
    bundle = tmp_path / "locked"
    shutil.copytree(DEMO_MODEL, bundle)
    _lock(bundle, monkeypatch)
    try:
        code, err = _run(
            ["directions", "fit", "--model", str(bundle), "--latents", str(tmp_path / "l.h5")],
            capsys,
        )
    finally:
        bundle.chmod(0o755)
    _assert_one_clear_line(code, err, r"cannot write into folder .*locked", "bundle.json")


def test_a_folder_that_takes_no_files_even_from_root_is_refused(tmp_path, capsys, make_volume):
    """``/proc`` refuses new files to everyone, root included: no simulation needed."""
    import tempfile

    try:
        tempfile.mkstemp(dir="/proc")
    except OSError:
        pass
    else:  # pragma: no cover - not Linux
        pytest.skip("/proc takes new files here")
    from trainer.data.write import write_volume

    src = write_volume(make_volume(), tmp_path / "src.nii.gz")
    code, err = _run(["convert", str(src), "/proc/x.nii.gz"], capsys)
    _assert_one_clear_line(code, err, r"cannot write into folder /proc", "/proc/x.nii.gz")


def test_destination_under_a_file_is_refused(tmp_path, capsys, make_volume):
    from trainer.data.write import write_volume

    src = write_volume(make_volume(), tmp_path / "src.nii.gz")
    (tmp_path / "notes").write_text("a file, not a folder")
    code, err = _run(["convert", str(src), str(tmp_path / "notes" / "x.nii.gz")], capsys)
    _assert_one_clear_line(code, err, r"notes is a file, not a folder", "x.nii.gz")


# -- scans with nothing to embed ----------------------------------------------------------


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.zeros((4, 16, 16), np.int16), r"every voxel is 0 .*blank scan.*nothing to embed"),
        (np.full((1, 1, 1), 300, np.int16), r"single voxel"),
    ],
    ids=["all-zero", "one-voxel"],
)
@pytest.mark.parametrize("command", ["embed", "session"])
def test_scan_with_nothing_to_embed_is_refused(command, array, pattern, tmp_path, capsys):
    scan = _nifti(tmp_path, array)
    out = tmp_path / ("l.h5" if command == "embed" else "s.medstyle")
    argv = [command, str(scan), "--model", str(DEMO_MODEL), "--out", str(out)]
    code, err = _run([*argv, "--refine-steps", "0", "--quiet"], capsys)
    _assert_one_clear_line(code, err, pattern, "scan.nii.gz")
    assert not out.exists()


# -- pairs that are not one patient's CT and MR -------------------------------------------


def _pair_scans(tmp: Path, ct_shift_mm: float = 0.0, ids=("P1", "P1")) -> tuple[str, str]:
    """A small phantom CT and MR, ``ct_shift_mm`` apart along S, with sidecars that give
    their modality and patient id."""
    import json

    from tests.trainer.data.test_register import pelvis_phantom

    paths = []
    for modality, patient_id in zip(("CT", "MR"), ids, strict=True):
        volume = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), modality)
        if modality == "CT":
            x, y, z = volume.origin_lps_mm
            volume.origin_lps_mm = (x, y, z + ct_shift_mm)
        path = tmp / f"{modality.lower()}.nii.gz"
        sitk.WriteImage(volume.to_sitk(), str(path))
        sidecar = {"modality": modality, "patient_id": patient_id}
        (tmp / f"{modality.lower()}.json").write_text(json.dumps(sidecar))
        paths.append(str(path))
    return paths[0], paths[1]


def pair_without_overlap(tmp):
    ct, mr = _pair_scans(tmp, ct_shift_mm=1000.0)
    return ["pair", ct, mr, "--out", str(tmp / "study"), "--no-register"], (
        r"do not make a plausible pair: the MR's middle lands outside the CT.*CT slices are "
        r"one constant value.*pass --force"
    )


def pair_of_two_patients(tmp):
    ct, mr = _pair_scans(tmp, ids=("P0001", "P0002"))
    return ["pair", ct, mr, "--out", str(tmp / "study"), "--no-register"], (
        r"do not make a plausible pair: the CT and the MR name different patients"
    )


def _study(tmp: Path, manifest: dict, ct_value: float | None = None) -> Path:
    import json

    from tests.trainer.data.test_register import pelvis_phantom
    from trainer.data.write import write_volume

    folder = tmp / "study"
    folder.mkdir()
    ct = pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "CT")
    if ct_value is not None:
        ct = ct.with_array(np.full(ct.shape, ct_value, np.float32))
    write_volume(ct, folder / "ct.nii.gz")
    write_volume(pelvis_phantom((12, 32, 40), (6.0, 8.0, 8.0), "MR"), folder / "mr.nii.gz")
    base = {"patient_id": "P7", "ct": "ct.nii.gz", "mr": "mr.nii.gz", "aligned": True}
    (folder / "study.json").write_text(json.dumps({**base, **manifest}))
    return folder


def dataset_of_a_forced_study(tmp):
    failed = {"passed": False, "failures": ["Mattes MI -0.070 is above -0.15"]}
    folder = _study(tmp, {"aligned": False, "pairing_check": failed})
    return ["dataset", "build", str(folder), "--out", str(tmp / "d.h5"), "--quiet"], (
        r"study P7 failed its pairing check when it was paired \(Mattes MI -0.070"
    )


def dataset_of_an_all_air_ct(tmp):
    folder = _study(tmp, {}, ct_value=-1024.0)
    return ["dataset", "build", str(folder), "--out", str(tmp / "d.h5"), "--quiet"], (
        r"study P7: .*12 of 12 CT slices are one constant value"
    )


PAIR_CASES = {
    f.__name__: f
    for f in (pair_without_overlap, pair_of_two_patients, dataset_of_a_forced_study,
              dataset_of_an_all_air_ct)
}  # fmt: skip


@pytest.mark.parametrize("case", PAIR_CASES)
def test_implausible_pair_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    argv, pattern = PAIR_CASES[case](tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, err = _run([*argv, "--size", "16", "--no-n4"], capsys)
    names = "study" if argv[0] == "dataset" else "ct.nii.gz"
    _assert_one_clear_line(code, err, pattern, names)
    assert sorted(tmp_path.rglob("*")) == before


# -- found by trying every command with bad numbers, names and files ----------------------


def _sweep_cases(tmp: Path, ct: str, mr: str) -> dict[str, tuple[list[str], str, str]]:
    """``(argv, the error line's pattern, what it must name)``. Each of these once gave a
    traceback, an "internal error", or exit 0 with a wrong output (a PNG named .jpg, HDF5
    named .nii.gz, a CT trained as an MR, an all-zero volume...). ``ct`` and ``mr`` are a
    small CT and MR whose sidecars say so; ``tmp/config.json`` gives kimg as a string."""
    model, nowhere = str(DEMO_MODEL), str(tmp / "nowhere.h5")
    generate = ["generate", "--model", model, "--quiet", "--out", str(tmp / "g.nii.gz")]
    phantom = ["phantom", str(tmp / "c"), "--patients", "1", "--size", "32", "--slices", "4"]
    pair = ["--out", str(tmp / "study"), "--no-register", "--no-n4", "--size", "16"]
    gan = ["train", "gan", "--data", nowhere, "--out", str(tmp / "run"), "--quiet"]
    return {
        "convert --format h5 to .nii.gz": (
            ["convert", ct, str(tmp / "x.nii.gz"), "--format", "h5"],
            r"format h5 needs a name ending in \.h5 or \.hdf5", "x.nii.gz",
        ),
        "convert --format nifti to no ending": (
            ["convert", ct, str(tmp / "series"), "--format", "nifti"],
            r"format nifti needs a name ending in \.nii\.gz or \.nii", "series",
        ),
        "convert --format dicom to .nii.gz": (
            ["convert", ct, str(tmp / "x.nii.gz"), "--format", "dicom"],
            "the name says nifti but format dicom was asked for", "x.nii.gz",
        ),
        "pair MR then CT": (
            ["pair", mr, ct, *pair], "is given as the CT but its sidecar says MR", "mr.nii.gz"
        ),
        "pair one scan twice": (
            ["pair", ct, ct, *pair], "is given as both the CT and the MR", "ct.nii.gz"
        ),
        "session MR then CT": (
            ["session", mr, ct, "--model", model, "--out", str(tmp / "s.medstyle"), "--quiet"],
            "is given as the CT but its sidecar says MR", "mr.nii.gz",
        ),
        "phantom --seed -1": ([*phantom, "--seed", "-1"], "a seed is a whole number", "--seed"),
        "phantom --montage .jpg": (
            [*phantom, "--montage", str(tmp / "m.jpg")], "written as PNG: name it .png", "m.jpg"
        ),
        "generate --slices 10^8": (
            [*generate, "--seed", "1", "--slices", "100000000"], "must be from 1 to", "--slices"
        ),
        "generate --truncation nan": (
            [*generate, "--seed", "1", "--slices", "4", "--truncation", "nan"],
            "psi must be from -2 to 2", "--truncation nan",
        ),
        "generate --pixel-mm 0": (
            [*generate, "--seed", "1", "--slices", "4", "--pixel-mm", "0"],
            "a pixel size is more than 0 mm", "--pixel-mm 0",
        ),
        "generate --seed 10^23": (
            [*generate, "--seed", "1" + "0" * 23, "--slices", "4"], "too large", "--seed",
        ),
        "generate --preview .jpg": (
            [*generate, "--seed", "1", "--slices", "4", "--preview", str(tmp / "p.jpg")],
            "written as PNG: name it .png", "p.jpg",
        ),
        "embed --refine-steps 10^12": (
            ["embed", ct, "--model", model, "--out", str(tmp / "l.h5"),
             "--refine-steps", "1000000000000"],
            "must be from 0 to 100000", "--refine-steps",
        ),
        "embed --batch 0": (
            ["embed", ct, "--model", model, "--out", str(tmp / "l.h5"), "--batch", "0"],
            "refine at least one slice", "--batch 0",
        ),
        "evaluate --seed -1": (
            ["evaluate", "slice", "--model", model, "--data", nowhere, "--quick", "--quiet",
             "--out", str(tmp / "report"), "--seed", "-1"],
            "a seed is a whole number", "--seed -1",
        ),
        "train gan config of the wrong type": (
            [*gan, "--config", str(tmp / "config.json")],
            "option 'kimg' is 'lots'; it takes a number", "config.json",
        ),
        "train gan --device tpu": ([*gan, "--device", "tpu"], "unknown device", "--device tpu"),
        "train gan --batch 7:4": (
            [*gan, "--batch", "7:4"], "batch size resolution 7 is not a power of two", "7"
        ),
        "train gan --out a file": (
            ["train", "gan", "--data", nowhere, "--out", ct], "is a file, not a run folder",
            "ct.nii.gz",
        ),
        "train bundle of a folder without best.pt": (
            ["train", "bundle", str(tmp), "--out", str(tmp / "b")],
            "has no checkpoints/best.pt", str(tmp),
        ),
        "bench embed --steps 0": (
            ["bench", "embed", "--model", model, "--steps", "0", "--batches", "1"],
            "must be 1 or more", "--steps 0",
        ),
        "gui --screenshot .jpg": (
            ["gui", "--screenshot", str(tmp / "s.jpg")], "written as PNG: name it .png", "s.jpg"
        ),
    }  # fmt: skip


SWEEP = list(_sweep_cases(Path("t"), "ct", "mr"))


@pytest.mark.parametrize("case", SWEEP)
def test_bad_input_found_by_trying_every_command(case, tmp_path, capsys):
    ct, mr = _pair_scans(tmp_path)
    (tmp_path / "config.json").write_text('{"kimg": "lots"}')
    argv, pattern, names = _sweep_cases(tmp_path, ct, mr)[case]
    before = sorted(tmp_path.rglob("*"))
    code, err = _run(argv, capsys)
    _assert_one_clear_line(code, err, pattern, names)
    assert sorted(tmp_path.rglob("*")) == before, "a refused command must write nothing"


def test_directions_fit_refuses_a_negative_seed_and_trials():
    """numpy took ``--seed -1`` as an internal error; ``--trials -1`` ran as 0."""
    from trainer.directions.latents import fit_directions
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--seed -1: must be from 0 to 2\^32 - 1"):
        fit_directions("unread.h5", seed=-1)
    with pytest.raises(ConfigError, match="--trials -1: must be 0"):
        fit_directions("unread.h5", trials=-1)
