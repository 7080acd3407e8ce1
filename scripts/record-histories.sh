#!/usr/bin/env bash
# Exports workflow histories for the replay tests (tests/histories/*.json) from the dev server.
#   scripts/record-histories.sh <name> <workflow-id> [run-id]
# Re-record only for a deliberate, patched change; the point of the replay test is that old histories still replay.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 wid=$2 run=${3:-}
.venv/bin/temporal workflow show -w "$wid" ${run:+-r "$run"} -o json --address "${TEMPORAL_ADDRESS:-127.0.0.1:7233}" \
  > "tests/histories/$name.json"
echo "recorded tests/histories/$name.json ($(jq '.events | length' "tests/histories/$name.json") events)"
