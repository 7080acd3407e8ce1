#!/usr/bin/env bash
# Starts/stops the local stack's Prometheus (Debian's `prometheus` package, scripts/install-system.sh) on
# 127.0.0.1:${PROMETHEUS_PORT:-9091} (9090 is the worker's default HTTP port). It scrapes every pod on the real node
# real-0 annotated `prometheus.io/scrape: "true"` (port: `prometheus.io/port`, else the declared container port;
# path: `prometheus.io/path`, else /metrics) every 2 s, so analysis tests see fresh samples within seconds.
# Pod labels become series labels (pod-template-hash → pod_template_hash), plus `namespace` and `pod`.
# Discovery: Debian builds Prometheus without kubernetes_sd_configs, so scripts/prometheus_sd.py (list+watch of
# the node's pods through the local kube-apiserver, process `prometheus-sd`) writes a file_sd target list.
# State (TSDB, 6 h retention), target list and logs under $STATE. Called by scripts/stack.sh up|down|status.
#   scripts/prometheus.sh up | down | url
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PORT="${PROMETHEUS_PORT:-9091}"
URL="http://127.0.0.1:$PORT"
DIR="$STATE/prometheus"
BIN="${PROMETHEUS_BIN:-/usr/bin/prometheus}"

config() {
  cat <<YAML
# Written by scripts/prometheus.sh: regenerated at every \`up\`.
global: {scrape_interval: 2s, scrape_timeout: 1500ms, evaluation_interval: 15s}
scrape_configs:
- job_name: pods
  file_sd_configs:
  - {files: [$DIR/targets.json], refresh_interval: 2s}
YAML
}

ready() { curl -fsS --max-time 2 "$URL/-/ready" >/dev/null 2>&1; }

up() {
  [[ -x $BIN ]] || { log "prometheus: $BIN not found: run scripts/install-system.sh (Debian package prometheus)"; exit 1; }
  [[ -f $STATE/kubeconfig ]] || { log "prometheus: no $STATE/kubeconfig: start the cluster first (scripts/cluster.sh up)"; exit 1; }
  mkdir -p "$DIR/data"
  config > "$DIR/prometheus.yml.new"
  "${BIN%/*}/promtool" check config "$DIR/prometheus.yml.new" >/dev/null 2>&1 \
    || { "${BIN%/*}/promtool" check config "$DIR/prometheus.yml.new" >&2 || true; exit 1; }
  local changed=1
  cmp -s "$DIR/prometheus.yml.new" "$DIR/prometheus.yml" 2>/dev/null && changed=0
  mv "$DIR/prometheus.yml.new" "$DIR/prometheus.yml"
  [[ -f $DIR/targets.json ]] || echo "[]" > "$DIR/targets.json"
  local sd="$STATE/run/prometheus-sd.pid"
  if ! { [[ -f $sd ]] && kill -0 "$(cat "$sd")" 2>/dev/null; }; then
    log "prometheus: starting pod discovery (real-0 pods → $DIR/targets.json)"
    start_bg prometheus-sd "$ROOT/.venv/bin/python" "$ROOT/scripts/prometheus_sd.py" "$STATE/kubeconfig" "$DIR/targets.json"
  fi
  local pidf="$STATE/run/prometheus.pid"
  if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null && ready; then
    # Reused as it runs; a changed config is reloaded in place (SIGHUP), its TSDB and targets kept.
    if ((changed)); then kill -HUP "$(cat "$pidf")"; log "prometheus: config changed, reloaded"; fi
    log "prometheus: already serving on $URL, reused"; return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    log "prometheus: 127.0.0.1:$PORT is taken by another process (set PROMETHEUS_PORT)"; exit 1
  fi
  log "prometheus: starting on $URL (scraping annotated pods on real-0 every 2s)"
  start_bg prometheus "$BIN" --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
    --storage.tsdb.retention.time=6h --web.listen-address="127.0.0.1:$PORT" --log.level=warn
  wait_for prometheus 60 ready
}

case "${1:-up}" in
  up) up ;;
  down) stop_bg prometheus; stop_bg prometheus-sd ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 up|down|url" >&2; exit 2 ;;
esac
