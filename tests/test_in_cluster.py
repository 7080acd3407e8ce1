"""The worker runs in the cluster it deploys to (issue 9): real pods on the real node real-0, nothing simulated.

(a) Rollwright rolls out its own worker (k8s/rollwright.release.yaml, the dev overlay: real node, docker socket,
    Temporal and the registry at the node IP) with the README's command, run by the session's host worker. The
    pods pull the pushed digest, start on real-0 and answer /readyz through their Service's ClusterIP.
(b) The demo release (examples/demo/incluster-v1.yaml, images/demo-app) is started from the host CLI on the queue
    only the in-cluster worker polls. That worker fetches the bundle, builds (through the host engine's socket)
    and pushes, applies into its managed namespace `apps`, waits for real pods and health-checks the app through
    the Service's cluster DNS name. The broken v2 is rolled back. Every activity of both histories was started
    by an in-cluster worker pod (ActivityTaskStarted identity `…@<pod name>`), and every workflow task, in which
    the short steps run as local activities, was completed by one (WorkflowTaskCompleted identity).
Run by the test suite against the real local stack; the module cleans up the demo's objects and the worker's
release (namespace `rollwright`, its cluster-scoped RBAC) at the end.
"""

from __future__ import annotations

import base64
import grp
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.kube import Kube
from activities.revisions import list_records
from orchestrator.client import RolloutClient
from orchestrator.models import Outcome, RolloutResult, Step
from tests.helpers import WorkerProcess, cli, history_events, local_activities, wait_until
from tests.test_self_deploy import _end_if_orphaned

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "k8s/rollwright.release.yaml"
RENDERED = ROOT / "k8s/rendered/dev.yaml"
DEMO = ROOT / "examples/demo"
WORKER_REPO = "127.0.0.1:5000/rollwright/worker"
DEMO_REPO = "127.0.0.1:5000/rollwright/demo"
NODE = "real-0"
SELECTOR = "app.kubernetes.io/name=rollwright-worker"


def _dev_config() -> dict[str, str]:
    """The in-cluster worker's ConfigMap, as rendered (its queue, Temporal address, mirrors)."""
    cm = next(o for o in yaml.safe_load_all(RENDERED.read_text()) if o and o["kind"] == "ConfigMap")
    return dict(cm["data"])


INCLUSTER_QUEUE = _dev_config()["ROLLWRIGHT_TASK_QUEUE"]


@dataclass
class Run:
    """One CLI rollout: its exit code, output, workflow result and history."""

    code: int
    out: str
    seconds: float
    result: RolloutResult
    events: list[dict[str, Any]] = field(default_factory=list)


async def _rollout(temporal: Client, env: dict[str, str], queue: str, spec: Path, label: str) -> Run:
    """`rollwright --task-queue QUEUE rollout start -f SPEC --wait`, as the README runs it."""
    t0 = time.monotonic()
    r = cli("--task-queue", queue, "rollout", "start", "-f", str(spec), "--wait", env=env, timeout=900)
    took = time.monotonic() - t0
    print(f"{label}: exit {r.returncode} in {took:.1f}s")
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("started ")), None)
    assert line, f"{r.stdout}\n{r.stderr}"
    wf, run_id = line.split()[1], line.split("(run ")[1].rstrip(")")
    res = await RolloutClient(temporal, queue).result(temporal.get_workflow_handle(wf, run_id=run_id))
    return Run(r.returncode, r.stdout + r.stderr, took, res, history_events(wf, run_id, env))


