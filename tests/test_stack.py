"""Smoke tests of the local stack itself, independent of Rollwright's workflows: if these fail, the e2e failures
elsewhere are about the environment, not about Rollwright.

Every assertion is about a real outcome produced by a real component:
  * kube-controller-manager creates ReplicaSets and sets Deployment conditions (checked through managedFields, which
    the apiserver records per writer, so a test cannot pass because *we* wrote the field);
  * kube-scheduler binds pods to the KWOK nodes (nodeName + the scheduler's own `Scheduled` Event);
  * KWOK's stages (tools/kwok/stages-sim.yaml) make pods Ready, never-Ready or CrashLoopBackOff;
  * the apiserver validates server-side apply and dry runs, and streams watches;
  * Docker builds a FROM-scratch image and the registry serves exactly the digest the push reported;
  * the Temporal dev server runs a workflow and indexes its custom search attribute.

No timed assertions: everything that is asynchronous is polled with generous timeouts (the machine is shared), and a
timeout reports the last state seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.kube import Kube
from tests.helpers import configmap, deployment, wait_until
from tests.trivial_workflow import TrivialWorkflow

pytestmark = pytest.mark.e2e

MANAGER = "rollwright-test"
# What kwokctl puts on every node it manages (seen on the nodes of `kwokctl scale node`); the label `type: kwok`
# is set too, but the annotation is what kwok-controller itself keys on.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
BEHAVIOR_LABEL = "sim.rollwright.io/behavior"
MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


# --------------------------------------------------------------------------------------------------- helpers

def _ns(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


def _deploy(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == ctype), None)


def _managers(obj: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(m["manager"], m["operation"], m.get("subresource")) for m in obj["metadata"].get("managedFields") or []]


def _wait_available(kube: Kube, namespace: str, name: str, replicas: int, timeout: float = 180) -> dict[str, Any]:
    """Polls until the controller has observed the current generation and all replicas are updated + available."""
    def done() -> dict[str, Any] | None:
        d = _deploy(kube, namespace, name)
        s = d.get("status", {})
        avail = _condition(d, "Available")
        if (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == replicas
                and s.get("availableReplicas") == replicas and s.get("replicas") == replicas
                and avail and avail["status"] == "True"):
            return d
        return None

    return wait_until(done, timeout, interval=0.5, what=f"deployment {namespace}/{name} available ({replicas})")


def _kwok_nodes(core: k8s.CoreV1Api) -> set[str]:
    key, value = KWOK_NODE_ANNOTATION
    return {n.metadata.name for n in core.list_node().items if (n.metadata.annotations or {}).get(key) == value}


# --------------------------------------------------------------------------- 1. controller-manager + scheduler

def test_deployment_becomes_available_via_controller_manager_and_scheduler(
        kube: Kube, core: k8s.CoreV1Api, apps: k8s.AppsV1Api, namespace: str) -> None:
    kwok_nodes = _kwok_nodes(core)
    # scripts/cluster.sh registers 3 fake nodes; fewer means kwokctl (or the annotation name) changed.
    assert len(kwok_nodes) >= 3, f"KWOK nodes (annotation {KWOK_NODE_ANNOTATION}): {kwok_nodes}"

    kube.apply(_ns(deployment("web", replicas=3, image="rollwright/busybox:static"), namespace), manager=MANAGER)
    d = _wait_available(kube, namespace, "web", 3)
    assert d["metadata"]["generation"] == 1
    uid = d["metadata"]["uid"]
    # We only applied spec: status is written by kube-controller-manager's deployment controller, nobody else.
    assert ("kube-controller-manager", "Update", "status") in _managers(d)
    assert {m for m, _, sub in _managers(d) if sub == "status"} == {"kube-controller-manager"}

    # The ReplicaSet exists only because kube-controller-manager made it: owned by our Deployment, and every
    # managedFields entry is the controller manager's (we never wrote a ReplicaSet).
    rss = apps.list_namespaced_replica_set(namespace).items
    assert len(rss) == 1
    rs = rss[0]
    owners = rs.metadata.owner_references or []
    assert [(o.kind, o.name, o.uid, o.controller) for o in owners] == [("Deployment", "web", uid, True)]
    assert {m.manager for m in rs.metadata.managed_fields or []} == {"kube-controller-manager"}
    assert rs.status.ready_replicas == 3

    # Pods: created by the ReplicaSet, bound by kube-scheduler to KWOK nodes (the template sets no nodeName).
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for p in pods:
        assert [o.uid for o in p.metadata.owner_references or []] == [rs.metadata.uid]
        assert p.spec.node_name in kwok_nodes, (p.metadata.name, p.spec.node_name, kwok_nodes)
        conds = {c.type: c.status for c in p.status.conditions or []}
        assert conds.get("PodScheduled") == "True" and conds.get("Ready") == "True", (p.metadata.name, conds)
        assert p.status.phase == "Running"

    # The scheduler's own record of each binding. Events are written asynchronously by its event broadcaster, so
    # poll; the scheduler emits events.k8s.io/v1 Events, which core/v1 shows with reportingComponent set and an
    # empty `source`.
    def scheduled_events() -> dict[str, str] | None:
        found = {}
        for e in core.list_namespaced_event(namespace).items:
            if (e.reason == "Scheduled" and e.reporting_component == "default-scheduler"
                    and e.involved_object.kind == "Pod"):
                found[e.involved_object.uid] = e.message or ""
        return found if all(p.metadata.uid in found for p in pods) else None

    events = wait_until(scheduled_events, 60, interval=0.5, what="Scheduled events from default-scheduler")
    for p in pods:
        assert events[p.metadata.uid].endswith(f"/{p.metadata.name} to {p.spec.node_name}"), events[p.metadata.uid]

    # A spec change bumps metadata.generation; the controller must catch up (observedGeneration) and roll a new
    # ReplicaSet out, scaling the old one to zero.
    changed = deployment("web", replicas=3, image="rollwright/busybox:static")
    changed["spec"]["template"]["metadata"]["annotations"] = {"rollwright.io/test-rev": "2"}
    applied = kube.apply(_ns(changed, namespace), manager=MANAGER)
    assert applied["metadata"]["generation"] == 2
    d2 = _wait_available(kube, namespace, "web", 3)
    assert d2["status"]["observedGeneration"] == d2["metadata"]["generation"] == 2
    assert _condition(d2, "Progressing")["reason"] == "NewReplicaSetAvailable"

    def rolled() -> list[k8s.V1ReplicaSet] | None:
        items = apps.list_namespaced_replica_set(namespace).items
        ok = len(items) == 2 and sorted((r.spec.replicas or 0) for r in items) == [0, 3]
        return items if ok else None

    rss2 = wait_until(rolled, 120, interval=0.5, what="old ReplicaSet scaled to 0, new one to 3")
    new = next(r for r in rss2 if r.spec.replicas == 3)
    assert new.metadata.uid != rs.metadata.uid
    assert (new.spec.template.metadata.annotations or {}).get("rollwright.io/test-rev") == "2"


# ------------------------------------------------------------------------------ 2. progress deadline (KWOK)

@pytest.mark.parametrize("behavior", ["not-ready", "crashloop"])
def test_progress_deadline_exceeded_is_set_by_controller_manager(
        kube: Kube, core: k8s.CoreV1Api, namespace: str, behavior: str) -> None:
    kube.apply(_ns(deployment("sick", replicas=2, behavior=behavior, deadline=10), namespace), manager=MANAGER)

    # The deployment controller re-queues at the deadline; 10s deadline, generous poll for a loaded machine.
    def exceeded() -> dict[str, Any] | None:
        d = _deploy(kube, namespace, "sick")
        c = _condition(d, "Progressing")
        return d if c and c["status"] == "False" and c["reason"] == "ProgressDeadlineExceeded" else None

    d = wait_until(exceeded, 180, interval=0.5, what=f"ProgressDeadlineExceeded for {behavior}")
    assert not d["status"].get("availableReplicas") and not d["status"].get("readyReplicas")
    # Who wrote it: the Progressing condition lives in the status subresource, owned by kube-controller-manager.
    owners = [m for m in d["metadata"]["managedFields"]
              if 'k:{"type":"Progressing"}' in m.get("fieldsV1", {}).get("f:status", {}).get("f:conditions", {})]
    assert [(m["manager"], m["operation"], m.get("subresource")) for m in owners] == \
        [("kube-controller-manager", "Update", "status")]

    # The pods are in the state the KWOK stage for this behavior puts them in (written by kwok-controller).
    def pods_in_state() -> list[k8s.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=sick").items
        if len(pods) != 2:
            return None
        for p in pods:
            st = (p.status.container_statuses or [None])[0]
            if p.status.phase != "Running" or st is None:
                return None
            if behavior == "crashloop" and not (st.state.waiting and st.state.waiting.reason == "CrashLoopBackOff"):
                return None
            if behavior == "not-ready" and not st.state.running:
                return None
        return pods

    pods = wait_until(pods_in_state, 60, interval=0.5, what=f"pods in the {behavior} state")
    for p in pods:
        assert p.metadata.labels[BEHAVIOR_LABEL] == behavior
        st = p.status.container_statuses[0]
        assert st.ready is False
        assert {c.type: c.status for c in p.status.conditions}["Ready"] == "False"
        if behavior == "crashloop":
            assert st.state.waiting.reason == "CrashLoopBackOff"
            assert st.restart_count == 5
            assert st.last_state.terminated.exit_code == 1
        else:
            assert st.state.running is not None and st.restart_count == 0
        assert ("kwok-controller", "Update", "status") in [(m.manager, m.operation, m.subresource)
                                                           for m in p.metadata.managed_fields]


# ---------------------------------------------------------------- 3. server-side apply, dry run and watch

def test_server_side_apply_records_manager_and_updates(kube: Kube, core: k8s.CoreV1Api, namespace: str) -> None:
    created = kube.apply(_ns(configmap("ssa", {"COLOR": "blue", "SIZE": "m"}), namespace), manager=MANAGER)
    assert created["data"] == {"COLOR": "blue", "SIZE": "m"}
    entries = [m for m in created["metadata"]["managedFields"] if m["manager"] == MANAGER]
    assert [(m["operation"], m.get("subresource")) for m in entries] == [("Apply", None)]
    assert set(entries[0]["fieldsV1"]["f:data"]) == {"f:COLOR", "f:SIZE"}

    # Re-apply with a changed value and a dropped key: SSA updates the one and removes the other, since this
    # manager owned it and no longer declares it.
    kube.apply(_ns(configmap("ssa", {"COLOR": "green"}), namespace), manager=MANAGER)
    live = core.read_namespaced_config_map("ssa", namespace)
    assert live.data == {"COLOR": "green"}
    mine = [m for m in live.metadata.managed_fields if m.manager == MANAGER]
    assert len(mine) == 1 and mine[0].operation == "Apply"
    assert set(mine[0].fields_v1["f:data"]) == {"f:COLOR"}
    assert int(live.metadata.resource_version) > int(created["metadata"]["resourceVersion"])


def test_server_side_dry_run_validates_and_persists_nothing(kube: Kube, core: k8s.CoreV1Api, apps: k8s.AppsV1Api,
                                                            namespace: str) -> None:
    # A valid dry run answers with the would-be object but stores nothing.
    ok = kube.apply(_ns(deployment("dry", replicas=1), namespace), dry_run=True, manager=MANAGER)
    assert ok["metadata"]["name"] == "dry" and ok["metadata"]["uid"]
    # Invalid: the selector does not select the template's labels -> 422 Invalid from apps validation.
    bad = _ns(deployment("bad", replicas=1), namespace)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "something-else"}
    with pytest.raises(ApiException) as ei:
        kube.apply(bad, dry_run=True, manager=MANAGER)
    assert ei.value.status == 422, ei.value.body
    status = json.loads(ei.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    assert "spec.template.metadata.labels" in {c.get("field") for c in status["details"]["causes"]}, status
    # Invalid name (uppercase + underscore is not a DNS-1123 subdomain) -> also 422.
    with pytest.raises(ApiException) as ei2:
        kube.apply(_ns(configmap("Bad_Name", {"A": "1"}), namespace), dry_run=True, manager=MANAGER)
    assert ei2.value.status == 422, ei2.value.body
    assert json.loads(ei2.value.body)["reason"] == "Invalid"

    # Nothing was persisted, neither by the valid dry run nor by the rejected ones.
    assert apps.list_namespaced_deployment(namespace).items == []
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items
            if c.metadata.name != "kube-root-ca.crt"] == []
    for name in ("dry", "bad"):
        with pytest.raises(ApiException) as nf:
            apps.read_namespaced_deployment(name, namespace)
        assert nf.value.status == 404


def test_watch_from_list_resource_version_sees_rollout(kube: Kube, apps: k8s.AppsV1Api, namespace: str) -> None:
    # List first and watch from the list's resourceVersion (never a bare watch): that is the only race-free way to
    # see every change after a known state, and an RV-less watch is rejected on some etcd versions.
    listed = apps.list_namespaced_deployment(namespace)
    assert listed.items == []
    rv = listed.metadata.resource_version
    kube.apply(_ns(deployment("watched", replicas=3), namespace), manager=MANAGER)

    seen: list[tuple[str, int | None, int | None]] = []
    reached = False
    w = k8s_watch.Watch()
    # timeout_seconds is the server-side end of the watch; it is a ceiling, not an assertion on speed.
    for ev in w.stream(apps.list_namespaced_deployment, namespace, resource_version=rv, timeout_seconds=240):
        obj = ev["object"]
        if obj.metadata.name != "watched":
            continue
        s = obj.status
        seen.append((ev["type"], s.available_replicas if s else None, s.observed_generation if s else None))
        if s and s.available_replicas == 3 and s.observed_generation == obj.metadata.generation:
            reached = True
            w.stop()
            break
    assert seen, "the watch produced no events"
    assert reached, f"the watch ended before the rollout completed: {seen}"
    # Because we watched from before the create, the first event is the creation itself, with no status yet ...
    assert seen[0][0] == "ADDED" and not seen[0][1], seen
    # ... and the stream went on to show the controller's status updates up to full availability.
    assert seen[-1][0] == "MODIFIED" and seen[-1][1] == 3, seen


# ----------------------------------------------------------------------------------- 4. docker + registry

def test_scratch_image_push_digest_matches_registry(docker_client: docker.DockerClient, registry: str,
                                                    tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:10]
    repo_path = f"rollwright-test/scratch-{run_id}"
    repo, tag = f"{registry}/{repo_path}", f"t-{run_id}"
    # A genuinely FROM-scratch image: a unique file (so the layer, hence the digest, is new each run) and the host's
    # static busybox so the image can run something; no RUN step, the legacy builder just snapshots the COPYs.
    (tmp_path / "hello.txt").write_text(f"hello from {run_id}\n")
    (tmp_path / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (tmp_path / "busybox").chmod(0o755)
    (tmp_path / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY hello.txt /hello.txt\n"
        'ENTRYPOINT ["/bin/busybox"]\nCMD ["cat", "/hello.txt"]\n')
    image, _logs = docker_client.images.build(path=str(tmp_path), tag=f"{repo}:{tag}", rm=True, forcerm=True)
    digest = None
    try:
        assert len(image.history()) == 4  # two COPY layers + ENTRYPOINT + CMD, and nothing inherited
        out = docker_client.containers.run(f"{repo}:{tag}", remove=True)
        assert out.decode() == f"hello from {run_id}\n"

        errors, digests = [], []
        for line in docker_client.api.push(repo, tag=tag, stream=True, decode=True):
            if "error" in line or "errorDetail" in line:
                errors.append(line)
            if "aux" in line and "Digest" in line["aux"]:
                digests.append(line["aux"]["Digest"])
        assert not errors, errors
        assert len(digests) == 1, digests
        digest = digests[0]
        assert digest.startswith("sha256:")

        base = f"http://{registry}/v2/{repo_path}/manifests"
        head = httpx.head(f"{base}/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=30)
        assert head.status_code == 200, head.text
        assert head.headers["Docker-Content-Digest"] == digest
        got = httpx.get(f"{base}/{digest}", headers={"Accept": MANIFEST_TYPES}, timeout=30)
        assert got.status_code == 200, got.text
        # Content addressing holds end to end: the bytes served hash to the digest, the manifest's config is the
        # local image's config (image ID), and there are exactly our two layers.
        assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
        manifest = got.json()
        assert manifest["config"]["digest"] == image.id
        assert len(manifest["layers"]) == 2
        image.reload()
        assert f"{repo}@{digest}" in image.attrs["RepoDigests"]
    finally:
        # Outside any namespace, so clean up here: the registry manifest (delete is enabled in .stack/registry.yml)
        # and the local image.
        if digest:
            httpx.delete(f"http://{registry}/v2/{repo_path}/manifests/{digest}", timeout=30)
        docker_client.images.remove(image.id, force=True)


# ------------------------------------------------------------------------------------------ 5. temporal

@pytest.mark.asyncio(loop_scope="session")
async def test_trivial_workflow_completes_and_is_visible(temporal: Client) -> None:
    run_id = uuid.uuid4().hex[:10]
    app, task_queue, wf_id = f"stack-test-{run_id}", f"rw-stack-{run_id}", f"trivial-{run_id}"
    # An in-process worker on a queue nobody else polls, so this run cannot be picked up by a stray worker.
    async with Worker(temporal, task_queue=task_queue, workflows=[TrivialWorkflow]):
        handle = await temporal.start_workflow(TrivialWorkflow.run, app, id=wf_id, task_queue=task_queue)
        assert await handle.result() == f"hello {app}"
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED

    # Visibility is eventually consistent: poll until the closed execution is indexed, then require exactly one.
    query = f"RolloutApp = '{app}'"
    found: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        found = [w async for w in temporal.list_workflows(query)]
        if found and all(w.status == WorkflowExecutionStatus.COMPLETED for w in found):
            break
        assert loop.time() < deadline, f"visibility never showed {query} as completed (last: {found!r})"
        await asyncio.sleep(0.5)
    assert [(w.id, w.run_id, w.workflow_type) for w in found] == [(wf_id, handle.result_run_id, "TrivialWorkflow")]
    sa = {p.key.name: p.value for p in found[0].typed_search_attributes}
    assert sa.get("RolloutApp") == app
