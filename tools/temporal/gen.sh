#!/usr/bin/env bash
# Regenerates the wrapper modules' go.mod/go.sum (committed; build.sh uses them read-only), one module per binary
# set so the UI server's dependencies never shift the Temporal server's version selection.
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
export GOTOOLCHAIN=local
(cd server && printf 'module example.local/temporalbin\n\ngo 1.26\n' > go.mod && rm -f go.sum \
  && go get -tool "go.temporal.io/server/cmd/server@v$TEMPORAL_SERVER_VERSION" \
       "go.temporal.io/server/cmd/tools/sql@v$TEMPORAL_SERVER_VERSION" && go mod tidy)
(cd ui && printf 'module example.local/temporaluibin\n\ngo 1.26\n' > go.mod && rm -f go.sum \
  && go get -tool "github.com/temporalio/ui-server/v2/cmd/server@v$TEMPORAL_UI_VERSION" && go mod tidy)
