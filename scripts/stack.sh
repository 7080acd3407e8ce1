#!/usr/bin/env bash
# The whole local stack in one command: Docker engine + registry, base images, Temporal dev server (UI included)
# and the Kubernetes cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok, and the real node real-0:
# containerd, kubelet, kube-proxy, CoreDNS — scripts/node.sh) and Prometheus scraping the real node's pods
# (scripts/prometheus.sh).
#   scripts/stack.sh up | down | status | env
# `up` is idempotent: running parts are reused. `env` prints the variables tests and the CLI read.
# Called by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
S="$ROOT/scripts"

OWNER_FILE=/run/rollwright-stack.owner
case "${1:-up}" in
  up)
    # One stack per machine: its ports (7233, 5000), the bridge and the real node's containerd root are global.
    # A second ROLLWRIGHT_STATE would start a second cluster and a second node containerd that fights the first
    # one for its lock, so refuse while the owner's processes live.
    owner=$(cat "$OWNER_FILE" 2>/dev/null || true)
    if [[ -n $owner && $owner != "$STATE" ]]; then
      for p in "$owner"/run/*.pid; do
        [[ -f $p ]] && kill -0 "$(cat "$p")" 2>/dev/null && {
          log "stack: this machine's stack runs from ROLLWRIGHT_STATE=$owner ($(basename "$p" .pid) is alive);" \
              "use that state, or stop it first: ROLLWRIGHT_STATE=$owner $S/stack.sh down"; exit 1; }
      done
    fi
    echo "$STATE" > "$OWNER_FILE"
    t0=$(date +%s)
    bash "$S/docker.sh" up
    bash "$S/base-images.sh"
    bash "$S/temporal.sh" up
    bash "$S/cluster.sh" up
    bash "$S/prometheus.sh" up
    log "stack: up in $(( $(date +%s) - t0 ))s — Temporal UI http://127.0.0.1:${TEMPORAL_UI_PORT:-8233}, kubeconfig $STATE/kubeconfig, Prometheus $(bash "$S/prometheus.sh" url)"
    ;;
  down)
    bash "$S/prometheus.sh" down; bash "$S/cluster.sh" down; bash "$S/temporal.sh" down; bash "$S/docker.sh" down
    [[ $(cat "$OWNER_FILE" 2>/dev/null) == "$STATE" ]] && rm -f "$OWNER_FILE"; true ;;
  status)
    for p in "$STATE"/run/*.pid; do [[ -f $p ]] || continue; n=$(basename "$p" .pid)
      kill -0 "$(cat "$p")" 2>/dev/null && echo "$n: running (pid $(cat "$p"))" || echo "$n: dead"; done
    # Every stack process (the real node's kubelet, containerd + shims and CoreDNS included), plus the real
    # node's pods, measured by their cgroup (v1 memory controller, or v2).
    pods=0; for f in /sys/fs/cgroup/memory/kubepods/memory.usage_in_bytes /sys/fs/cgroup/kubepods/memory.current; do
      [[ -f $f ]] && { pods=$(( $(cat "$f") / 1024 )); break; }; done
    ps -eo rss,comm | awk -v pods="$pods" '/etcd|kube|kwok|temporal|dockerd|containerd|registry|coredns|prometheus/ {s+=$1; print}
      END {printf "processes: %d MiB; real node pods (cgroup kubepods): %d MiB\ntotal RSS: %d MiB\n", s/1024, pods/1024, (s+pods)/1024}'
    ;;
  env)
    echo "export KUBECONFIG=$STATE/kubeconfig ROLLWRIGHT_KUBECONFIG=$STATE/kubeconfig"
    echo "export ROLLWRIGHT_TEMPORAL_ADDRESS=127.0.0.1:${TEMPORAL_PORT:-7233} TEMPORAL_ADDRESS=127.0.0.1:${TEMPORAL_PORT:-7233}"
    echo "export ROLLWRIGHT_REGISTRY=${ROLLWRIGHT_REGISTRY:-127.0.0.1:5000}"
    echo "export ROLLWRIGHT_PROMETHEUS_URL=$(bash "$S/prometheus.sh" url)"
    ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
