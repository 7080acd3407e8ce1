"""The I/O clients activities share: Kubernetes (per context), Docker, registry HTTP, and a Temporal client used
only to send live progress to the running workflow.

Built once by ``orchestrator.worker`` and injected into the activity classes (the samples-python pattern for
activities that need a client). Tests build one against the real local stack.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import docker
import httpx
from temporalio import activity
from temporalio.client import Client

from activities.kube import KubeFactory
from contract.models import ProgressReport
from releases import mirrors
from releases.bundle import tls_context

log = logging.getLogger(__name__)


class Clients:
    def __init__(self, *, kubeconfig: Path | None = None, temporal: Client | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.kube = KubeFactory(kubeconfig)
        self._docker: docker.DockerClient | None = None
        self._docker_lock = threading.Lock()
        self.temporal = temporal
        self.loop = loop
        self._last_report: dict[str, tuple[float, str]] = {}
        self._pending: set[Any] = set()  # in-flight progress signals (kept referenced until done)
        insecure = os.environ.get("ROLLWRIGHT_INSECURE_REGISTRIES", "")
        self.insecure_registries = {r.strip() for r in insecure.split(",") if r.strip()}

    @property
    def docker(self) -> docker.DockerClient:
        with self._docker_lock:
            if self._docker is None:
                self._docker = docker.from_env(timeout=600)
            return self._docker

    def registry_url(self, registry: str) -> str:
        """Where requests for ``registry`` go (its mirror, if mapped); the name stays the image's identity."""
        return mirrors.registry_url(registry, self.insecure_registries)

    def http(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(timeout=timeout, verify=tls_context())  # one TLS context per process, not per call

    def report_progress(self, report: ProgressReport, *, min_interval: float = 2.0) -> None:
        """Best effort and never blocking: signals the workflow when what an activity observes has changed, at most
        every ``min_interval`` seconds, so the ``status`` query and the UI's current details stay live without a
        history event per heartbeat. Fire-and-forget from both sync (thread) and async activities: a slow Temporal
        frontend must not hold the activity (issue 13: a 5 s blocking signal per report stalled the waits)."""
        if self.temporal is None or self.loop is None:
            return
        info = activity.info()
        key = f"{info.workflow_id}/{info.activity_id}"
        body = report.model_dump_json()
        last = self._last_report.get(key)
        if last and (last[1] == body or time.monotonic() - last[0] < min_interval):
            return
        self._last_report[key] = (time.monotonic(), body)
        handle = self.temporal.get_workflow_handle(info.workflow_id or "", run_id=info.workflow_run_id)
        coro = handle.signal("report_progress", report)
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            task: Any = self.loop.create_task(coro)
        else:
            task = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._pending.add(task)
        task.add_done_callback(self._signal_done)

    def _signal_done(self, task: Any) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:  # advisory: never fail the step because of it
            log.debug("progress signal failed: %s", task.exception())

    def forget_progress(self) -> None:
        """Drops the calling activity's rate-limit entry (the table must not grow with every wait)."""
        self._last_report.pop(f"{activity.info().workflow_id}/{activity.info().activity_id}", None)

    def flush_progress(self, report: ProgressReport) -> None:
        """Sends the final observation regardless of the rate limit (the workflow then has the end state); forgets
        the activity's rate-limit entry so the table does not grow with every wait."""
        self.report_progress(report, min_interval=0)
        self.forget_progress()
