"""Activities of a worker self-upgrade (``WorkerUpgradeWorkflow``): read and switch the Temporal Worker Deployment's
current version, wait for pollers and drainage, and delete a retired build's Kubernetes objects.

Registered by ``orchestrator.worker``. The SDK has no high-level API for Worker Deployments, so these are the raw
gRPC calls of the workflow service (``describe_worker_deployment``, ``describe_worker_deployment_version``,
``set_worker_deployment_current_version``, ``describe_task_queue``). Every activity is idempotent: describing is
read-only, setting a version that is already current is reported as unchanged, deleting what is gone is a no-op.
The waits are ``async`` (no thread held) and heartbeat every poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import TaskQueueType, WorkerDeploymentVersionStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.cancellation import sync_activity
from activities.clients import Clients
from activities.errors import from_api
from contract.upgrade import (
    BUILD_LABEL,
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
)

log = logging.getLogger(__name__)
# Reads of a Worker Deployment are rate-limited per deployment on the server ("too many requests issued to Worker
# Deployment"): poll gently, and treat that answer as "not yet" inside the waits.
POLL_SECONDS = 3.0
# A poller the server saw within this long is alive (workers long-poll for ~60 s and re-poll at once).
POLLER_FRESH_SECONDS = 90.0
_STATUS = {WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
           WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
           WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
           WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
           WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
           WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: "created"}


class _Busy(ApplicationError):
    """Rate-limited or briefly unavailable: retryable, and inside a wait just another poll."""


def _rpc_error(e: RPCError, what: str) -> Exception:
    """Invalid arguments and missing permissions cannot be fixed by a retry; anything else (unavailable, a
    conflicting concurrent change, a timeout) can."""
    msg = f"{what}: {e.message} ({e.status.name})"
    if e.status in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return _Busy(msg, type="VersioningUnavailable")
    if e.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED,
                    RPCStatusCode.UNIMPLEMENTED):
        return ApplicationError(msg, type="VersioningRefused", non_retryable=True)
    return ApplicationError(msg, type="VersioningUnavailable")


class VersioningActivities:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    @property
    def _temporal(self) -> Client:
        if self._clients.temporal is None:
            raise ApplicationError("no Temporal client in this worker", type="VersioningRefused", non_retryable=True)
        return self._clients.temporal

    async def _describe_version(self, deployment: str, build_id: str) -> tuple[str, list[str]] | None:
        """(status, task queues) of one version; None if the server does not know it."""
        c = self._temporal
        try:
            r = await c.workflow_service.describe_worker_deployment_version(DescribeWorkerDeploymentVersionRequest(
                namespace=c.namespace,
                deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id)))
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise _rpc_error(e, f"describe version {deployment}/{build_id}") from None
        info = r.worker_deployment_version_info
        return _STATUS.get(info.status, "unspecified"), sorted({q.name for q in info.task_queue_infos})

    @activity.defn
    async def describe_worker_deployment(self, inp: DescribeInput) -> DeploymentState:
        c = self._temporal
        try:
            r = await c.workflow_service.describe_worker_deployment(DescribeWorkerDeploymentRequest(
                namespace=c.namespace, deployment_name=inp.deployment_name))
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return DeploymentState(deployment_name=inp.deployment_name, exists=False)
            raise _rpc_error(e, f"describe worker deployment {inp.deployment_name}") from None
        info = r.worker_deployment_info
        current = info.routing_config.current_deployment_version.build_id or None
        return DeploymentState(deployment_name=inp.deployment_name, exists=True, current_build_id=current,
                               build_ids=sorted(v.deployment_version.build_id for v in info.version_summaries))

    @activity.defn
    async def wait_version_pollers(self, inp: PollersInput) -> PollersResult:
        """Returns once the version is registered on every task queue and a poller of that build polled each
        queue recently; raises (non-retryable) at the deadline. Resumes the original deadline after a retry."""
        info = activity.info()
        started = info.heartbeat_details[0] if info.heartbeat_details else time.time()
        deadline = float(started) + inp.timeout_seconds
        c = self._temporal
        missing: list[str] = list(inp.task_queues)
        while True:
            try:
                described = await self._describe_version(inp.deployment_name, inp.build_id)
                registered = described[1] if described else []
                missing = [q for q in inp.task_queues
                           if q not in registered or not await self._has_fresh_poller(c, q, inp.build_id)]
            except _Busy as e:
                activity.heartbeat(started, str(e))
                await asyncio.sleep(POLL_SECONDS)
                continue
            if not missing:
                return PollersResult(task_queues=inp.task_queues, waited_seconds=round(time.time() - started, 1))
            if time.time() > deadline:
                raise ApplicationError(
                    f"worker build {inp.build_id} of {inp.deployment_name} is not polling {', '.join(missing)} after "
                    f"{inp.timeout_seconds}s: are its pods running and connected to Temporal?",
                    type="VersionNotPolling", non_retryable=True)
            activity.heartbeat(started, f"waiting for pollers of {inp.build_id} on {', '.join(missing)}")
            await asyncio.sleep(POLL_SECONDS)

    async def _has_fresh_poller(self, c: Client, queue: str, build_id: str) -> bool:
        try:
            # Activity pollers: every queue of a worker has them (the waits queue has no workflow pollers).
            r = await c.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=c.namespace, task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
        except RPCError as e:
            raise _rpc_error(e, f"describe task queue {queue}") from None
        now = time.time()
        return any(p.deployment_options.build_id == build_id
                   and now - p.last_access_time.ToSeconds() < POLLER_FRESH_SECONDS for p in r.pollers)

    @activity.defn
    async def set_current_version(self, inp: SetCurrentInput) -> SetCurrentResult:
        c = self._temporal
        before = await self.describe_worker_deployment(DescribeInput(deployment_name=inp.deployment_name))
        if before.current_build_id == inp.build_id:  # a retry after a switch whose answer was lost
            return SetCurrentResult(previous_build_id=None, changed=False)
        try:
            r = await c.workflow_service.set_worker_deployment_current_version(SetWorkerDeploymentCurrentVersionRequest(
                namespace=c.namespace, deployment_name=inp.deployment_name, build_id=inp.build_id,
                identity=inp.identity))
        except RPCError as e:
            raise _rpc_error(e, f"set current version of {inp.deployment_name} to {inp.build_id}") from None
        prev = r.previous_deployment_version.build_id or None
        log.info("worker deployment %s: current version %s -> %s", inp.deployment_name, prev, inp.build_id)
        return SetCurrentResult(previous_build_id=prev, changed=True)

    @activity.defn
    async def wait_version_drained(self, inp: DrainInput) -> DrainResult:
        """Returns when no open pinned workflow uses the version any more (``drained``), or at once when it was
        never current (``inactive``: nothing can be pinned to it). Resumes the original deadline after a retry."""
        info = activity.info()
        started = info.heartbeat_details[0] if info.heartbeat_details else time.time()
        deadline = float(started) + inp.timeout_seconds
        while True:
            try:
                described = await self._describe_version(inp.deployment_name, inp.build_id)
            except _Busy as e:
                activity.heartbeat(started, str(e))
                await asyncio.sleep(POLL_SECONDS)
                continue
            status = described[0] if described else "deleted"
            if status in ("drained", "inactive", "created", "deleted"):
                return DrainResult(status=status, waited_seconds=round(time.time() - float(started), 1))
            if status in ("current", "ramping") and time.time() - float(started) > 60:
                # Someone routed new workflows back to it: retiring it now would strand them. (The first minute
                # is grace for a describe that still answers from before the switch.)
                raise ApplicationError(f"version {inp.deployment_name}/{inp.build_id} is {status} again; not retiring it",
                                       type="VersionActiveAgain", non_retryable=True)
            if time.time() > deadline:
                raise ApplicationError(f"version {inp.deployment_name}/{inp.build_id} still {status} after "
                                       f"{inp.timeout_seconds}s (pinned rollouts still open on it)",
                                       type="VersionNotDrained", non_retryable=True)
            activity.heartbeat(started, f"{inp.build_id}: {status}")
            await asyncio.sleep(POLL_SECONDS)

    @sync_activity("retire_worker_build")
    def retire_worker_build(self, inp: RetireInput) -> RetireResult:
        """Deletes the build's Deployments (labelled ``rollwright.io/worker-build``) in the worker's namespace and
        the HorizontalPodAutoscaler of the same name that ``rollwright worker upgrade`` rendered with each (read by
        name and checked for the label: the worker's role may get, not list, HPAs). Pods stop with their normal
        graceful shutdown."""
        kube = self._clients.kube(inp.kube_context)
        deployments = f"/apis/apps/v1/namespaces/{inp.namespace}/deployments"
        hpas = f"/apis/autoscaling/v2/namespaces/{inp.namespace}/horizontalpodautoscalers"
        deleted: list[str] = []

        def delete(path: str, what: str) -> None:
            try:
                kube.request("DELETE", path, body={"propagationPolicy": "Background"})
                deleted.append(what)
            except ApiException as e:
                if e.status != 404:  # gone meanwhile: fine
                    raise

        try:
            items = kube.request("GET", deployments, query=[("labelSelector", f"{BUILD_LABEL}={inp.build_id}")])
            for obj in items.get("items", []):
                name = obj["metadata"]["name"]
                try:
                    hpa = kube.request("GET", f"{hpas}/{name}")
                except ApiException as e:
                    if e.status != 404:
                        raise
                    hpa = {}
                if hpa.get("metadata", {}).get("labels", {}).get(BUILD_LABEL) == inp.build_id:
                    delete(f"{hpas}/{name}", f"HorizontalPodAutoscaler/{inp.namespace}/{name}")
                delete(f"{deployments}/{name}", f"Deployment/{inp.namespace}/{name}")
                activity.heartbeat(name)
        except ApiException as e:
            raise from_api(e, f"retire worker build {inp.build_id}") from None
        log.info("retired worker build %s at %s: %s", inp.build_id, datetime.now(UTC).isoformat(), deleted)
        return RetireResult(deleted=deleted)
