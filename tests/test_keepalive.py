"""Keep-alive heartbeats of the short cluster steps (activities/keepalive.py), unit level: a step that runs longer
than the keep-alive interval heartbeats from the shared ticker thread, a short one sends none, and none is sent
once the step has returned. (The workflow's side — the heartbeat timeout on those steps — is checked in
tests/test_workflow_branches.py.)"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities import cancellation, keepalive


@pytest.fixture
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keepalive, "EVERY", 0.0)  # every tick of the ticker (1 s) beats


def _env(beats: list[Any]) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    return env


def test_a_step_blocked_in_one_call_still_heartbeats_and_stops_when_done(fast_ticks: None) -> None:
    beats: list[Any] = []
    release = threading.Event()

    @keepalive.keepalive
    def slow_step(x: int) -> int:
        # Stands for one slow API call: the step itself does not heartbeat meanwhile.
        for _ in range(100):
            if len(beats) >= 2:
                release.set()
                break
            time.sleep(0.1)
        return x + 1

    assert _env(beats).run(slow_step, 1) == 2
    assert release.is_set(), "the ticker sent no heartbeat while the step was blocked"
    n = len(beats)
    time.sleep(2.5)  # more than two ticks
    assert len(beats) == n, "heartbeats continued after the step returned"
    assert not keepalive._running, "the step is still registered"


def test_a_short_step_sends_no_heartbeat() -> None:
    beats: list[Any] = []

    @keepalive.keepalive
    def quick_step() -> str:
        return activity.info().activity_type

    assert _env(beats).run(quick_step) == "unknown"
    time.sleep(1.5)
    assert beats == [] and not keepalive._running


def test_the_step_keeps_its_name_and_signature_for_the_sdk() -> None:
    def snapshot_release(self: Any, inp: int) -> str:
        return "ok"

    wrapped = keepalive.keepalive(snapshot_release)
    assert wrapped.__name__ == "snapshot_release" and wrapped.__wrapped__ is snapshot_release  # type: ignore[attr-defined]


def test_a_local_activity_sends_no_heartbeat(fast_ticks: None) -> None:
    """Since local-short-steps-v1 the short steps run as local activities: nothing heartbeats to the server (the SDK
    core would log a warning for every heartbeat of one), neither the ticker nor the step's own beats
    (``cancellation.heartbeat``, checked on its own in tests/test_cancellation.py)."""
    beats: list[Any] = []
    env = _env(beats)
    env.info = dataclasses.replace(env.info, is_local=True)

    @keepalive.keepalive
    def slow_local_step() -> bool:
        cancellation.heartbeat("Deployment/shop/web")
        time.sleep(2.5)  # two ticks of the ticker
        return bool(activity.info().is_local)

    assert env.run(slow_local_step) is True
    assert beats == [] and not keepalive._running
