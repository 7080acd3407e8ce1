#!/bin/sh
# Entry point of Rollwright's local Temporal image, in the order the seed's compose stack promises:
#   1. schema setup for the temporal and temporal_visibility databases (idempotent: setup-schema -v 0.0 skips a
#      database already past 0.0, update-schema applies only newer versions), so every restart re-runs it safely;
#   2. the server (config/docker.yaml, the server's env-templated config; PostgreSQL 12+ persistence and
#      advanced visibility);
#   3. the namespace ($DEFAULT_NAMESPACE) and Rollwright's search attributes ($SEARCH_ATTRIBUTES), if missing;
#      then /tmp/temporal-ready, which the healthcheck (`temporal-entrypoint health`) requires.
set -eu
ready=/tmp/temporal-ready
sa_list() { echo "${SEARCH_ATTRIBUTES:-RolloutApp=Keyword RolloutEnvironment=Keyword RolloutPhase=Keyword RolloutOutcome=Keyword RolloutImage=Keyword RolloutRevision=Int RolloutInitiator=Keyword RolloutStep=Keyword}"; }
ns="${DEFAULT_NAMESPACE:-default}"
local_addr() { echo "${TEMPORAL_BROADCAST_ADDRESS}:${FRONTEND_GRPC_PORT:-7233}"; }

if [ "${1:-start}" = health ]; then
  [ -f "$ready" ] || exit 1
  . "$ready"   # TEMPORAL_BROADCAST_ADDRESS of this container
  temporal operator namespace describe --namespace "$ns" --address "$(local_addr)" >/dev/null || exit 1
  # The history service owns its shards too (after a restart or a restore it takes a while to acquire them; until
  # then calls fail with "Not enough hosts to serve the request"): a lookup that reaches a shard must say not found.
  temporal workflow describe --namespace "$ns" --address "$(local_addr)" -w temporal-healthcheck-probe 2>&1 \
    | grep -q "not found"
  exit $?
fi
[ "${1:-start}" = start ] || exec "$@"

: "${DB:=postgres12}" "${DB_PORT:=5432}" "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${POSTGRES_PWD:?}"
: "${DBNAME:=temporal}" "${VISIBILITY_DBNAME:=temporal_visibility}"
export DB DB_PORT POSTGRES_SEEDS POSTGRES_USER POSTGRES_PWD DBNAME VISIBILITY_DBNAME
export BIND_ON_IP="${BIND_ON_IP:-0.0.0.0}"
# Binding 0.0.0.0 needs an address the other services (membership ring) can reach: this container's.
TEMPORAL_BROADCAST_ADDRESS="${TEMPORAL_BROADCAST_ADDRESS:-$(hostname -i | awk '{print $1}')}"
export TEMPORAL_BROADCAST_ADDRESS
rm -f "$ready"

sql() { temporal-sql-tool --plugin "$DB" --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"; }
if [ "${SKIP_SCHEMA_SETUP:-false}" != true ]; then
  for pair in "$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"; do
    db=${pair%%:*}; dir=/etc/temporal/schema/postgresql/v12/${pair#*:}/versioned
    tries=0
    until out=$(sql --db "$db" create-database 2>&1) || echo "$out" | grep -q "already exists"; do
      tries=$((tries + 1)); [ $tries -lt 30 ] || { echo "$out" >&2; exit 1; }
      sleep 2   # PostgreSQL not accepting connections yet
    done
    sql --db "$db" setup-schema -v 0.0 >/dev/null 2>&1 || sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$dir" >/dev/null 2>&1 || sql --db "$db" update-schema -d "$dir"
    echo "temporal-entrypoint: schema of $db is current" >&2
  done
fi

# Namespace and search attributes in the background, once the frontend answers; the server itself is exec'd
# so `docker stop`'s SIGTERM reaches it directly (graceful shutdown, no wrapper in between).
(
  set +e   # retried below, never fatal: a failure here shows as "unhealthy" with the reason in the log
  addr=$(local_addr)
  t="--address $addr --namespace $ns"
  retry() { n=0; until "$@"; do n=$((n + 1)); [ $n -lt 90 ] || return 1; sleep 2; done; }
  retry temporal operator cluster health --address "$addr" >/dev/null 2>&1
  temporal operator namespace describe $t >/dev/null 2>&1 \
    || retry temporal operator namespace create $t --retention "${DEFAULT_NAMESPACE_RETENTION:-72h}"
  # A namespace just created reaches the frontend's namespace cache a few seconds later.
  retry temporal operator search-attribute list $t >/dev/null 2>&1
  have=$(temporal operator search-attribute list $t)
  query=""
  for sa in $(sa_list); do
    name=${sa%%=*}; type=${sa#*=}
    echo "$have" | grep -qw "$name" || retry temporal operator search-attribute create $t --name "$name" --type "$type" >/dev/null
    case $type in Int|Double) cond="$name = 0" ;; Bool) cond="$name = false" ;; *) cond="$name = 'x'" ;; esac
    query="${query:+$query AND }$cond"
  done
  # New search attributes reach the namespace cache seconds later; until then a start that sets one is rejected
  # ("no mapping defined for search attribute"). A visibility query naming all of them validates the same mapping.
  retry temporal workflow list $t --query "$query" --limit 1 >/dev/null 2>&1 \
    || { echo "temporal-entrypoint: search attributes never became queryable" >&2; exit 1; }
  echo "TEMPORAL_BROADCAST_ADDRESS=$TEMPORAL_BROADCAST_ADDRESS" > "$ready"
  echo "temporal-entrypoint: namespace $ns and search attributes ready" >&2
) &
exec temporal-server --root /etc/temporal --config config --env docker --allow-no-auth start
