"""The set-up script chooses the Python environment a user expects (an active
virtualenv, a project .venv on an externally managed Python such as Debian's, or the
Python on PATH), and ``scripts/run`` runs a command in the environment it recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install.sh"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def plain_env(**extra: str) -> dict[str, str]:
    """The environment without any active virtualenv or conda environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env.pop("PYTHON", None)
    env.update(extra)
    return env


def dry_run(env: dict[str, str]) -> tuple[str, str]:
    """(the Python install.sh would install into, the reason it gives)."""
    result = subprocess.run(
        ["bash", str(INSTALL), "--dry-run"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    return lines["would install into"], lines["because"]


def is_externally_managed(python: Path) -> bool:
    code = (
        "import os, sys, sysconfig; print(sys.prefix == sys.base_prefix and os.path.isfile("
        "os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def test_an_active_virtualenv_is_installed_into(tmp_path: Path) -> None:
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = plain_env(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    python, reason = dry_run(env)
    assert python == str(venv / "bin" / "python") and "active virtualenv" in reason


def test_an_externally_managed_python_gets_a_project_venv() -> None:
    if not DEBIAN_PYTHON.is_file() or not is_externally_managed(DEBIAN_PYTHON):
        pytest.skip(f"{DEBIAN_PYTHON} is not an externally managed (PEP 668) Python here")
    python, reason = dry_run(plain_env(PYTHON=str(DEBIAN_PYTHON)))
    assert python == str(REPO / ".venv" / "bin" / "python")
    assert "externally managed" in reason and str(DEBIAN_PYTHON) in reason


def test_a_python_of_ones_own_is_installed_into() -> None:
    # pyenv, conda base or a venv's python: pip may install into it directly
    here = Path(sys.executable)
    if is_externally_managed(here):
        pytest.skip(f"{here} is externally managed")
    python, reason = dry_run(plain_env(PYTHON=str(here)))
    assert python == str(here) and "PYTHON" in reason


def test_an_unknown_python_is_one_clear_line() -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), "--dry-run"],
        capture_output=True, text=True, env=plain_env(PYTHON="no-such-python"), timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "install.sh: PYTHON=no-such-python is not a Python found on this machine"
    ]


def test_run_uses_the_recorded_environment(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "run", checkout / "scripts" / "run")
    run = [str(checkout / "scripts" / "run")]

    missing = subprocess.run([*run, "true"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "bash scripts/install.sh" in missing.stderr

    # the record names a bin folder; its commands come first on PATH
    bin_dir = Path(sysconfig.get_path("scripts"))
    (checkout / ".medstyle-env").write_text(f"{bin_dir}\n")
    found = subprocess.run(
        [*run, "sh", "-c", 'command -v python; echo "$PATH"'],
        capture_output=True, text=True, env=plain_env(PATH="/usr/bin:/bin"), timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    python, path = found.stdout.strip().splitlines()
    assert Path(python).parent == bin_dir and path.startswith(f"{bin_dir}:")
