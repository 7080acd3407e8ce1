#!/bin/sh
# Initialises $PGDATA on first start (superuser $POSTGRES_USER / $POSTGRES_PASSWORD, password auth over TCP),
# then runs postgres in the foreground (SIGINT from `docker stop` = fast shutdown).
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp); printf '%s' "$POSTGRES_PASSWORD" > "$pw"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "postgres-entrypoint: initialised $PGDATA" >&2
fi
exec postgres -D "$PGDATA"
