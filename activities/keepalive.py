"""Keep-alive heartbeats for the short, synchronous cluster steps (prepare, snapshot, apply, prune, finalize,
rollback), so that an attempt that is lost is retried within seconds instead of at its start-to-close timeout.

Used as a decorator by ``activities.prepare`` and ``activities.release``; the workflow gives these steps a
heartbeat timeout (``SHORT_STEP_HEARTBEAT`` in workflows/rollout.py, behind a patch).

Why (issue 13): once the server has recorded an activity as started, only a timeout can give it to another worker.
A task the worker never receives — the dispatch (an eager activity in the answer to a workflow task completion, or a
poll answer) lost when a loaded server or a client gives up on the call — was seen to sit for its whole 180 s
start-to-close timeout. With a heartbeat timeout the server retries it after that timeout. A step that really runs
must therefore heartbeat even while it waits on one slow API call (up to 30 s): one shared ticker thread
heartbeats every running step that has run for ``EVERY`` seconds, so the many steps that end within a second send
no heartbeat at all (no extra load on the server).

Since ``local-short-steps-v1`` (workflows/rollout.py) these steps usually run as *local* activities, inside the
workflow task, on the worker that runs the workflow: no task is dispatched, so none can be lost, and the server
knows nothing of them (no heartbeat timeout, nothing to heartbeat to; the SDK core logs a warning for each heartbeat
of a local activity). So the ticker sends nothing for a local activity, nor do the steps' own progress beats
(``activities.cancellation.heartbeat``). Runs recorded before that patch still schedule them as normal activities,
which keep heartbeating as before.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

log = logging.getLogger(__name__)

EVERY = 4.0  # seconds between keep-alive heartbeats (the SDK throttles further, to 0.8 x the heartbeat timeout)

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_running: dict[int, list[Any]] = {}  # token -> [context of the activity, last beat (monotonic)]
_ids = itertools.count()
_ticker: threading.Thread | None = None


def _tick() -> None:
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        with _lock:  # held while beating: after _leave() returns, no beat is sent for that activity
            for entry in _running.values():
                if now - entry[1] >= EVERY:
                    entry[1] = now
                    try:
                        entry[0].run(activity.heartbeat)  # non-blocking: the SDK schedules it on its loop
                    except Exception as e:  # advisory: never let the ticker die
                        log.debug("keep-alive heartbeat failed: %s", e)


def _enter() -> int:
    global _ticker
    token = next(_ids)
    with _lock:
        _running[token] = [contextvars.copy_context(), time.monotonic()]
        if _ticker is None:
            _ticker = threading.Thread(target=_tick, name="rollwright-keepalive", daemon=True)
            _ticker.start()
    return token


def _leave(token: int) -> None:
    with _lock:
        _running.pop(token, None)


def keepalive(fn: F) -> F:
    """Heartbeats for ``fn`` (a sync activity) every ``EVERY`` seconds while it runs, from a shared thread; none
    when it runs as a local activity."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if activity.info().is_local:
            return fn(*args, **kwargs)
        token = _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave(token)

    return wrapper  # type: ignore[return-value]
