"""The README's plain `temporal` CLI recipes, run exactly as documented against the real dev server.

The commands are parsed from the ```bash blocks of README.md's operators section, so the README and this test
cannot drift: every `temporal …` command there must be one this test knows and runs, and every recipe an operator
needs (start, pause, resume, abort, status, approve, list) must be there. Only the documented placeholders are
substituted: the workflow ID `rollout.shop.prod`, the app `shop` (in list queries and the summary), the task queue
`rollwright` (not polled during tests: the session's own queue is) and the start input (the test's release).
Everything else — the abort reason, the approver and comment, the output flags — is used as written, and the
effects are checked on the workflow itself: its status, its result, the cluster and visibility.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, RolloutStatus
from orchestrator.spec import Abort, Approval, ReleaseSpec
from tests.helpers import ROOT, WorkerProcess, deployment, temporal_cli, wait_until, write_release

pytestmark = pytest.mark.e2e
session_loop = pytest.mark.asyncio(loop_scope="session")

README = ROOT / "README.md"
WID, APP, ENV, QUEUE = "rollout.shop.prod", "shop", "prod", "rollwright"
REQUIRED = {"start", "signal:pause", "signal:resume", "signal:abort", "query:status", "update:approve", "list"}
KNOWN = REQUIRED | {"describe", "show", "metadata"}


# ---- parsing the README ----------------------------------------------------------------------------------------


def readme_commands() -> list[list[str]]:
    """Every `temporal …` command in the ```bash blocks between the operators markers, as argv lists."""
    text = README.read_text()
    start, end = text.index("<!-- section:operators -->"), text.index("<!-- /section:operators -->")
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip().startswith("temporal "):
                cmds.append(shlex.split(line, comments=True))
    return cmds


def opt(argv: list[str], *names: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a in names:
            return argv[i + 1]
    return None


def kind(argv: list[str]) -> str:
    sub = argv[1:3]
    if sub == ["workflow", "start"]:
        return "start"
    if sub in (["workflow", "signal"], ["workflow", "query"]):
        return f"{sub[1]}:{opt(argv, '--name')}"
    if argv[1:4] == ["workflow", "update", "execute"]:
        return f"update:{opt(argv, '--name')}"
    if sub in (["workflow", "list"], ["workflow", "describe"], ["workflow", "show"], ["workflow", "metadata"]):
        return sub[1]
    return " ".join(argv[:4])


def recipes() -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for argv in readme_commands():
        out.setdefault(kind(argv), []).append(argv)
    return out


def one(k: str) -> list[str]:
    cmds = recipes()[k]
    assert len(cmds) == 1, f"README has {len(cmds)} `{k}` recipes; the test expects exactly one"
    return cmds[0]


def substitute(argv: list[str], *, app: str, task_queue: str, release_json: str | None = None) -> list[str]:
    """The README command with the placeholders replaced; drops the leading `temporal` (temporal_cli adds it)."""
    out: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        val = argv[i + 1] if i + 1 < len(argv) else None
        if a in ("-w", "--workflow-id"):
            assert val == WID, f"README uses workflow ID {val!r}, expected the placeholder {WID!r}"
            out += [a, f"rollout.{app}.{ENV}"]
        elif a in ("-t", "--task-queue"):
            assert val == QUEUE, f"README uses task queue {val!r}, expected {QUEUE!r}"
            out += [a, task_queue]
        elif a in ("-i", "--input") and kind(argv) == "start":
            assert release_json is not None
            out += [a, release_json]
        elif a in ("-q", "--query", "--static-summary"):
            assert val is not None
            out += [a, re.sub(rf"\b{APP}\b", app, val)]
        else:
            out.append(a)
            i += 1
            continue
        i += 2
    return out


def run(argv: list[str], env: dict[str, str], **subs: Any) -> subprocess.CompletedProcess[str]:
    return temporal_cli(*substitute(argv, **subs), env=env)


def query_status(argv: list[str], env: dict[str, str], **subs: Any) -> RolloutStatus:
    r = run(argv, env, **subs)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["queryResult"][0]
    # The Go CLI re-encodes the payload and turns empty lists into null; the fields are the status model's.
    return RolloutStatus.model_validate({k: v for k, v in data.items() if v is not None})


def poll_status(argv: list[str], env: dict[str, str], pred: Any, what: str, timeout: float = 180,
                **subs: Any) -> RolloutStatus:
    return wait_until(lambda: (st := query_status(argv, env, **subs)) and pred(st) and st, timeout, interval=0.5,
                      what=what)


def release_input(spec_path: Path) -> str:
    """What an operator passes as --input: the release spec as JSON, base_dir absolute (as the loader sets it)."""
    return json.dumps(load_spec(spec_path).model_dump(mode="json", exclude_defaults=True))


def list_conditions(query: str) -> dict[str, str]:
    """The README's list queries are conjunctions of `Key='value'`; anything else needs this test extended."""
    parts = [p.strip() for p in re.split(r"\s+AND\s+", query)]
    conds = {}
    for p in parts:
        m = re.fullmatch(r"(\w+)\s*=\s*'([^']*)'", p)
        assert m, f"list query {query!r}: the test only evaluates Key='value' AND … queries"
        conds[m.group(1)] = m.group(2)
    return conds


# ---- the README itself ----------------------------------------------------------------------------------------


def test_readme_has_every_recipe_and_only_ones_this_test_runs() -> None:
    found = recipes()
    assert set(found) >= REQUIRED, f"missing recipes: {REQUIRED - set(found)}"
    assert set(found) <= KNOWN, f"README commands this test does not run: {set(found) - KNOWN}"
    start = one("start")
    assert opt(start, "--type") == "RolloutWorkflow" and opt(start, "--task-queue") == QUEUE
    assert "--fail-existing" in start
    spec = ReleaseSpec.model_validate_json(opt(start, "--input") or "")  # the documented input is a valid release
    assert (spec.app, spec.environment) == (APP, ENV) and opt(start, "--workflow-id") == WID
    assert Abort.model_validate_json(opt(one("signal:abort"), "--input") or "").reason
    appr = Approval.model_validate_json(opt(one("update:approve"), "--input") or "")
    assert appr.approver and appr.comment
    assert opt(one("query:status"), "-o", "--output") == "json"
    for argv in found["list"]:
        assert list_conditions(opt(argv, "-q", "--query") or "").get("RolloutApp") == APP
    for argv in readme_commands():
        if kind(argv) != "list":
            assert opt(argv, "-w", "--workflow-id") == WID, argv


# ---- running them ---------------------------------------------------------------------------------------------


@session_loop
async def test_start_pause_status_resume_abort_and_list_recipes(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        apps: k8s.AppsV1Api, registry: str, cli_env: dict[str, str]) -> None:
    app = f"rcp-{uuid.uuid4().hex[:6]}"
    wid = f"rollout.{app}.{ENV}"
    subs: dict[str, Any] = {"app": app, "task_queue": task_queue}
    rc = RolloutClient(temporal, task_queue)
    found = recipes()
    status_cmd = one("query:status")

    # Run 1: start, pause before it gets far, hold, resume, succeed. The bake gives a last pause point.
    v1 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, env=ENV, version="v1",
                       objects=[deployment(app, behavior="slow")],
                       health={"progress_deadline_seconds": 120, "bake_seconds": 1})
    r = run(one("start"), cli_env, release_json=release_input(v1), **subs)
    assert r.returncode == 0, r.stderr
    run1 = (await temporal.get_workflow_handle(wid).describe()).run_id
    r = run(one("signal:pause"), cli_env, **subs)
    assert r.returncode == 0, r.stderr
    st = poll_status(status_cmd, cli_env, lambda s: s.phase.value == "Paused", "phase Paused", **subs)
    assert st.paused and st.outcome is None and st.app == app
    desc = await temporal.get_workflow_handle(wid).describe()
    assert {p.key.name: p.value for p in desc.typed_search_attributes}["RolloutPhase"] == "Paused"
    assert await desc.static_summary() == re.sub(rf"\b{APP}\b", app, opt(one("start"), "--static-summary") or "")
    await asyncio.sleep(3)  # not a timing assertion: gives a paused rollout the chance to (wrongly) move on
    held = query_status(status_cmd, cli_env, **subs)
    assert held.phase.value == "Paused" and held.step == st.step

    # Approving when nothing waits for approval is refused, with the validator's message, and nothing recorded.
    r = run(one("update:approve"), cli_env, **subs)
    assert r.returncode != 0
    assert f"rollout {wid} is not waiting for approval (phase Paused" in r.stderr, r.stderr
    assert query_status(status_cmd, cli_env, **subs).approved_by is None

    r = run(one("signal:resume"), cli_env, **subs)
    assert r.returncode == 0, r.stderr
    poll_status(status_cmd, cli_env, lambda s: s.phase.value != "Paused" and not s.paused, "resumed", **subs)
    res1 = await rc.result(temporal.get_workflow_handle(wid, run_id=run1))
    assert res1.outcome == Outcome.SUCCEEDED, res1.cause
    assert apps.read_namespaced_deployment(app, namespace).spec.template.spec.containers[0].image == res1.image

    # The read-only recipes work on the finished run and show what the README says they show.
    if "metadata" in found:
        r = run(one("metadata"), cli_env, **subs)
        assert r.returncode == 0 and "Current Details" in r.stdout and "outcome: **Succeeded**" in r.stdout, r
    if "describe" in found:
        r = run(one("describe"), cli_env, **subs)
        assert r.returncode == 0 and "StaticSummary" in r.stdout and app in r.stdout, r
    if "show" in found:
        r = run(one("show"), cli_env, **subs)
        assert r.returncode == 0 and "WorkflowExecutionSignaled" in r.stdout, r

    # Run 2 (same workflow ID, a new run): a second start is refused while it runs; abort mid-wait rolls back.
    v2 = write_release(tmp_path, app=app, namespace=namespace, registry=registry, env=ENV, version="v2",
                       objects=[deployment(app, behavior="not-ready", deadline=600)],
                       health={"progress_deadline_seconds": 600})
    r = run(one("start"), cli_env, release_json=release_input(v2), **subs)
    assert r.returncode == 0, r.stderr
    run2 = (await temporal.get_workflow_handle(wid).describe()).run_id
    assert run2 != run1
    again = run(one("start"), cli_env, release_json=release_input(v2), **subs)
    assert again.returncode != 0 and "already running" in again.stderr.lower(), again
    poll_status(status_cmd, cli_env, lambda s: s.step.value == "WaitReady", "step WaitReady", **subs)
    r = run(one("signal:abort"), cli_env, **subs)
    assert r.returncode == 0, r.stderr
    reason = Abort.model_validate_json(opt(one("signal:abort"), "--input") or "").reason
    res2 = await rc.result(temporal.get_workflow_handle(wid, run_id=run2))
    assert res2.outcome == Outcome.ABORTED
    assert res2.cause is not None and reason in res2.cause
    assert apps.read_namespaced_deployment(app, namespace).spec.template.spec.containers[0].image == res1.image

    # Every list recipe finds exactly the runs its conditions select (our app has only these two runs).
    attrs = {}
    for run_id in (run1, run2):
        d = await temporal.get_workflow_handle(wid, run_id=run_id).describe()
        attrs[run_id] = {p.key.name: str(p.value) for p in d.typed_search_attributes}
    assert attrs[run1]["RolloutOutcome"] == "Succeeded" and attrs[run2]["RolloutOutcome"] == "Aborted"
    selected = 0
    for argv in found["list"]:
        conds = list_conditions(re.sub(rf"\b{APP}\b", app, opt(argv, "-q", "--query") or ""))
        expected = {rid for rid, a in attrs.items() if all(a.get(k) == v for k, v in conds.items())}
        as_json = argv if opt(argv, "-o", "--output") == "json" else [*argv, "-o", "json"]

        def listed(as_json: list[str] = as_json, expected: set[str] = expected) -> bool:
            r = run(as_json, cli_env, **subs)
            assert r.returncode == 0, r.stderr
            return {w["execution"]["runId"] for w in json.loads(r.stdout or "[]")} == expected

        wait_until(listed, 60, interval=1, what=f"{conds} to list {expected}")
        selected += len(expected)
        r = run(argv, cli_env, **subs)  # as written, too
        assert r.returncode == 0 and (wid in r.stdout) == bool(expected), r
    assert selected, "no list recipe selects any of the runs"


@session_loop
async def test_approve_recipe_passes_the_gate_and_is_refused_afterwards(
        worker: WorkerProcess, temporal: Client, task_queue: str, namespace: str, tmp_path: Path,
        registry: str, cli_env: dict[str, str]) -> None:
    app = f"rca-{uuid.uuid4().hex[:6]}"
    wid = f"rollout.{app}.{ENV}"
    subs: dict[str, Any] = {"app": app, "task_queue": task_queue}
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, env=ENV,
                      objects=[deployment(app)], extra={"approval": {"required": True}})
    r = run(one("start"), cli_env, release_json=release_input(p), **subs)
    assert r.returncode == 0, r.stderr
    st = poll_status(one("query:status"), cli_env, lambda s: s.awaiting_approval, "awaiting approval", **subs)
    assert st.phase.value == "AwaitingApproval" and st.revision is None  # nothing applied before the approval
    approval = Approval.model_validate_json(opt(one("update:approve"), "--input") or "")
    r = run(one("update:approve"), cli_env, **subs)
    assert r.returncode == 0, r.stderr
    assert f"approved by {approval.approver}" in r.stdout
    res = await RolloutClient(temporal, task_queue).result(temporal.get_workflow_handle(wid))
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert (res.approved_by, res.approval_comment) == (approval.approver, approval.comment)
    # Nothing waits any more: the same command now fails with a non-zero exit code and says why.
    r = run(one("update:approve"), cli_env, **subs)
    assert r.returncode != 0
    assert "workflow execution already completed" in r.stderr, r.stderr
