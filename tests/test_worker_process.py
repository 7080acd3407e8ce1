"""The `rollwright worker` process as operators run it: health/readiness/metrics endpoints in each state, graceful
SIGTERM, config validation at start, JSON logs. Run by the test suite against the real local stack; every worker
here is a real process, and the Temporal servers are real (the shared one on 7233 is never stopped: the
"Temporal goes away" case uses a second dev server this module starts and kills itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests import helpers
from tests.helpers import (
    BIN,
    WorkerProcess,
    configmap,
    deployment,
    free_port,
    history_events,
    wait_until,
    write_release,
)

pytestmark = pytest.mark.e2e
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

# Any image works on KWOK (nothing is pulled); this one exists in the local registry, like a real release's would.
APP_IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"


def _get(w: WorkerProcess, path: str) -> httpx.Response:
    return httpx.get(w.url(path), timeout=5)


def _status(w: WorkerProcess, path: str) -> int | None:
    try:
        return _get(w, path).status_code
    except httpx.HTTPError:
        return None


def _log_lines(w: WorkerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in w.log.read_text().splitlines() if line.strip()]


def _ts(s: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Temporal) or milliseconds (our logs) → aware datetime."""
    s = s.replace("Z", "+00:00")
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", s))


class DevServer:
    """A private `temporal server start-dev` (in memory) on a fixed port, so it can be killed and restarted."""

    def __init__(self) -> None:
        self.port, self.ui_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # http/metrics ports given explicitly: their defaults could collide with the shared server's (7243/7244).
        self.proc = subprocess.Popen(
            [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
             "--ui-port", str(self.ui_port), "--headless", "--http-port", str(free_port()),
             "--metrics-port", str(free_port()), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: subprocess.run([str(BIN / "temporal"), "operator", "cluster", "health", "--address",
                                           self.address], capture_output=True, timeout=10).returncode == 0,
                   120, interval=1, what=f"dev server on {self.address}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def dev_server() -> Iterator[DevServer]:
    s = DevServer()
    s.start()
    yield s
    s.kill()


def _pointed_worker(address: str, kubeconfig: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> WorkerProcess:
    """A worker dialing ``address``: WorkerProcess reads helpers.TEMPORAL_ADDRESS when it starts."""
    monkeypatch.setattr(helpers, "TEMPORAL_ADDRESS", address)
    w = WorkerProcess(f"rw-wp-{uuid.uuid4().hex[:6]}", kubeconfig, name=name)
    w.start(wait_ready=False)
    return w


# ------------------------------------------------------------------------------------------------ endpoints

def test_polling_worker_is_live_and_ready(worker: WorkerProcess) -> None:
    h = _get(worker, "/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    r = _get(worker, "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "reason": "polling"}


def test_unreachable_temporal_is_live_but_not_ready(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    w = _pointed_worker(dead, kubeconfig, "dead-temporal", monkeypatch)
    try:
        wait_until(lambda: _status(w, "/healthz") == 200, 60, what="/healthz of a worker without Temporal")
        r = _get(w, "/readyz")
        assert r.status_code == 503, r.text
        assert f"cannot connect to Temporal at {dead}" in r.json()["reason"]
        # Still trying (not exited): in compose/k8s Temporal may come up after the worker.
        assert w.proc is not None and w.proc.poll() is None
        assert _status(w, "/healthz") == 200
    finally:
        w.stop(30)


def test_readiness_follows_temporal_down_and_back(kubeconfig: Path, dev_server: DevServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = _pointed_worker(dev_server.address, kubeconfig, "flappy-temporal", monkeypatch)
    try:
        w.wait_ready(90)
        dev_server.kill()
        wait_until(lambda: _status(w, "/readyz") == 503, 90, what="/readyz 503 after Temporal died")
        assert "Temporal unreachable" in _get(w, "/readyz").json()["reason"]
        assert _status(w, "/healthz") == 200  # liveness must not restart a worker for an outage it cannot fix
        dev_server.start()  # same port
        wait_until(lambda: _status(w, "/readyz") == 200, 120, what="/readyz 200 after Temporal came back")
        assert w.proc is not None and w.proc.poll() is None
    finally:
        w.stop(30)


@SESSION_LOOP
async def test_rollout_metrics_on_metrics_and_json_logs(worker: WorkerProcess, temporal: Client, task_queue: str,
                                                 namespace: str, tmp_path: Path, registry: str) -> None:
    app = f"met-{uuid.uuid4().hex[:5]}"
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                      objects=[configmap(f"{app}-cfg", {"A": "1"}), deployment(app, replicas=1, image=APP_IMAGE)])
    rc = RolloutClient(temporal, task_queue)
    res = await rc.result(await rc.start(load_spec(p)))
    assert res.outcome == Outcome.SUCCEEDED, res.cause

    # The SDK's Prometheus exporter keeps the meter's names as given (no prefix, no _total on the counter) and
    # adds namespace/task_queue/workflow_type labels; the histogram unit (ms) is not in the name.
    want = {"app": app, "environment": "test", "outcome": "Succeeded", "task_queue": task_queue,
            "workflow_type": "RolloutWorkflow"}

    def samples() -> dict[str, float]:
        out = {}
        for m in re.finditer(r"^(\w+)\{([^}]*)\} (\S+)$", _get(worker, "/metrics").text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if all(labels.get(k) == v for k, v in want.items()) and "le" not in labels:
                out[m.group(1)] = float(m.group(3))
        return out if "rollwright_rollouts_finished" in out else {}

    got = wait_until(samples, 30, what=f"rollout metrics for {app} on /metrics")
    assert got["rollwright_rollouts_finished"] == 1
    assert got["rollwright_rollout_duration_count"] == 1 and got["rollwright_rollout_duration_sum"] > 0
    text = _get(worker, "/metrics").text
    assert "# TYPE rollwright_rollouts_finished counter" in text
    assert "# TYPE rollwright_rollout_duration histogram" in text
    assert re.search(r"^rollwright_worker_up 1$", text, re.M)
    # JSON logs: every line of the worker's log is an object, and activity lines carry the workflow ID.
    lines = _log_lines(worker)
    assert lines and all(isinstance(x, dict) and {"ts", "level", "msg"} <= x.keys() for x in lines)
    ours = [x for x in lines if x.get("workflow_id") == f"rollout.{app}.test"]
    assert ours, "no log line of this rollout carries its workflow_id"
    activity_lines = [x for x in lines if "activity_type" in x]
    assert activity_lines and all(x.get("workflow_id") for x in activity_lines)


async def test_core_debug_log_shows_every_workflow_task_the_worker_receives(kubeconfig: Path, temporal: Client) -> None:
    """ROLLWRIGHT_CORE_LOG_LEVEL=DEBUG: how lost workflow tasks were traced (issue 13). The SDK core logs each
    workflow task it receives, with the workflow ID and the started event ID, as JSON lines like ours."""
    queue = f"rw-core-{uuid.uuid4().hex[:6]}"
    w = WorkerProcess(queue, kubeconfig, name="core-debug", extra_env={"ROLLWRIGHT_CORE_LOG_LEVEL": "debug"})
    w.start()
    try:
        # Input that fails validation fails the workflow in its first workflow task: one task, no cluster work.
        wid = f"core-debug-{uuid.uuid4().hex[:6]}"
        handle = await temporal.start_workflow("RolloutWorkflow", {"not": "a release"}, id=wid, task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    finally:
        w.stop()
    # Only the JSON lines: the failing decode makes Python print a RuntimeWarning (unawaited coroutine) to stderr.
    lines = [json.loads(x) for x in w.log.read_text().splitlines() if x.startswith("{")]
    received = [x for x in lines if x["logger"].startswith("temporalio.core") and x["level"] == "DEBUG"
                and "Applying new workflow task from server" in x["msg"] and wid in x["msg"]]
    assert received and "started_id: 3" in received[0]["msg"], "the core's debug log has no line for the task"


# ---------------------------------------------------------------------------------------------- shutdown

@SESSION_LOOP
async def test_sigterm_lets_the_running_activity_finish(kubeconfig: Path, temporal: Client, namespace: str,
                                                        tmp_path: Path, registry: str, cli_env: dict[str, str]) -> None:
    queue, app = f"rw-term-{uuid.uuid4().hex[:6]}", f"term-{uuid.uuid4().hex[:5]}"
    rc = RolloutClient(temporal, queue)
    v1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v1",
                       objects=[deployment(app, replicas=3, image=APP_IMAGE)])
    # v2: "slow" pods are ready ~12 s after creation and replace v1 one at a time (maxSurge 1, maxUnavailable 0),
    # so wait_ready runs for tens of seconds: a wide window to send SIGTERM into.
    d = deployment(app, replicas=3, image=APP_IMAGE, behavior="slow")
    d["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    v2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v2",
                       objects=[d])
    w = WorkerProcess(queue, kubeconfig, name="sigterm", extra_env={"ROLLWRIGHT_SHUTDOWN_TIMEOUT_SECONDS": "180"})
    w2 = WorkerProcess(queue, kubeconfig, name="sigterm-2")
    w.start()
    handle = None
    try:
        assert (await rc.result(await rc.start(load_spec(v1)))).outcome == Outcome.SUCCEEDED
        handle = await rc.start(load_spec(v2))
        await _until_activity_started(handle, "wait_ready")
        assert w.proc is not None
        os.killpg(w.proc.pid, signal.SIGTERM)
        # While draining: not ready (so k8s stops counting it), but alive until the activity is done.
        saw_503 = False
        end = time.monotonic() + 240
        while w.proc.poll() is None:
            assert time.monotonic() < end, "worker did not exit after SIGTERM"
            saw_503 = saw_503 or _status(w, "/readyz") == 503
            await asyncio.sleep(0.3)
        assert w.proc.returncode == 0, w.log.read_text()[-3000:]
        assert saw_503, "/readyz never answered 503 while the worker drained"

        events = history_events(handle.id, env=cli_env)
        done = _completed(events, "wait_ready")
        # Completed, by the worker we stopped: no other worker polls this queue, and it is now gone.
        assert len(done) == 1, [e["eventType"] for e in events]
        assert done[0]["activityTaskCompletedEventAttributes"]["identity"].startswith("rollwright-")
        lines = _log_lines(w)
        shutdown = next(x for x in lines if x["msg"].startswith("shutting down: waiting up to 180"))
        assert _ts(shutdown["ts"]) < _ts(done[0]["eventTime"]), "wait_ready had finished before the SIGTERM"
        assert any(x["msg"] == "worker stopped" for x in lines)

        # Nothing was lost: a new worker picks the rollout up after the completed wait and finishes it.
        w2.start()
        res = await rc.result(handle)
        assert res.outcome == Outcome.SUCCEEDED, res.cause
        assert len(_completed(history_events(handle.id, env=cli_env), "wait_ready")) == 1  # not re-run
    finally:
        w.kill()
        w2.stop()
        if handle is not None and (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test cleanup: nobody polls this task queue any more")


async def _until_activity_started(handle: WorkflowHandle[Any, Any], activity: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while True:
        desc = await handle.describe()
        if any(a.activity_type.name == activity and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
               for a in desc.raw_description.pending_activities):
            return
        assert time.monotonic() < end, f"{activity} never started"
        await asyncio.sleep(0.2)


def _completed(events: list[dict[str, Any]], activity: str) -> list[dict[str, Any]]:
    sched = {e["eventId"] for e in events
             if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == activity}
    return [e for e in events if e.get("activityTaskCompletedEventAttributes", {}).get("scheduledEventId") in sched]


# ------------------------------------------------------------------------------------------- configuration

def test_bad_http_port_stops_the_worker_naming_the_variable(cli_env: dict[str, str]) -> None:
    env = dict(cli_env, ROLLWRIGHT_HTTP_PORT="abc")
    r = subprocess.run([str(BIN / "rollwright"), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ROLLWRIGHT_HTTP_PORT" in r.stderr and "'abc'" in r.stderr
    assert "Traceback" not in r.stderr
