"""The house rules that keep the layout honest: Qt stays out of the core and the
trainer, dependencies run one way, lint is clean, resources ship in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from medstyle_gui import resources_path

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extra"
    result = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_and_trainer_import_without_qt():
    code = (
        "import sys, importlib, pkgutil, trainer, medstyle_gui.core\n"
        "for pkg in (trainer, medstyle_gui.core):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "qt = [m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'shiboken6', 'pyqtgraph', 'qtawesome', 'qtpy')]\n"
        "assert not qt, qt\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_ruff_is_clean():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed")
    result = subprocess.run([exe, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_resources_are_found_through_the_package():
    presets = resources_path("presets", "window_presets.json")
    assert presets.is_file()
    assert "soft tissue" in presets.read_text()


def test_wheel_carries_resources_and_the_entry_point(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("medstyle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "medstyle_gui/resources/presets/window_presets.json" in names
    assert "trainer/data/volume.py" in names and "medstyle_gui/cli.py" in names
    assert not any(n.startswith(("tests/", "resources/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "medstyle = medstyle_gui.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