def _activities(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(activity type, identity that started it, decoded result) for every activity attempt in a history."""
    types = {e["eventId"]: e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
             for e in events if "activityTaskScheduledEventAttributes" in e}
    started = {e["eventId"]: e["activityTaskStartedEventAttributes"] for e in events
               if "activityTaskStartedEventAttributes" in e}
    results: dict[str, dict[str, Any] | None] = {}
    for e in events:
        c = e.get("activityTaskCompletedEventAttributes")
        if c:
            payloads = (c.get("result") or {}).get("payloads") or [None]
            p = payloads[0]
            results[c["startedEventId"]] = json.loads(base64.b64decode(p["data"])) if p and p.get("data") else None
    return [(types[a["scheduledEventId"]], a["identity"], results.get(sid)) for sid, a in started.items()]


def _worker_pods(core: k8s.CoreV1Api) -> list[k8s.V1Pod]:
    return [p for p in core.list_namespaced_pod("rollwright", label_selector=SELECTOR).items
            if not p.metadata.deletion_timestamp]


def _demo_copy(d: Path, version: str, nonce: str) -> Path:
    """examples/demo/incluster-<version>.yaml as committed, plus a build arg unique to this session: the in-cluster
    worker then really builds and pushes on every run (the committed spec alone is a registry cache hit on a
    rerun, which would skip the build)."""
    d.mkdir(exist_ok=True)
    spec = yaml.safe_load((DEMO / f"incluster-{version}.yaml").read_text())
    spec["image"]["context"] = str(ROOT / "images/demo-app")
    spec["image"]["build_args"]["RUN_NONCE"] = nonce
    for m in spec["manifests"]:
        if not (d / m).exists():
            shutil.copytree(DEMO / m, d / m)
    out = d / f"incluster-{version}.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


@dataclass
class InCluster:
    deploy: Run
    v1: Run | None = None
    v2: Run | None = None
    pods: set[str] = field(default_factory=set)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def incluster(worker: WorkerProcess, temporal: Client, task_queue: str, cli_env: dict[str, str],
                    core: k8s.CoreV1Api, kube: Kube, kubeconfig: Path) -> AsyncIterator[InCluster]:
    """(a) for the module: the worker's own release, rolled out by the session's host worker."""
    created_apps = False
    try:  # the RoleBinding of the manifests lives in the managed namespace, which must exist beforehand
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="apps")))
        created_apps = True
    except ApiException as e:
        if e.status != 409:
            raise
    # A self-rollout left running by an interrupted session would block this one (one rollout per app/env).
    try:
        desc = await temporal.get_workflow_handle("rollout.rollwright.dev").describe()
    except RPCError:
        desc = None  # never started on this server
    if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING:
        await _end_if_orphaned(temporal, desc.id, desc.run_id)
    # The docker-socket component adds the host's `docker` GID as a supplemental group (it cannot be templated):
    # on a machine where it differs, builds from the pod would fail with "permission denied" on the socket.
    component = yaml.safe_load((ROOT / "k8s/components/docker-socket/kustomization.yaml").read_text())
    gids = [op["value"] for patch in component["patches"] for op in yaml.safe_load(patch["patch"])
            if op["path"].endswith("supplementalGroups")]
    assert gids == [[grp.getgrnam("docker").gr_gid]], (
        f"k8s/components/docker-socket gives the pod groups {gids}, but this host's docker group is "
        f"{grp.getgrnam('docker').gr_gid}: set supplementalGroups to it (getent group docker)")
    state = InCluster(deploy=await _rollout(temporal, cli_env, task_queue, SPEC, "self-deploy (a)"))
    build = next((res for t, _, res in _activities(state.deploy.events) if t == "build_image"), None)
    print(f"self-deploy build: {'registry cache hit (unchanged source)' if build and build['cache_hit'] else build}")
    try:
        yield state
    finally:
        t0 = time.monotonic()
        for kind, name in (("deployment", "demo"), ("service", "demo"), ("configmap", "demo-config")):
            subprocess.run(["kubectl", "-n", "apps", "delete", kind, name, "--ignore-not-found", "--wait=false"],
                           env=cli_env, capture_output=True)
        for rec in list_records(kube, "apps", "demo", "incluster"):
            subprocess.run(["kubectl", "-n", "apps", "delete", "secret", rec["metadata"]["name"], "--ignore-not-found"],
                           env=cli_env, capture_output=True)
        # The worker's release: namespace rollwright (pods, revision records), cluster RBAC, the RoleBinding in apps.
        # Waited for: a later self-rollout (tests/test_self_deploy.py) cannot create objects in a terminating namespace.
        subprocess.run(["kubectl", "delete", "-f", str(RENDERED), "--ignore-not-found", "--wait=true", "--timeout=180s"],
                       env=cli_env, capture_output=True)
        if created_apps:
            core.delete_namespace("apps")
            # Waited for too: a terminating namespace refuses even dry runs (tests/test_k8s_manifests.py runs next).
            wait_until(lambda: not any(n.metadata.name == "apps" for n in core.list_namespace().items), 180,
                       interval=1, what="namespace apps gone")
        print(f"cleanup: {time.monotonic() - t0:.1f}s")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_worker_pod_pulls_the_digest_and_is_ready_through_its_service(
        incluster: InCluster, core: k8s.CoreV1Api, apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    d = incluster.deploy
    assert d.code == 0 and d.result.outcome == Outcome.SUCCEEDED, d.out[-3000:]
    image = d.result.image
    assert image and image.startswith(f"{WORKER_REPO}@sha256:"), image
    digest = image.split("@", 1)[1]
    dep = apps.read_namespaced_deployment("rollwright-worker", "rollwright")
    assert dep.spec.template.spec.containers[0].image == image
    assert dep.status.available_replicas == dep.spec.replicas == 2
    pods = [p for p in _worker_pods(core) if p.spec.containers[0].image == image]
    assert len(pods) == 2, [(p.metadata.name, p.spec.containers[0].image) for p in _worker_pods(core)]
    for p in pods:
        # Real pods on the real node, running the digest the push reported (the kubelet's imageID).
        assert p.spec.node_name == NODE, (p.metadata.name, p.spec.node_name)
        st = p.status.container_statuses[0]
        assert st.ready and st.state.running, (p.metadata.name, st)
        assert st.image_id.endswith(digest), (st.image_id, digest)
    # /readyz through the Service's ClusterIP, from the host (kube-proxy routes it to a pod on real-0).
    svc = core.read_namespaced_service("rollwright-worker", "rollwright")
    url = f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}/readyz"
    r = wait_until(lambda: (x := httpx.get(url, timeout=5)).status_code == 200 and x, 60, interval=1, what=url)
    assert r.json()["status"] == "ready", r.text
    # The in-cluster config the worker's activities use: the `kubernetes` Service, TLS verified.
    probe = ("from kubernetes import client, config; c = client.Configuration(); "
             "config.load_incluster_config(client_configuration=c); client.VersionApi(client.ApiClient(c)).get_code(); "
             "print(c.host, c.verify_ssl, c.ssl_ca_cert)")
    x = subprocess.run(["kubectl", "-n", "rollwright", "exec", pods[0].metadata.name, "--", "python3", "-c", probe],
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert x.returncode == 0, x.stderr
    host, verify, ca = x.stdout.split()
    assert host == "https://10.96.0.1:443" and verify == "True" and ca.endswith("serviceaccount/ca.crt"), x.stdout
    incluster.pods = {p.metadata.name for p in _worker_pods(core)}


@pytest.mark.asyncio(loop_scope="session")
async def test_b_demo_runs_entirely_on_the_in_cluster_worker(incluster: InCluster, temporal: Client,
                                                             cli_env: dict[str, str], tmp_path: Path,
                                                             core: k8s.CoreV1Api, apps: k8s.AppsV1Api) -> None:
    assert incluster.deploy.result.outcome == Outcome.SUCCEEDED, incluster.deploy.result.cause
    assert _dev_config()["ROLLWRIGHT_REGISTRY_MIRRORS"] == "127.0.0.1:5000=10.244.0.1:5000"
    before = {p.metadata.name for p in _worker_pods(core)}
    nonce = uuid.uuid4().hex[:10]
    v1 = incluster.v1 = await _rollout(temporal, cli_env, INCLUSTER_QUEUE, _demo_copy(tmp_path, "v1", nonce),
                                       "demo v1 on the in-cluster worker")
    assert v1.code == 0 and v1.result.outcome == Outcome.SUCCEEDED, v1.out[-3000:]
    assert v1.result.image and v1.result.image.startswith(f"{DEMO_REPO}@sha256:")
    # Health went through the Service's cluster DNS name, resolved inside the worker's pod.
    (h,) = v1.result.health
    assert h.url == "http://demo.apps.svc.cluster.local/" and h.ok and h.successes >= 1, h
    dep = apps.read_namespaced_deployment("demo", "apps")
    assert dep.spec.template.spec.containers[0].image == v1.result.image
    assert dep.status.available_replicas == 2
    demo_pods = core.list_namespaced_pod("apps", label_selector="app=demo").items
    assert {p.spec.node_name for p in demo_pods if p.status.phase == "Running"} == {NODE}

    v2 = incluster.v2 = await _rollout(temporal, cli_env, INCLUSTER_QUEUE, _demo_copy(tmp_path, "v2", nonce),
                                       "demo v2 (broken) on the in-cluster worker")
    assert v2.code == 3 and v2.result.outcome == Outcome.ROLLED_BACK, v2.out[-3000:]
    assert v2.result.failed_step == Step.WAIT_READY, v2.result.cause
    assert v2.result.rolled_back_to == v1.result.revision
    dep = apps.read_namespaced_deployment("demo", "apps")
    assert dep.spec.template.spec.containers[0].image == v1.result.image

    # Every activity of both rollouts was started by an in-cluster worker pod, none by a host worker; the short
    # steps run as local activities inside the workflow tasks, so every workflow task was completed by one too.
    pods = before | {p.metadata.name for p in _worker_pods(core)}
    for run in (v1, v2):
        acts = _activities(run.events)
        assert acts
        hosts = {ident.rsplit("@", 1)[-1] for _, ident, _ in acts}
        assert hosts <= pods, (hosts, pods, sorted({i for _, i, _ in acts}))
        wft = {e["workflowTaskCompletedEventAttributes"]["identity"] for e in run.events
               if "workflowTaskCompletedEventAttributes" in e}
        assert {i.rsplit("@", 1)[-1] for i in wft} <= pods, (wft, pods)
        names = [t for t, _, _ in acts] + [la["activity_type"] for la in local_activities(run.events)]
        steps = ["prepare_release", "build_image", "push_image", "apply_release", "wait_ready"]
        steps += ["run_health_checks", "finalize_revision"] if run is v1 else ["rollback_release"]
        assert set(steps) <= set(names), (steps, names)
        print(f"{run.result.outcome.value}: {len(acts)} activity attempts by {sorted({i for _, i, _ in acts})}")
    # The pod really built and pushed (the session's build arg makes a new tag: no registry cache hit).
    build = next(res for t, _, res in _activities(v1.events) if t == "build_image")
    assert build and build["cache_hit"] is False and build["image"].startswith(f"{DEMO_REPO}:src-"), build
    push = next(res for t, _, res in _activities(v1.events) if t == "push_image")
    assert push and push["image"] == v1.result.image, push
