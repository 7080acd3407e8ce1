"""``wait_ready``: watches the release's workloads until kubectl's success predicate holds, or fails fast.

Called by ``RolloutWorkflow`` after the apply, and again after a rollback to wait for the restored revision.
Watches (not polls) the workloads, their ReplicaSets and pods; heartbeats what it sees; on a retry after a worker
crash it resumes from the heartbeat details, keeping the original deadline rather than starting a new one.
A cancel (operator abort) arrives through the heartbeat and stops the watches before the activity returns.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clients import Clients
from activities.errors import from_api
from activities.kube import Kube
from activities.readiness_rules import Tracker
from orchestrator.models import ProgressReport, WaitInput, WaitResult, WorkloadStatus

log = activity.logger


class WaitProgress(BaseModel):
    """Heartbeat details: enough to resume after a crash and to show progress in the UI."""

    deadline_at: float
    started_at: float
    workloads: list[WorkloadStatus] = []


class _Watcher(threading.Thread):
    """List-then-watch of one resource type in one namespace, feeding (kind, type, object) into a queue."""

    def __init__(self, kind: str, lister: Callable[..., Any], namespace: str, out: queue.Queue[Any]) -> None:
        super().__init__(daemon=True, name=f"watch-{kind}")
        self.kind, self.lister, self.namespace, self.out = kind, lister, namespace, out
        self.stopped = threading.Event()
        self._w: watch.Watch | None = None

    def run(self) -> None:
        rv = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    resp = self.lister(self.namespace, _preload_content=False, _request_timeout=30)
                    body = json.loads(resp.data)
                    for item in body.get("items", []):
                        item.setdefault("kind", self.kind)
                        self.out.put((self.kind, "ADDED", item))
                    rv = body["metadata"]["resourceVersion"]
                self._w = watch.Watch()
                # Short server-side timeouts bound how long a stop() waits for the thread.
                for ev in self._w.stream(self.lister, self.namespace, resource_version=rv, timeout_seconds=5,
                                         allow_watch_bookmarks=True):
                    if self.stopped.is_set():
                        break
                    obj = ev["raw_object"]
                    if ev["type"] == "BOOKMARK":
                        rv = obj["metadata"]["resourceVersion"]
                        continue
                    if ev["type"] == "ERROR":
                        rv = None  # 410 Gone: the resource version expired, list again
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    self.out.put((self.kind, ev["type"], obj))
            except ApiException as e:
                if e.status == 410:
                    rv = None
                    continue
                self.out.put(("__error__", str(e.status), from_api(e, f"watch {self.kind}")))
                self.stopped.wait(1)
            except Exception as e:  # connection reset etc.: retry the watch, the list catches us up
                log.debug("watch %s interrupted: %s", self.kind, e)
                rv = None
                self.stopped.wait(1)

    def stop(self) -> None:
        self.stopped.set()
        if self._w is not None:
            self._w.stop()


class ReadinessActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    @activity.defn(name="wait_ready")
    def wait_ready(self, inp: WaitInput) -> WaitResult:
        info = activity.info()
        now = time.time()
        progress = WaitProgress(deadline_at=now + inp.deadline_seconds, started_at=now)
        if info.heartbeat_details:
            # Heartbeat details arrive as plain dicts: re-validate. Keep the first attempt's deadline.
            progress = WaitProgress.model_validate(info.heartbeat_details[0])
            log.info("resuming readiness wait from heartbeat (attempt %d, %d s left)", info.attempt,
                     int(progress.deadline_at - now))
        kube = self.c.kube(inp.kube_context)
        tracker = Tracker(targets=inp.workloads, since=progress.started_at)
        events: queue.Queue[Any] = queue.Queue()
        watchers = [_Watcher(k, fn, inp.namespace, events) for k, fn in self._listers(kube, inp).items()]
        for w in watchers:
            w.start()
        try:
            return self._loop(inp, tracker, events, progress)
        finally:
            for w in watchers:
                w.stop()

    def _listers(self, kube: Kube, inp: WaitInput) -> dict[str, Callable[..., Any]]:
        kinds = {w.kind for w in inp.workloads}
        out: dict[str, Callable[..., Any]] = {"Pod": kube.core.list_namespaced_pod}
        if "Deployment" in kinds:
            out["Deployment"] = kube.apps.list_namespaced_deployment
            out["ReplicaSet"] = kube.apps.list_namespaced_replica_set
        if "StatefulSet" in kinds:
            out["StatefulSet"] = kube.apps.list_namespaced_stateful_set
        if "DaemonSet" in kinds:
            out["DaemonSet"] = kube.apps.list_namespaced_daemon_set
        return out

    def _loop(self, inp: WaitInput, tracker: Tracker, events: queue.Queue[Any], progress: WaitProgress) -> WaitResult:
        while True:
            try:
                item = events.get(timeout=1.0)
                while True:  # drain a burst before judging, so one evaluation covers many events
                    kind, typ, obj = item
                    if kind == "__error__":
                        raise obj
                    tracker.observe(kind, typ, obj)
                    item = events.get_nowait()
            except queue.Empty:
                pass
            statuses, done, failure = tracker.evaluate()
            progress.workloads = statuses
            activity.heartbeat(progress.model_dump())  # also where a cancel is delivered
            self.c.report_progress(ProgressReport(workloads=statuses))
            if failure:
                self.c.flush_progress(ProgressReport(workloads=statuses))
                raise ApplicationError(failure, type="WorkloadFailed", non_retryable=True)
            if done:
                self.c.flush_progress(ProgressReport(workloads=statuses))
                return WaitResult(workloads=statuses, seconds=round(time.time() - progress.started_at, 3))
            if time.time() > progress.deadline_at:
                pending = "; ".join(f"{s.kind.lower()} {s.name}: {s.message}" for s in statuses if not s.ready_now)
                raise ApplicationError(f"not ready within {inp.deadline_seconds}s: {pending}",
                                       type="ProgressDeadline", non_retryable=True)
