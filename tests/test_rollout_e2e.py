"""End-to-end rollouts against the real stack: a worker process, the Temporal dev server, Docker + registry, and
a kube-apiserver with controller-manager, scheduler and KWOK nodes.

Each test asserts what users care about: the live objects in the cluster, the digest the registry serves, the
revision records, and the workflow's result and history.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from activities.kube import Kube
from activities.revisions import decode, list_records
from orchestrator.client import RolloutAlreadyRunning, RolloutClient, push_bundle
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, Phase, RolloutResult
from tests.helpers import (
    HealthTarget,
    WorkerProcess,
    activity_counts,
    cli,
    configmap,
    deployment,
    history_events,
    kill_and_finish_on_a_new_worker,
    service,
    temporal_cli,
    write_release,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _client(temporal: Client, task_queue: str) -> RolloutClient:
    return RolloutClient(temporal, task_queue)


def _deploy_image(apps: k8s.AppsV1Api, ns: str, name: str) -> str:
    return apps.read_namespaced_deployment(name, ns).spec.template.spec.containers[0].image


def _registry_digest(registry: str, repo_path: str, ref: str) -> str | None:
    r = httpx.head(f"http://{registry}/v2/{repo_path}/manifests/{ref}", headers={"Accept": ", ".join([
        "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"])})
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


async def _rollout(rc: RolloutClient, spec_path: Path) -> RolloutResult:
    spec = load_spec(spec_path)
    return await rc.result(await rc.start(spec))


async def test_happy_path_pins_digest_and_records_revision(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                          namespace: str, tmp_path: Path, apps: k8s.AppsV1Api,
                                                          kube: Kube, registry: str) -> None:
    p = write_release(tmp_path, app="happy", namespace=namespace, registry=registry,
                      objects=[configmap("happy-cfg", {"A": "1"}), service("happy"),
                               deployment("happy", replicas=3, config="happy-cfg")])
    res = await _rollout(_client(temporal, task_queue), p)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    repo = f"{registry}/rollwright-test/happy"
    assert res.image and res.image.startswith(f"{repo}@sha256:")
    digest = res.image.split("@", 1)[1]
    # The live Deployment runs exactly the pushed digest, and the registry serves it.
    assert _deploy_image(apps, namespace, "happy") == res.image
    assert _registry_digest(registry, "rollwright-test/happy", digest) == digest
    d = apps.read_namespaced_deployment("happy", namespace)
    assert d.status.available_replicas == 3 and d.status.observed_generation == d.metadata.generation
    # The revision is recorded in the namespace, deployed, pointing at the same image.
    recs = list_records(kube, namespace, "happy", "test")
    assert [r["metadata"]["labels"]["rollwright.io/status"] for r in recs] == ["deployed"]
    payload = decode(recs[0]["data"]["release"])
    assert payload["image"] == res.image and res.revision == 1
    # Objects were applied by Rollwright's field manager (server-side apply).
    managers = {m.manager for m in d.metadata.managed_fields}
    assert "rollwright" in managers


async def test_never_ready_rolls_back_to_previous_revision_exactly(worker: WorkerProcess, temporal: Client,
                                                                   task_queue: str, namespace: str, tmp_path: Path,
                                                                   apps: k8s.AppsV1Api, core: k8s.CoreV1Api,
                                                                   registry: str, kube: Kube) -> None:
    rc = _client(temporal, task_queue)
    v1 = write_release(tmp_path, app="nr", namespace=namespace, registry=registry, version="v1",
                       objects=[configmap("nr-cfg", {"GREETING": "v1"}), deployment("nr", config="nr-cfg")])
    r1 = await _rollout(rc, v1)
    assert r1.outcome == Outcome.SUCCEEDED, r1.cause
    before_cm = core.read_namespaced_config_map("nr-cfg", namespace).data
    v2 = write_release(tmp_path, app="nr", namespace=namespace, registry=registry, version="v2",
                       objects=[configmap("nr-cfg", {"GREETING": "v2", "EXTRA": "x"}), configmap("nr-new", {"a": "b"}),
                                service("nr"), deployment("nr", behavior="not-ready", deadline=10, config="nr-cfg")])
    r2 = await _rollout(rc, v2)
    assert r2.outcome == Outcome.ROLLED_BACK, r2
    assert "ProgressDeadlineExceeded" in (r2.cause or "")
    # Live objects equal revision 1: image, ConfigMap content; objects new in v2 are gone.
    assert _deploy_image(apps, namespace, "nr") == r1.image
    assert core.read_namespaced_config_map("nr-cfg", namespace).data == before_cm == {"GREETING": "v1"}
    for gone in (lambda: core.read_namespaced_config_map("nr-new", namespace),
                 lambda: core.read_namespaced_service("nr", namespace)):
        with pytest.raises(k8s.ApiException) as e:
            gone()
        assert e.value.status == 404
    d = apps.read_namespaced_deployment("nr", namespace)
    assert d.status.available_replicas == 2 and d.status.updated_replicas == 2
    statuses = [r["metadata"]["labels"]["rollwright.io/status"] for r in list_records(kube, namespace, "nr", "test")]
    assert statuses == ["deployed", "rolled-back"]


async def test_crashloop_detected_and_rolled_back_before_deadline(worker: WorkerProcess, temporal: Client,
                                                                  task_queue: str, namespace: str, tmp_path: Path,
                                                                  apps: k8s.AppsV1Api, registry: str) -> None:
    p = write_release(tmp_path, app="crash", namespace=namespace, registry=registry,
                      objects=[deployment("crash", behavior="crashloop", deadline=600)],
                      health={"progress_deadline_seconds": 600})
    res = await _rollout(_client(temporal, task_queue), p)
    assert res.outcome == Outcome.ROLLED_BACK
    # The cause names the pod and the reason: found from pod status, not from a 600 s deadline.
    assert "CrashLoopBackOff" in (res.cause or "") and res.cause.startswith("pod crash-")
    assert "ProgressDeadline" not in res.cause
    # First release: its rollback removes what it created.
    with pytest.raises(k8s.ApiException):
        apps.read_namespaced_deployment("crash", namespace)


async def test_failing_health_check_during_bake_rolls_back(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                           namespace: str, tmp_path: Path, apps: k8s.AppsV1Api,
                                                           registry: str) -> None:
    target = HealthTarget()
    try:
        rc = _client(temporal, task_queue)
        health = {"progress_deadline_seconds": 120, "bake_seconds": 2,
                  "http": [{"url": target.url, "interval_seconds": 0.3, "failure_threshold": 3}]}
        v1 = write_release(tmp_path, app="hc", namespace=namespace, registry=registry, version="v1",
                           objects=[deployment("hc")], health=health)
        r1 = await _rollout(rc, v1)
        assert r1.outcome == Outcome.SUCCEEDED, r1.cause
        assert r1.health and r1.health[0].ok and r1.health[0].successes >= 1
        target.status = 503
        v2 = write_release(tmp_path, app="hc", namespace=namespace, registry=registry, version="v2",
                           objects=[deployment("hc", replicas=3)], health=health)
        r2 = await _rollout(rc, v2)
        assert r2.outcome == Outcome.ROLLED_BACK
        assert f"health check {target.url} failed 3/3" in (r2.cause or "")
        d = apps.read_namespaced_deployment("hc", namespace)
        assert d.spec.replicas == 2 and d.spec.template.spec.containers[0].image == r1.image
    finally:
        target.close()


async def test_abort_signal_from_temporal_cli_mid_wait_rolls_back_with_reason(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        apps: k8s.AppsV1Api, registry: str, cli_env: dict[str, str]) -> None:
    rc = _client(temporal, task_queue)
    v1 = write_release(tmp_path, app="ab", namespace=namespace, registry=registry, version="v1",
                       objects=[deployment("ab")])
    r1 = await _rollout(rc, v1)
    assert r1.outcome == Outcome.SUCCEEDED
    v2 = write_release(tmp_path, app="ab", namespace=namespace, registry=registry, version="v2",
                       objects=[deployment("ab", behavior="not-ready", deadline=600)],
                       health={"progress_deadline_seconds": 600})
    handle = await rc.start(load_spec(v2))
    await _at_step(rc, "ab", "WaitReady")
    r = temporal_cli("workflow", "signal", "-w", handle.id, "--name", "abort", "--input",
                     '{"reason":"bad canary"}', env=cli_env)
    assert r.returncode == 0, r.stderr
    res = await rc.result(handle)
    assert res.outcome == Outcome.ABORTED
    assert res.cause == "aborted by operator: bad canary"
    assert _deploy_image(apps, namespace, "ab") == r1.image
    # The watcher was cancelled and had stopped before the rollback ran (WAIT_CANCELLATION_COMPLETED).
    names = [e["eventType"] for e in history_events(handle.id, env=cli_env)]
    assert "EVENT_TYPE_ACTIVITY_TASK_CANCELED" in names


async def test_pause_holds_and_resume_continues(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                namespace: str, tmp_path: Path, registry: str) -> None:
    rc = _client(temporal, task_queue)
    p = write_release(tmp_path, app="pz", namespace=namespace, registry=registry, objects=[deployment("pz")])
    handle = await rc.start(load_spec(p))
    await rc.pause("pz", "test")
    async def paused():  # type: ignore[no-untyped-def]
        st = await rc.status("pz", "test")
        return st if st.phase == Phase.PAUSED else None

    st = await eventually(paused, 60, "Paused")
    step = st.step
    await asyncio.sleep(3)  # not a timing assertion: gives a paused rollout the chance to (wrongly) move
    st2 = await rc.status("pz", "test")
    assert st2.phase == Phase.PAUSED and st2.step == step
    await rc.resume("pz", "test")
    res = await rc.result(handle)
    assert res.outcome == Outcome.SUCCEEDED


async def test_second_start_is_refused_naming_the_running_rollout(worker: WorkerProcess, temporal: Client,
                                                                  task_queue: str, namespace: str, tmp_path: Path,
                                                                  registry: str, cli_env: dict[str, str]) -> None:
    rc = _client(temporal, task_queue)
    p = write_release(tmp_path, app="lock", namespace=namespace, registry=registry,
                      objects=[deployment("lock", behavior="slow")])
    handle = await rc.start(load_spec(p))
    with pytest.raises(RolloutAlreadyRunning) as e:
        await rc.start(load_spec(p))
    assert e.value.workflow_id == "rollout.lock.test" and e.value.run_id == handle.result_run_id
    r = cli("rollout", "start", "-f", str(p), env=cli_env)
    assert r.returncode == 6, r
    assert "already running: rollout.lock.test" in r.stderr
    assert (await rc.result(handle)).outcome == Outcome.SUCCEEDED


async def test_worker_killed_mid_wait_new_worker_completes(kubeconfig: Path, temporal: Client, namespace: str,
                                                           tmp_path: Path, apps: k8s.AppsV1Api, registry: str,
                                                           cli_env: dict[str, str]) -> None:
    queue = f"rw-kill-{namespace[-5:]}"
    w1 = WorkerProcess(queue, kubeconfig, name="kill-1")
    w1.start()
    try:
        rc = _client(temporal, queue)
        p = write_release(tmp_path, app="kill", namespace=namespace, registry=registry,
                          objects=[configmap("kill-cfg", {"k": "v"}), deployment("kill", replicas=3, behavior="slow")])
        handle = await rc.start(load_spec(p))
        await _at_step(rc, "kill", "WaitReady")
        cm_rv = apps.api_client and k8s.CoreV1Api(apps.api_client).read_namespaced_config_map(
            "kill-cfg", namespace).metadata.resource_version
    except BaseException:
        w1.kill()
        raise
    res = await kill_and_finish_on_a_new_worker(w1, rc, handle, name="kill-2")  # SIGKILL mid-wait
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert _deploy_image(apps, namespace, "kill") == res.image
    counts = activity_counts(history_events(handle.id, env=cli_env))
    # Applied once: the apply step (a local activity, recorded as a marker) had completed before the kill and is not
    # repeated by the new worker.
    assert counts["apply_release"] == {"scheduled": 0, "local": 1, "completed": 1, "max_attempt": 1}
    # The wait was retried on the new worker (heartbeat timeout) and completed there.
    assert counts["wait_ready"]["completed"] == 1 and counts["wait_ready"]["max_attempt"] >= 2
    cm = k8s.CoreV1Api(apps.api_client).read_namespaced_config_map("kill-cfg", namespace)
    assert cm.metadata.resource_version == cm_rv  # not re-applied with a change


async def test_temporal_restart_mid_rollout_completes(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                      namespace: str, tmp_path: Path, registry: str) -> None:
    import subprocess

    from tests.helpers import ROOT

    rc = _client(temporal, task_queue)
    p = write_release(tmp_path, app="tr", namespace=namespace, registry=registry,
                      objects=[deployment("tr", behavior="slow")])
    handle = await rc.start(load_spec(p))
    await _at_step(rc, "tr", "WaitReady")
    r = subprocess.run(["bash", str(ROOT / "scripts/temporal.sh"), "restart"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = await rc.result(handle)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    worker.wait_ready(120)  # the worker reconnected by itself


async def test_plain_temporal_cli_start_behaves_like_rollwright_cli(worker: WorkerProcess, temporal: Client,
                                                                    task_queue: str, namespace: str, tmp_path: Path,
                                                                    apps: k8s.AppsV1Api, registry: str, kube: Kube,
                                                                    cli_env: dict[str, str]) -> None:
    p = write_release(tmp_path, app="plain", namespace=namespace, registry=registry, objects=[deployment("plain")])
    # What an operator does without the Rollwright client on the worker's side: push the bundle, start with it.
    spec = push_bundle(load_spec(p))
    payload = json.dumps(spec.model_dump(mode="json", exclude_defaults=True, exclude={"base_dir"}))
    r = temporal_cli("workflow", "start", "--type", "RolloutWorkflow", "--task-queue", task_queue,
                     "--workflow-id", "rollout.plain.test", "--input", payload, "--fail-existing", env=cli_env)
    assert r.returncode == 0, r.stderr
    res = await RolloutClient(temporal, task_queue).result(temporal.get_workflow_handle("rollout.plain.test"))
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert _deploy_image(apps, namespace, "plain") == res.image
    assert [x["metadata"]["labels"]["rollwright.io/status"] for x in list_records(kube, namespace, "plain", "test")] == [
        "deployed"]
    # Same search attributes as a CLI start (the workflow sets them itself).
    desc = await temporal.get_workflow_handle("rollout.plain.test").describe()
    sa = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert sa["RolloutApp"] == "plain" and sa["RolloutOutcome"] == "Succeeded" and sa["RolloutImage"] == res.image


async def eventually(fn, timeout: float = 120, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Polls an async predicate without blocking the event loop; returns its first truthy value."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = await fn()
            if last:
                return last
        except Exception as e:  # e.g. the query before the worker picked the workflow up
            last = e
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def _at_step(rc: RolloutClient, app: str, step: str) -> None:
    async def check() -> bool:
        return (await rc.status(app, "test")).step.value == step

    await eventually(check, 120, f"{app} at step {step}")


async def test_secrets_are_rolled_back_and_never_in_history_or_logs(worker: WorkerProcess, temporal: Client,
                                                                    task_queue: str, namespace: str, tmp_path: Path,
                                                                    core: k8s.CoreV1Api, registry: str,
                                                                    cli_env: dict[str, str]) -> None:
    import base64

    rc = _client(temporal, task_queue)
    secret_v1, secret_v2 = "s3cr3t-v1-Zq8w", "s3cr3t-v2-Kp4x"

    def sec(value: str) -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": value}}

    v1 = write_release(tmp_path, app="sec", namespace=namespace, registry=registry, version="v1",
                       objects=[sec(secret_v1), deployment("sec")])
    h1 = await rc.start(load_spec(v1))
    assert (await rc.result(h1)).outcome == Outcome.SUCCEEDED
    v2 = write_release(tmp_path, app="sec", namespace=namespace, registry=registry, version="v2",
                       objects=[sec(secret_v2), deployment("sec", behavior="crashloop")])
    h2 = await rc.start(load_spec(v2))
    assert (await rc.result(h2)).outcome == Outcome.ROLLED_BACK
    live = base64.b64decode(core.read_namespaced_secret("db", namespace).data["password"]).decode()
    assert live == secret_v1  # the Secret went back with the workload
    needles = [s for v in (secret_v1, secret_v2) for s in (v, base64.b64encode(v.encode()).decode())]
    for h in (h1, h2):
        raw = json.dumps(history_events(h.id, h.result_run_id, env=cli_env))
        assert not [n for n in needles if n in raw], "a Secret value is in the workflow history"
    log = worker.log.read_text()
    assert "sec" in log and not [n for n in needles if n in log], "a Secret value is in the worker log"
