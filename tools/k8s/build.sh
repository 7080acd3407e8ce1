#!/usr/bin/env bash
# Builds (or finds cached) control-plane binaries: kube-apiserver, kube-controller-manager, kube-scheduler
# (+ kubelet and kube-proxy for the real node)
# from the committed wrapper module, and kwok/kwokctl from the Go module proxy.
# Called by scripts/cluster.sh and .ci/run. Prints the cache directory on its last line.
# Cache layout, outside the repo and keyed by version:  $ROLLWRIGHT_CACHE/k8sbin/v<KUBE>/  and  .../kwok/v<KWOK>/
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
CACHE="${ROLLWRIGHT_CACHE:-/var/cache/rollwright}"
KOUT="$CACHE/k8sbin/v$KUBE_VERSION"; WOUT="$CACHE/kwok/v$KWOK_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$KOUT" "$WOUT"
LDF="-s -w"
# kwokctl runs `<binary> --version` and picks flags from it: without these the version is v0.0.0-master.
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF+=" -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $p.gitTreeState=clean"
done
if [[ ! -x "$KOUT/kube-apiserver" || ! -x "$KOUT/kube-controller-manager" || ! -x "$KOUT/kube-scheduler" ]]; then
  echo "build: kube binaries v$KUBE_VERSION missing in $KOUT, building (cold build takes 15-30 min on 2 cores)" >&2
  start=$(date +%s)
  tmp=$(mktemp -d "$KOUT/.tmp.XXXX")
  go build -mod=readonly -trimpath -ldflags "$LDF" -o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  "$tmp/kube-apiserver" --version | grep -q "v$KUBE_VERSION"
  mv "$tmp"/* "$KOUT/"; rmdir "$tmp"
  echo "build: kube binaries built in $(( $(date +%s) - start ))s" >&2
fi
# The real node's binaries (scripts/node.sh), checked apart so a cache made before they existed gains them.
# Most packages are shared with the control plane: about a minute with a warm build cache.
if [[ ! -x "$KOUT/kubelet" || ! -x "$KOUT/kube-proxy" ]]; then
  echo "build: kubelet/kube-proxy v$KUBE_VERSION missing in $KOUT, building" >&2
  start=$(date +%s)
  tmp=$(mktemp -d "$KOUT/.tmp.XXXX")
  go build -mod=readonly -trimpath -ldflags "$LDF" -o "$tmp/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  "$tmp/kubelet" --version | grep -q "v$KUBE_VERSION"
  mv "$tmp"/* "$KOUT/"; rmdir "$tmp"
  echo "build: kubelet/kube-proxy built in $(( $(date +%s) - start ))s" >&2
fi
if [[ ! -x "$WOUT/kwok" || ! -x "$WOUT/kwokctl" ]]; then
  echo "build: kwok v$KWOK_VERSION missing, building" >&2
  start=$(date +%s)
  GOBIN="$WOUT" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwokctl@v$KWOK_VERSION"
  echo "build: kwok built in $(( $(date +%s) - start ))s" >&2
fi
if [[ ! -d "$WOUT/stage" ]]; then
  # The default stages ship in kwok's module source; keep a copy next to the binaries.
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
  [[ -d $src ]] || go mod download -x "sigs.k8s.io/kwok@v$KWOK_VERSION" >/dev/null 2>&1
  cp -r "$src" "$WOUT/stage"; chmod -R u+w "$WOUT/stage"
fi
bash ../etcd/build.sh >/dev/null  # (cwd is tools/k8s)
echo "$CACHE"
