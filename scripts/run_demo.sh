#!/usr/bin/env bash
# The README's main job in one command, on a fresh machine with Python >= 3.10 (3.11 tested):
# creates .venv with the package (scripts/setup_env.sh), then runs scripts/demo.py, which
# generates a synthetic demo corpus and preprocesses, trains, evaluates, exports and predicts on
# it in a few minutes on 2 CPU cores. Outputs go to runs/demo; arguments are passed to demo.py
# (e.g. --output_dir /tmp/demo --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
python scripts/demo.py "$@"
