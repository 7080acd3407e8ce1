#!/usr/bin/env bash
# Starts/stops the local Kubernetes cluster: etcd v3.6 (built, see tools/etcd) + kube-apiserver/controller-manager/scheduler v1.34
# (built from the Go module proxy by tools/k8s/build.sh) + kwok, all on 127.0.0.1 via kwokctl's binary runtime,
# with fake KWOK nodes (tainted rollwright.io/simulated) and one real node, real-0 (scripts/node.sh).
# Fake capacity (scale runs, bench/): ROLLWRIGHT_NODES KWOK nodes (default 3), each taking
# ROLLWRIGHT_KWOK_MAX_PODS pods (default 250; kwok's own default is 110). Applied on create and on reuse: more nodes
# are added, fewer removed, and existing nodes' pod capacity is patched in place.
# Writes the kubeconfig to $STATE/kubeconfig.
#   up      build-or-reuse binaries, create the cluster (or reuse a running one), register nodes
#   down    delete the cluster and its state
# Called by scripts/stack.sh and .ci/run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/tools/k8s/versions.env"
NAME="${ROLLWRIGHT_CLUSTER:-rollwright}"
NODES="${ROLLWRIGHT_NODES:-3}"
MAX_PODS="${ROLLWRIGHT_KWOK_MAX_PODS:-250}"
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1               # the `kubernetes` Service's ClusterIP (first address of SERVICE_CIDR)
NODE_IP=10.244.0.1                 # the real node's IP (scripts/node.sh), where pods reach the host's services
# Ordinary pods run on the real node; KWOK's nodes only take pods that tolerate this taint (README "Scheduling").
SIM_TAINT=rollwright.io/simulated=true:NoSchedule
export KWOK_WORKDIR="$STATE/kwok"
KOUT="$CACHE/k8sbin/v$KUBE_VERSION"; WOUT="$CACHE/kwok/v$KWOK_VERSION"
KWOKCTL="$WOUT/kwokctl"
KUBECONFIG_OUT="$STATE/kubeconfig"
kc() { kubectl --kubeconfig "$KUBECONFIG_OUT" "$@"; }

up() {
  bash "$ROOT/tools/k8s/build.sh" >/dev/null
  # A running apiserver can be briefly unready (a test restarting it, a loaded machine): wait before concluding
  # the cluster is gone, since the branch below deletes and re-creates it.
  if [[ -f $KUBECONFIG_OUT ]] && { kc get --raw /readyz >/dev/null 2>&1 ||
       { [[ -n $(pgrep -f "$KWOK_WORKDIR/clusters/$NAME/bin/kube-apiserver" || true) ]] &&
         wait_for kube-apiserver 30 kc get --raw /readyz; }; }; then
    log "cluster: $NAME already running, reused"
    grep -q manage-nodes-with-annotation-selector "$STATE/kwokctl.yaml" 2>/dev/null ||
      log "cluster: WARNING: made by an older scripts/cluster.sh (kwok manages every node): run 'scripts/stack.sh down' then 'up'"
    openssl x509 -in "$KWOK_WORKDIR/clusters/$NAME/pki/admin.crt" -noout -ext subjectAltName 2>/dev/null |
      grep -q "IP Address:$SERVICE_IP" ||
      log "cluster: WARNING: made by an older scripts/cluster.sh (pods cannot reach the apiserver through the kubernetes Service): run 'scripts/cluster.sh down' then 'up'"
    capacity; scheduling; bash "$ROOT/scripts/node.sh" up; nodes; return; fi
  "$KWOKCTL" --name "$NAME" delete cluster >/dev/null 2>&1 || true
  local cfg="$STATE/kwokctl.yaml" stage="$WOUT/stage"
  cat > "$cfg" <<CFG
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: v$KUBE_VERSION
  kubeApiserverBinary: $KOUT/kube-apiserver
  kubeControllerManagerBinary: $KOUT/kube-controller-manager
  kubeSchedulerBinary: $KOUT/kube-scheduler
  kwokControllerBinary: $WOUT/kwok
  etcdBinary: $CACHE/etcd/v$ETCD_VERSION/etcd
  kubeAuthorization: true
  disableQPSLimits: true
  # Pods reach the apiserver through the \`kubernetes\` Service (in-cluster config: https://10.96.0.1:443, the
  # first IP of the Service range); kube-proxy sends that to the advertised address below, where scripts/node.sh
  # forwards the node IP's port to the loopback-bound apiserver. Both IPs must be in the serving certificate so
  # in-cluster clients verify TLS (the DNS names kubernetes.default.svc… are kwokctl's defaults).
  kubeApiserverCertSANs: [$SERVICE_IP, $NODE_IP]
# The real node (scripts/node.sh) joins this cluster:
# - kwok manages only its own nodes (kwokctl's default, --manage-all-nodes, would take over real-0's Lease and
#   mark its pods Ready with fake IPs before the kubelet reports);
# - the apiserver dials kubelets by InternalIP (a Hostname lookup goes to the outside resolver), with a client
#   certificate the kubelet's x509 authentication accepts;
# - Services get their own range: kwok's fake pod IPs are 10.0.0.x, the apiserver's default Service range.
componentsPatches:
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false"}
  - {key: manage-nodes-with-annotation-selector, value: "kwok.x-k8s.io/node=fake"}
- name: kube-apiserver
  extraArgs:
  - {key: kubelet-preferred-address-types, value: "InternalIP"}
  - {key: kubelet-client-certificate, value: "$KWOK_WORKDIR/clusters/$NAME/pki/admin.crt"}
  - {key: kubelet-client-key, value: "$KWOK_WORKDIR/clusters/$NAME/pki/admin.key"}
  - {key: service-cluster-ip-range, value: "$SERVICE_CIDR"}
  # The \`kubernetes\` Endpoints: the real node's IP (default: the host's first interface, unreachable since the
  # apiserver binds loopback only).
  - {key: advertise-address, value: "$NODE_IP"}
# Single instances: without leader election an apiserver restart (tests do one) or a load spike cannot make them
# exit on a missed lease renewal, which kwokctl would not restart.
- name: kube-controller-manager
  extraArgs:
  - {key: leader-elect, value: "false"}
- name: kube-scheduler
  extraArgs:
  - {key: leader-elect, value: "false"}
CFG
  # A config that holds any Stage replaces kwokctl's defaults, so the default stages are listed too.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo '---'; cat "$stage/$f"; done >> "$cfg"
  echo '---' >> "$cfg"; cat "$ROOT/tools/kwok/stages-sim.yaml" >> "$cfg"
  # "slow": kwok's own pod-ready stage, selected by label and delayed, for tests that act mid-wait.
  echo '---' >> "$cfg"
  sed -e 's/name: pod-ready/name: rollwright-sim-slow/' \
      -e "s/^    matchExpressions:/    matchExpressions:\n    - {key: '.metadata.labels[\"sim.rollwright.io\/behavior\"]', operator: In, values: ['slow']}/" \
      -e "0,/^spec:/s//spec:\n  weight: 10000\n  delay: {durationMilliseconds: ${ROLLWRIGHT_SLOW_MS:-12000}}/" \
      "$stage/pod/fast/pod-ready.yaml" >> "$cfg"
  log "cluster: creating $NAME (k8s v$KUBE_VERSION, kwok v$KWOK_VERSION, etcd v$ETCD_VERSION)"
  "$KWOKCTL" --config "$cfg" --name "$NAME" create cluster --wait 2m >"$STATE/logs/kwokctl.log" 2>&1 || {
    tail -n 40 "$STATE/logs/kwokctl.log" >&2; exit 1; }
  cp "$KWOK_WORKDIR/clusters/$NAME/kubeconfig.yaml" "$KUBECONFIG_OUT"
  capacity
  # The default ServiceAccount comes from kube-controller-manager; tests create pods right away.
  wait_for kwokctl 60 kc -n default get serviceaccount default
  scheduling
  bash "$ROOT/scripts/node.sh" up
  nodes
}

