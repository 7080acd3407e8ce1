#!/usr/bin/env bash
# The README's first command: a real demo rollout on embedded defaults.
#   1. installs what is missing and brings up the local stack (Temporal + UI, Docker, registry, Kubernetes with
#      KWOK nodes and the real node real-0, where the demo app really runs)
#   2. starts a Rollwright worker on the default task queue (reused if one is already running)
#   3. rolls out examples/demo twice: v1 succeeds; v2's readiness endpoint fails for real (a dependency it forgot
#      to ship), so its pods never become Ready and it is rolled back automatically while v1 keeps serving
#   4. prints where to watch both rollouts in the Temporal Web UI
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
bash scripts/setup.sh
bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
export ROLLWRIGHT_HTTP_PORT="${ROLLWRIGHT_HTTP_PORT:-9090}" ROLLWRIGHT_LOG_FORMAT=text
RW=.venv/bin/rollwright

if curl -fsS "http://127.0.0.1:$ROLLWRIGHT_HTTP_PORT/readyz" >/dev/null 2>&1; then
  log "demo: a worker is already polling (http://127.0.0.1:$ROLLWRIGHT_HTTP_PORT/readyz), reused"
else
  start_bg demo-worker "$RW" worker
  wait_for demo-worker 60 curl -fsS "http://127.0.0.1:$ROLLWRIGHT_HTTP_PORT/readyz"
  log "demo: worker started (log: $STATE/logs/demo-worker.log; stop: kill \$(cat $STATE/run/demo-worker.pid))"
fi

log "demo: rollout of v1 (healthy)"
set +e
"$RW" rollout start -f examples/demo/release-v1.yaml --wait; rc1=$?
log "demo: rollout of v2 (its /readyz fails: expect an automatic rollback)"
"$RW" rollout start -f examples/demo/release-v2.yaml --wait; rc2=$?
set -e
"$RW" history --app demo --env local
echo
echo "v1 exit code: $rc1 (0 = Succeeded)    v2 exit code: $rc2 (3 = RolledBack)"
ip=$(kubectl -n demo get svc demo -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
echo "The running app (v1), through its Service:  curl http://$ip/"
[[ -n $ip ]] && { echo -n "  → "; curl -sS -m 5 "http://$ip/" || true; }
echo "Watch both in the Temporal Web UI:"
echo "  http://127.0.0.1:${TEMPORAL_UI_PORT:-8233}/namespaces/default/workflows?query=RolloutApp%3D%22demo%22"
[[ $rc1 -eq 0 && $rc2 -eq 3 ]]
