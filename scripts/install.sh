#!/usr/bin/env bash
# Set up everything medstyle and its tests need on a fresh machine:
#  - a Python environment to install into (see choose_python below), recorded in
#    .medstyle-env so that `scripts/run CMD` runs CMD in it;
#  - Debian tools used by the tests (dciodvfy from dicom3tools, dcmdump from dcmtk,
#    Xvfb for looking at the app, the xcb cursor library Qt needs to open a window
#    on X11), when apt-get is there and we may use it;
#  - PyTorch: torch==2.13.0 unless a torch is installed already (keep your CUDA build);
#  - medstyle itself, editable, with the test extra.
#
#   bash scripts/install.sh             install
#   bash scripts/install.sh --dry-run   say which Python it would install into, and why
#   PYTHON=/path/to/python bash scripts/install.sh   start from that Python
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

dry_run=0
case "${1:-}" in
"") ;;
--dry-run) dry_run=1 ;;
*)
    echo "install.sh: unknown option ${1} (only --dry-run)" >&2
    exit 2
    ;;
esac

# -- which Python ---------------------------------------------------------------------
# 1. an active virtualenv or conda environment: install into it;
# 2. otherwise $PYTHON, or python3, or python from PATH: install into it, unless it is
#    "externally managed" (PEP 668, e.g. Debian's and Ubuntu's system Python, which
#    refuses pip outside a virtualenv); then make a project virtualenv .venv with it.
base=""
reason=""
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "${VIRTUAL_ENV}/bin/python" ]; then
    base="${VIRTUAL_ENV}/bin/python"
    reason="the active virtualenv ${VIRTUAL_ENV}"
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "${CONDA_PREFIX}/bin/python" ]; then
    base="${CONDA_PREFIX}/bin/python"
    reason="the active conda environment ${CONDA_PREFIX}"
elif [ -n "${PYTHON:-}" ]; then
    if ! base=$(command -v "$PYTHON"); then
        echo "install.sh: PYTHON=$PYTHON is not a Python found on this machine" >&2
        exit 1
    fi
    reason="$base (PYTHON)"
else
    for candidate in python3 python; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        base=$(command -v "$candidate")
        reason="$base from PATH"
        break
    done
fi
if [ -z "$base" ]; then
    echo "install.sh: no Python found: install Python 3.10 or newer (or set PYTHON=/path/to/python)" >&2
    exit 1
fi
if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "install.sh: $base is Python $("$base" -c 'import platform; print(platform.python_version())'); medstyle needs 3.10 or newer (set PYTHON=/path/to/python)" >&2
    exit 1
fi
# In a virtualenv (sys.prefix differs from sys.base_prefix) PEP 668 does not apply.
managed=$("$base" -c '
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print(int(sys.prefix == sys.base_prefix and os.path.isfile(marker)))')
make_venv=0
python="$base"
if [ "$managed" = 1 ]; then
    make_venv=1
    python="$root/.venv/bin/python"
    reason="$root/.venv, a project virtualenv made with $base (externally managed, PEP 668)"
fi

if [ "$dry_run" = 1 ]; then
    echo "would install into: $python"
    echo "because: $reason"
    exit 0
fi
echo "installing into $reason"

# -- Debian tools ---------------------------------------------------------------------
missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || missing+=(dcmtk)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
# Qt's X11 (xcb) platform plugin loads these at start-up; PySide6 wheels do not ship them.
if command -v ldconfig >/dev/null 2>&1; then
    known=$(ldconfig -p 2>/dev/null || true)  # read once: grep -q on a pipe trips pipefail
    for lib in libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 \
        libxcb-keysyms.so.1:libxcb-keysyms1 libxcb-image.so.0:libxcb-image0 \
        libxcb-render-util.so.0:libxcb-render-util0 libxkbcommon-x11.so.0:libxkbcommon-x11-0 \
        libxcb-shape.so.0:libxcb-shape0 libxcb-randr.so.0:libxcb-randr0; do
        grep -q "${lib%%:*}" <<<"$known" || missing+=("${lib##*:}")
    done
fi
# Debian splits venv's pip bootstrap (ensurepip) into python3.X-venv.
if [ "$make_venv" = 1 ] && [ ! -x "$python" ] && ! "$base" -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=("python$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv")
fi
if ((${#missing[@]})) && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "installing ${missing[*]} with apt-get"
    if ! { DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null; }; then
        echo "warning: could not install ${missing[*]}; the tests that need them will skip" >&2
    fi
fi

# -- the environment ------------------------------------------------------------------
if [ "$make_venv" = 1 ] && [ ! -x "$python" ]; then
    if ! "$base" -m venv "$root/.venv"; then
        echo "install.sh: could not make $root/.venv with $base (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
"$python" -m pip --version >/dev/null
if ! "$python" -c "import torch" >/dev/null 2>&1; then
    "$python" -m pip install -q "torch==2.13.0"
fi
"$python" -m pip install -q -e ".[test]"

# scripts/run puts this environment's bin folder first on PATH.
bin=$("$python" -c 'import os, sys; print(os.path.dirname(sys.executable))')
printf '%s\n' "$bin" >"$root/.medstyle-env.tmp"
mv "$root/.medstyle-env.tmp" "$root/.medstyle-env"
echo "medstyle is installed in $bin; run commands in it with: scripts/run COMMAND"
