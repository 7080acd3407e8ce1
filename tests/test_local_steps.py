"""The short cluster steps as local activities (issue 13, ``workflow.patched("local-short-steps-v1")``), on the real
stack: a worker process, the Temporal dev server and the kube-apiserver with KWOK nodes.

- A rolling rollout without a build is two workflow tasks: prepare + snapshot + apply run inside the first (their
  results are ``MarkerRecorded`` events, with the step summary), which schedules the wait; finalize runs in the
  second. The only activity task is the wait.
- An abort, or a workflow cancel, sent while the apply runs stops it and rolls back; a worker killed while the apply
  runs loses its workflow task, which times out, and the next worker runs the step again (idempotent).

To catch the apply in flight, a validating admission webhook (created by the test, matching only ConfigMaps with
this session's label and no dry runs) points at a TCP listener that accepts and never answers: the apiserver holds
each such ConfigMap's write until its webhook call gives up (the TLS handshake timeout, about 10 s), then admits it
(failurePolicy Ignore). The listener sees the connection the moment the apply sends that object, so the test acts
while the step is certainly running. A cancel reaches a local activity (a thread) when the call in flight
returns: the apply then stops before its next object.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client, WorkflowExecutionStatus

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import (
    ROOT,
    SESSION,
    WorkerProcess,
    activity_counts,
    configmap,
    deployment,
    history_events,
    kill_and_finish_on_a_new_worker,
    local_activities,
    temporal_cli,
    write_release,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

APP_IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"  # in the registry since scripts/base-images.sh
SLOW_LABEL = "rollwright.io/test-slow-admission"


class SilentListener:
    """Accepts TCP connections and never answers (the TLS handshake of the apiserver's webhook call hangs until it
    gives up). ``connections`` counts them: one per write of a labelled ConfigMap."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(c)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def slow_admission(k8s_api: k8s.ApiClient) -> Iterator[SilentListener]:
    listener = SilentListener()
    name = f"rollwright-test-slow-{SESSION}-{uuid.uuid4().hex[:5]}"
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "slow.admission.rollwright.test",
            "clientConfig": {"url": f"https://127.0.0.1:{listener.port}/validate"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["configmaps"]}],
            "objectSelector": {"matchLabels": {SLOW_LABEL: SESSION}},
            # prepare's server-side dry run must not wait: only the real write is held.
            "matchConditions": [{"name": "not-dry-run", "expression": "!request.dryRun"}],
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 30,
        }],
    }
    api = k8s.AdmissionregistrationV1Api(k8s_api)
    api.create_validating_webhook_configuration(body)
    try:
        yield listener
    finally:
        api.delete_validating_webhook_configuration(name)
        listener.close()


def _slow_configmap(name: str) -> dict[str, Any]:
    cm = configmap(name, {"k": "v2"})
    cm["metadata"]["labels"] = {SLOW_LABEL: SESSION}
    return cm


async def _until(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.1)


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]


# ---- two workflow tasks -------------------------------------------------------------------------------------------


async def test_rolling_rollout_is_two_workflow_tasks_with_the_short_steps_as_local_activities(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    app = f"la-{uuid.uuid4().hex[:5]}"
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                      objects=[configmap(f"{app}-cfg", {"A": "1"}), deployment(app, image=APP_IMAGE)])
    rc = RolloutClient(temporal, task_queue)
    h = await rc.start(load_spec(p))
    res = await rc.result(h)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert apps.read_namespaced_deployment(app, namespace).status.ready_replicas == 2
    events = history_events(h.id, h.result_run_id, env=cli_env)
    kinds = _kinds(events)
    local = local_activities(events)
    print(f"{len(events)} events, {kinds.count('WORKFLOW_TASK_COMPLETED')} workflow tasks, local steps "
          + ", ".join(la["activity_type"] for la in local))
    assert [la["activity_type"] for la in local] == ["prepare_release", "snapshot_release", "apply_release",
                                                     "finalize_revision"]
    assert all(la["attempt"] == 1 and not la["failed"] for la in local), local
    assert local[0]["summary"] == "validate + server dry run" and local[3]["summary"] == "record revision as deployed"
    counts = activity_counts(events)
    assert {n for n, c in counts.items() if c["scheduled"]} == {"wait_ready"}, counts
    # Two workflow tasks, plus one per progress report the wait sent (a wait that outlives its first 2 s tick
    # reports; each report is a signal and a workflow task).
    signals = kinds.count("WORKFLOW_EXECUTION_SIGNALED")
    assert kinds.count("WORKFLOW_TASK_COMPLETED") == 2 + signals, kinds
    # The first workflow task ran prepare, snapshot and apply and scheduled the wait: all four recorded by it.
    first_done = next(e["eventId"] for e in events if "workflowTaskCompletedEventAttributes" in e)
    by_first = [e for e in events if (e.get("markerRecordedEventAttributes") or e.get(
        "activityTaskScheduledEventAttributes") or {}).get("workflowTaskCompletedEventId") == first_done]
    assert len([e for e in by_first if "activityTaskScheduledEventAttributes" in e]) == 1
    assert len([e for e in by_first if (e.get("markerRecordedEventAttributes") or {}).get("markerName")
                == "core_local_activity"]) == 3
    # A local activity does not heartbeat to the server (activities/keepalive.py skips it): no SDK complaint.
    assert "Activity heartbeat failed" not in worker.log.read_text()
    if os.environ.get("ROLLWRIGHT_RECORD_HISTORIES") == "1":
        (ROOT / "tests/histories/success-local-steps-real.json").write_text(json.dumps({"events": events}, indent=2))


