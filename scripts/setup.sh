#!/usr/bin/env bash
# One command installs everything on a fresh machine: Debian packages, the Go builds (cached outside the repo,
# keyed by version) and the Python venv. Safe to re-run. Called by scripts/test.sh, scripts/demo.sh, .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash tools/k8s/build.sh >/dev/null
bash tools/temporal/build.sh >/dev/null  # real Temporal server + UI server: compose stack, TLS test
# CoreDNS (the real node's cluster DNS) compiles while pip downloads: its ~4 cold minutes mostly overlap.
bash tools/coredns/build.sh >/dev/null & dns=$!
bash scripts/install-python.sh
wait $dns || { echo "setup: CoreDNS build failed" >&2; exit 1; }
