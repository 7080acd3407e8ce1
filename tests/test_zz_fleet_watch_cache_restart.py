"""Issue 13: the worker's shared watch cache (activities/watch_cache.py) recovers after a kube-apiserver restart.

A rollout whose pods become ready 12 s after they start (kwok stage "slow") is in its readiness wait when the
apiserver is stopped and started again (the helper of tests/test_zz_finding11_apiserver_restart.py, which announces
itself in /tmp/stack-status.txt). The pods turn ready only after the restart, so the wait can only succeed if the
informers reconnected and relisted without missing those pod and Deployment updates; a missed event would leave it
waiting until its deadline and roll back. The worker's log must show the informers were interrupted (else the test
would not have exercised the recovery). Named ``test_zz_…`` to run at the end: the outage disturbs other tests.
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

import tests.test_zz_finding11_apiserver_restart as f11
from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import SESSION, WorkerProcess, cli, deployment, write_release

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


def _interruptions(log: Path, since: str) -> list[str]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("logger") == "activities.watch_cache" and rec.get("ts", "") >= since and \
                "interrupted" in rec.get("msg", ""):
            out.append(rec["msg"])
    return out


async def test_watch_cache_recovers_after_apiserver_restart_rollout_succeeds(
        worker: WorkerProcess, temporal: Client, task_queue: str, kubeconfig: Path, namespace: str, tmp_path: Path,
        registry: str, apps: k8s.AppsV1Api, cli_env: dict[str, str]) -> None:
    for _ in range(120):  # another helper restarting the stack: wait for it
        if "RESTARTING" not in (f11.STATUS.read_text() if f11.STATUS.exists() else ""):
            break
        await asyncio.sleep(5)
    app = f"fleetrs{SESSION[:5]}"
    p1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v1",
                       objects=[deployment(app, replicas=2)])
    assert cli("rollout", "start", "-f", str(p1), "--wait", env=cli_env).returncode == 0
    p2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False, version="v2",
                       objects=[deployment(app, replicas=2, behavior="slow")],
                       health={"progress_deadline_seconds": 300})
    rc = RolloutClient(temporal, task_queue)
    handle = await rc.start(load_spec(p2))
    for _ in range(600):
        if (await rc.status(app, "test")).step.value == "WaitReady":
            break
        await asyncio.sleep(0.2)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    previous = f11.STATUS.read_text() if f11.STATUS.exists() else None
    f11.STATUS.write_text("APISERVER-RESTART-TEST by fleet\n")
    try:
        stopped, ready = await asyncio.get_running_loop().run_in_executor(None, f11._restart_apiserver, kubeconfig)
    finally:
        if previous is None:
            f11.STATUS.unlink(missing_ok=True)
        else:
            f11.STATUS.write_text(previous)
    res = await asyncio.wait_for(rc.result(handle), 400)
    print(f"apiserver down {ready - stopped:.1f}s; rollout ended {time.monotonic() - ready:.1f}s after it was "
          f"ready again: {res.outcome.value} ({res.cause})")
    assert res.outcome == Outcome.SUCCEEDED, res
    d = apps.read_namespaced_deployment(app, namespace)
    assert d.status.ready_replicas == 2 and d.spec.template.metadata.labels.get("sim.rollwright.io/behavior") == "slow"
    seen = _interruptions(worker.log, since)
    print("informer interruptions:", seen[:5])
    assert any("informer-Pod-" in m for m in seen), "the pod informer never saw the outage: recovery not exercised"
    assert httpx.get(worker.url("/readyz"), timeout=5).status_code == 200
