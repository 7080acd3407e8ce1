"""``RolloutWorkflow``: one release of one app to one environment, as a durable, deterministic workflow.

Registered by ``orchestrator.worker``; started by ``orchestrator.client`` (CLI, Python) or plain
``temporal workflow start --type RolloutWorkflow``. All I/O happens in activities, called by name so this module
never imports kubernetes or docker. The flow reads like Argo's ``rolloutCanary()``: validate → (approve) → build →
push → snapshot → apply → wait ready → bake → finalize; any failure after the snapshot rolls back.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from contract.models import (
        ApplyInput,
        BuildInput,
        BuildResult,
        CarryOver,
        FinalizeInput,
        HealthInput,
        HealthResult,
        ObjectRef,
        Outcome,
        Phase,
        PrepareInput,
        ProgressReport,
        PruneInput,
        PruneResult,
        PushInput,
        PushResult,
        ReleasePlan,
        RevisionRef,
        RevisionStatus,
        RollbackInput,
        RollbackResult,
        RolloutResult,
        RolloutStatus,
        SnapshotInput,
        Step,
        WaitInput,
        WaitResult,
    )
    from contract.spec import Abort, Approval, Promotion, ReleaseSpec
    from contract.strategy import StrategyKind
    from workflows.details import render_details
    from workflows.progressive import PATCH_PROGRESSIVE, AnalysisFailed, Progressive, target_of

SA_APP = SearchAttributeKey.for_keyword("RolloutApp")
SA_ENV = SearchAttributeKey.for_keyword("RolloutEnvironment")
SA_PHASE = SearchAttributeKey.for_keyword("RolloutPhase")
SA_OUTCOME = SearchAttributeKey.for_keyword("RolloutOutcome")
SA_IMAGE = SearchAttributeKey.for_keyword("RolloutImage")
SA_REVISION = SearchAttributeKey.for_int("RolloutRevision")

# Errors that retrying cannot fix. Activities raise them as ApplicationError(type=...); listing them here too keeps
# the policy explicit even if an activity forgets non_retryable=True.
NON_RETRYABLE = ["InvalidRelease", "InvalidManifest", "Forbidden", "RegistryUnreachable", "BuildFailed",
                 "WorkloadFailed", "ProgressDeadline", "HealthCheckFailed", "RevisionNotFound",
                 "RegistryAuthFailed"]
QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=20), maximum_attempts=5, non_retryable_error_types=NON_RETRYABLE)
PERSISTENT = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=30), maximum_attempts=20,
                         non_retryable_error_types=NON_RETRYABLE)
WAIT_HEARTBEAT = timedelta(seconds=10)
# Errors that mean "the input is wrong" (CLI exit 2), as opposed to a cluster or registry that failed.
INVALID_INPUT = frozenset({"InvalidRelease", "InvalidManifest"})

# Behaviour changes, each behind workflow.patched() so histories recorded before them still replay
# (tests/test_replay.py). Never rename one; retire with workflow.deprecate_patch() once no old run is in flight.
PATCH_CANCEL_STOPS_STEP = "cancel-stops-running-step-v1"  # finding 5: cancel waits for the running activity
PATCH_SHIELD_ROLLBACK = "rollback-not-interruptible-v1"  # finding 5: no cancel interrupts a rollback
PATCH_TRUE_OUTCOMES = "true-outcomes-v1"  # finding 6: outcomes that say what happened
PATCH_BAKE_HEARTBEAT = "bake-heartbeat-covers-probes-v1"  # finding 7
PATCH_PRUNE = "prune-v1"  # finding 9: delete what the previous release had and this one dropped
PATCH_WAITS_QUEUE = "waits-own-queue-v1"  # issue 13: wait_ready on <task queue>-waits, never ahead of applies
PATCH_SKIP_EMPTY_PRUNE = "skip-empty-prune-v1"  # issue 13: no prune step when the snapshot found nothing to prune
PATCH_SHORT_HEARTBEAT = "short-steps-heartbeat-v1"  # issue 13: a lost attempt of a short step retries in seconds
# Heartbeat timeout of the short cluster steps (prepare, snapshot, apply, prune, finalize, rollback): they send a
# keep-alive heartbeat every few seconds while running (activities/keepalive.py), so an attempt whose task never
# reached a worker is retried after this, not after its start-to-close timeout (minutes).
SHORT_STEP_HEARTBEAT = timedelta(seconds=20)
SHORT_STEPS = frozenset({"prepare_release", "snapshot_release", "apply_release", "prune_release",
                         "finalize_revision", "rollback_release"})
PATCH_LOCAL_SHORT_STEPS = "local-short-steps-v1"  # issue 13: the short steps run as local activities
# Since PATCH_LOCAL_SHORT_STEPS the short steps run as *local* activities (README "Short steps run inside the
# workflow task"): inside the workflow task, on the worker that runs the workflow, their results recorded as markers.
# A rolling rollout without a build is then 2 workflow tasks (prepare + snapshot + apply, then finalize after the
# wait) instead of 6, and no activity task of theirs can be lost between server and worker. Retries whose backoff
# is longer than this run after a durable timer instead of inside the workflow task (which then ends, so signals,
# queries and a cancel are handled meanwhile).
LOCAL_RETRY_THRESHOLD = timedelta(seconds=10)

T = TypeVar("T")


class _Aborted(Exception):
    def __init__(self, reason: str, *, by_operator: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.by_operator = reason, by_operator


class _StepFailed(Exception):
    def __init__(self, step: Step, cause: str, error_type: str | None = None) -> None:
        super().__init__(cause)
        self.step, self.cause, self.error_type = step, cause, error_type


# No versioning behaviour here: unversioned workers register this class; versioned ones PinnedRolloutWorkflow below.
@workflow.defn(name="RolloutWorkflow")
class RolloutWorkflow:
    @workflow.init
    def __init__(self, spec: ReleaseSpec, carry: CarryOver | None = None) -> None:
        spec, carry = _typed(spec, carry)
        now = workflow.now()
        self._spec = spec
        self._status = RolloutStatus(app=spec.app, environment=spec.environment, started_at=now, updated_at=now,
                                     step_started_at=now)
        self._paused = False
        self._abort: str | None = None
        self._approval: Approval | None = None
        self._awaiting_approval = False
        self._failed_step: Step | None = None
        self._error_type: str | None = None
        self._rolled_back_to: int | None = None
        self._pruned: list[str] = []
        self._warnings: list[str] = []
        self._cancels_absorbed = 0
        self._rollback_error = ""
        # Canary / blue-green (issue 11, workflows.progressive). Unused by rolling rollouts.
        self._progressive: Progressive | None = None
        self._promotion: Promotion | None = None
        self._awaiting_promotion = False
        self._interrupt: AnalysisFailed | None = None  # a background analysis failed: stop the running step
        if carry is not None:
            # A canary continued as new (bounded history): the previous run's status goes on.
            self._status = carry.status.model_copy(update={"updated_at": now})
            self._paused = carry.paused
            self._warnings = list(carry.warnings)

    # ---- messages -----------------------------------------------------------------------------------------------

    @workflow.signal(description="Hold before the next step")
    def pause(self) -> None:
        self._paused = True
        self._status.paused = True
        self._touch()

    @workflow.signal(description="Continue after a pause")
    def resume(self) -> None:
        self._paused = False
        self._status.paused = False
        self._touch()

    @workflow.signal(description='Abort and roll back; input {"reason": "..."}')
    def abort(self, req: Abort) -> None:
        if self._abort is None:
            self._abort = req.reason
            self._status.message = f"abort requested: {req.reason}"
            self._touch()

    @workflow.signal(name="report_progress", description="Internal: live workload and health progress from activities")
    def report_progress(self, report: ProgressReport) -> None:
        if report.workloads is not None:
            self._status.workloads = report.workloads
        if report.health is not None:
            self._status.health = report.health
        self._touch()

    @workflow.update(description='Approve a gated rollout; input {"approver": "...", "comment": "..."}')
    async def approve(self, req: Approval) -> str:
        self._approval = req
        self._status.approved_by, self._status.approval_comment = req.approver, req.comment
        self._status.awaiting_approval = False
        self._touch()
        return f"approved by {req.approver}"

    @approve.validator
    def _validate_approve(self, req: Approval) -> None:
        if not self._awaiting_approval or self._approval is not None:
            raise ValueError(f"rollout {workflow.info().workflow_id} is not waiting for approval "
                             f"(phase {self._status.phase.value}, step {self._status.step.value})")

    @workflow.update(description='Continue a paused canary / blue-green step or an inconclusive analysis; input '
                             '{"approver": "...", "full": false, "comment": "..."} (full: skip the remaining steps)')
    async def promote(self, req: Promotion) -> str:
        self._promotion = req
        self._touch()
        step = self._status.progressive.step if self._status.progressive else 0
        return f"promoted by {req.approver}" + (" (full)" if req.full else f" at step {step}")

    @promote.validator
    def _validate_promote(self, req: Promotion) -> None:
        if not self._awaiting_promotion or self._promotion is not None:
            p = self._status.progressive
            where = f", {p.strategy.value} step {p.step}/{p.steps} {p.step_name}" if p else ""
            raise ValueError(f"rollout {workflow.info().workflow_id} is not paused for a promotion "
                             f"(phase {self._status.phase.value}{where})")

    @workflow.query(description="Phase, step, message, per-workload replicas, health results, timestamps")
    def status(self) -> RolloutStatus:
        return self._status

    # ---- the rollout --------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, spec: ReleaseSpec, carry: CarryOver | None = None) -> RolloutResult:
        """``carry``: only when a canary continues as new (``workflows.progressive``); it resumes the steps."""
        spec, carry = _typed(spec, carry)
        self._upsert(phase=Phase.PROGRESSING, app=True)
        revision: RevisionRef | None = None
        changed_cluster = False
        try:
            if carry is None:
                plan = await self._step(Step.VALIDATE, "prepare_release", PrepareInput(spec=spec), ReleasePlan,
                                        timeout=timedelta(minutes=3), retry=QUICK,
                                        summary="validate + server dry run")
                if spec.approval.required:
                    await self._approval_gate()
                image = await self._build_and_push(spec, plan)
                revision = await self._step(
                    Step.SNAPSHOT, "snapshot_release",
                    SnapshotInput(spec=spec, plan=plan, image=image, run_id=workflow.info().run_id,
                                  workflow_id=workflow.info().workflow_id),
                    RevisionRef, timeout=timedelta(minutes=2), retry=QUICK, summary="snapshot live state")
                self._status.revision = revision.revision
                self._upsert(revision=revision.revision)
            else:
                plan, revision = carry.plan, carry.revision
                self._upsert(revision=revision.revision, image=self._status.image)
            changed_cluster = True
            # A redeploy of a recorded revision (`rollwright rollback`) is never stepped.
            if spec.strategy.kind != StrategyKind.ROLLING and spec.from_revision is None \
                    and workflow.patched(PATCH_PROGRESSIVE):
                # Canary / blue-green: the steps replace "apply + wait ready" (workflows.progressive).
                self._progressive = Progressive(self, spec, plan, revision, target_of(spec, plan), carry)
                try:
                    await self._progressive.run()
                except AnalysisFailed as e:
                    raise _StepFailed(Step.ANALYSIS, e.message, "AnalysisFailed") from None
            else:
                await self._step(Step.APPLY, "apply_release", ApplyInput(spec=spec, plan=plan, revision=revision),
                                 list[str], timeout=timedelta(minutes=5), retry=QUICK,
                                 summary=f"server-side apply {len(plan.objects)} objects")
                await self._wait_ready(spec, plan.workloads, spec.health.progress_deadline_seconds)
            if spec.health.bake_seconds or spec.health.http:
                heartbeat = WAIT_HEARTBEAT
                if workflow.patched(PATCH_BAKE_HEARTBEAT):
                    # Probes run one after another, each up to its own timeout: a heartbeat can only be expected
                    # after all of them answered (or timed out), so a slow endpoint fails the check, not the
                    # heartbeat.
                    heartbeat += timedelta(seconds=sum(c.timeout_seconds for c in spec.health.http))
                health = await self._step(
                    Step.BAKE, "run_health_checks", HealthInput(spec=spec), list[HealthResult],
                    timeout=timedelta(seconds=spec.health.bake_seconds + 300), retry=QUICK,
                    heartbeat=heartbeat, summary=f"bake {spec.health.bake_seconds:g}s, {len(spec.health.http)} checks")
                self._status.health = health
            # A snapshot that counted nothing to prune needs no prune step (revisions recorded before the count
            # existed say None and keep it).
            skip_prune = revision.prune_count == 0 and workflow.patched(PATCH_SKIP_EMPTY_PRUNE)
            if not skip_prune and workflow.patched(PATCH_PRUNE):
                pruned = await self._step(Step.PRUNE, "prune_release", PruneInput(spec=spec, revision=revision),
                                          PruneResult, timeout=timedelta(minutes=5), retry=QUICK,
                                          summary="delete objects the previous release had and this one dropped")
                self._pruned = pruned.pruned
            true_outcomes = workflow.patched(PATCH_TRUE_OUTCOMES)
            try:
                await self._step(Step.FINALIZE, "finalize_revision",
                                 FinalizeInput(spec=spec, revision=revision, status=RevisionStatus.DEPLOYED),
                                 type(None), timeout=timedelta(minutes=1), retry=PERSISTENT,
                                 summary="record revision as deployed", abortable=False)
            except _StepFailed as e:
                if not true_outcomes:
                    raise
                # The release is applied, ready and passed its bake: rolling it back because a bookkeeping
                # write failed would undo a good deployment. Report it, leave the record pending.
                self._warnings.append(f"revision {revision.revision} is live but its record could not be marked "
                                      f"deployed: {e.cause}")
            return self._finish(Outcome.SUCCEEDED, None, Phase.HEALTHY)
        except _Aborted as e:
            cause = f"aborted by operator: {e.reason}" if e.by_operator else f"aborted: {e.reason}"
            await self._stop_traffic(cause)
            if changed_cluster and revision is not None:
                ok, cause = await self._rollback_shielded(spec, revision, cause)
                if not ok and workflow.patched(PATCH_TRUE_OUTCOMES):
                    self._failed_step = Step.ROLLBACK
                    self._fail(Outcome.FAILED, cause, Phase.DEGRADED)
            self._fail(Outcome.ABORTED, cause, Phase.ABORTED)
        except _StepFailed as e:
            self._failed_step, self._error_type = e.step, e.error_type
            await self._stop_traffic(e.cause)
            if changed_cluster and revision is not None and spec.rollback.automatic:
                ok, cause = await self._rollback_shielded(spec, revision, e.cause)
                self._fail(Outcome.ROLLED_BACK if ok else Outcome.FAILED, cause, Phase.DEGRADED)
            if revision is not None:
                await self._finalize_quietly(spec, revision, RevisionStatus.FAILED, e.cause)
            self._fail(Outcome.FAILED, e.cause, Phase.DEGRADED)
        except asyncio.CancelledError:
            # `temporal workflow cancel`: treat as an abort, clean up, then let the cancellation stand.
            await self._stop_traffic("workflow cancelled")
            if changed_cluster and revision is not None:
                ok, cause = await self._rollback_shielded(spec, revision, "workflow cancelled")
                if not ok and workflow.patched(PATCH_TRUE_OUTCOMES):
                    # A cancelled rollout whose rollback failed is not "cancelled and clean": say so.
                    self._failed_step = Step.ROLLBACK
                    self._fail(Outcome.FAILED, cause, Phase.DEGRADED)
            raise

    async def _build_and_push(self, spec: ReleaseSpec, plan: ReleasePlan) -> str | None:
        if spec.image is None or spec.from_revision is not None or plan.image_tag is None:
            return None
        build = await self._step(Step.BUILD, "build_image", BuildInput(spec=spec, tag=plan.image_tag), BuildResult,
                                 timeout=timedelta(minutes=30), retry=QUICK, heartbeat=timedelta(seconds=60),
                                 summary=f"docker build {spec.image.repository}:{plan.image_tag}")
        push = await self._step(Step.PUSH, "push_image", PushInput(spec=spec, tag=plan.image_tag), PushResult,
                                timeout=timedelta(minutes=15), retry=QUICK, heartbeat=timedelta(seconds=60),
                                summary=f"docker push {build.image}")
        self._status.image = push.image
        self._upsert(image=push.image)
        return push.image

    async def _approval_gate(self) -> None:
        self._set(Step.APPROVAL, Phase.AWAITING_APPROVAL, "waiting for approval: rollwright rollout approve")
        self._awaiting_approval = self._status.awaiting_approval = True
        timeout = self._spec.approval.timeout_seconds
        try:
            await workflow.wait_condition(lambda: self._approval is not None or self._abort is not None,
                                          timeout=timedelta(seconds=timeout) if timeout else None,
                                          timeout_summary="approval timeout")
        except builtins.TimeoutError:
            raise _Aborted(f"approval not given within {timeout}s", by_operator=False) from None
        finally:
            self._awaiting_approval = self._status.awaiting_approval = False
        if self._abort is not None:
            raise _Aborted(self._abort)
        self._set(Step.APPROVAL, Phase.PROGRESSING, f"approved by {self._approval.approver if self._approval else '?'}")

    async def _wait_ready(self, spec: ReleaseSpec, workloads: list[ObjectRef], deadline: int, *,
                          step: Step = Step.WAIT_READY, abortable: bool = True) -> None:
        if not workloads:
            return
        # Same naming as orchestrator.worker.waits_queue (workflow code imports no worker module).
        queue = f"{workflow.info().task_queue}-waits" if workflow.patched(PATCH_WAITS_QUEUE) else None
        res = await self._step(step, "wait_ready",
                               WaitInput(namespace=spec.namespace, kube_context=spec.kube_context, workloads=workloads,
                                         deadline_seconds=deadline, workflow_id=workflow.info().workflow_id),
                               WaitResult, timeout=timedelta(seconds=deadline + 120), retry=PERSISTENT,
                               heartbeat=WAIT_HEARTBEAT, abortable=abortable, task_queue=queue,
                               summary=f"wait for {len(workloads)} workload(s) ready, deadline {deadline}s")
        self._status.workloads = res.workloads

    async def _stop_traffic(self, cause: str) -> None:
        """Canary / blue-green only: take the new version out of traffic (canary to 0 pods, activeService switched
        back) before the rollback, uncancellable. Failures are recorded; the rollback runs anyway."""
        if self._progressive is None:
            return
        try:
            await self._uncancellable(self._progressive.stop_traffic(cause))
        except _StepFailed as e:
            self._warnings.append(f"could not take the new version out of traffic: {e.cause}")

    async def _rollback_shielded(self, spec: ReleaseSpec, revision: RevisionRef, cause: str) -> tuple[bool, str]:
        """Runs the rollback so that no cancel interrupts it (a half-done rollback is the worst state to leave).
        Returns (succeeded, cause to report)."""
        if not workflow.patched(PATCH_SHIELD_ROLLBACK):
            ok = await self._rollback(spec, revision, cause)
            return ok, cause
        absorbed = self._cancels_absorbed
        ok = await self._uncancellable(self._rollback(spec, revision, cause))
        if self._progressive is not None:
            try:
                await self._uncancellable(self._progressive.after_rollback())
            except _StepFailed as e:
                self._warnings.append(f"after the rollback: {e.cause}")
        out = cause if ok else f"{cause}; rollback failed: {self._rollback_error}"
        if self._cancels_absorbed > absorbed:
            out += " (a cancel request arrived during the rollback and waited for it to finish)"
        return ok, out

    async def _uncancellable(self, aw: Awaitable[T]) -> T:
        """Awaits ``aw`` to completion even if the workflow is cancelled meanwhile: the cancel is remembered, not
        delivered to the activity. ``asyncio.shield`` keeps the inner task running; we keep waiting on it."""
        task = asyncio.ensure_future(aw)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done() and task.cancelled():
                    raise
                self._cancels_absorbed += 1

    async def _rollback(self, spec: ReleaseSpec, revision: RevisionRef, cause: str) -> bool:
        """Restores the snapshot; never abortable (an abort during rollback would leave a half-state)."""
        self._set(Step.ROLLBACK, Phase.ROLLING_BACK, f"rolling back: {cause}")
        self._rollback_error = ""
        try:
            res = await self._step(Step.ROLLBACK, "rollback_release", RollbackInput(spec=spec, revision=revision),
                                   RollbackResult, timeout=timedelta(minutes=5), retry=PERSISTENT, abortable=False,
                                   summary=f"restore revision {revision.previous_revision or 'none'} (snapshot)")
            await self._wait_ready(spec, res.workloads, spec.health.progress_deadline_seconds, step=Step.ROLLBACK,
                                   abortable=False)
            await self._finalize_quietly(spec, revision, RevisionStatus.ROLLED_BACK, cause)
            self._rolled_back_to = revision.previous_revision or 0
            return True
        except _StepFailed as e:
            self._rollback_error = e.cause
            self._status.message = f"rollback failed: {e.cause}"
            await self._finalize_quietly(spec, revision, RevisionStatus.FAILED, f"{cause}; rollback failed: {e.cause}")
            return False

    async def _finalize_quietly(self, spec: ReleaseSpec, revision: RevisionRef, status: RevisionStatus,
                                cause: str) -> None:
        try:
            await self._step(Step.FINALIZE, "finalize_revision",
                             FinalizeInput(spec=spec, revision=revision, status=status, cause=cause), type(None),
                             timeout=timedelta(minutes=1), retry=PERSISTENT, abortable=False,
                             summary=f"record revision as {status.value}")
        except _StepFailed:
            workflow.logger.warning("could not record revision %s as %s", revision.revision, status.value)
            self._warnings.append(f"revision {revision.revision} could not be recorded as {status.value}")

    # ---- plumbing -----------------------------------------------------------------------------------------------

    async def _step(self, step: Step, activity: str, arg: BaseModel, result_type: type[T], *, timeout: timedelta,
                    retry: RetryPolicy, summary: str, heartbeat: timedelta | None = None,
                    abortable: bool = True, task_queue: str | None = None) -> T:
        """Runs one activity as a step: honours pause before it and abort during it (cancelling the activity and
        waiting until it has stopped, so a rollback never races a still-running watcher)."""
        if abortable:
            await self._checkpoint()
        if self._status.phase not in (Phase.ROLLING_BACK,):
            self._set(step, Phase.PROGRESSING, summary)
        handle: workflow.ActivityHandle[T]
        local = activity in SHORT_STEPS and task_queue is None and workflow.patched(PATCH_LOCAL_SHORT_STEPS)
        if local:
            # A local activity: no heartbeat timeout (nothing heartbeats to the server) and no task queue (it runs
            # on this worker). A cancel reaches it directly; an abort or a workflow cancel that arrives while it
            # runs is seen when the workflow task ends or is heartbeated by the SDK (every 8 s of a long step).
            handle = workflow.start_local_activity(
                activity, arg, result_type=result_type, start_to_close_timeout=timeout, retry_policy=retry,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD, summary=summary,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        else:
            if heartbeat is None and activity in SHORT_STEPS and workflow.patched(PATCH_SHORT_HEARTBEAT):
                heartbeat = SHORT_STEP_HEARTBEAT
            handle = workflow.start_activity(
                activity, arg, result_type=result_type, start_to_close_timeout=timeout, heartbeat_timeout=heartbeat,
                retry_policy=retry, summary=summary, task_queue=task_queue,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        if abortable:
            try:
                await workflow.wait_condition(
                    lambda: handle.done() or self._abort is not None or self._interrupt is not None)
            except asyncio.CancelledError:
                # Workflow cancel: the activity is not awaited here, so it would keep running alongside the
                # rollback. Stop it and wait until it has stopped, then let the cancel go on.
                if workflow.patched(PATCH_CANCEL_STOPS_STEP):
                    await self._stop(handle)
                raise
            if not handle.done():
                await self._stop(handle)
                self._raise_interrupts()
                raise _Aborted(self._abort or "aborted")
        try:
            if not abortable and workflow.patched(PATCH_SHIELD_ROLLBACK):
                return await self._uncancellable(handle)
            return await handle
        except ActivityError as e:
            raise _StepFailed(step, _cause(activity, e), _error_type(e)) from None
        except ApplicationError as e:
            # A local activity's own failure arrives as the ApplicationError itself, not wrapped in an
            # ActivityError (SDK 1.35; its timeouts and cancels are wrapped). Same step failure either way.
            if not local:
                raise
            raise _StepFailed(step, e.message, e.type) from None

    async def _stop(self, handle: workflow.ActivityHandle[Any]) -> None:
        handle.cancel()
        try:
            await self._uncancellable(handle)
        except (ActivityError, ApplicationError, asyncio.CancelledError):  # a local activity's failure is bare
            pass

    def _raise_interrupts(self) -> None:
        if self._abort is not None:
            raise _Aborted(self._abort)
        if self._interrupt is not None:
            raise self._interrupt

    async def _checkpoint(self) -> None:
        self._raise_interrupts()
        if self._paused:
            before = self._status.phase
            self._set(self._status.step, Phase.PAUSED, "paused by operator: rollwright rollout resume to continue")
            self._upsert(phase=Phase.PAUSED)
            await workflow.wait_condition(lambda: not self._paused or self._abort is not None)
            if self._abort is not None:
                raise _Aborted(self._abort)
            self._set(self._status.step, before, "resumed")

    def _set(self, step: Step, phase: Phase, message: str) -> None:
        now = workflow.now()
        if step != self._status.step:
            self._status.step_started_at = now
        phase_changed = phase != self._status.phase
        self._status.step, self._status.phase, self._status.message = step, phase, message
        if phase_changed and phase != Phase.PAUSED:
            self._upsert(phase=phase)
        self._touch()

    def _touch(self) -> None:
        self._status.updated_at = workflow.now()
        workflow.set_current_details(render_details(self._spec, self._status))

    def _upsert(self, *, phase: Phase | None = None, app: bool = False, image: str | None = None,
                revision: int | None = None, outcome: Outcome | None = None) -> None:
        # One upsert per phase change, not per progress tick: each upsert is a history event.
        updates: list[Any] = []
        if app:
            updates += [SA_APP.value_set(self._spec.app), SA_ENV.value_set(self._spec.environment)]
        if phase is not None:
            updates.append(SA_PHASE.value_set(phase.value))
        if image is not None:
            updates.append(SA_IMAGE.value_set(image))
        if revision is not None:
            updates.append(SA_REVISION.value_set(revision))
        if outcome is not None:
            updates.append(SA_OUTCOME.value_set(outcome.value))
        if updates:
            workflow.upsert_search_attributes(updates)

    def _result(self, outcome: Outcome, cause: str | None) -> RolloutResult:
        s = self._status
        return RolloutResult(app=s.app, environment=s.environment, outcome=outcome, cause=cause, image=s.image,
                             failed_step=self._failed_step, error_type=self._error_type,
                             rolled_back_to=self._rolled_back_to if outcome != Outcome.SUCCEEDED else None,
                             pruned=self._pruned, warnings=self._warnings, approved_by=s.approved_by,
                             progressive=s.progressive,
                             approval_comment=s.approval_comment,
                             revision=s.revision, workloads=s.workloads, health=s.health, started_at=s.started_at,
                             finished_at=workflow.now())

    def _finish(self, outcome: Outcome, cause: str | None, phase: Phase) -> RolloutResult:
        self._status.outcome, self._status.cause = outcome, cause
        self._set(Step.DONE, phase, cause or outcome.value)
        self._upsert(outcome=outcome)
        labels = {"app": self._spec.app, "environment": self._spec.environment, "outcome": outcome.value}
        meter = workflow.metric_meter()
        meter.create_counter("rollwright_rollouts_finished", "rollouts by outcome").add(1, labels)
        meter.create_histogram_timedelta("rollwright_rollout_duration", "rollout wall time", unit="ms").record(
            workflow.now() - workflow.info().start_time, labels)
        return self._result(outcome, cause)

    def _fail(self, outcome: Outcome, cause: str, phase: Phase) -> NoReturn:
        """Ends the workflow as Failed in Temporal (red in the UI) with the typed result as the failure details."""
        result = self._finish(outcome, cause, phase)
        raise ApplicationError(f"{outcome.value}: {cause}", result.model_dump(mode="json"),
                               type=f"Rollout{outcome.value}", non_retryable=True)


def _typed(spec: Any, carry: Any) -> tuple[ReleaseSpec, CarryOver | None]:
    """The SDK decodes the arguments with their types only when every parameter got a payload: a normal start
    sends one (the spec), a continue-as-new two (spec, carry); with one, both arrive as plain JSON."""
    if not isinstance(spec, ReleaseSpec):
        spec = ReleaseSpec.model_validate(spec)
    if carry is not None and not isinstance(carry, CarryOver):
        carry = CarryOver.model_validate(carry)
    return spec, carry


def _error_type(e: ActivityError) -> str | None:
    return e.cause.type if isinstance(e.cause, ApplicationError) else None


def _cause(activity: str, e: ActivityError) -> str:
    c = e.cause
    if isinstance(c, ApplicationError):
        return c.message
    if isinstance(c, TimeoutError):
        return f"{activity} timed out ({c.type.name.lower().replace('_', '-') if c.type else 'timeout'})"
    if isinstance(c, CancelledError):
        return f"{activity} was cancelled"
    return f"{activity} failed: {c or e}"


@workflow.defn(name="RolloutWorkflow", versioning_behavior=VersioningBehavior.PINNED)
class PinnedRolloutWorkflow(RolloutWorkflow):
    """``RolloutWorkflow`` as a *versioned* worker registers it (orchestrator.worker): PINNED, so a rollout runs to
    its end on the worker build it started on, even after a newer build became current (README "Upgrading the
    worker itself"). Same name, same code. A separate class because the server refuses a workflow task completion
    that names a versioning behaviour from an unversioned worker ("versioning behavior cannot be specified without
    deployment options being set with versioned mode"), so the plain class declares none."""

    @workflow.run
    async def run(self, spec: ReleaseSpec, carry: CarryOver | None = None) -> RolloutResult:
        # The carry too: a pinned canary that continues as new must resume its steps, not start over.
        return await super().run(spec, carry)
