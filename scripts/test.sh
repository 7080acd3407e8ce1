#!/usr/bin/env bash
# The README's test command: installs what is missing, starts (or reuses) the local stack, runs the whole suite
# against it with per-test results (-v -rA). Extra arguments go to pytest. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
mkdir -p test-artifacts
exec .venv/bin/python -m pytest -v -rA "$@"
