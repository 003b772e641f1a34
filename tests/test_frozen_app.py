"""The frozen (PyInstaller, one-folder) app: ``packaging/build.sh`` builds it, and the
built program, started from outside the checkout, opens the window offscreen, loads
(the demo when it is bundled), writes a screenshot and exits 0.

Slow (the build takes many minutes and GBs of disk): ``pytest -m slow tests/test_frozen_app.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_packaging import gui_env, png_size, source_resources

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "build" / "frozen" / "dist" / "medstyle"
PINS = ["pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9"]


def have_pyinstaller() -> bool:
    """PyInstaller importable, after trying to install the pinned one (as build.sh would)."""
    if importlib.util.find_spec("PyInstaller") is not None:
        return True
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *PINS],
            capture_output=True,
            timeout=600,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return False
    importlib.invalidate_caches()
    return importlib.util.find_spec("PyInstaller") is not None


@pytest.fixture(scope="module")
def frozen_app() -> Path:
    """``build/frozen/dist/medstyle`` freshly built by ``packaging/build.sh``."""
    if not have_pyinstaller():
        pytest.skip("PyInstaller cannot be installed or imported")
    result = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (APP / "medstyle").is_file()
    return APP


def run_app(app: Path, tmp_path: Path, *args: str, timeout: int = 600):
    """The frozen program with ``args``, started in ``tmp_path`` (outside the checkout)
    with the tests' own settings; its completed process (text output captured)."""
    return subprocess.run(
        [str(app / "medstyle"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=gui_env(tmp_path),
    )


def test_frozen_app_carries_every_resource(frozen_app: Path) -> None:
    shipped = frozen_app / "_internal" / "medstyle_gui" / "resources"
    missing = [f for f in source_resources() if not (shipped / f).is_file()]
    missing = [f for f in missing if not f.endswith(".py")]  # __init__ is in the archive
    assert not missing, f"not in the frozen app: {missing}"


def test_frozen_app_takes_a_screenshot_outside_the_checkout(
    frozen_app: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "x.png"
    result = run_app(frozen_app, tmp_path, "gui", "--screenshot", str(shot))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    width, height = png_size(shot)
    assert width > 800 and height > 400
    assert "shown: model demo (64 px" in result.stdout and "(refined)" in result.stdout


def test_frozen_app_runs_the_cli(frozen_app: Path, tmp_path: Path) -> None:
    # the training dialogs start `medstyle train ...` with this same program
    result = run_app(frozen_app, tmp_path, "train", "gan", "--help", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--kimg" in result.stdout


def test_frozen_app_trains_with_two_processes(
    frozen_app: Path, tiny_gan_bundle: Path, tmp_path: Path
) -> None:
    # `--gpus N` starts torchrun, which a frozen program has no interpreter for: the
    # program stands in for it and torchrun starts the program (on CPU: 2 gloo processes)
    import json
    import shutil

    bundle = Path(shutil.copytree(tiny_gan_bundle, tmp_path / "bundle"))
    options = ["--out", str(tmp_path / "run"), "--gpus", "2", "--kimg", "0.016", "--batch", "4"]
    result = run_app(
        frozen_app, tmp_path, "train", "encoder", "--model", str(bundle), *options,
        "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    done = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert done["event"] == "done" and done["world_size"] == 2
    assert (bundle / "encoder.pt").is_file()
