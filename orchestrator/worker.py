"""The worker process (``rollwright worker``): polls the task queue, runs RolloutWorkflow and its activities.

Started by the CLI, the container image's entrypoint and tests (as a separate process, so it can be killed).
On SIGTERM it stops polling, lets running activities finish within ``ROLLWRIGHT_SHUTDOWN_TIMEOUT_SECONDS``, then
exits; Kubernetes' terminationGracePeriodSeconds is set above that timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pydantic
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Worker, WorkerDeploymentConfig

import workflows.rollout as rollout_module
from activities.analysis import AnalysisActivities
from activities.build import BuildActivities
from activities.clients import Clients
from activities.health import HealthActivities
from activities.prepare import PrepareActivities
from activities.readiness import ReadinessActivities
from activities.release import ReleaseActivities
from activities.traffic import TrafficActivities
from activities.versioning import VersioningActivities
from orchestrator import __version__
from orchestrator.bytecode import ensure_workflow_bytecode
from orchestrator.config import Settings
from orchestrator.connect import connect, explain_connect_error
from orchestrator.health import HealthServer
from workflows.rollout import PinnedRolloutWorkflow, RolloutWorkflow
from workflows.upgrade import AutoUpgradeWorkerUpgradeWorkflow, WorkerUpgradeWorkflow

log = logging.getLogger(__name__)


def activities_for(clients: Clients, waits: ReadinessActivities | None = None,
                   prometheus_url: str | None = None) -> list[Callable[..., Any]]:
    b, p, r, h = (BuildActivities(clients), PrepareActivities(clients), ReleaseActivities(clients),
                  HealthActivities(clients))
    w = waits or ReadinessActivities(clients)
    v = VersioningActivities(clients)
    a = AnalysisActivities(prometheus_url)
    # wait_ready stays on the main queue too: runs started before the waits queue existed schedule it there.
    t = TrafficActivities(clients)
    return [p.prepare_release, b.build_image, b.push_image, r.snapshot_release, r.apply_release,
            r.rollback_release, r.finalize_revision, r.prune_release, w.wait_ready, h.run_health_checks,
            a.measure_metric, t.set_traffic, v.describe_worker_deployment, v.wait_version_pollers, v.set_current_version,
            v.wait_version_drained, v.retire_worker_build]


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning for both queues of the process, or None (unversioned). Every workflow type a versioned
    worker registers declares its behaviour (RolloutWorkflow PINNED, WorkerUpgradeWorkflow AUTO_UPGRADE), so there
    is no default: a new type without one fails the worker's start instead of silently auto-upgrading."""
    if not settings.versioned:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=settings.worker_deployment_name or "",
                                        build_id=settings.worker_build_id or ""),
        use_worker_versioning=True, default_versioning_behavior=VersioningBehavior.UNSPECIFIED)


def workflows_for(settings: Settings) -> list[type]:
    """The same workflow types either way; versioned workers register the classes that declare a versioning
    behaviour (the server refuses a behaviour from an unversioned worker)."""
    if settings.versioned:
        return [PinnedRolloutWorkflow, AutoUpgradeWorkerUpgradeWorkflow]
    return [RolloutWorkflow, WorkerUpgradeWorkflow]


def _identity(settings: Settings, suffix: str = "") -> str:
    build = f"+{settings.worker_build_id}" if settings.versioned else ""
    return f"rollwright-{__version__}{build}{suffix}@{socket.gethostname()}"


def waits_queue(task_queue: str) -> str:
    """The queue of readiness waits (workflows/rollout.py routes wait_ready there): waits never take the slots of
    the steps that change the cluster (apply, rollback, finalize), which stay on the main queue."""
    return f"{task_queue}-waits"


def build_wait_worker(client: Client, settings: Settings, waits: ReadinessActivities) -> Worker:
    return Worker(
        client, task_queue=waits_queue(settings.task_queue), activities=[waits.wait_ready],
        max_concurrent_activities=settings.max_concurrent_waits,
        max_concurrent_activity_task_polls=settings.wait_task_pollers,
        # An abort reaches a wait in a heartbeat's answer; the SDK would otherwise send one every 8 s (0.8 x the
        # 10 s heartbeat timeout). 2 s keeps an abort honoured within seconds for at most N/2 heartbeats/s.
        max_heartbeat_throttle_interval=timedelta(seconds=2), default_heartbeat_throttle_interval=timedelta(seconds=2),
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_timeout_seconds),
        deployment_config=deployment_config(settings), identity=_identity(settings, "-waits"))


def build_worker(client: Client, settings: Settings, clients: Clients, executor: ThreadPoolExecutor,
                 waits: ReadinessActivities | None = None) -> Worker:
    return Worker(
        client, task_queue=settings.task_queue, workflows=workflows_for(settings),
        activities=activities_for(clients, waits, settings.prometheus_url),
        deployment_config=deployment_config(settings),
        activity_executor=executor, max_concurrent_activities=settings.max_concurrent_activities,
        # The short cluster steps run as local activities (workflows/rollout.py) on the same executor: as many
        # slots as normal ones, and the executor sized for both (run_worker), so neither kind waits for a thread.
        max_concurrent_local_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_concurrent_workflow_task_polls=settings.workflow_task_pollers,
        max_concurrent_activity_task_polls=settings.activity_task_pollers,
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_timeout_seconds),
        # A spec that fails validation at decode time fails the workflow instead of retrying its task forever.
        workflow_failure_exception_types=[pydantic.ValidationError],
        identity=_identity(settings))


