#!/usr/bin/env bash
# Builds etcd v3.6 from the Go module proxy into the version-keyed cache (skips when present).
# Why not Debian's etcd 3.4: kube-apiserver 1.34 needs etcd's RequestWatchProgress to start watches "from now";
# with 3.4 every such watch (client-go's WatchList, kwok's informers) fails with "RequestWatchProgress is disabled",
# and KWOK then misses pod events. Called by tools/k8s/build.sh. Prints the binary path on its last line.
set -euo pipefail
cd "$(dirname "$0")"
source ../k8s/versions.env
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
OUT="$CACHE/etcd/v$ETCD_VERSION"
if [[ ! -x "$OUT/etcd" ]]; then
  echo "build: etcd v$ETCD_VERSION missing, building" >&2
  start=$(date +%s)
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  mkdir -p "$OUT"
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
  echo "build: etcd built in $(( $(date +%s) - start ))s" >&2
fi
echo "$OUT/etcd"
