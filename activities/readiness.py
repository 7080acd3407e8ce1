"""``wait_ready``: waits until the release's workloads meet kubectl's success predicate, or fails fast.

Called by ``RolloutWorkflow`` after the apply, and again after a rollback to wait for the restored revision; runs on
the worker's ``<task queue>-waits`` queue (orchestrator/worker.py). An ``async def`` activity over the worker's
shared watch cache (activities/watch_cache.py): it judges the namespace's cached objects with the pure rules of
``activities.readiness_rules`` whenever the cache says the namespace changed, and otherwise sleeps on an asyncio
event — no thread and no executor slot for the wait's duration, no watch of its own. Heartbeats what it sees; on a
retry after a worker crash it resumes from the heartbeat details, keeping the original deadline. A cancel (operator
abort) arrives through the heartbeat as ``CancelledError`` at the next await.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.clients import Clients
from activities.errors import from_api
from activities.readiness_rules import Tracker
from activities.watch_cache import KINDS, Informer, WatchCache, WatchCaches
from contract.models import ProgressReport, WaitInput, WaitResult, WorkloadStatus

log = activity.logger


class WaitProgress(BaseModel):
    """Heartbeat details: enough to resume after a crash and to show progress in the UI."""

    deadline_at: float
    started_at: float
    workloads: list[WorkloadStatus] = []


# How often an idle wait wakes to heartbeat and check its deadline (changes wake it at once).
TICK_SECONDS = 2.0


class ReadinessActivities:
    def __init__(self, clients: Clients, caches: WatchCaches | None = None) -> None:
        self.c = clients
        self.caches = caches or WatchCaches(clients.kube)

    @activity.defn(name="wait_ready")
    async def wait_ready(self, inp: WaitInput) -> WaitResult:
        info = activity.info()
        now = time.time()
        progress = WaitProgress(deadline_at=now + inp.deadline_seconds, started_at=now)
        if info.heartbeat_details:
            # Heartbeat details arrive as plain dicts: re-validate. Keep the first attempt's deadline.
            progress = WaitProgress.model_validate(info.heartbeat_details[0])
            log.info("resuming readiness wait from heartbeat (attempt %d, %d s left)", info.attempt,
                     int(progress.deadline_at - now))
        began = time.monotonic()
        cache = self.caches(inp.kube_context)
        kinds = _kinds(inp)
        changed = cache.subscribe(inp.namespace)
        informers = cache.acquire(kinds, inp.namespace)
        try:
            informers = await self._synced(cache, informers, kinds, inp, progress.deadline_at)
            floor = await asyncio.get_running_loop().run_in_executor(None, self._generations, inp)
            tracker = Tracker(targets=inp.workloads, since=progress.started_at)
            while True:
                changed.clear()
                self._fill(tracker, informers, inp.namespace, floor)
                statuses, done, failure = tracker.evaluate()
                progress.workloads = statuses
                activity.heartbeat(progress.model_dump())  # throttled by the SDK; where a cancel is delivered
                if failure:
                    self.c.flush_progress(ProgressReport(workloads=statuses))
                    raise ApplicationError(failure, type="WorkloadFailed", non_retryable=True)
                if done:
                    # The result carries the end state to the workflow: no extra signal (each one is a history
                    # event and usually one more workflow task, issue 13).
                    self.c.forget_progress()
                    return WaitResult(workloads=statuses, seconds=round(time.time() - progress.started_at, 3))
                if time.monotonic() - began >= TICK_SECONDS:
                    # Live progress only for a wait that lasts: most healthy waits end within a tick, and their
                    # result says the same thing.
                    self.c.report_progress(ProgressReport(workloads=statuses))
                left = progress.deadline_at - time.time()
                if left <= 0:
                    pending = "; ".join(f"{s.kind.lower()} {s.name}: {s.message}" for s in statuses if not s.ready_now)
                    raise ApplicationError(f"not ready within {inp.deadline_seconds}s: {pending}",
                                           type="ProgressDeadline", non_retryable=True)
                # Wake on a change in the namespace, or every few seconds to heartbeat and check the deadline.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=min(TICK_SECONDS, left))
        finally:
            cache.unsubscribe(inp.namespace, changed)
            cache.release(kinds, inp.namespace)

    async def _synced(self, cache: WatchCache, informers: list[Informer], kinds: set[str], inp: WaitInput,
                      deadline_at: float) -> list[Informer]:
        """Waits for the informers' first list; a 403 on a cluster-wide list switches the cache to namespaces,
        a 403 there is the wait's own error (non-retryable Forbidden)."""
        while not all(i.synced.is_set() for i in informers):
            errs = [i.error for i in informers if i.error is not None and i.error.status in (401, 403)]
            if errs:
                if cache.scope == "cluster":
                    cache.release(kinds, inp.namespace)
                    cache.fall_back_to_namespaces()
                    informers = cache.acquire(kinds, inp.namespace)
                    continue
                raise from_api(errs[0], f"watch {inp.namespace}")
            if time.time() > deadline_at:  # the apiserver never answered the list: same end as a stuck rollout
                raise ApplicationError(f"not ready within {inp.deadline_seconds}s: cannot list workloads "
                                       f"({informers[0].error or 'no answer'})", type="ProgressDeadline",
                                       non_retryable=True)
            activity.heartbeat()
            await asyncio.sleep(0.05)
        return informers

    def _generations(self, inp: WaitInput) -> dict[tuple[str, str], tuple[str, int]]:
        """(uid, generation) of each target as the apiserver has it now (right after the apply): the cache must
        have caught up to it before the wait judges, or it could judge the previous generation ready. One GET
        per workload per wait: bounded by the number of rollouts, not by time."""
        kube = self.c.kube(inp.kube_context)
        out = {}
        for w in inp.workloads:
            try:
                obj = kube.get(w)
            except ApiException as e:
                raise from_api(e, f"read {w.kind}/{w.name}") from None
            if obj is not None:
                out[(w.kind, w.name)] = (obj["metadata"]["uid"], int(obj["metadata"].get("generation", 0)))
        return out

    @staticmethod
    def _fill(tracker: Tracker, informers: list[Informer], namespace: str,
              floor: dict[tuple[str, str], tuple[str, int]]) -> None:
        tracker.workloads, tracker.replicasets, tracker.pods = {}, {}, {}
        for inf in informers:
            snap = inf.snapshot(namespace)
            if inf.kind == "Pod":
                tracker.pods = snap
            elif inf.kind == "ReplicaSet":
                tracker.replicasets = snap
            else:
                for name, obj in snap.items():
                    want = floor.get((inf.kind, name))
                    md = obj["metadata"]
                    if want and (md.get("uid") != want[0] or int(md.get("generation", 0)) < want[1]):
                        continue  # the cache still has an older object: "not found yet" until it catches up
                    tracker.workloads[(inf.kind, name)] = obj


def _kinds(inp: WaitInput) -> set[str]:
    kinds = {w.kind for w in inp.workloads} | {"Pod"}
    if "Deployment" in kinds:
        kinds.add("ReplicaSet")
    return kinds & set(KINDS)
