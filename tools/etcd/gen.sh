#!/usr/bin/env bash
# Regenerates this wrapper module's go.mod/go.sum for ETCD_VERSION (committed; build.sh uses them read-only).
# A module of its own so etcd's dependencies never shift the Kubernetes build's version selection.
set -euo pipefail
cd "$(dirname "$0")"
source ../k8s/versions.env
printf 'module example.local/etcdbin\n\ngo 1.24.0\n' > go.mod; rm -f go.sum
GOTOOLCHAIN=local go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
GOTOOLCHAIN=local go mod tidy
