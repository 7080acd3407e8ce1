"""Regression tests for issue 10 ("correctness on every failure path"), one or more per finding, on the real stack.

Each test is named after its finding and failed on the code before the fix (the failure it guards against is in
its docstring). Workloads that rely on KWOK's simulated behaviours are pinned to the KWOK nodes (toleration +
nodeSelector), which works with or without a real kubelet node in the cluster.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml
from kubernetes import client as k8s
from temporalio.client import Client

from activities.kube import Kube
from orchestrator import FIELD_MANAGER, workflow_id
from orchestrator.client import RolloutClient, push_bundle
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, RolloutResult
from tests.bomb import alias_bomb
from tests.helpers import (
    HealthTarget,
    WorkerProcess,
    activity_counts,
    cli,
    configmap,
    deployment,
    free_port,
    history_events,
    local_activities,
    temporal_cli,
    wait_until,
    write_release,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples a process's resident set size from /proc every 20 ms; ``peak`` is the highest seen (MB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0.0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
                self.samples += 1
            except OSError:
                return
            time.sleep(0.02)


async def _result(temporal: Client, task_queue: str, wid: str) -> RolloutResult:
    return await asyncio.wait_for(RolloutClient(temporal, task_queue).result(temporal.get_workflow_handle(wid)), 600)


def _start_plain(spec_path: Path, cli_env: dict[str, str], task_queue: str) -> str:
    """Starts a rollout with the plain temporal CLI, bypassing the Rollwright client's local validation, so the
    worker itself meets the input."""
    spec = yaml.safe_load(spec_path.read_text())
    # The files travel as a release bundle (packing reads them but does not parse them): the worker meets them.
    spec["bundle"] = push_bundle(load_spec(spec_path)).bundle
    wid = workflow_id(spec["app"], spec["environment"])
    r = temporal_cli("workflow", "start", "--type", "RolloutWorkflow", "--task-queue", task_queue, "--workflow-id",
                     wid, "--input", json.dumps(spec), env=cli_env)
    assert r.returncode == 0, r.stderr
    return wid


def _namespaces(core: k8s.CoreV1Api) -> set[str]:
    return {n.metadata.name for n in core.list_namespace().items}


# ---- finding 1: bounded loader ------------------------------------------------------------------------------------


async def test_finding1_alias_bomb_fails_fast_and_worker_rss_stays_small(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        core: k8s.CoreV1Api, cli_env: dict[str, str]) -> None:
    """Before: a 2 KB alias bomb drove the worker to 11.7 GB RSS, and QUICK retried it on the next worker."""
    app = f"bomb{uuid.uuid4().hex[:4]}"
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                      objects=[configmap(f"{app}-ok", {"A": "1"})])
    (tmp_path / "manifests-v1.yaml").write_text(alias_bomb(name=f"{app}-bomb"))
    # 1. The CLI refuses it locally, before any workflow exists.
    t0 = time.monotonic()
    r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env)
    print(f"CLI refused the bomb in {time.monotonic() - t0:.2f}s")
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "manifests-v1.yaml document 1" in out and "alias" in out, out
    # 2. Started with the plain temporal CLI, the worker meets it: refused as invalid input, one attempt, and the
    #    worker's RSS (read from /proc by this test process) stays small.
    assert worker.proc is not None
    sampler = RssSampler(worker.proc.pid)
    before = rss_mb(worker.proc.pid)
    sampler.start()
    wid = _start_plain(p, cli_env, task_queue)
    res = await _result(temporal, task_queue, wid)
    sampler.stopped.set()
    sampler.join()
    print(f"worker RSS before {before:.0f} MB, peak during the bomb {sampler.peak:.0f} MB ({sampler.samples} samples)")
    assert res.outcome == Outcome.FAILED and res.error_type == "InvalidRelease", res
    assert res.cause and "document 1" in res.cause and "alias" in res.cause, res.cause
    assert sampler.peak < 500, f"worker RSS peaked at {sampler.peak:.0f} MB"
    counts = activity_counts(history_events(wid, env=cli_env))
    # Ran once (a local activity: one marker), not retried.
    assert counts["prepare_release"]["local"] == 1 and counts["prepare_release"]["max_attempt"] == 1, counts
    assert set(counts) == {"prepare_release"}
    assert core.list_namespaced_config_map(namespace, label_selector=f"rollwright.io/app={app}").items == []
    assert httpx.get(worker.url("/readyz"), timeout=5).status_code == 200


# ---- finding 2: objects in a namespace the release creates ---------------------------------------------------------


def _new_ns_release(tmp_path: Path, registry: str, app: str, ns: str, extra: list[dict[str, Any]]) -> Path:
    return write_release(tmp_path, app=app, namespace=ns, registry=registry, image=False,
                         objects=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, *extra])


BAD_IN_NEW_NS = {
    "bad-cpu-quantity": ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok"}, "data": {"a": "b"}},
                         "cpu", ["Deployment", "quantities must match"]),
    "secret-not-base64": ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                           "data": {"password": "not base64!!"}}, None, ["Secret", "illegal base64"]),
    "configmap-over-1mib": ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                             "data": {"blob": "x" * (1536 * 1024)}}, None, ["ConfigMap", "Too long"]),
}


@pytest.mark.parametrize("case", sorted(BAD_IN_NEW_NS))
async def test_finding2_invalid_objects_in_a_namespace_the_release_creates(
        case: str, worker: WorkerProcess, tmp_path: Path, registry: str, core: k8s.CoreV1Api,
        cli_env: dict[str, str]) -> None:
    """Before: these passed validation (the dry run skipped the new namespace), failed at apply, exit 3, and the
    namespace was left behind. Now: exit 2, nothing created, no Namespace either."""
    extra, mode, expected = BAD_IN_NEW_NS[case]
    ns = f"t-f2-{uuid.uuid4().hex[:6]}"
    objs = [extra]
    if mode == "cpu":
        d = deployment("web")
        d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100xm"}}
        objs.append(d)
    p = _new_ns_release(tmp_path, registry, f"f2{case[:6]}", ns, objs)
    r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    for s in ["server-side dry run rejected", *expected]:
        assert s in out, f"{s!r} missing:\n{out}"
    assert "rollwright-dry-run" not in out, "the error names the release's namespace, not the scratch one"
    assert ns not in _namespaces(core), "no Namespace is created for invalid input"
    assert httpx.get(worker.url("/readyz"), timeout=5).status_code == 200


async def test_finding2_http500_conversion_error_in_existing_namespace_is_invalid_input(
        worker: WorkerProcess, namespace: str, tmp_path: Path, registry: str, apps: k8s.AppsV1Api,
        cli_env: dict[str, str]) -> None:
    """Before: the apiserver's HTTP 500 conversion message made it `Failed` (exit 4) after retries."""
    d = deployment("q500")
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"memory": "12 GiB"}}
    p = write_release(tmp_path, app="q500", namespace=namespace, registry=registry, image=False, objects=[d])
    r = cli("rollout", "start", "-f", str(p), "--wait", "-o", "json", env=cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    res = json.loads(r.stdout)
    assert res["error_type"] == "InvalidManifest" and res["failed_step"] == "Validate", res
    assert "Deployment" in res["cause"] and "quantities must match" in res["cause"], res["cause"]
    assert apps.list_namespaced_deployment(namespace).items == []


# ---- finding 3: true outcome after a good rollback; HPA keeps spec.replicas -----------------------------------------


async def test_finding3_rollback_with_hpa_and_stale_progress_deadline_reports_rolled_back(
        worker: WorkerProcess, namespace: str, tmp_path: Path, registry: str, apps: k8s.AppsV1Api,
        kube: Kube, cli_env: dict[str, str]) -> None:
    """Before: the rollback's wait failed at once on the failed revision's stale ProgressDeadlineExceeded, the
    rollout ended Failed (exit 4) although 2/2 of the previous revision were ready, and the rollback had made
    Rollwright the owner of spec.replicas, fighting the HPA."""
    app = "hpa"

    def objs(behavior: str | None) -> list[dict[str, Any]]:
        d = deployment(app, behavior=behavior, deadline=30)
        del d["spec"]["replicas"]  # the HPA owns it
        d["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": app},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                        "minReplicas": 2, "maxReplicas": 4,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": 80}}}]}}
        return [d, hpa]

    health = {"progress_deadline_seconds": 300}
    p1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v1",
                       objects=objs(None), health=health)
    r = cli("rollout", "start", "-f", str(p1), "--wait", env=cli_env, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    # The HPA scales the Deployment to its minimum (no metrics needed for that).
    wait_until(lambda: apps.read_namespaced_deployment(app, namespace).status.ready_replicas == 2, 120,
               what="HPA to scale to 2 ready")
    p2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v2",
                       objects=objs("not-ready"), health=health)
    t0 = time.monotonic()
    r = cli("rollout", "start", "-f", str(p2), "--wait", "-o", "json", env=cli_env, timeout=600)
    out = r.stdout + r.stderr
    print(f"v2 ended in {time.monotonic() - t0:.0f}s with exit {r.returncode}")
    assert r.returncode == 3, out
    assert "ProgressDeadlineExceeded" in out, out
    res = json.loads(r.stdout)
    assert res["outcome"] == "RolledBack" and res["rolled_back_to"] == 1, res  # finding 6: was never set
    d = apps.read_namespaced_deployment(app, namespace)
    assert d.status.ready_replicas == 2 and "sim.rollwright.io/behavior" not in (d.spec.template.metadata.labels or {})
    live = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{app}")
    mine = [m for m in live["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER]
    assert mine, live["metadata"]["managedFields"]
    assert all("f:replicas" not in (m.get("fieldsV1", {}).get("f:spec") or {}) for m in mine), mine


# ---- finding 4: unambiguous workflow ID ----------------------------------------------------------------------------


async def test_finding4_labels_with_dashes_get_separate_locks(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str]) -> None:
    """Before: (a-b, c) and (a, b-c) shared the workflow ID rollout-a-b-c: the second start was refused."""
    assert workflow_id("f4-b", "c") != workflow_id("f4", "b-c")
    rc = RolloutClient(temporal, task_queue)
    handles = []
    for app, env in (("f4-b", "c"), ("f4", "b-c")):
        p = write_release(tmp_path / f"{app}-{env}", app=app, env=env, namespace=namespace, registry=registry,
                          image=False, objects=[configmap(f"{app}-{env}-cfg", {"A": "1"})],
                          extra={"approval": {"required": True}})
        handles.append(await rc.start(load_spec(p)))
    assert {h.id for h in handles} == {"rollout.f4-b.c", "rollout.f4.b-c"}
    assert await rc.is_running("f4-b", "c") and await rc.is_running("f4", "b-c")
    for app, env in (("f4-b", "c"), ("f4", "b-c")):
        await asyncio.sleep(0)
        await wait_for_approval(rc, app, env)
        await rc.approve(app, env, "tester")
    for h in handles:
        assert (await rc.result(h)).outcome == Outcome.SUCCEEDED


async def wait_for_approval(rc: RolloutClient, app: str, env: str) -> None:
    for _ in range(300):
        if (await rc.status(app, env)).awaiting_approval:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{app}/{env} never waited for approval")


# ---- finding 5: a cancel stops the running step before the rollback -----------------------------------------------


async def test_finding5_cancel_mid_wait_stops_the_watch_before_rollback(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    """Before: `temporal workflow cancel` during the wait left wait_ready running alongside the rollback."""
    app = "f5"
    p1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v1",
                       objects=[deployment(app)])
    assert cli("rollout", "start", "-f", str(p1), "--wait", env=cli_env).returncode == 0
    p2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v2",
                       objects=[deployment(app, behavior="not-ready")],
                       health={"progress_deadline_seconds": 600})
    rc = RolloutClient(temporal, task_queue)
    h = await rc.start(load_spec(p2))
    for _ in range(600):
        st = await rc.status(app, "test")
        if st.step.value == "WaitReady":
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # the watch is running
    r = temporal_cli("workflow", "cancel", "-w", h.id, env=cli_env)
    assert r.returncode == 0, r.stderr
    res = await asyncio.wait_for(rc.result(h), 300)
    assert res.outcome == Outcome.ABORTED and res.cause == "workflow cancelled"
    events = history_events(h.id, env=cli_env)
    names = {str(e["eventId"]): e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
             for e in events if "activityTaskScheduledEventAttributes" in e}
    order = []
    for e in events:
        if "activityTaskScheduledEventAttributes" in e:
            order.append(("scheduled", names[str(e["eventId"])]))
        a = e.get("activityTaskCanceledEventAttributes") or e.get("activityTaskFailedEventAttributes")
        if a:
            order.append(("stopped", names[str(a["scheduledEventId"])]))
        order += [("local", la["activity_type"]) for la in local_activities([e])]
    stopped_wait = order.index(("stopped", "wait_ready"))
    # The rollback is a local activity (its marker is recorded when it is done): it is run by a workflow task after
    # the one that saw the wait stopped, so its marker comes after the wait's cancellation.
    rollback = order.index(("local", "rollback_release"))
    assert stopped_wait < rollback, order
    d = apps.read_namespaced_deployment(app, namespace)
    assert "sim.rollwright.io/behavior" not in (d.spec.template.metadata.labels or {})


