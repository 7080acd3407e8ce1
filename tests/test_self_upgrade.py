"""Safe self-upgrade under Worker Versioning (issue 9, part 3), on the real Temporal dev server and the real cluster.

While a long rollout (bake 60 s) runs on worker build A, ``rollwright worker upgrade`` rolls out build B with
Rollwright itself (``WorkerUpgradeWorkflow``: B's Deployment next to A's, a normal RolloutWorkflow as child), makes B
the current version once B polls, waits until A is drained and deletes A's Deployment. Asserted from the histories:
the in-flight rollout ran every workflow task on A, new rollouts run on B, the upgrade itself moved from A to B.

Two modes (``ROLLWRIGHT_SELF_UPGRADE_MODES``, default ``pods``):

- **pods** (the real thing): A and B are worker pods on the real node real-0, built from this repository's
  Dockerfile and rolled out from the dev overlay (k8s/rendered/dev.yaml, moved into the test's namespace and task
  queue). A builds and rolls out B from inside the cluster (host Docker engine through the dev-only socket
  component), B's pod retires A. A developer's unversioned host worker installs the first versioned build (A).
- **host**: A and B are real ``rollwright worker`` processes on this machine, started by the test with the
  versioning environment the rendered manifests give the pods; the ``rollwright-worker-<build>`` Deployments are
  real objects but their pods are simulated on the KWOK nodes. Quicker (no image build, no pod start); kept for
  machines without the real node.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.kube import Kube
from contract.models import ObjectRef
from contract.upgrade import upgrade_workflow_id
from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import BIN, ROOT, WorkerProcess, deployment, history_events, write_release

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
MODES = [m.strip() for m in os.environ.get("ROLLWRIGHT_SELF_UPGRADE_MODES", "pods").split(",") if m.strip()]
RENDERED = ROOT / "k8s/rendered/dev.yaml"

T0 = time.monotonic()


def _t(msg: str) -> None:
    print(f"[self-upgrade +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def _worker_release(d: Path, namespace: str, app: str, registry: str) -> Path:
    """host mode: the worker's release is the Deployment `rollwright-worker` with simulated pods."""
    w = deployment("rollwright-worker", replicas=1, image="127.0.0.1:5000/rollwright/worker:dev")
    w["metadata"]["labels"] = {"app.kubernetes.io/name": "rollwright-worker"}
    return write_release(d, app=app, namespace=namespace, objects=[w], registry=registry, image=False,
                         health={"progress_deadline_seconds": 120})


