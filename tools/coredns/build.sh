#!/usr/bin/env bash
# Builds (or finds cached) CoreDNS from the committed wrapper module (main.go links only the plugins the stack's
# Corefile uses). Called by scripts/setup.sh and scripts/node.sh. Prints the binary's path on its last line.
# Cache, outside the repo and keyed by version: $ROLLWRIGHT_CACHE/coredns/v<COREDNS_VERSION>/coredns
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
OUT="$CACHE/coredns/v$COREDNS_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
if [[ ! -x "$OUT/coredns" ]]; then
  echo "build: coredns v$COREDNS_VERSION missing in $OUT, building" >&2
  start=$(date +%s)
  mkdir -p "$OUT"; tmp=$(mktemp -d "$OUT/.tmp.XXXX")
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/coredns" .
  "$tmp/coredns" -version | grep -q "CoreDNS-$COREDNS_VERSION"
  mv "$tmp/coredns" "$OUT/"; rmdir "$tmp"
  echo "build: coredns built in $(( $(date +%s) - start ))s" >&2
fi
echo "$OUT/coredns"
