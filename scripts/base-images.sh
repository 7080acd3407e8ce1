#!/usr/bin/env bash
# Builds the local base images that nothing can pull here, and pushes them to the local registry:
#   rollwright/busybox:static      FROM scratch + Debian busybox-static (used by demo/test app builds)
#   rollwright/python-base:3.11    debootstrap bookworm rootfs with python3 + venv, trusting the host's CA bundle
#   $REG/pause:3.10                the real node's pod sandbox image (tools/pause)
# Called by scripts/stack.sh (and .ci/run). Idempotent: an image already present is kept.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REG="${ROLLWRIGHT_REGISTRY:-127.0.0.1:5000}"

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have rollwright/busybox:static; then
  ctx=$(mktemp -d); cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nENV PATH=/bin\n' > "$ctx/Dockerfile"
  docker build -q -t rollwright/busybox:static "$ctx" >/dev/null; rm -rf "$ctx"
  log "base-images: built rollwright/busybox:static"
fi

PY_IMAGE=rollwright/python-base:3.11
if ! have "$PY_IMAGE"; then
  root="$CACHE/rootfs/python-base-bookworm"
  if [[ ! -x "$root/usr/bin/python3" ]]; then
    log "base-images: debootstrap (about a minute)"
    rm -rf "$root"; mkdir -p "$root"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
      http://deb.debian.org/debian >"$STATE/logs/debootstrap.log" 2>&1
  fi
  # pip inside builds reaches PyPI only through this network's TLS interception: trust the host's bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' - "$PY_IMAGE" >/dev/null
  log "base-images: imported $PY_IMAGE"
fi
bash "$ROOT/tools/pause/build.sh" >/dev/null
# The demo app image, pushed so cluster tests have a real repo@digest to reference.
docker build -q -t "$REG/rollwright/demo-app:base" "$ROOT/images/demo-app" >/dev/null 2>&1
docker push -q "$REG/rollwright/demo-app:base" >/dev/null
log "base-images: ok"
