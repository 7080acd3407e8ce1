#!/usr/bin/env bash
# Builds (or finds cached) the real Temporal server, its SQL schema tool and the Temporal Web UI server from the Go
# module proxy, with the committed wrapper modules (server/, ui/; regenerate with gen.sh).
# Called by deploy/compose/images.sh (the compose stack's local images) and tests/test_temporal_tls.py.
# Cache layout, outside the repo and keyed by version:
#   $ROLLWRIGHT_CACHE/temporal/v<SERVER>/    temporal-server, temporal-sql-tool, schema/ (PostgreSQL, SQLite), config/
#   $ROLLWRIGHT_CACHE/temporal-ui/v<UI>/     ui-server, config/docker.yaml (the env-templated config)
# Prints the two directories (server, then UI), one a line. Cold build: about 7 min (server) + 2 min (UI) on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
SOUT="$CACHE/temporal/v$TEMPORAL_SERVER_VERSION"; UOUT="$CACHE/temporal-ui/v$TEMPORAL_UI_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$SOUT" "$UOUT"
if [[ ! -x "$SOUT/temporal-server" || ! -x "$SOUT/temporal-sql-tool" || ! -d "$SOUT/schema" ]]; then
  echo "build: temporal server v$TEMPORAL_SERVER_VERSION missing in $SOUT, building" >&2
  start=$(date +%s)
  tmp=$(mktemp -d "$SOUT/.tmp.XXXX")
  LDF="-s -w"
  (cd server && go build -mod=readonly -trimpath -ldflags "$LDF" -o "$tmp/temporal-server" go.temporal.io/server/cmd/server \
     && go build -mod=readonly -trimpath -ldflags "$LDF" -o "$tmp/temporal-sql-tool" go.temporal.io/server/cmd/tools/sql)
  # Schemas and config templates ship in the module source, not in the binaries.
  src="$(cd server && go list -m -f '{{.Dir}}' go.temporal.io/server)"
  mkdir -p "$tmp/schema"
  cp -r "$src/schema/postgresql" "$src/schema/sqlite" "$tmp/schema/"
  cp -r "$src/config" "$tmp/config"
  rm -f "$tmp/config/"*.go; chmod -R u+w,a+rX "$tmp"
  "$tmp/temporal-server" --version >/dev/null 2>&1 || "$tmp/temporal-server" --help >/dev/null
  rm -rf "$SOUT/schema" "$SOUT/config"; mv "$tmp"/* "$SOUT/"; rmdir "$tmp"
  echo "build: temporal server built in $(( $(date +%s) - start ))s" >&2
fi
if [[ ! -x "$UOUT/ui-server" || ! -f "$UOUT/config/docker.yaml" ]]; then
  echo "build: temporal ui-server v$TEMPORAL_UI_VERSION missing in $UOUT, building" >&2
  start=$(date +%s)
  (cd ui && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$UOUT/.ui-server.tmp" \
     github.com/temporalio/ui-server/v2/cmd/server)
  src="$(cd ui && go list -m -f '{{.Dir}}' github.com/temporalio/ui-server/v2)"
  mkdir -p "$UOUT/config"; cp "$src/config/docker.yaml" "$UOUT/config/docker.yaml"; chmod -R u+w,a+rX "$UOUT/config"
  mv "$UOUT/.ui-server.tmp" "$UOUT/ui-server"
  echo "build: ui-server built in $(( $(date +%s) - start ))s" >&2
fi
echo "$SOUT"
echo "$UOUT"
