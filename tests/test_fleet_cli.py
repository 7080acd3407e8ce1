"""`rollwright rollout start -f A -f B …`: a fleet started from one command, as a platform team bumps many services.

Checked against the real stack: a fleet with one bad release (or two releases of one app and environment) is
refused whole, with no workflow started and no bundle in the registry; a valid fleet starts every release on its
own, the one whose lock is held is reported and skipped, and `--wait` reports each outcome and exits with the
highest code.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contract.models import Outcome
from orchestrator import workflow_id
from orchestrator.client import RolloutClient
from releases.loader import load_spec
from tests.helpers import WorkerProcess, cli, deployment, write_release

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
EXIT_INVALID, EXIT_RUNNING = 2, 6


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def started(temporal: Client, app: str) -> bool:
    try:
        await temporal.get_workflow_handle(workflow_id(app, "test")).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def bundle_pushed(registry: str, app: str) -> bool:
    r = httpx.get(f"http://{registry}/v2/rollwright-bundles/{app}/tags/list", timeout=10)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


async def test_a_fleet_with_one_bad_release_or_a_duplicate_is_refused_whole(
        worker: WorkerProcess, temporal: Client, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str]) -> None:
    good = [uniq("fg") for _ in range(2)]
    paths = [write_release(tmp_path / a, app=a, namespace=namespace, registry=registry, image=False,
                           objects=[deployment(a, replicas=1)]) for a in good]
    # The bad release comes last and only fails the local checks (its spec loads): a start that pushed or started
    # releases one by one would already have started the good ones.
    bad = write_release(tmp_path / "bad", app=uniq("fb"), namespace=namespace, registry=registry, image=False,
                        objects=[deployment("bad", replicas=1)])
    (bad.parent / "manifests-v1.yaml").unlink()
    r = cli("rollout", "start", *[x for p in [*paths, bad] for x in ("-f", str(p))], env=cli_env)
    assert r.returncode == EXIT_INVALID, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and "manifests[0]" in r.stderr and "manifest path not found" in r.stderr
    assert "nothing was built, pushed or applied" in r.stderr and r.stdout == ""

    dup = write_release(tmp_path / "dup", app=good[0], namespace=namespace, registry=registry, image=False,
                        objects=[deployment(good[0], replicas=1)])
    r = cli("rollout", "start", "-f", str(paths[0]), "-f", str(paths[1]), "-f", str(dup), env=cli_env)
    assert r.returncode == EXIT_INVALID, (r.stdout, r.stderr)
    assert str(dup) in r.stderr and str(paths[0]) in r.stderr and ": app: " in r.stderr and r.stdout == "", r.stderr

    for a in good:
        assert not await started(temporal, a), f"{a} was started by a refused fleet"
        assert not bundle_pushed(registry, a), f"{a}'s bundle was pushed by a refused fleet"


async def test_a_fleet_starts_every_release_skips_a_held_lock_and_reports_each_outcome(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path, registry: str,
        cli_env: dict[str, str], apps: k8s.AppsV1Api) -> None:
    rc = RolloutClient(temporal, task_queue)
    held, ok, never = uniq("fh"), uniq("fo"), uniq("fn")
    # The holder never becomes ready and would wait 10 minutes: its lock is held while the fleet starts.
    holder = load_spec(write_release(tmp_path / "holder", app=held, namespace=namespace, registry=registry,
                                     image=False, objects=[deployment(held, replicas=1, behavior="not-ready")]))
    h = await rc.start(holder)  # the workflow ID is the lock: held from here
    fleet = [
        write_release(tmp_path / ok, app=ok, namespace=namespace, registry=registry, image=False,
                      objects=[deployment(ok, replicas=2)]),
        write_release(tmp_path / never, app=never, namespace=namespace, registry=registry, image=False,
                      objects=[deployment(never, replicas=1, behavior="not-ready", deadline=15)]),
        write_release(tmp_path / "again", app=held, namespace=namespace, registry=registry, image=False,
                      objects=[deployment(held, replicas=1)], version="v2"),
    ]
    try:
        r = cli("rollout", "start", "--wait", "-o", "json", *[x for p in fleet for x in ("-f", str(p))],
                env=cli_env, timeout=600)
    finally:
        await rc.abort(held, "test", "fleet test done")
    assert r.returncode == EXIT_RUNNING, (r.returncode, r.stdout, r.stderr)
    rows = {row["file"]: row for row in json.loads(r.stdout)}
    assert list(rows) == [str(p) for p in fleet]
    assert rows[str(fleet[0])]["outcome"] == Outcome.SUCCEEDED.value, rows
    assert rows[str(fleet[0])]["workflow_id"] == workflow_id(ok, "test")
    assert rows[str(fleet[1])]["outcome"] == Outcome.ROLLED_BACK.value, rows
    assert "ProgressDeadlineExceeded" in (rows[str(fleet[1])]["cause"] or ""), rows
    assert "already running" in rows[str(fleet[2])]["error"] and h.id in rows[str(fleet[2])]["error"], rows
    assert "outcome" not in rows[str(fleet[2])]

    live = apps.read_namespaced_deployment(ok, namespace)
    assert live.status is not None and live.status.ready_replicas == 2, live.status
    assert (await rc.result(h)).outcome == Outcome.ABORTED
