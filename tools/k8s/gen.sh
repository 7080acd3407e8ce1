#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the wrapper module that builds the Kubernetes control plane
# and the real node's kubelet + kube-proxy.
# Run by hand when bumping KUBE_VERSION; the result is committed, and build.sh uses it read-only.
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
SV="0.${KUBE_VERSION#1.}"
# Every staging module is required at v0.0.0 by k8s.io/kubernetes, which the proxy does not serve: replace them all.
mods="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
{ echo "module example.local/k8sbin"; echo; echo "go 1.24.0"; echo; echo "godebug default=go1.24"
  echo; echo "require k8s.io/kubernetes v$KUBE_VERSION"; echo; echo "replace ("
  for m in $mods; do printf '\tk8s.io/%s => k8s.io/%s v%s\n' "$m" "$m" "$SV"; done; echo ")"; } > go.mod
rm -f go.sum
export GOTOOLCHAIN=local CGO_ENABLED=0
# kubelet and kube-proxy run the stack's one real node (scripts/node.sh).
go get -tool k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION \
  k8s.io/kubernetes/cmd/kube-controller-manager@v$KUBE_VERSION k8s.io/kubernetes/cmd/kube-scheduler@v$KUBE_VERSION \
  k8s.io/kubernetes/cmd/kubelet@v$KUBE_VERSION k8s.io/kubernetes/cmd/kube-proxy@v$KUBE_VERSION
go mod tidy
