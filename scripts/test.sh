#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test beam serving
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2
python -m pytest tests -q -n 2 "$@"   # both cores: the suite takes about half the time
