"""``medstyle gui`` where no display is: in a subprocess with DISPLAY, WAYLAND_DISPLAY and
QT_QPA_PLATFORM unset, as on a server or in CI, or with DISPLAY naming an X server that
is not there (Qt aborts the whole process in both unless told to render offscreen, so
only a subprocess shows it); how a display is found to answer, against sockets made
here and a real Xvfb. Also ``--series N`` and a failed load with ``--screenshot``. Each
run opens the bundled demo model."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from medstyle_gui.display import qt_platforms, window_problem, x11_endpoints
from tests.conftest import REAL_DATA
from tests.test_packaging import gui_env, png_size

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="only Linux (X11/Wayland) can lack a display"
)


def _dead_display() -> str:
    """``:N`` for a display number nothing listens on here."""
    for n in range(87, 200):
        if window_problem({"DISPLAY": f":{n}"}) is not None:
            return f":{n}"
    raise AssertionError("every X display number from 87 to 199 answers")


def _gui_without_display(
    tmp_path: Path, *args: str, display: str | None = None, code: str | None = None
) -> subprocess.CompletedProcess:
    """``python -m medstyle_gui gui ARGS`` with no display (or DISPLAY=``display``, which
    need not answer) and no Qt platform chosen; ``code``: run that Python instead."""
    env = gui_env(tmp_path)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(name, None)
    if display is not None:
        env["DISPLAY"] = display
    command = ["-c", code] if code is not None else ["-m", "medstyle_gui", "gui", *args]
    return subprocess.run(
        [sys.executable, *command],
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
    """The demo, rendered offscreen on its own where DISPLAY names an X server that is not
    there (it aborted with SIGABRT, with DISPLAY unset too), replacing an older
    screenshot because --overwrite says so; Qt's offscreen noise stays out of it."""
    shot = tmp_path / "demo.png"
    shot.write_bytes(b"an older screenshot")
    result = _gui_without_display(
        tmp_path, "--screenshot", str(shot), "--overwrite", display=_dead_display()
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert png_size(shot)[0] > 800
    assert "shown: model demo (64 px" in result.stdout
    assert "propagateSizeHints" not in result.stderr and "Traceback" not in result.stderr


def test_without_a_display_or_screenshot_says_how_in_one_line(tmp_path):
    line = _one_error_line(_gui_without_display(tmp_path))
    assert "no display" in line and "DISPLAY" in line and "xvfb-run" in line
    assert "--screenshot" in line


def test_a_display_that_does_not_answer_is_named_in_one_line_before_qt_loads(tmp_path):
    """DISPLAY is set but no X server is behind it (a closed SSH session, a stopped Xvfb):
    one line naming it, at once, without Qt (which would abort the process)."""
    display = _dead_display()
    code = (
        "import sys, time; from medstyle_gui.cli import main; start = time.perf_counter(); "
        "status = main(['gui']); print('PySide6' in sys.modules, time.perf_counter() - start); "
        "sys.exit(status)"
    )
    result = _gui_without_display(tmp_path, display=display, code=code)
    line = _one_error_line(result)
    assert f"cannot reach display DISPLAY={display} " in line
    assert f"/tmp/.X11-unix/X{display[1:]}" in line and "--screenshot" in line
    qt_loaded, seconds = result.stdout.split()
    assert qt_loaded == "False" and float(seconds) < 2.0


def test_display_names_are_parsed_as_x11_clients_read_them():
    local = [(socket.AF_UNIX, "\0/tmp/.X11-unix/X5"), (socket.AF_UNIX, "/tmp/.X11-unix/X5")]
    for name in (":5", ":5.1", "unix:5", "unix/:5"):
        assert x11_endpoints(name) == local, name
    assert x11_endpoints("localhost:10.0") == [(socket.AF_INET, ("localhost", 6010))]
    assert x11_endpoints("tcp/server:2") == [(socket.AF_INET, ("server", 6002))]
    for garbage in ("5", "foo", ":x", "host:"):
        assert x11_endpoints(garbage) is None, garbage
    assert "not a display name" in window_problem({"DISPLAY": "foo"})


def test_a_display_answers_only_while_something_listens(tmp_path):
    """Sockets made here stand in for servers: an X server's abstract socket, one on TCP,
    and a Wayland compositor's socket in XDG_RUNTIME_DIR."""
    display = _dead_display()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0/tmp/.X11-unix/X{display[1:]}")
        server.listen(8)  # connections are never accepted: room for all of them
        assert window_problem({"DISPLAY": display}) is None
        assert qt_platforms({"DISPLAY": display}) is None  # Qt's own choice is right
        assert qt_platforms({"DISPLAY": display}, offscreen=True) == "xcb;offscreen"
        assert qt_platforms({"DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}, True) is None
    assert display in window_problem({"DISPLAY": display})

    with socket.create_server(("127.0.0.1", 0)) as server:  # X11 on TCP: port 6000 + N
        n = server.getsockname()[1] - 6000
        assert window_problem({"DISPLAY": f"127.0.0.1:{n}"}) is None
    assert "port" in window_problem({"DISPLAY": f"127.0.0.1:{n}"})

    env = {"WAYLAND_DISPLAY": "wayland-7", "XDG_RUNTIME_DIR": str(tmp_path)}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(tmp_path / "wayland-7"))
        server.listen(8)  # connections are never accepted: room for all of them
        assert window_problem(env) is None
        both = {**env, "DISPLAY": display}  # the dead X display is left out
        assert qt_platforms(both, offscreen=True) == "wayland;offscreen"
        assert qt_platforms(both) == "wayland"
    assert str(tmp_path / "wayland-7") in window_problem(env)
    assert "XDG_RUNTIME_DIR" in window_problem({"WAYLAND_DISPLAY": "wayland-7"})


def test_a_platform_chosen_by_the_user_is_trusted_unless_it_needs_the_display():
    dead = _dead_display()
    assert window_problem({"DISPLAY": dead, "QT_QPA_PLATFORM": "offscreen"}) is None
    assert window_problem({"DISPLAY": dead, "QT_QPA_PLATFORM": "xcb;offscreen"}) is None
    assert dead in window_problem({"DISPLAY": dead, "QT_QPA_PLATFORM": "xcb"})
    assert "no display" in window_problem({"QT_QPA_PLATFORM": "wayland"})
    assert "unset" in window_problem({})


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (Debian xvfb)")
def test_a_real_display_still_gets_a_real_window(tmp_path):
    """Against a real X server (Xvfb): it answers, and Qt opens its windows there (xcb),
    not offscreen, with the platforms ``gui --screenshot`` chooses."""
    display = _dead_display()
    xvfb = subprocess.Popen(["Xvfb", display], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while window_problem({"DISPLAY": display}) is not None:
            assert xvfb.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        code = (
            "from medstyle_gui.cli_gui import choose_qt_platform; "
            "choose_qt_platform(screenshot=True); "
            "from PySide6.QtWidgets import QApplication; print(QApplication([]).platformName())"
        )
        result = _gui_without_display(tmp_path, display=display, code=code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["xcb"]
    finally:
        xvfb.terminate()
        xvfb.wait(10)


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
