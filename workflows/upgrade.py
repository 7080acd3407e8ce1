"""``WorkerUpgradeWorkflow``: Rollwright rolls out its own next worker build under Worker Versioning (rainbow).

Registered by ``orchestrator.worker``; started by ``rollwright worker upgrade`` (``orchestrator.upgrade``). Steps:

1. read the Worker Deployment's current version (A, or none while unversioned workers serve);
2. roll out build B's release — its own Deployment ``<worker>-<B>`` next to A's — as a normal ``RolloutWorkflow``
   child (build, push, apply, wait ready, bake; rolled back by the child itself on failure);
3. wait until B's workers poll every task queue, then make B the current version: new rollouts go to B, rollouts
   already running stay on A (``RolloutWorkflow`` is PINNED);
4. wait until A is ``drained`` (its last pinned rollout closed), then delete A's Deployment.

On versioned workers this workflow is AUTO_UPGRADE, on purpose: it starts on A and its next task after the switch runs on B, so it never
keeps A from draining, and B's worker retires A (A never deletes itself). Its code therefore runs across builds:
changes to it go behind ``workflow.patched()`` like RolloutWorkflow's.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from contract import WORKFLOW_TYPE, workflow_id
    from contract.models import Outcome, RolloutResult
    from contract.upgrade import (
        DeploymentState,
        DescribeInput,
        DrainInput,
        DrainResult,
        PollersInput,
        PollersResult,
        RetireInput,
        RetireResult,
        SetCurrentInput,
        SetCurrentResult,
        WorkerUpgradeInput,
        WorkerUpgradeResult,
    )

NON_RETRYABLE = ["VersioningRefused", "VersionNotPolling", "VersionNotDrained", "VersionActiveAgain",
                 "InvalidManifest", "Forbidden"]
QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=20), maximum_attempts=10, non_retryable_error_types=NON_RETRYABLE)
# Waits resume their deadline from the heartbeat, so a retry (worker restart, B's worker taking over) costs nothing.
WAITS = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30), maximum_attempts=50, non_retryable_error_types=NON_RETRYABLE)
HEARTBEAT = timedelta(seconds=20)


@workflow.defn(name="WorkerUpgradeWorkflow")
class WorkerUpgradeWorkflow:
    """As unversioned workers register it (no versioning behaviour: the server refuses one from them). Versioned
    workers register ``AutoUpgradeWorkerUpgradeWorkflow``."""

    def __init__(self) -> None:
        self._phase = "starting"

    @workflow.query(description="Current phase of the upgrade")
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, inp: WorkerUpgradeInput) -> WorkerUpgradeResult:
        started = workflow.now()
        self._phase = "describe"
        before = await workflow.execute_activity(
            "describe_worker_deployment", DescribeInput(deployment_name=inp.deployment_name),
            result_type=DeploymentState,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK, summary="describe worker deployment")
        if before.current_build_id == inp.build_id:
            raise ApplicationError(f"build {inp.build_id} is already the current version of {inp.deployment_name}",
                                   type="AlreadyCurrent", non_retryable=True)

        self._phase = f"rollout of build {inp.build_id}"
        rollout = await self._rollout(inp)

        self._phase = f"waiting for pollers of {inp.build_id}"
        await workflow.execute_activity(
            "wait_version_pollers",
            PollersInput(deployment_name=inp.deployment_name, build_id=inp.build_id, task_queues=inp.task_queues,
                         timeout_seconds=inp.pollers_timeout_seconds), result_type=PollersResult,
            start_to_close_timeout=timedelta(seconds=inp.pollers_timeout_seconds + 60), heartbeat_timeout=HEARTBEAT,
            retry_policy=WAITS, summary=f"wait for {inp.build_id} to poll {', '.join(inp.task_queues)}")

        self._phase = f"switching current version to {inp.build_id}"
        switched = await workflow.execute_activity(
            "set_current_version",
            SetCurrentInput(deployment_name=inp.deployment_name, build_id=inp.build_id,
                            identity=f"rollwright {workflow.info().workflow_id}"), result_type=SetCurrentResult,
            start_to_close_timeout=timedelta(seconds=60), retry_policy=QUICK,
            summary=f"set current version {inp.deployment_name}/{inp.build_id}")
        switched_at = workflow.now()
        # The server's answer names what was current at the switch; the describe above covers a retried switch.
        previous = switched.previous_build_id if switched.changed else before.current_build_id
        result = WorkerUpgradeResult(deployment_name=inp.deployment_name, build_id=inp.build_id,
                                     previous_build_id=previous, rollout=rollout, started_at=started,
                                     switched_at=switched_at, finished_at=switched_at)
        if previous is None:  # unversioned workers served before: nothing is pinned to a version to drain
            self._phase = "done"
            return result.model_copy(update={"finished_at": workflow.now()})

        self._phase = f"waiting for {previous} to drain"
        drained = await workflow.execute_activity(
            "wait_version_drained",
            DrainInput(deployment_name=inp.deployment_name, build_id=previous, timeout_seconds=inp.drain_timeout_seconds),
            result_type=DrainResult,
            start_to_close_timeout=timedelta(seconds=inp.drain_timeout_seconds + 60), heartbeat_timeout=HEARTBEAT,
            retry_policy=WAITS, summary=f"wait until {inp.deployment_name}/{previous} is drained")
        deleted: list[str] = []
        if inp.retire_previous:
            self._phase = f"retiring {previous}"
            retired = await workflow.execute_activity(
                "retire_worker_build",
                RetireInput(namespace=inp.release.namespace, kube_context=inp.release.kube_context, build_id=previous),
                result_type=RetireResult,
                start_to_close_timeout=timedelta(minutes=2), heartbeat_timeout=timedelta(seconds=60),
                retry_policy=QUICK, summary=f"delete the Deployment of build {previous}")
            deleted = retired.deleted
        self._phase = "done"
        return result.model_copy(update={"drained": drained.status, "deleted": deleted,
                                         "finished_at": workflow.now()})

    async def _rollout(self, inp: WorkerUpgradeInput) -> RolloutResult:
        """The worker's release, as any other rollout (same ID and lock). Its first task runs on the version current
        now, and it stays PINNED there even after the switch."""
        spec = inp.release
        try:
            return await workflow.execute_child_workflow(
                WORKFLOW_TYPE, spec, id=workflow_id(spec.app, spec.environment), task_queue=workflow.info().task_queue,
                result_type=RolloutResult, parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                static_summary=f"worker build {inp.build_id} of {inp.deployment_name}")
        except ChildWorkflowError as e:
            cause = e.cause
            detail = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
            res: RolloutResult | None = None
            if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
                res = RolloutResult.model_validate(cause.details[0])
            outcome = res.outcome.value if res else Outcome.FAILED.value
            raise ApplicationError(f"the rollout of worker build {inp.build_id} did not succeed ({outcome}); the "
                                   f"current version is unchanged: {detail}", res.model_dump(mode="json") if res else None,
                                   type="WorkerRolloutFailed", non_retryable=True) from None


@workflow.defn(name="WorkerUpgradeWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradeWorkerUpgradeWorkflow(WorkerUpgradeWorkflow):
    """``WorkerUpgradeWorkflow`` on versioned workers: AUTO_UPGRADE, so after the switch it continues on the new
    build and never keeps the old one from draining."""

    @workflow.run
    async def run(self, inp: WorkerUpgradeInput) -> WorkerUpgradeResult:
        return await super().run(inp)
