"""Cooperative cancellation of the sync steps (activities/cancellation.py), unit level with the SDK's
``ActivityEnvironment``: every sync activity the worker registers opts out of the SDK's injected thread exception,
and a cancel that arrives while a step is inside a log call stops the step at its next safe point, with the log
handler's lock free (the worker wedged on a leaked handler lock before, issue 13)."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading

import pytest
from temporalio import activity
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from activities import cancellation
from activities.clients import Clients
from orchestrator.worker import activities_for


def test_every_sync_activity_of_the_worker_takes_cancels_cooperatively() -> None:
    fns = activities_for(Clients())
    sync = [fn for fn in fns if not inspect.iscoroutinefunction(fn)]
    assert len(sync) >= 11, [activity._Definition.must_from_callable(f).name for f in sync]
    injected = [d.name for d in map(activity._Definition.must_from_callable, sync) if not d.no_thread_cancel_exception]
    assert injected == [], f"sync activities that would get CancelledError injected into their thread: {injected}"


class _HeldHandler(logging.Handler):
    """A handler whose emit blocks until released: the step is inside a log call, holding the handler's lock."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.go = threading.Event(), threading.Event()
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "held":
            self.inside.set()
            self.go.wait(10)
        self.records.append(record.getMessage())


@pytest.mark.parametrize("local", [False, True])
def test_a_cancel_during_a_log_call_stops_the_step_at_its_next_beat_and_leaves_the_lock_free(local: bool) -> None:
    handler = _HeldHandler()
    log = logging.getLogger("test.cancellation")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    env = ActivityEnvironment()
    if local:
        env.info = dataclasses.replace(env.info, is_local=True)
    reached: list[str] = []

    @cancellation.sync_activity("step")
    def step() -> str:
        for i in range(3):
            log.info("held" if i == 1 else f"object {i}")
            reached.append(f"object {i}")
            cancellation.heartbeat(f"object {i}")
        return "done"

    def cancel_when_inside() -> None:
        assert handler.inside.wait(10)
        env.cancel()
        handler.go.set()

    t = threading.Thread(target=cancel_when_inside)
    t.start()
    try:
        with pytest.raises(CancelledError):
            env.run(step)
    finally:
        t.join()
        log.removeHandler(handler)
    # The log call that was in flight finished (its record was written); the step stopped at the beat after it.
    assert handler.records == ["object 0", "held"]
    assert reached == ["object 0", "object 1"]
    # The handler's lock is free: another thread can log at once.
    assert handler.lock is not None and handler.lock.acquire(timeout=2), "the handler's lock was left held"
    handler.lock.release()


@pytest.mark.parametrize("local", [False, True])
def test_heartbeat_beats_only_for_a_normal_activity(local: bool) -> None:
    """The one progress-beat helper of the sync steps: a normal activity heartbeats (build, bake, and the short steps
    of runs recorded before local-short-steps-v1); a local activity does not (the server knows nothing of it)."""
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    if local:
        env.info = dataclasses.replace(env.info, is_local=True)
    assert env.run(lambda: cancellation.heartbeat("Deployment/shop/web")) is None
    assert beats == ([] if local else [("Deployment/shop/web",)])


def test_sleep_ends_early_on_a_cancel() -> None:
    env = ActivityEnvironment()

    @cancellation.sync_activity("bake")
    def bake() -> None:
        cancellation.sleep(30)

    threading.Timer(0.3, env.cancel).start()
    with pytest.raises(CancelledError):
        env.run(bake)
