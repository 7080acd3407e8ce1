"""Issue 13: many concurrent rollouts on one worker, on KWOK nodes (correctness, not timing).

50 rollouts, each one small Deployment in its own namespace, run at once against the session worker; 5 never
become ready. Every one must end correctly (Succeeded with its pods ready, or RolledBack with the controller's
ProgressDeadlineExceeded as cause), and an abort of one still waiting is honoured — it ends Aborted while the
others are still waiting (the time it took is printed, not asserted: shared machine).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import SESSION, WorkerProcess, deployment, write_release

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]
N, NEVER_READY = 50, 5
ABORTED = 0  # index of the never-ready rollout that is aborted mid-wait (its own deadline is long)


@pytest.fixture
def namespaces(core: k8s.CoreV1Api) -> Iterator[list[str]]:
    names = [f"fleet-{SESSION}-{i}" for i in range(N)]
    for n in names:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=n)))
    yield names
    for n in names:
        core.delete_namespace(n)


async def test_fifty_concurrent_rollouts_end_correctly_and_an_abort_is_honoured_while_they_wait(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespaces: list[str], tmp_path: Path,
        registry: str, apps: k8s.AppsV1Api) -> None:
    rc = RolloutClient(temporal, task_queue)
    specs = []
    for i, ns in enumerate(namespaces):
        never = i < NEVER_READY
        # Never-ready: the Deployment controller gives up after 20 s (ProgressDeadlineExceeded), except the one
        # we abort, which would wait 10 minutes.
        d = deployment(f"fl{i}", replicas=1, behavior="not-ready" if never else None,
                       deadline=600 if i == ABORTED else 20)
        p = write_release(tmp_path / f"r{i}", app=f"fl{SESSION[:5]}{i}", namespace=ns, registry=registry,
                          image=False, objects=[d], health={"progress_deadline_seconds": 600})
        specs.append(load_spec(p))
    t0 = time.monotonic()
    handles = await asyncio.gather(*(rc.start(s) for s in specs))
    results = [asyncio.create_task(rc.result(h)) for h in handles]

    # Abort the long never-ready rollout once it is in its readiness wait and the short ones are still waiting.
    victim = specs[ABORTED]
    for _ in range(1200):
        if (await rc.status(victim.app, victim.environment)).step.value == "WaitReady":
            break
        await asyncio.sleep(0.1)
    waiting = [s for s in specs[1:NEVER_READY] if (await rc.status(s.app, s.environment)).step.value == "WaitReady"]
    t_abort = time.monotonic()
    await rc.abort(victim.app, victim.environment, "fleet test: abort mid-wait")
    aborted = await asyncio.wait_for(asyncio.shield(results[ABORTED]), 120)
    print(f"abort honoured in {time.monotonic() - t_abort:.2f}s while {len(waiting)} other never-ready rollouts "
          "were in WaitReady")
    assert aborted.outcome == Outcome.ABORTED, aborted
    assert "fleet test: abort mid-wait" in (aborted.cause or ""), aborted

    done = await asyncio.wait_for(asyncio.gather(*results), 600)
    wall = time.monotonic() - t0
    counts: dict[str, int] = {}
    for i, (s, res) in enumerate(zip(specs, done, strict=True)):
        counts[res.outcome.value] = counts.get(res.outcome.value, 0) + 1
        if i == ABORTED:
            continue
        if i < NEVER_READY:
            assert res.outcome == Outcome.ROLLED_BACK, (s.app, res)
            assert "ProgressDeadlineExceeded" in (res.cause or ""), (s.app, res.cause)
        else:
            assert res.outcome == Outcome.SUCCEEDED, (s.app, res)
            dep = apps.read_namespaced_deployment(f"fl{i}", s.namespace)
            assert dep.status.ready_replicas == 1, (s.app, dep.status)
    print(f"{N} rollouts ended in {wall:.1f}s: {counts}")
