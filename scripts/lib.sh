# Shared helpers for the stack scripts (sourced by scripts/*.sh; never run directly).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROLLWRIGHT_STATE:-$ROOT/.stack}"
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
mkdir -p "$STATE/logs" "$STATE/run"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# wait_for NAME SECONDS CMD...: polls CMD until it succeeds, or fails loudly with the log tail.
wait_for() {
  local name=$1 secs=$2; shift 2
  for ((i = 0; i < secs * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "$name did not come up within ${secs}s; last log lines:"
  tail -n 30 "$STATE/logs/$name.log" >&2 2>/dev/null || true
  return 1
}

# start_bg NAME CMD...: starts CMD detached (own session), recording its pid in $STATE/run/NAME.pid.
start_bg() {
  local name=$1; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/run/$name.pid"
}

# stop_bg NAME: stops a process started by start_bg, if it is still ours and alive.
stop_bg() {
  local name=$1 pidf="$STATE/run/$1.pid"
  [[ -f $pidf ]] || return 0
  local pid; pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}