READY_WITHIN_SECONDS = 15.0


def readiness(state: dict[str, Any], now: float) -> tuple[bool, str]:
    """``/readyz``: polling, and Temporal answered a health check (every 3 s) within the last 15 s. One slow or
    failed check is not an outage: under a loaded CI run a single 3 s timeout made the worker unready for 3 s."""
    checked = float(state["checked"])  # 0.0: no check has succeeded yet
    fresh = checked > 0 and now - checked < READY_WITHIN_SECONDS
    ok = bool(state["running"] and fresh)
    if ok:
        return True, "polling" if state["connected"] else f"polling (last health check failed: {state['why']})"
    return False, str(state["why"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(settings: Settings) -> None:
    metrics_port = _free_port()
    # The core warns (TMPRL1104) for every workflow task over 5 s. Ours run the short steps as local activities, so
    # under a fleet's load a task of 5-8 s is normal (the core completes it at 8 s to heartbeat): 448 warnings in
    # one bench run. Past the 10 s task timeout it is worth a warning. Read once, when the first task completes.
    os.environ.setdefault("TEMPORAL_WORKFLOW_TASK_DURATION_WARN_SECONDS", "10")
    # The SDK's Rust core logs to stderr in its own format unless forwarded: forward it into Python logging so
    # every line of the worker's output stays one JSON object.
    core_logger = logging.getLogger("temporalio.core")
    if settings.core_log_level in ("TRACE", "DEBUG"):
        core_logger.setLevel(logging.DEBUG)
    core_logs = LoggingConfig(filter=TelemetryFilter(core_level=settings.core_log_level, other_level="ERROR"),
                              forwarding=LogForwardingConfig(logger=core_logger))
    runtime = Runtime(telemetry=TelemetryConfig(
        metrics=PrometheusConfig(bind_address=f"127.0.0.1:{metrics_port}"), global_tags={"service": "rollwright"},
        logging=core_logs))
    state = {"connected": False, "checked": 0.0, "running": False, "why": "starting"}

    def ready() -> tuple[bool, str]:
        return readiness(state, time.monotonic())

    health = HealthServer(settings.http_host, settings.http_port, ready=ready,
                          metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")
    await health.start()
    log.info("health endpoints on %s:%d", settings.http_host, health.port)

    client = None
    while client is None:  # the worker starts before Temporal is reachable in compose/k8s: keep trying
        try:
            client = await connect(settings, runtime=runtime)
        except Exception as e:
            reason, _ = explain_connect_error(str(e), settings)
            state["why"] = f"cannot connect to Temporal at {settings.temporal_address}: {reason}"
            log.warning("%s; retrying in 2s", state["why"])
            await asyncio.sleep(2)
    clients = Clients(kubeconfig=settings.kubeconfig, temporal=client, loop=asyncio.get_running_loop())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def probe() -> None:
        while True:
            try:
                await client.service_client.check_health(timeout=timedelta(seconds=3))
                state["connected"], state["checked"] = True, time.monotonic()
            except Exception as e:
                state["connected"], state["why"] = False, f"Temporal unreachable: {e}"
            await asyncio.sleep(3)

    prober = asyncio.create_task(probe())
    # Build the default cluster client now, not in the first activities: its first use imports the kubernetes API
    # modules and reads the kubeconfig under the factory's lock, which made the first fleet of prepares queue for
    # seconds behind each other (issue 13). Best effort: a broken kubeconfig fails the activities, as before.
    try:
        await asyncio.to_thread(clients.kube)
    except Exception as e:
        log.warning("cluster client not ready at start (activities will retry): %s", e)
    if (cache := ensure_workflow_bytecode(rollout_module.__file__ or "")) is not None:
        log.info("workflow bytecode cached in %s (no .pyc next to the source)", cache)
    with ThreadPoolExecutor(max_workers=2 * settings.max_concurrent_activities + 4) as executor:
        waits = ReadinessActivities(clients)  # one shared watch cache for both workers of this process
        worker = build_worker(client, settings, clients, executor, waits)
        wait_worker = build_wait_worker(client, settings, waits)
        run_task = asyncio.create_task(worker.run())
        wait_task = asyncio.create_task(wait_worker.run())
        state["running"] = True
        log.info("worker polling task queues %r and %r on %s (namespace %s), %s", settings.task_queue,
                 waits_queue(settings.task_queue), settings.temporal_address, settings.temporal_namespace,
                 f"worker deployment version {settings.worker_deployment_name}/{settings.worker_build_id}"
                 if settings.versioned else "unversioned")
        await asyncio.wait([run_task, wait_task, asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        state["running"], state["why"] = False, "shutting down"
        log.info("shutting down: waiting up to %ss for running activities", settings.shutdown_timeout_seconds)
        await asyncio.gather(worker.shutdown(), wait_worker.shutdown())
        for t in (run_task, wait_task):
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
    prober.cancel()
    await health.stop()
    log.info("worker stopped")
