#!/usr/bin/env bash
# Build the one-folder frozen medstyle app (PyInstaller, CPU torch) from this checkout.
#
#   packaging/build.sh            -> build/frozen/dist/medstyle/medstyle
#
# Uses the current Python environment (torch, PySide6 and the rest must be installed,
# e.g. `pip install -e .`); installs the pinned PyInstaller into it when missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
PYINSTALLER_VERSION="6.22.3"
HOOKS_CONTRIB_VERSION="2026.9"
DIST="$REPO/build/frozen/dist"
WORK="$REPO/build/frozen/work"

# pinned: hooks for torch/Qt change between releases and the build was checked with these
if ! "$PYTHON" - "$PYINSTALLER_VERSION" "$HOOKS_CONTRIB_VERSION" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = (version("pyinstaller"), version("pyinstaller-hooks-contrib")) == tuple(sys.argv[1:3])
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
then
    "$PYTHON" -m pip install "pyinstaller==$PYINSTALLER_VERSION" \
        "pyinstaller-hooks-contrib==$HOOKS_CONTRIB_VERSION"
fi

cd "$REPO"
# PyInstaller imports torch and friends in helper processes: keep them to one thread
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$PYTHON" -m PyInstaller packaging/medstyle.spec \
    --distpath "$DIST" --workpath "$WORK" --noconfirm

APP="$DIST/medstyle"
du -sh "$APP"
echo "executable: $APP/medstyle"