def _worker_release_pods(d: Path, namespace: str, app: str, queue: str, kube: Kube, created: list[ObjectRef]) -> Path:
    """pods mode: the dev overlay's worker (image built from this repo, real node, Temporal and registry at the node
    IP, docker socket), moved into the test's namespace and task queue, one replica. Its permissions are copies of
    the dev overlay's roles under the test's own names (other tests create and delete the shared ClusterRoles): the
    managed role as a Role of the namespace, in the release; reading namespaces as a ClusterRole + binding applied
    here and deleted by the fixture."""
    objs: list[dict[str, Any]] = []
    rbac = "rbac.authorization.k8s.io"
    sa = [{"kind": "ServiceAccount", "name": "rollwright-worker", "namespace": namespace}]
    for o in yaml.safe_load_all(RENDERED.read_text()):
        if not o:
            continue
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "rollwright-worker-managed":
            objs.append({"apiVersion": f"{rbac}/v1", "kind": "Role", "rules": o["rules"],
                         "metadata": {"name": "rollwright-worker-managed", "namespace": namespace}})
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "rollwright-worker-namespaces":
            own = f"rollwright-worker-{namespace}"
            for obj in ({"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": own},
                         "rules": o["rules"]},
                        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": own},
                         "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": own}, "subjects": sa}):
                kube.apply(obj, manager="rollwright-test-setup")
                created.append(ObjectRef(api_version=f"{rbac}/v1", kind=obj["kind"], name=own))
        if o["kind"] in ("ServiceAccount", "ConfigMap", "Deployment"):
            o["metadata"]["namespace"] = namespace
            if o["kind"] == "ConfigMap":
                o["data"]["ROLLWRIGHT_TASK_QUEUE"] = queue
            if o["kind"] == "Deployment":
                o["spec"]["replicas"] = 1
            objs.append(o)
    objs.append({"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
                 "metadata": {"name": "rollwright-worker", "namespace": namespace},
                 "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "rollwright-worker-managed"}, "subjects": sa})
    d.mkdir(parents=True, exist_ok=True)
    (d / "worker.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    spec = {"app": app, "environment": "test", "namespace": namespace, "manifests": ["worker.yaml"],
            "image": {"context": str(ROOT), "dockerfile": "Dockerfile", "repository": "127.0.0.1:5000/rollwright/worker",
                      "build_args": {"BASE_IMAGE": "rollwright/python-base:3.11"}},
            "health": {"progress_deadline_seconds": 300}}
    p = d / "release.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def _task_versions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(build ID, behaviour) of every completed workflow task, in order."""
    out = []
    for e in events:
        a = e.get("workflowTaskCompletedEventAttributes")
        if a is not None:
            out.append((a.get("deploymentVersion", {}).get("buildId", ""), a.get("versioningBehavior", "")))
    return out


def _activity_identities(events: list[dict[str, Any]]) -> set[str]:
    return {e["activityTaskStartedEventAttributes"].get("identity", "") for e in events
            if "activityTaskStartedEventAttributes" in e}


async def _rpc(call: Any) -> Any:
    """The server rate-limits reads of one Worker Deployment (RESOURCE_EXHAUSTED): back off and ask again."""
    for _ in range(30):
        try:
            return await call()
        except RPCError as e:
            if e.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            await asyncio.sleep(1)
    return await call()


async def _current(client: Client, name: str) -> str | None:
    r = await _rpc(lambda: client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)))
    return r.worker_deployment_info.routing_config.current_deployment_version.build_id or None


async def _version_status(client: Client, name: str, build: str) -> str:
    r = await _rpc(lambda: client.workflow_service.describe_worker_deployment_version(
        DescribeWorkerDeploymentVersionRequest(namespace=client.namespace, deployment_version=WorkerDeploymentVersion(
            deployment_name=name, build_id=build))))
    return str(WorkerDeploymentVersionStatus.Name(r.worker_deployment_version_info.status))