# ---- finding 6: wrong outcomes (the outcome logic itself is in test_workflow_branches.py) -------------------------


def test_finding6_finalize_ignores_404_when_deleting_old_records(
        kube: Kube, kubeconfig: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a record deleted between the list and the delete (a retry, a concurrent run) made finalize fail
    with a non-retryable InvalidManifest. The 404 comes from the real apiserver; only the list is made stale."""
    from temporalio.testing import ActivityEnvironment

    from activities import revisions as rec
    from activities.clients import Clients
    from activities.release import ReleaseActivities
    from orchestrator.models import FinalizeInput, RevisionRef, RevisionStatus
    from orchestrator.spec import ReleaseSpec

    for n in range(1, rec.HISTORY_MAX + 2):
        rec.create_record(kube, namespace, "f6", "test", n, f"run-{n}", {"revision": n, "previous": []})
    real = rec.list_records

    def stale(*a: Any) -> list[dict[str, Any]]:
        items = real(*a)
        ghost = json.loads(json.dumps(items[0]))
        ghost["metadata"]["name"] = rec.record_name("f6", "test", 0)
        ghost["metadata"]["labels"][rec.L_REV] = "0"
        return [ghost, *items]

    monkeypatch.setattr(rec, "list_records", stale)
    spec = ReleaseSpec(app="f6", environment="test", namespace=namespace, manifests=["x.yaml"])
    last = rec.HISTORY_MAX + 1
    ref = RevisionRef(namespace=namespace, name=rec.record_name("f6", "test", last), revision=last)
    acts = ReleaseActivities(Clients(kubeconfig=kubeconfig))
    ActivityEnvironment().run(acts.finalize_revision,  # a sync activity: runs here, in this thread
                              FinalizeInput(spec=spec, revision=ref, status=RevisionStatus.DEPLOYED))
    left = real(kube, namespace, "f6", "test")
    assert [int(r["metadata"]["labels"][rec.L_REV]) for r in left] == list(range(2, last + 1))
    assert left[-1]["metadata"]["labels"][rec.L_STATUS] == "deployed"


# ---- finding 7: bake heartbeat vs probe timeouts ------------------------------------------------------------------


async def test_finding7_slow_health_endpoint_fails_the_check_not_the_heartbeat(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str]) -> None:
    """Before: probes with a 13 s timeout under a 10 s heartbeat timeout gave heartbeat timeouts and retries."""
    target = HealthTarget()
    target.delay = 14.0
    try:
        p = write_release(tmp_path, app="f7", namespace=namespace, registry=registry, image=False,
                          objects=[deployment("f7", replicas=1)],
                          health={"progress_deadline_seconds": 120, "bake_seconds": 5,
                                  "http": [{"url": target.url, "timeout_seconds": 13, "interval_seconds": 1,
                                            "failure_threshold": 2}]})
        r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env, timeout=400)
    finally:
        target.close()
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert "health check" in out and "failed 2/2" in out and "heartbeat" not in out, out
    counts = activity_counts(history_events(workflow_id("f7", "test"), env=cli_env))
    assert counts["run_health_checks"]["max_attempt"] == 1, counts


# ---- finding 8: workloads outside spec.namespace -------------------------------------------------------------------


async def test_finding8_workload_in_another_namespace_is_refused(
        worker: WorkerProcess, namespace: str, tmp_path: Path, registry: str, apps: k8s.AppsV1Api,
        cli_env: dict[str, str]) -> None:
    """Before: accepted, applied, and never watched (or a same-named workload in spec.namespace was judged)."""
    d = deployment("f8")
    d["metadata"]["namespace"] = "default"
    p = write_release(tmp_path, app="f8", namespace=namespace, registry=registry, image=False, objects=[d])
    r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "manifests-v1.yaml document 1 (Deployment/f8): metadata.namespace" in out, out
    assert f"must be in the release's namespace '{namespace}'" in out, out
    assert not [x for x in apps.list_namespaced_deployment("default").items if x.metadata.name == "f8"]


# ---- finding 9: prune ---------------------------------------------------------------------------------------------


async def test_finding9_prune_deletes_dropped_objects_keeps_annotated_and_rollback_restores(
        worker: WorkerProcess, namespace: str, tmp_path: Path, registry: str, core: k8s.CoreV1Api,
        cli_env: dict[str, str]) -> None:
    """Before: objects dropped from a later release stayed in the cluster forever."""
    keep = configmap("f9-keep", {"K": "1"})
    keep["metadata"]["annotations"] = {"rollwright.io/prune": "false"}
    p1 = write_release(tmp_path, app="f9", namespace=namespace, registry=registry, image=False, version="v1",
                       objects=[configmap("f9-main", {"A": "1"}), configmap("f9-old", {"B": "1"}), keep])
    assert cli("rollout", "start", "-f", str(p1), "--wait", env=cli_env).returncode == 0
    p2 = write_release(tmp_path, app="f9", namespace=namespace, registry=registry, image=False, version="v2",
                       objects=[configmap("f9-main", {"A": "2"})])
    r = cli("rollout", "start", "-f", str(p2), "--wait", "-o", "json", env=cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["pruned"] == [f"ConfigMap/{namespace}/f9-old"], res
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "f9-old" not in names and "f9-keep" in names and "f9-main" in names
    # A rollback to revision 1 brings the pruned object back.
    r = cli("rollback", "--app", "f9", "--env", "test", "--to-revision", "1", "--namespace", namespace, "--wait",
            env=cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert core.read_namespaced_config_map("f9-old", namespace).data == {"B": "1"}


# ---- finding 10: private registry credentials --------------------------------------------------------------------


async def test_finding10_private_registry_uses_docker_config_credentials(
        kubeconfig: Path, temporal: Client, namespace: str, tmp_path: Path, cli_env: dict[str, str],
        docker_client: Any) -> None:
    """Before: the digest lookup sent no credentials: a private registry's 401 became a retried RegistryError."""
    import subprocess

    port = free_port()
    reg = f"127.0.0.1:{port}"
    (tmp_path / "htpasswd").write_text("ci:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5)).decode() + "\n")
    (tmp_path / "store").mkdir()
    (tmp_path / "registry.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"}, "storage": {"filesystem": {"rootdirectory": str(tmp_path / "store")}},
        "http": {"addr": reg}, "auth": {"htpasswd": {"realm": "rollwright-test", "path": str(tmp_path / "htpasswd")}}}))
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    queue = f"rw-f10-{uuid.uuid4().hex[:6]}"
    # The bundle goes to the open local registry: this test is about the worker's credentials for the image push.
    env = dict(cli_env, ROLLWRIGHT_TASK_QUEUE=queue, ROLLWRIGHT_BUNDLE_REPOSITORY="127.0.0.1:5000/rollwright-bundles/f10")
    no_creds, with_creds = tmp_path / "docker-none", tmp_path / "docker-auth"
    no_creds.mkdir()
    with_creds.mkdir()
    (no_creds / "config.json").write_text("{}")
    import base64
    (with_creds / "config.json").write_text(json.dumps({"auths": {reg: {"auth": base64.b64encode(b"ci:s3cret").decode()}}}))
    try:
        wait_until(lambda: httpx.get(f"http://{reg}/v2/").status_code == 401, 30, what="private registry")
        p = write_release(tmp_path / "rel", app="f10", namespace=namespace, registry=reg,
                          objects=[deployment("f10", replicas=1)])
        for docker_config, expected_exit, expected in ((no_creds, 4, "requires credentials and the Docker config "
                                                                      "has none"), (with_creds, 0, "")):
            w = WorkerProcess(queue, kubeconfig, name=f"f10-{docker_config.name}",
                              extra_env={"DOCKER_CONFIG": str(docker_config)})
            w.start()
            try:
                t0 = time.monotonic()
                r = cli("rollout", "start", "-f", str(p), "--wait", env=env, timeout=600)
                print(f"{docker_config.name}: exit {r.returncode} in {time.monotonic() - t0:.0f}s")
            finally:
                w.stop()
            out = r.stdout + r.stderr
            assert r.returncode == expected_exit, out
            assert expected in out, out
            if expected_exit:
                counts = activity_counts(history_events(workflow_id("f10", "test"), env=env))
                assert counts["build_image"]["max_attempt"] == 1, counts
    finally:
        proc.terminate()
        proc.wait(10)
