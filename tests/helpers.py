"""Test helpers: a real worker process, release files written on the fly, an HTTP health target, history reads.

Used by the e2e tests through ``tests/conftest.py``. Nothing here fakes a server; ``HealthTarget`` is a real HTTP
server whose answer a test can flip, standing in for the app a health check probes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from contract.models import RolloutResult
    from orchestrator.client import RolloutClient

ROOT = Path(__file__).resolve().parent.parent
# Empty counts as unset, as in scripts/lib.sh and docker-compose.yml (`${ROLLWRIGHT_STATE:-./.stack}`).
STATE = Path(os.environ.get("ROLLWRIGHT_STATE") or ROOT / ".stack")
TEMPORAL_ADDRESS = os.environ.get("ROLLWRIGHT_TEMPORAL_ADDRESS", "127.0.0.1:7233")
BIN = Path(sys.executable).parent
SESSION = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, timeout: float = 60, interval: float = 0.25, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # keep polling; report the last error if we time out
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class WorkerProcess:
    """`rollwright worker` in its own process group: started, killed (SIGKILL) or stopped (SIGTERM) by tests."""

    def __init__(self, task_queue: str, kubeconfig: Path, *, name: str = "w", extra_env: dict[str, str] | None = None):
        self.task_queue, self.kubeconfig, self.name = task_queue, kubeconfig, name
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = Path(os.environ.get("ROLLWRIGHT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / f"worker-{name}-{SESSION}.log"

    def start(self, wait_ready: bool = True) -> None:
        self.port = free_port()
        env = dict(os.environ, ROLLWRIGHT_TEMPORAL_ADDRESS=TEMPORAL_ADDRESS, ROLLWRIGHT_TASK_QUEUE=self.task_queue,
                   ROLLWRIGHT_KUBECONFIG=str(self.kubeconfig), ROLLWRIGHT_HTTP_PORT=str(self.port),
                   ROLLWRIGHT_HTTP_HOST="127.0.0.1", ROLLWRIGHT_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
        env.update(self.extra_env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen([str(BIN / "rollwright"), "worker"], env=env, stdout=fh, stderr=fh,
                                     start_new_session=True)
        if wait_ready:
            self.wait_ready()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}; log: {self.log.read_text()[-2000:]}")
            return httpx.get(self.url("/readyz"), timeout=2).status_code == 200

        wait_until(ready, timeout, what=f"worker {self.name} /readyz")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None


async def kill_and_finish_on_a_new_worker(killed: WorkerProcess, rc: RolloutClient, handle: WorkflowHandle[Any, Any],
                                          *, name: str) -> RolloutResult:
    """SIGKILLs ``killed`` (mid-step: whatever it was running dies with it), starts a second worker on its task
    queue and kubeconfig, and returns the rollout's result from there (the second worker is stopped after).

    Used by the worker-kill tests of tests/test_local_steps.py and tests/test_rollout_e2e.py."""
    killed.kill()
    second = WorkerProcess(killed.task_queue, killed.kubeconfig, name=name, extra_env=killed.extra_env)
    second.start()
    try:
        return await rc.result(handle)
    finally:
        second.stop()


class HealthTarget:
    """A real HTTP server for health checks; ``status`` is what GET returns, changeable at any time."""

    def __init__(self) -> None:
        target = self
        self.status = 200
        self.hits = 0
        self.delay = 0.0  # seconds before answering (a slow endpoint)

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                target.hits += 1
                if target.delay:
                    time.sleep(target.delay)
                self.send_response(target.status)
                self.end_headers()
                self.wfile.write(b"ok" if target.status == 200 else b"failing")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# The scheduling contract (README "Scheduling: real node and KWOK nodes"): ordinary pods land on the real node;
# KWOK's nodes carry this taint and the label type=kwok, so a pod runs simulated only when its template says so.
SIM_TOLERATION = {"key": "rollwright.io/simulated", "operator": "Exists", "effect": "NoSchedule"}
SIM_NODE_SELECTOR = {"type": "kwok"}


def simulated(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """Puts a pod spec (a template's ``spec``) on the KWOK nodes: tolerates their taint and selects them.
    Needed for the ``sim.rollwright.io/behavior`` stages and for scale (no container runs there)."""
    pod_spec.setdefault("tolerations", []).append(dict(SIM_TOLERATION))
    pod_spec["nodeSelector"] = dict(pod_spec.get("nodeSelector") or {}, **SIM_NODE_SELECTOR)
    return pod_spec


def deployment(name: str, *, replicas: int = 2, behavior: str | None = None, deadline: int = 600,
               image: str = "REPO:latest", config: str | None = None, real: bool = False) -> dict[str, Any]:
    """A Deployment of the demo app. Simulated on KWOK nodes unless ``real`` (then the real node runs it)."""
    labels = {"app": name}
    tpl_labels = dict(labels, **({"sim.rollwright.io/behavior": behavior} if behavior else {}))
    c: dict[str, Any] = {"name": "web", "image": image, "ports": [{"containerPort": 8080}]}
    if config:
        c["envFrom"] = [{"configMapRef": {"name": config}}]
    pod: dict[str, Any] = {"containers": [c]}
    if not real:
        simulated(pod)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": deadline, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": tpl_labels}, "spec": pod}}}


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def write_release(d: Path, *, app: str, namespace: str, objects: list[dict[str, Any]], registry: str,
                  version: str = "v1", health: dict[str, Any] | None = None, image: bool = True,
                  extra: dict[str, Any] | None = None, env: str = "test") -> Path:
    """Writes a release spec + manifests + build context into ``d`` and returns the spec path.

    ``REPO`` in a container image is replaced by the release's repository, so the pin can be asserted."""
    d.mkdir(parents=True, exist_ok=True)
    repo = f"{registry}/rollwright-test/{app}"
    ctx = d / "app"
    if not ctx.exists():
        shutil.copytree(ROOT / "images/demo-app", ctx)
    (ctx / "www" / "build-id").write_text(f"{SESSION} {app} {version}\n")
    text = yaml.safe_dump_all(objects, sort_keys=False).replace("REPO:", f"{repo}:")
    (d / f"manifests-{version}.yaml").write_text(text)
    spec: dict[str, Any] = {"app": app, "environment": env, "namespace": namespace,
                            "manifests": [f"manifests-{version}.yaml"],
                            "health": health or {"progress_deadline_seconds": 120}}
    if image:
        spec["image"] = {"context": "app", "repository": repo, "build_args": {"VERSION": version}}
    spec.update(extra or {})
    p = d / f"release-{version}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def cli(*args: str, env: dict[str, str], timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(BIN / "rollwright"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"rollwright {' '.join(args)} → {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def temporal_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "temporal"), *args, "--address", TEMPORAL_ADDRESS], env=env,
                          capture_output=True, text=True, timeout=timeout)


