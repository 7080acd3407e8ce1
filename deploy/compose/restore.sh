#!/usr/bin/env bash
# Restores backup.sh's dumps into a FRESH compose stack (empty postgresql volume), then starts the whole stack:
#   deploy/compose/restore.sh IN_DIR [docker compose global args]
# Order matters: PostgreSQL alone first, both databases restored, and only then Temporal, whose schema step then
# finds the schema current and changes nothing. Refuses to restore over an existing database.
set -euo pipefail
in=${1:?usage: restore.sh IN_DIR [compose args...]}; shift
user="${POSTGRES_USER:-temporal}"
for db in temporal temporal_visibility; do
  [[ -s $in/$db.dump ]] || { echo "restore: $in/$db.dump missing" >&2; exit 1; }
done
docker compose "$@" up -d --wait postgresql
for db in temporal temporal_visibility; do
  if [[ $(docker compose "$@" exec -T postgresql psql -U "$user" -d postgres -Atc \
          "SELECT 1 FROM pg_database WHERE datname = '$db'") == 1 ]]; then
    echo "restore: database $db already exists; restore into a fresh PostgreSQL (empty volume)" >&2; exit 1
  fi
  docker compose "$@" exec -T postgresql createdb -U "$user" "$db"
  docker compose "$@" exec -T postgresql pg_restore -U "$user" --no-owner --exit-on-error -d "$db" < "$in/$db.dump"
  echo "restore: $db restored" >&2
done
# Membership rows are runtime state of the old cluster's hosts (their IPs, heartbeats): drop them, or the new
# server waits for those hosts to expire before it owns its history shards.
docker compose "$@" exec -T postgresql psql -U "$user" -d temporal -qc "DELETE FROM cluster_membership"
docker compose "$@" up -d --wait
