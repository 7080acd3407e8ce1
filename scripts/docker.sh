#!/usr/bin/env bash
# Starts/stops the Docker engine (Debian docker.io) and the local registry (Debian docker-registry, 127.0.0.1:5000).
# Called by scripts/stack.sh. `up` reuses a daemon that already answers, so it never starts a second one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REGISTRY_ADDR="${ROLLWRIGHT_REGISTRY:-127.0.0.1:5000}"

docker_up() {
  if docker info >/dev/null 2>&1; then log "docker: engine already running, reused"; else
    log "docker: starting dockerd"
    mkdir -p /etc/docker
    # 127.0.0.1:5000 is plain HTTP; loopback registries are trusted by default, localhost:5000 too.
    [[ -f /etc/docker/daemon.json ]] || echo '{"insecure-registries":["127.0.0.1:5000","localhost:5000"]}' > /etc/docker/daemon.json
    start_bg dockerd dockerd --host unix:///var/run/docker.sock
    wait_for dockerd 60 docker info
    log "docker: engine up ($(docker version -f '{{.Server.Version}}'))"
  fi
}

registry_up() {
  if curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then log "registry: already serving on $REGISTRY_ADDR, reused"; return; fi
  mkdir -p "$STATE/registry"
  # No access log: a line per request, 50 MB in one session of fleet benchmarks (7 requests per bundle push).
  cat > "$STATE/registry.yml" <<CFG
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http: {addr: $REGISTRY_ADDR}
CFG
  log "registry: starting on $REGISTRY_ADDR"
  start_bg registry docker-registry serve "$STATE/registry.yml"
  wait_for registry 30 curl -fsS "http://$REGISTRY_ADDR/v2/"
}

case "${1:-up}" in
  up) docker_up; registry_up ;;
  down) stop_bg registry; stop_bg dockerd ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