def history_events(workflow_id: str, run_id: str | None = None, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    args = ["workflow", "show", "-w", workflow_id, "-o", "json"] + (["-r", run_id] if run_id else [])
    r = temporal_cli(*args, env=env or dict(os.environ))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["events"]


def _payload_json(p: dict[str, Any]) -> Any:
    """A json/plain payload of a history event as JSON: the CLI prints the data decoded (a JSON value), protobuf's
    MessageToDict as base64."""
    data = p.get("data")
    if isinstance(data, str):
        try:
            return json.loads(base64.b64decode(data))
        except ValueError:
            return json.loads(data)
    return data


def local_activities(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The local activities of a history, in order: one ``MarkerRecorded`` event named ``core_local_activity`` per
    finished local activity (workflows/rollout.py runs the short cluster steps so). Each as ``activity_type``,
    ``attempt``, ``failed`` and ``summary``. (No run time: the marker's times mix the workflow's clock and the
    worker's.) ``events`` as ``temporal workflow show -o json`` prints them (or
    ``google.protobuf.json_format.MessageToDict`` of the SDK's events)."""
    out = []
    for e in events:
        m = e.get("markerRecordedEventAttributes")
        if not m or m.get("markerName") != "core_local_activity":
            continue
        data = _payload_json(m["details"]["data"]["payloads"][0])
        summary = ((e.get("userMetadata") or {}).get("summary"))
        out.append({"activity_type": data["activity_type"], "attempt": int(data["attempt"]),
                    "failed": "failure" in m, "summary": _payload_json(summary) if summary else None})
    return out


def activity_counts(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per activity type: how many were scheduled as activity tasks, how many ran as local activities (``local``:
    their markers), how many completed (either way), and the highest attempt seen."""
    sched: dict[str, str] = {}
    out: dict[str, dict[str, int]] = {}
    for la in local_activities(events):
        c = out.setdefault(la["activity_type"], {"scheduled": 0, "local": 0, "completed": 0, "max_attempt": 0})
        c["local"] += 1
        c["completed"] += 0 if la["failed"] else 1
        c["max_attempt"] = max(c["max_attempt"], la["attempt"])
    for e in events:
        a = e.get("activityTaskScheduledEventAttributes")
        if a:
            sched[str(e["eventId"])] = a["activityType"]["name"]
            out.setdefault(a["activityType"]["name"], {"scheduled": 0, "local": 0, "completed": 0, "max_attempt": 0})
            out[a["activityType"]["name"]]["scheduled"] += 1
        for key in ("activityTaskCompletedEventAttributes", "activityTaskStartedEventAttributes"):
            b = e.get(key)
            if b:
                name = sched[str(b["scheduledEventId"])]
                if key.startswith("activityTaskCompleted"):
                    out[name]["completed"] += 1
                else:
                    out[name]["max_attempt"] = max(out[name]["max_attempt"], int(b.get("attempt", 1)))
    return out
