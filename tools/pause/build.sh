#!/usr/bin/env bash
# Builds the pod sandbox image 127.0.0.1:5000/pause:<PAUSE_TAG>: main.go compiled static, FROM scratch, pushed to
# the local registry (the real node's containerd pulls it from there). The binary is cached by tag.
# Called by scripts/base-images.sh. Idempotent: an image already in the registry is kept.
set -euo pipefail
cd "$(dirname "$0")"
PAUSE_TAG=3.10
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
OUT="$CACHE/pause/v$PAUSE_TAG"
REG="${ROLLWRIGHT_REGISTRY:-127.0.0.1:5000}"
IMG="$REG/pause:$PAUSE_TAG"
if [[ ! -x "$OUT/pause" ]]; then
  mkdir -p "$OUT"
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$OUT/pause" .
fi
if ! curl -fs -o /dev/null "http://$REG/v2/pause/manifests/$PAUSE_TAG" \
     -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'; then
  ctx=$(mktemp -d); cp "$OUT/pause" "$ctx/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Dockerfile"
  docker build -q -t "$IMG" "$ctx" >/dev/null; rm -rf "$ctx"
  docker push -q "$IMG" >/dev/null
  echo "pause: pushed $IMG" >&2
fi
echo "$IMG"