# KWOK node count and pod capacity (see the header). kwokctl sets capacity only on the nodes it creates.
capacity() {
  "$KWOKCTL" --name "$NAME" scale node --replicas "$NODES" --param ".allocatable.pods=$MAX_PODS" \
    --param ".capacity.pods=$MAX_PODS" >>"$STATE/logs/kwokctl.log" 2>&1
  local n
  for n in $(kc get nodes -l type=kwok -o jsonpath='{range .items[?(@.status.capacity.pods!="'"$MAX_PODS"'")]}{.metadata.name}{" "}{end}'); do
    kc patch node "$n" --subresource=status --type=merge \
      -p "{\"status\":{\"capacity\":{\"pods\":\"$MAX_PODS\"},\"allocatable\":{\"pods\":\"$MAX_PODS\"}}}" >/dev/null
  done
  wait_for kwokctl 60 bash -c "[[ \$(kubectl --kubeconfig '$KUBECONFIG_OUT' get nodes -l type=kwok --no-headers 2>/dev/null | grep -c ' Ready') -ge $NODES ]]"
}

# KWOK nodes are tainted when the real node runs (ordinary pods go there); without it (ROLLWRIGHT_REAL_NODE=0), or
# while the real node is registered tainted itself (ROLLWRIGHT_NODE_TAINT, scripts/node.sh), they take every pod.
scheduling() {
  if [[ ${ROLLWRIGHT_REAL_NODE:-1} == 0 || -n ${ROLLWRIGHT_NODE_TAINT:-} ]]; then
    kc taint nodes -l type=kwok "${SIM_TAINT%%=*}-" >/dev/null 2>&1 || true
  else
    kc taint nodes -l type=kwok "$SIM_TAINT" --overwrite >/dev/null
  fi
}

nodes() { log "cluster: $(kc get nodes --no-headers | awk '{print $1"="$2}' | tr '\n' ' ')"; }

down() {
  bash "$ROOT/scripts/node.sh" down
  "$KWOKCTL" --name "$NAME" delete cluster >/dev/null 2>&1 || true
  rm -rf "$KWOK_WORKDIR/clusters/$NAME" "$KUBECONFIG_OUT"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
