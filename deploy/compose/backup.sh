#!/usr/bin/env bash
# Backs up the compose stack's Temporal databases, `temporal` (histories, tasks, namespaces) and
# `temporal_visibility` (list/query index and search attributes), with pg_dump's custom format, while the stack
# runs. Each dump is a consistent snapshot of its database (pg_dump runs in one transaction); the two are taken
# one after the other, so visibility can lag the histories by the writes in between (README "Backup and restore").
#   deploy/compose/backup.sh OUT_DIR [docker compose global args, e.g. -p rollwright --env-file ...]
# Prints the dump files with their sizes. Runs pg_dump inside the postgresql container: no client on the host.
set -euo pipefail
out=${1:?usage: backup.sh OUT_DIR [compose args...]}; shift
mkdir -p "$out"
user="${POSTGRES_USER:-temporal}"
for db in temporal temporal_visibility; do
  docker compose "$@" exec -T postgresql pg_dump -U "$user" --format=custom --no-owner "$db" > "$out/$db.dump.tmp"
  mv "$out/$db.dump.tmp" "$out/$db.dump"
  echo "$out/$db.dump $(stat -c %s "$out/$db.dump") bytes"
done
