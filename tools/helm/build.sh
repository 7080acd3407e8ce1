#!/usr/bin/env bash
# Builds (or finds cached) the helm CLI used to lint/render k8s/helm/rollwright (tests, CI, by hand).
# The Go module proxy is the only source of helm here, so it is compiled from helm.sh/helm/v3 at a pinned version.
# Prints the binary path on its last line. Cache, outside the repo and keyed by version:
#   $ROLLWRIGHT_CACHE/helm/v<HELM_VERSION>/helm
set -euo pipefail
# helm.sh/helm/v3 has no replace directives, so a plain `go install mod@version` works (no wrapper module needed).
HELM_VERSION=3.21.4
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
OUT="$CACHE/helm/v$HELM_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
if [[ ! -x "$OUT/helm" ]]; then
  echo "build: helm v$HELM_VERSION missing in $OUT, building (a few minutes on 2 cores)" >&2
  start=$(date +%s)
  mkdir -p "$OUT"
  tmp=$(mktemp -d "$OUT/.tmp.XXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The -X flags are what helm's own Makefile sets. Without them `helm version` shows only major.minor, and
  # `helm template`/`lint` assume Kubernetes 1.20, failing charts with a kubeVersion constraint. The Kubernetes
  # version is the one helm's client-go corresponds to (v0.36.x -> 1.36), read from helm's go.mod.
  gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  kube_minor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$gomod")
  [[ $kube_minor =~ ^[0-9]+$ ]] || { echo "build: no k8s.io/client-go version in $gomod" >&2; exit 1; }
  V=helm.sh/helm/v3/internal/version
  LDF="-s -w -X $V.version=v$HELM_VERSION -X $V.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    LDF+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kube_minor"
  done
  GOBIN="$tmp" go install -trimpath -ldflags "$LDF" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  "$tmp/helm" version --short | grep -q "^v$HELM_VERSION"
  mv "$tmp/helm" "$OUT/helm"  # rename within one dir: a concurrent caller never sees a half-written binary
  echo "build: helm v$HELM_VERSION built in $(( $(date +%s) - start ))s" >&2
fi
echo "$OUT/helm"
