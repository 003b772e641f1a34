"""Packaging: the wheel carries every resource and the entry point, and installed into a
fresh virtual environment outside the checkout it starts the GUI; the command line the
app uses for its subprocesses is right both from Python and in a frozen build."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medstyle_gui.core.export import cli_command

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def gui_env(home: Path) -> dict[str, str]:
    """Offscreen, one torch thread, and settings under ``home`` (never the user's)."""
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        OMP_NUM_THREADS="1",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    env.pop("PYTHONPATH", None)  # the checkout must not leak into the installed app
    return env


def venv_over_this_environment(venv: Path) -> Path:
    """A virtualenv at ``venv`` that sees this interpreter's installed packages (no
    downloads; pip comes from them too) but has site-packages of its own first; returns
    its python.

    ``--system-site-packages`` would not do: it exposes the *base* interpreter's
    packages, and when the tests run inside a virtualenv the dependencies live in that
    virtualenv, not in its base. A ``.pth`` file of this interpreter's site folders
    adds them without running their own ``.pth`` files, so the editable install of the
    checkout stays out of the new venv.
    """
    import site

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    python = venv / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    # a venv made with --system-site-packages has its base's folders on sys.path too
    ours = [*site.getsitepackages(), *(p for p in sys.path if p.endswith("-packages"))]
    folders = [folder for folder in dict.fromkeys(ours) if Path(folder).is_dir()]
    (Path(own) / "_medstyle_test_parent.pth").write_text("".join(f"{f}\n" for f in folders))
    return python


# -- the command line of the app's subprocesses --------------------------------------------


def test_cli_command_from_python_runs_this_interpreter(monkeypatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert cli_command(["train", "gan", "--kimg", 1, Path("run")]) == [
        sys.executable, "-m", "medstyle_gui", "train", "gan", "--kimg", "1", "run"
    ]  # fmt: skip


def test_cli_command_in_a_frozen_build_runs_the_program_itself(monkeypatch) -> None:
    # PyInstaller sets sys.frozen; sys.executable is then the medstyle program, which
    # takes the CLI words directly (there is no interpreter for `-m`)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/medstyle/medstyle")
    assert cli_command(["train", "encoder", "--model", Path("m")]) == [
        "/opt/medstyle/medstyle", "train", "encoder", "--model", "m"
    ]  # fmt: skip


# -- the wheel ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once for the module (the slow part), from a clean
    copy: stale ``build/`` output of the checkout must not slip into it."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "medstyle"
    junk = ("build", "dist", ".git", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*junk))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("medstyle-*.whl")
    return path


def source_resources() -> list[str]:
    """Every file under the checkout's ``resources/`` (relative, POSIX), bar caches."""
    return sorted(
        path.relative_to(RESOURCES).as_posix()
        for path in RESOURCES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_wheel_carries_resources_and_the_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "medstyle = medstyle_gui.cli:main" in archive.read(entry_points).decode()
    assert "trainer/data/volume.py" in names and "medstyle_gui/cli.py" in names
    assert not any(n.startswith(("tests/", "resources/", "packaging/")) for n in names)
    # everything under resources/ ships (the demo model and study included, when present)
    missing = [f for f in source_resources() if f"medstyle_gui/resources/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert "medstyle_gui/resources/icons/medstyle.svg" in names
    for size in ICON_SIZES:
        assert f"medstyle_gui/resources/icons/medstyle_{size}.png" in names


def test_icons_are_rendered_at_every_size() -> None:
    assert (RESOURCES / "icons" / "medstyle.svg").is_file()
    for size in ICON_SIZES:
        assert png_size(RESOURCES / "icons" / f"medstyle_{size}.png") == (size, size)


def test_wheel_installed_outside_the_checkout_starts_the_gui(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv_over_this_environment(venv)
    home = tmp_path / "home"
    home.mkdir()
    env = gui_env(home)

    def run(*cmd: str | Path, timeout: int) -> subprocess.CompletedProcess:
        """``cmd`` from outside the checkout, in the test's home and environment."""
        return subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=home,
            env=env,
        )  # fmt: skip

    pip = (python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
    result = run(*pip, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    # the venv's copy wins over the editable install of the checkout
    where = run(python, "-c", "import medstyle_gui; print(medstyle_gui.__file__)", timeout=120)
    assert where.returncode == 0, where.stderr
    where = where.stdout.strip()
    assert Path(where).is_relative_to(venv), where
    assert not Path(where).is_relative_to(REPO), where

    shot = home / "x.png"
    result = run(venv / "bin" / "medstyle", "gui", "--screenshot", shot, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    width, height = png_size(shot)
    assert width > 800 and height > 400
    # the wheel's own demo model and session, found inside the venv
    assert "shown: model demo (64 px" in result.stdout and "(refined)" in result.stdout
