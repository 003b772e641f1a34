"""The house rules that keep the layout honest: Qt stays out of the core and the
trainer, dependencies run one way, lint is clean, resources are found through the
package (what the wheel carries: test_packaging.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
