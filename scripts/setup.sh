#!/usr/bin/env bash
# Set up capc on a fresh Debian/Ubuntu machine; safe to run again (it only installs what is missing).
#   1. Debian packages: tmux, cmake, g++, libssl-dev (with root or sudo; otherwise it says what to run)
#   1b. optional: dataset-fashion-mnist (real Fashion-MNIST files for the learning tests)
#   2. pip install -e ".[dev]"  (builds the garbled-circuit engine in gc-emp-test/ on the way)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "capc setup: $PYTHON not found; install Python 3.10+ (Debian: apt-get install python3 python3-pip python3-venv)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "capc setup: capc needs Python 3.10 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 1
fi

# Debian package -> a file or command that proves it is installed.
declare -A PROBE=(
    [tmux]="cmd:tmux"
    [cmake]="cmd:cmake"
    [g++]="cmd:g++"
    [libssl-dev]="file:/usr/include/openssl/evp.h"
)
missing=()
for pkg in tmux cmake g++ libssl-dev; do
    probe="${PROBE[$pkg]}"
    case "$probe" in
        cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$pkg") ;;
        file:*) [ -e "${probe#file:}" ] || missing+=("$pkg") ;;
    esac
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
    if [ "$SUDO" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "capc setup: missing system packages: ${missing[*]}" >&2
        echo "            install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "capc setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Optional: Fashion-MNIST's real files for the learning tests and experiments (skipped with a reason
# when absent; no failure if it cannot be installed, e.g. without root or on a non-Debian system).
if [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then FM_SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then FM_SUDO="sudo"; else FM_SUDO="none"; fi
    if [ "$FM_SUDO" != "none" ]; then
        echo "capc setup: installing dataset-fashion-mnist (optional)"
        DEBIAN_FRONTEND=noninteractive $FM_SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || echo "capc setup: dataset-fashion-mnist not installed (optional; its tests will be skipped)"
    else
        echo "capc setup: optional: sudo apt-get install -y dataset-fashion-mnist (real Fashion-MNIST files)"
    fi
fi

echo "capc setup: pip install -e .[dev] (builds gc-emp-test)"
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[dev]"
echo "capc setup: done; check with: capc doctor"
