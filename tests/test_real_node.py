"""The stack's real node, real-0 (scripts/node.sh): kubelet + containerd + CNI bridge + kube-proxy + CoreDNS.

Rollouts here run real containers of the demo app (images/demo-app/app.py), pulled from the local registry:
readiness probes, CrashLoopBackOff, ImagePullBackOff and HTTP answers come from the kubelet and the app, not
from KWOK stages. The last test stops the node and starts it again (announced in /tmp/stack-status.txt).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from activities.kube import Kube
from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, RolloutResult
from tests.helpers import ROOT, SESSION, STATE, WorkerProcess, wait_until, write_release

pytestmark = [pytest.mark.e2e]
async_test = pytest.mark.asyncio(loop_scope="session")

NODE = "real-0"
BRIDGE = "rwbr0"
SIM_TAINT = ("rollwright.io/simulated", "NoSchedule")
MANAGER = "rollwright-test"


def real_app(name: str, *, replicas: int = 2, deadline: int = 60, env: dict[str, str] | None = None,
             image: str = "REPO:latest", command: list[str] | None = None) -> list[dict[str, Any]]:
    """The demo app as a real workload: Service + Deployment with readiness on /readyz, a preStop sleep and
    maxUnavailable 0 (a new pod must be Ready before an old one goes)."""
    labels = {"app": name}
    c: dict[str, Any] = {
        "name": "web", "image": image, "ports": [{"containerPort": 8080}],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }
    if command:
        c["command"] = command
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": 20, "containers": [c]}
    on_real_node(pod)
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": replicas, "progressDeadlineSeconds": deadline, "selector": {"matchLabels": labels},
                  "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                  "template": {"metadata": {"labels": labels}, "spec": pod}}},
    ]


def on_real_node(pod: dict[str, Any]) -> dict[str, Any]:
    """Pins a pod spec to real-0. Ordinary pods go there anyway (KWOK nodes are tainted); the selector says
    what these tests are about, and the toleration lets them run while the node is registered with
    ROLLWRIGHT_NODE_TAINT=rollwright.io/real=true:NoSchedule (debugging on a shared stack)."""
    pod["nodeSelector"] = {"kubernetes.io/hostname": NODE}
    pod["tolerations"] = [{"key": "rollwright.io/real", "operator": "Exists", "effect": "NoSchedule"}]
    return pod


@pytest.fixture(scope="module")
def demo_image(docker_client: Any, registry: str) -> str:
    """The demo app built from this checkout and pushed under a session tag (rollwright/demo-app:base is shared
    by every checkout using the stack, so its content is not ours to assume)."""
    ref = f"{registry}/rollwright-test/real-node-demo:{SESSION}"
    docker_client.images.build(path=str(ROOT / "images/demo-app"), tag=ref, rm=True)
    docker_client.images.push(ref)
    return ref


def service_url(core: k8s.CoreV1Api, ns: str, name: str, path: str = "/") -> str:
    """The Service's ClusterIP, reached from this host through kube-proxy's rules."""
    ip = core.read_namespaced_service(name, ns).spec.cluster_ip
    return f"http://{ip}:80{path}"


def app_pods(core: k8s.CoreV1Api, ns: str, app: str) -> list[k8s.V1Pod]:
    return [p for p in core.list_namespaced_pod(ns, label_selector=f"app={app}").items
            if not p.metadata.deletion_timestamp]


def get_through_service(core: k8s.CoreV1Api, ns: str, name: str, path: str = "/") -> str:
    """The body of a 200 from the Service, waiting out kube-proxy's sync (rules follow endpoints within ~1 s)."""
    url = service_url(core, ns, name, path)
    r = wait_until(lambda: (resp := httpx.get(url, timeout=3)).status_code == 200 and resp, 30,
                   what=f"{url} answering 200")
    return str(r.text)


async def rollout(temporal: Client, task_queue: str, spec_path: Path) -> tuple[RolloutResult, float]:
    t0 = time.monotonic()
    rc = RolloutClient(temporal, task_queue)
    res = await rc.result(await rc.start(load_spec(spec_path)))
    return res, time.monotonic() - t0


class RequestLoop:
    """GETs a URL back to back in a thread, keeping every answer (body, or the error) in order."""

    def __init__(self, url: str) -> None:
        self.url, self.answers = url, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=3) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url)
                    self.answers.append(f"{r.status_code} {r.text.strip()}")
                except httpx.HTTPError as e:
                    self.answers.append(f"error {type(e).__name__}")
                time.sleep(0.05)

    def __enter__(self) -> RequestLoop:
        self._t.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self._t.join(10)


# --------------------------------------------------------------------------- 1. the node