# ---- abort, cancel and a crash while a local step runs ------------------------------------------------------------


@pytest.mark.parametrize("how", ["abort", "cancel"])
async def test_abort_or_cancel_during_the_local_apply_stops_it_and_rolls_back(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        apps: k8s.AppsV1Api, core: k8s.CoreV1Api, cli_env: dict[str, str], slow_admission: SilentListener,
        how: str) -> None:
    app = f"lx-{uuid.uuid4().hex[:5]}"
    rc = RolloutClient(temporal, task_queue)
    v1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v1",
                       objects=[deployment(app, image=APP_IMAGE)])
    r1 = await rc.result(await rc.start(load_spec(v1)))
    assert r1.outcome == Outcome.SUCCEEDED, r1.cause
    gen = apps.read_namespaced_deployment(app, namespace).metadata.generation
    # v2: three held ConfigMaps, then the Deployment (ConfigMaps are applied first): the apply runs for about
    # 3 x 10 s, far longer than an abort takes to reach it (the next workflow task heartbeat, within 8 s).
    held = [f"{app}-slow-{i}" for i in range(3)]
    v2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v2",
                       objects=[*(_slow_configmap(n) for n in held), deployment(app, image=APP_IMAGE, replicas=3)])
    h = await rc.start(load_spec(v2))
    await _until(lambda: slow_admission.connections >= 1, 120, "the apply to write the held ConfigMap")
    t0 = time.monotonic()
    if how == "abort":
        await rc.abort(app, "test", "stop the apply")
    else:
        r = temporal_cli("workflow", "cancel", "-w", h.id, env=cli_env)
        assert r.returncode == 0, r.stderr
    res = await rc.result(h)
    print(f"{how} sent during the apply; rollout ended {time.monotonic() - t0:.1f}s later: {res.outcome.value}, "
          f"{res.cause}")
    if how == "abort":
        assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: stop the apply", res
    else:
        assert res.outcome == Outcome.ABORTED and res.cause == "workflow cancelled", res
        assert (await h.describe()).status == WorkflowExecutionStatus.CANCELED
    events = history_events(h.id, h.result_run_id, env=cli_env)
    local = local_activities(events)
    steps = [(la["activity_type"], la["failed"]) for la in local]
    # The apply was stopped (its marker records the cancel), then the rollback and its bookkeeping ran.
    assert steps[:3] == [("prepare_release", False), ("snapshot_release", False), ("apply_release", True)], steps
    assert ("rollback_release", False) in steps[3:], steps
    # It never reached the Deployment: v1's spec is untouched, and the held ConfigMap is gone again.
    d = apps.read_namespaced_deployment(app, namespace)
    assert d.metadata.generation == gen and d.spec.replicas == 2
    assert not set(held) & {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert slow_admission.connections < len(held), "the apply ran to its end: the abort did not stop it"


async def test_worker_killed_during_a_local_step_the_next_worker_runs_it_again(
        kubeconfig: Path, temporal: Client, namespace: str, tmp_path: Path, registry: str, apps: k8s.AppsV1Api,
        core: k8s.CoreV1Api, cli_env: dict[str, str], slow_admission: SilentListener) -> None:
    queue = f"rw-lakill-{namespace[-5:]}"
    app = f"lk-{uuid.uuid4().hex[:5]}"
    rc = RolloutClient(temporal, queue)
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                      objects=[_slow_configmap(f"{app}-slow"), deployment(app, image=APP_IMAGE)])
    w1 = WorkerProcess(queue, kubeconfig, name="lakill-1")
    w1.start()
    try:
        h = await rc.start(load_spec(p))
        await _until(lambda: slow_admission.connections >= 1, 120, "the apply to write the held ConfigMap")
    except BaseException:
        w1.kill()
        raise
    # SIGKILL mid-apply: its workflow task and the local activity's result die with it.
    res = await kill_and_finish_on_a_new_worker(w1, rc, h, name="lakill-2")
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert slow_admission.connections >= 2, "the apply did not run again on the second worker"
    events = history_events(h.id, h.result_run_id, env=cli_env)
    kinds = _kinds(events)
    # The killed worker's workflow task timed out (no completion ever came); the next one ran on the new worker.
    assert "WORKFLOW_TASK_TIMED_OUT" in kinds, kinds
    local = [la["activity_type"] for la in local_activities(events) if not la["failed"]]
    assert local.count("apply_release") == 1 and local.count("snapshot_release") == 1, local
    # The snapshot ran again only if its marker was lost too, and then found the revision this run had recorded.
    records = core.list_namespaced_secret(namespace, label_selector=f"rollwright.io/app={app}").items
    assert len(records) == 1, [r.metadata.name for r in records]
    d = apps.read_namespaced_deployment(app, namespace)
    assert d.status.ready_replicas == 2
    assert core.read_namespaced_config_map(f"{app}-slow", namespace).data == {"k": "v2"}
