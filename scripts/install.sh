#!/usr/bin/env bash
# Set up everything medstyle and its tests need on a fresh machine:
#  - Debian tools used by the tests (dciodvfy from dicom3tools, dcmdump from dcmtk,
#    Xvfb for looking at the app, the xcb cursor library Qt needs to open a window
#    on X11), when apt-get is there and we may use it;
#  - PyTorch: torch==2.13.0 unless a torch is installed already (keep your CUDA build);
#  - medstyle itself, editable, with the test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

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

python -m pip --version >/dev/null
if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[test]"