def test_real_node_is_ready_and_its_lease_is_the_kubelets(core: k8s.CoreV1Api) -> None:
    node = core.read_node(NODE)
    conds = {c.type: c.status for c in node.status.conditions}
    assert conds.get("Ready") == "True", conds
    # Not a KWOK node, and untainted: ordinary pods land here. KWOK nodes carry the simulated taint.
    assert (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") != "fake"
    assert not node.spec.taints, node.spec.taints
    assert node.status.node_info.kubelet_version == "v1.34.4"
    assert node.status.node_info.container_runtime_version.startswith("containerd://1.6")
    kwok = [n for n in core.list_node().items if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"]
    assert kwok and all(SIM_TAINT in [(t.key, t.effect) for t in n.spec.taints or []] for n in kwok)
    assert all((n.metadata.labels or {}).get("type") == "kwok" for n in kwok)
    # The heartbeat Lease: renewed by the kubelet alone (kwok-controller writes the Leases of its own nodes).
    coord = k8s.CoordinationV1Api(core.api_client)
    lease = wait_until(lambda: coord.read_namespaced_lease(NODE, "kube-node-lease"), 60, what="real-0's Lease")
    assert lease.spec.holder_identity == NODE
    assert {m.manager for m in lease.metadata.managed_fields} == {"kubelet"}, lease.metadata.managed_fields
    # Node status is the kubelet's too.
    assert "kubelet" in {m.manager for m in node.metadata.managed_fields}
    assert "kwok-controller" not in {m.manager for m in node.metadata.managed_fields}
    # Its credentials are a node certificate, not the admin's.
    subject = subprocess.run(["openssl", "x509", "-in", str(STATE / "node/kubelet.crt"), "-noout", "-subject"],
                             capture_output=True, text=True, check=True).stdout
    assert "system:node:real-0" in subject and "system:nodes" in subject, subject


# --------------------------------------------------------------------------- 2. a rollout that really runs

@async_test
async def test_demo_rollout_runs_the_pushed_digest_and_answers_through_its_service(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        core: k8s.CoreV1Api, registry: str) -> None:
    p = write_release(tmp_path, app="web", namespace=namespace, registry=registry, version="v1",
                      objects=real_app("web", env={"GREETING": "hello from v1"}),
                      health={"progress_deadline_seconds": 180, "bake_seconds": 2,
                              "http": [{"service": "web", "path": "/", "interval_seconds": 0.5}]})
    res, took = await rollout(temporal, task_queue, p)
    print(f"real rollout of 2 pods: {took:.1f}s")
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    repo = f"{registry}/rollwright-test/web"
    assert res.image and res.image.startswith(f"{repo}@sha256:")
    pods = app_pods(core, namespace, "web")
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name == NODE
        cs = pod.status.container_statuses[0]
        # What containerd pulled and runs is exactly the digest Rollwright pushed and pinned.
        assert cs.ready and cs.image_id == res.image, (cs.image_id, res.image)
        assert pod.status.pod_ip.startswith("10.244.0.")
    # The bake probed the app itself, through its Service's ClusterIP.
    ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert res.health and res.health[0].url == f"http://{ip}:80/" and res.health[0].successes >= 1
    assert get_through_service(core, namespace, "web") == "demo v1: hello from v1\n"


# --------------------------------------------------------------------------- 3, 4. real fail-fast causes

@async_test
async def test_real_crashloop_is_detected_and_rolled_back(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                          namespace: str, tmp_path: Path, apps: k8s.AppsV1Api,
                                                          registry: str) -> None:
    crash = ["python3", "-c", "import sys; print('config error: DATABASE_URL is not set'); sys.exit(3)"]
    p = write_release(tmp_path, app="crash", namespace=namespace, registry=registry,
                      objects=real_app("crash", deadline=600, command=crash),
                      health={"progress_deadline_seconds": 600})
    res, took = await rollout(temporal, task_queue, p)
    print(f"real CrashLoopBackOff: rolled back {took:.1f}s after the start (deadline 600 s)")
    assert res.outcome == Outcome.ROLLED_BACK, res
    assert res.cause and res.cause.startswith("pod crash-") and "CrashLoopBackOff" in res.cause, res.cause
    assert "ProgressDeadline" not in res.cause
    with pytest.raises(k8s.ApiException):  # first release: the rollback removes what it created
        apps.read_namespaced_deployment("crash", namespace)


@async_test
async def test_real_image_pull_failure_names_the_image(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                       namespace: str, tmp_path: Path, registry: str) -> None:
    missing = f"{registry}/rollwright-test/absent:never-pushed-{SESSION}"
    p = write_release(tmp_path, app="pull", namespace=namespace, registry=registry, image=False,
                      objects=real_app("pull", deadline=600, image=missing),
                      health={"progress_deadline_seconds": 600})
    res, took = await rollout(temporal, task_queue, p)
    print(f"real ImagePullBackOff: rolled back {took:.1f}s after the start (deadline 600 s)")
    assert res.outcome == Outcome.ROLLED_BACK, res
    assert res.cause and ("ErrImagePull" in res.cause or "ImagePullBackOff" in res.cause), res.cause
    assert missing in res.cause, res.cause


# --------------------------------------------------------------------------- 5. readiness failure, zero downtime

@async_test
async def test_readiness_failure_rolls_back_at_the_deadline_while_v1_keeps_serving(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        core: k8s.CoreV1Api, apps: k8s.AppsV1Api, registry: str) -> None:
    v1 = write_release(tmp_path, app="rd", namespace=namespace, registry=registry, version="v1",
                       objects=real_app("rd", env={"GREETING": "v1"}))
    r1, _ = await rollout(temporal, task_queue, v1)
    assert r1.outcome == Outcome.SUCCEEDED, r1.cause
    # v2 depends on a Service nobody deployed: its /readyz fails for real (DNS answers NXDOMAIN).
    v2 = write_release(tmp_path, app="rd", namespace=namespace, registry=registry, version="v2",
                       objects=real_app("rd", deadline=15, env={"GREETING": "v2",
                                                                "READY_DEPENDS_ON": "http://rd-db/healthz"}))
    url = service_url(core, namespace, "rd")
    assert get_through_service(core, namespace, "rd") == "demo v1: v1\n"
    with RequestLoop(url) as loop:
        r2, took = await rollout(temporal, task_queue, v2)
        time.sleep(2)  # and a little after the rollback
    answers = loop.answers
    failed = [a for a in answers if a != "200 demo v1: v1"]
    print(f"readiness failure: rolled back after {took:.1f}s; {len(answers)} requests through the Service, "
          f"{len(failed)} not answered by v1: {sorted(set(failed))[:5]}")
    assert r2.outcome == Outcome.ROLLED_BACK, r2
    assert "ProgressDeadlineExceeded" in (r2.cause or ""), r2.cause
    # The new pod really ran and really was not ready: its kubelet said why, in an Event.
    events = [e.message or "" for e in core.list_namespaced_event(namespace).items if e.reason == "Unhealthy"]
    assert any("Readiness probe failed" in m and "503" in m for m in events), events[:5]
    # v1 answered every request, before, during and after.
    assert len(answers) > 20 and not failed, (len(answers), failed[:10])
    assert apps.read_namespaced_deployment("rd", namespace).spec.template.spec.containers[0].image == r1.image


# --------------------------------------------------------------------------- 6. the bake probes the real app

@async_test
async def test_bake_probes_the_real_app_and_rolls_back_a_version_answering_500(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        core: k8s.CoreV1Api, registry: str) -> None:
    health = {"progress_deadline_seconds": 180, "bake_seconds": 4,
              "http": [{"service": "hb", "path": "/", "interval_seconds": 0.5, "failure_threshold": 3}]}
    v1 = write_release(tmp_path, app="hb", namespace=namespace, registry=registry, version="v1",
                       objects=real_app("hb", env={"GREETING": "fine"}), health=health)
    r1, _ = await rollout(temporal, task_queue, v1)
    assert r1.outcome == Outcome.SUCCEEDED, r1.cause
    # (A probe right after readiness may be refused while kube-proxy syncs the new endpoints: failure_threshold
    # absorbs it, as it would in production.)
    assert r1.health[0].ok and r1.health[0].last_status == 200
    # v2 is ready (its /readyz passes) but fails every request to /.
    v2 = write_release(tmp_path, app="hb", namespace=namespace, registry=registry, version="v2",
                       objects=real_app("hb", env={"GREETING": "broken", "FAIL_RATE": "1"}), health=health)
    r2, _ = await rollout(temporal, task_queue, v2)
    assert r2.outcome == Outcome.ROLLED_BACK, r2
    assert "health check" in (r2.cause or "") and "HTTP 500" in (r2.cause or ""), r2.cause
    assert r2.health[0].last_status == 500
    # v2's pods terminate gracefully (preStop, then SIGTERM): wait until they are gone, terminating ones too.
    wait_until(lambda: all(p.status.container_statuses and p.status.container_statuses[0].image_id == r1.image
                           for p in core.list_namespaced_pod(namespace, label_selector="app=hb").items),
               120, what="only v1 pods left")
    assert get_through_service(core, namespace, "hb") == "demo v1: fine\n"
    metrics = get_through_service(core, namespace, "hb", "/metrics")
    assert 'demo_build_info{version="v1"} 1' in metrics


# --------------------------------------------------------------------------- 7. DNS and Services

def test_pods_resolve_services_by_name_and_the_host_reaches_a_cluster_ip(
        kube: Kube, core: k8s.CoreV1Api, namespace: str, demo_image: str) -> None:
    image = demo_image
    for o in real_app("backend", replicas=1, image=image, env={"VERSION": "b1", "GREETING": "from the backend"}):
        o["metadata"]["namespace"] = namespace
        kube.apply(o, manager=MANAGER)
    wait_until(lambda: any(c.type == "Ready" and c.status == "True" for p in app_pods(core, namespace, "backend")
                           for c in p.status.conditions or []), 180, what="backend Ready")
    # The host reaches the ClusterIP through kube-proxy's rules (once they follow the new endpoint).
    assert get_through_service(core, namespace, "backend") == "demo b1: from the backend\n"
    script = ("import socket, urllib.request\n"
              f"for n in ('backend', 'backend.{namespace}.svc.cluster.local'):\n"
              "    print(n, socket.gethostbyname(n), urllib.request.urlopen(f'http://{n}/', timeout=5).read().decode().strip())\n")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
           "spec": on_real_node({"restartPolicy": "Never",
                                 "containers": [{"name": "c", "image": image, "command": ["python3", "-c", script]}]})}
    core.create_namespaced_pod(namespace, pod)
    phase = wait_until(lambda: core.read_namespaced_pod("client", namespace).status.phase in ("Succeeded", "Failed")
                       and core.read_namespaced_pod("client", namespace).status.phase, 180, what="client pod done")
    # The log comes from the kubelet (apiserver → kubelet by InternalIP, with a client certificate).
    out = core.read_namespaced_pod_log("client", namespace)
    assert phase == "Succeeded", out
    ip = core.read_namespaced_service("backend", namespace).spec.cluster_ip
    assert out.splitlines() == [f"backend {ip} demo b1: from the backend",
                                f"backend.{namespace}.svc.cluster.local {ip} demo b1: from the backend"], out
    assert ip.startswith("10.96.")


# --------------------------------------------------------------------------- 8. down leaves nothing; up again

def _leftovers() -> list[str]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "/run/rollwright-containerd" in cmd or "/k8sbin/" in cmd and ("kubelet" in cmd or "kube-proxy" in cmd) \
                or "/coredns/" in cmd and "-conf" in cmd or cmd.startswith("socat ") and "bind=10.244.0.1" in cmd:
            found.append(f"process {pid}: {cmd[:120]}")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    for ipt in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([ipt], capture_output=True, text=True).stdout
        found += [f"{ipt}: {line}" for line in rules.splitlines() if "KUBE-" in line or "CNI-" in line]
    for d in ("/run/rollwright-containerd", "/var/lib/kubelet/device-plugins", "/var/lib/rollwright-kubelet"):
        if Path(d).exists():
            found.append(d)
    found += [f"netns {n}" for n in (os.listdir("/run/netns") if Path("/run/netns").is_dir() else [])
              if n.startswith("cni-")]
    return found


def _announce(state: str) -> None:
    Path("/tmp/stack-status.txt").write_text(f"{state}\n")


def test_zz_down_leaves_nothing_behind_and_up_works_again(core: k8s.CoreV1Api, kube: Kube, demo_image: str) -> None:
    """Runs last in this file. ROLLWRIGHT_TEST_FULL_RESTART=1 (CI) stops the whole stack with stack.sh down;
    otherwise only the node's part of it (what stack.sh down runs first), so a shared stack keeps serving."""
    full = os.environ.get("ROLLWRIGHT_TEST_FULL_RESTART") == "1"
    namespace = f"t-node-restart-{uuid.uuid4().hex[:5]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    # A pod running, so down has a sandbox, a veth and Service rules to clean.
    for o in real_app("before", replicas=1, image=demo_image):
        o["metadata"]["namespace"] = namespace
        kube.apply(o, manager=MANAGER)
    wait_until(lambda: any(p.status.phase == "Running" for p in app_pods(core, namespace, "before")), 180,
               what="a pod running on the node")
    _announce(f"RESTARTING by realnode (test_real_node {uuid.uuid4().hex[:4]})")
    try:
        down = ["scripts/stack.sh", "down"] if full else ["scripts/node.sh", "down"]
        r = subprocess.run(["bash", *down], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert _leftovers() == []
    finally:
        r = subprocess.run(["bash", "scripts/stack.sh", "up"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        _announce("UP with real node real-0" if r.returncode == 0 else "DOWN: stack.sh up failed (realnode test)")
    assert r.returncode == 0, r.stderr[-3000:]
    wait_until(lambda: {c.type: c.status for c in core.read_node(NODE).status.conditions}.get("Ready") == "True",
               120, what="real-0 Ready again")
    if not full:
        # The Deployment's pod comes back on the restarted node and serves through its Service.
        wait_until(lambda: httpx.get(service_url(core, namespace, "before"), timeout=3).status_code == 200, 180,
                   what="the Service answering after the restart")
        core.delete_namespace(namespace)
