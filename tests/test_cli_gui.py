"""``medstyle gui`` where no display is: in a subprocess with DISPLAY, WAYLAND_DISPLAY and
QT_QPA_PLATFORM unset, as on a server or in CI (Qt aborts the whole process there unless
told to render offscreen, so only a subprocess shows it). Also ``--series N`` and a
failed load with ``--screenshot``. Each run opens the bundled demo model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.conftest import REAL_DATA
from tests.test_packaging import gui_env, png_size

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="only Linux (X11/Wayland) can lack a display"
)


def _gui_without_display(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m medstyle_gui gui ARGS`` with no display and no Qt platform chosen."""
    env = gui_env(tmp_path)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "medstyle_gui", "gui", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medstyle: error: "), result.stderr
    return lines[0]


def test_screenshot_without_a_display_renders_offscreen(tmp_path):
    """The demo, rendered offscreen on its own (it aborted with SIGABRT), replacing an
    older screenshot because --overwrite says so; Qt's offscreen noise stays out of it."""
    shot = tmp_path / "demo.png"
    shot.write_bytes(b"an older screenshot")
    result = _gui_without_display(tmp_path, "--screenshot", str(shot), "--overwrite")
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert png_size(shot)[0] > 800
    assert "shown: model demo (64 px" in result.stdout
    assert "propagateSizeHints" not in result.stderr and "Traceback" not in result.stderr


def test_without_a_display_or_screenshot_says_how_in_one_line(tmp_path):
    line = _one_error_line(_gui_without_display(tmp_path))
    assert "no display" in line and "DISPLAY" in line and "xvfb-run" in line
    assert "--screenshot" in line


def test_an_unreadable_scan_fails_and_writes_no_screenshot(tmp_path):
    """The scan fails on the loading worker, after the window opened: still one line,
    exit 1, and no picture of a window that shows nothing of it."""
    scan = tmp_path / "noise.nii.gz"
    scan.write_bytes(bytes(range(256)) * 8)
    shot = tmp_path / "shot.png"
    line = _one_error_line(_gui_without_display(tmp_path, str(scan), "--screenshot", str(shot)))
    assert "noise.nii.gz" in line and "NIfTI" in line
    assert not shot.exists()


def test_series_without_uid_is_chosen_by_its_listed_number(tmp_path, capsys):
    """A real CT folder whose first 3 slices were given a UID of their own: the other 17
    have none, so only their number in the listing (which the hint names) can choose
    them, in ``gui`` as in ``info``."""
    from medstyle_gui.cli import main

    src = REAL_DATA / "ct_abdomen_dicom"
    if not src.is_dir():
        pytest.skip(f"real scans not found at {REAL_DATA}")
    folder = Path(shutil.copytree(src, tmp_path / "ct"))
    by_z = sorted(
        folder.iterdir(),
        key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    for f in by_z[:3]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.save_as(f)
    assert main(["info", str(folder)]) == 1
    hint = capsys.readouterr().err
    assert "[1] (no series UID) (CT" in hint and "--series N" in hint

    shot = tmp_path / "shot.png"
    result = _gui_without_display(tmp_path, str(folder), "--series", "1", "--screenshot", str(shot))
    assert result.returncode == 0, result.stderr[-2000:]
    assert png_size(shot)[0] > 800
    assert "CT ct slice 8/16" in result.stdout  # the 17 slices without a UID