def _describe_cli(name: str, env: dict[str, str]) -> str:
    r = subprocess.run([str(BIN / "temporal"), "worker", "deployment", "describe", "--name", name], env=env,
                       capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


@pytest.fixture
def upgrade_env(kubeconfig: Path) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    queue = f"rw-upg-{tag}"
    # Own Worker Deployment per run (ROLLWRIGHT_TEST_WORKER_DEPLOYMENT to use e.g. rollwright-worker for the README).
    name = os.environ.get("ROLLWRIGHT_TEST_WORKER_DEPLOYMENT") or f"rw-upg-{tag}"
    builds = (f"a-{tag}", f"b-{tag}")
    procs: list[WorkerProcess] = []

    def versioned(build: str) -> WorkerProcess:
        w = WorkerProcess(queue, kubeconfig, name=f"upgrade-{build}", extra_env={
            "ROLLWRIGHT_WORKER_DEPLOYMENT_NAME": name, "ROLLWRIGHT_WORKER_BUILD_ID": build})
        procs.append(w)
        return w

    def unversioned() -> WorkerProcess:
        w = WorkerProcess(queue, kubeconfig, name=f"upgrade-unversioned-{tag}")
        procs.append(w)
        return w

    clis: list[asyncio.subprocess.Process] = []
    created: list[ObjectRef] = []
    yield {"queue": queue, "name": name, "builds": builds, "versioned": versioned, "unversioned": unversioned,
           "tag": tag, "clis": clis, "created": created}
    for p in clis:
        if p.returncode is None:
            p.kill()
    for w in procs:
        w.stop(timeout=40)
    kube = Kube(kubeconfig, None)
    for ref in created:
        kube.delete(ref)


async def _upgrade(build: str, spec: Path, env: dict[str, Any], cli_env: dict[str, str]) -> asyncio.subprocess.Process:
    e = dict(cli_env, ROLLWRIGHT_TASK_QUEUE=env["queue"])
    p = await asyncio.create_subprocess_exec(
        str(BIN / "rollwright"), "worker", "upgrade", "-f", str(spec), "--build-id", build,
        "--deployment-name", env["name"], "--pollers-timeout", "120", "--drain-timeout", "600", "--wait",
        env=e, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    env["clis"].append(p)
    return p


@pytest.mark.parametrize("mode", MODES)
async def test_self_upgrade_pins_in_flight_rollouts_and_retires_the_drained_build(
        mode: str, temporal: Client, upgrade_env: dict[str, Any], namespace: str, apps: k8s.AppsV1Api,
        core: k8s.CoreV1Api, kube: Kube, registry: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    global T0
    T0 = time.monotonic()
    env = upgrade_env
    a, b = env["builds"]
    name, queue = env["name"], env["queue"]
    pods = mode == "pods"
    app = f"rw-worker-{env['tag']}"
    worker_spec = (_worker_release_pods(tmp_path / "worker", namespace, app, queue, kube, env["created"]) if pods
                   else _worker_release(tmp_path / "worker", namespace, app, registry))
    client = RolloutClient(temporal, queue)
    cenv = dict(cli_env, ROLLWRIGHT_TASK_QUEUE=queue)
    # Where A's and B's workers run: pods of rollwright-worker-<build> on real-0, or host processes standing in.
    where = {build: (rf"@rollwright-worker-{build}-" if pods else "@") for build in (a, b)}

    # 1. Bootstrap: an unversioned worker (a developer's host worker) runs the first upgrade, to build A.
    _t(f"deployment {name}, queue {queue}, builds {a} → {b} (mode: {mode})")
    env["unversioned"]().start()
    if not pods:
        worker_a = env["versioned"](a)
        worker_a.start()
    first = await _upgrade(a, worker_spec, env, cli_env)
    out, err = await asyncio.wait_for(first.communicate(), 480)
    assert first.returncode == 0, f"bootstrap upgrade to {a}: rc={first.returncode}\n{out.decode()}\n{err.decode()}"
    assert await _current(temporal, name) == a
    _t(f"bootstrap: {a} is current ({out.decode().strip().splitlines()[-1]})")
    before = _describe_cli(name, cenv)
    print(f"--- temporal worker deployment describe --name {name} (before) ---\n{before}")

    # 2. A long rollout (bake 60 s) starts on A and is pinned there.
    long_spec = load_spec(write_release(
        tmp_path / "long", app=f"rw-long-{env['tag']}", namespace=namespace, registry=registry, image=False,
        objects=[deployment("long", replicas=1)], health={"progress_deadline_seconds": 120, "bake_seconds": 60}))
    long = await client.start(long_spec)
    long_started = time.monotonic()

    async def phase() -> str:
        return (await long.query("status")).get("step", "")
    while await phase() != "Bake":
        assert time.monotonic() - long_started < 120, "the long rollout never reached its bake"
        await asyncio.sleep(0.5)
    _t("long rollout on A is baking (60 s)")

    # 3. Roll out B with Rollwright itself while A's rollout bakes.
    if not pods:
        env["versioned"](b).start()
    upgrade_started = time.monotonic()
    second = await _upgrade(b, worker_spec, env, cli_env)
    while await _current(temporal, name) != b:
        assert second.returncode is None, f"upgrade ended early: {(await second.communicate())}"
        assert time.monotonic() - upgrade_started < 420, "B never became current"
        await asyncio.sleep(2)
    _t(f"{b} is current, {time.monotonic() - upgrade_started:.1f}s after `worker upgrade`; long rollout still "
       f"running: {(await long.describe()).status.name}")
    assert (await long.describe()).status.name == "RUNNING"
    assert await _version_status(temporal, name, a) == "WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING"
    assert apps.read_namespaced_deployment(f"rollwright-worker-{a}", namespace) is not None

    # 4. A new rollout now goes to B.
    new_spec = load_spec(write_release(
        tmp_path / "new", app=f"rw-new-{env['tag']}", namespace=namespace, registry=registry, image=False,
        objects=[deployment("fresh", replicas=1)], health={"progress_deadline_seconds": 120}))
    new_res = await client.result(await client.start(new_spec))
    assert new_res.outcome == Outcome.SUCCEEDED, new_res.cause
    _t("new rollout succeeded")

    # 5. The upgrade waits for A to drain (the long rollout's end), then deletes A's Deployment.
    out, err = await asyncio.wait_for(second.communicate(), 600)
    assert second.returncode == 0, f"upgrade to {b}: rc={second.returncode}\n{out.decode()}\n{err.decode()}"
    long_res = await client.result(long)
    assert long_res.outcome == Outcome.SUCCEEDED, long_res.cause
    _t(f"upgrade done {time.monotonic() - upgrade_started:.1f}s after it started: {out.decode().strip()}")
    assert await _version_status(temporal, name, a) == "WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED"
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment(f"rollwright-worker-{a}", namespace)
    assert gone.value.status == 404
    live_b = apps.read_namespaced_deployment(f"rollwright-worker-{b}", namespace)
    assert live_b.spec.selector.match_labels["rollwright.io/worker-build"] == b
    env_b = {e.name: e.value for e in live_b.spec.template.spec.containers[0].env}
    assert env_b["ROLLWRIGHT_WORKER_BUILD_ID"] == b and env_b["ROLLWRIGHT_WORKER_DEPLOYMENT_NAME"] == name
    after = _describe_cli(name, cenv)
    print(f"--- temporal worker deployment describe --name {name} (after) ---\n{after}")

    # Histories: the in-flight rollout ran on A only (pinned), the new one on B, the upgrade moved from A to B.
    long_ev = history_events(long.id, long.result_run_id, cenv)
    long_versions = _task_versions(long_ev)
    assert long_versions and {v for v, _ in long_versions} == {a}, long_versions
    assert {bh for _, bh in long_versions} == {"VERSIONING_BEHAVIOR_PINNED"}, long_versions
    ids = _activity_identities(long_ev)
    assert ids and all(re.search(rf"\+{a}(-waits)?{where[a]}", i) for i in ids), ids
    new_ids = _activity_identities(history_events(f"rollout.{new_spec.app}.{new_spec.environment}", None, cenv))
    assert new_ids and all(re.search(rf"\+{b}(-waits)?{where[b]}", i) for i in new_ids), new_ids
    new_versions = _task_versions(history_events(f"rollout.{new_spec.app}.{new_spec.environment}", None, cenv))
    assert {v for v, _ in new_versions} == {b}, new_versions
    up_versions = [v for v, _ in _task_versions(history_events(upgrade_workflow_id(name), None, cenv))]
    assert up_versions[0] == a and up_versions[-1] == b, up_versions
    worker_rollout = _task_versions(history_events(f"rollout.rw-worker-{env['tag']}.test", None, cenv))
    assert {v for v, _ in worker_rollout} == {a}, f"B's own rollout must run on A: {worker_rollout}"
    _t(f"histories: long rollout tasks {len(long_versions)}x on {a}; new rollout on {b}; upgrade {up_versions}")
    if pods:  # deleting A's Deployment stopped A's pods (graceful shutdown); B's pod keeps serving
        def a_pods() -> list[Any]:
            return core.list_namespaced_pod(namespace, label_selector=f"rollwright.io/worker-build={a}").items
        deadline = time.monotonic() + 120
        while a_pods():
            assert time.monotonic() < deadline, [p.metadata.name for p in a_pods()]
            await asyncio.sleep(2)
        _t(f"A's pods are gone; B's pods: {[p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=f'rollwright.io/worker-build={b}').items]}")
    else:
        worker_a.stop()  # the host process standing in for A's pods
