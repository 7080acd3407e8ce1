"""Cooperative cancellation for the synchronous (thread-pool) activities: ``sync_activity`` registers them, and
they call ``check``/``heartbeat``/``sleep`` at safe points.

Used by every sync step (activities.prepare, .release, .health, .build, .traffic, .versioning): ``heartbeat`` is
called by prepare and release (between objects), health (between probe rounds) and build (per log line); the workflow
cancels a step on abort, on a workflow cancel, and the SDK cancels local activities when it evicts a run.

Why not the SDK's default: for a sync activity in a thread pool, the SDK delivers a cancel by raising
``CancelledError`` *asynchronously* in the activity's thread (``PyThreadState_SetAsyncExc``), at whatever bytecode
that thread runs next. If that is inside ``logging.Handler.handle`` between the handler lock's ``acquire()`` and its
``try:``, the lock is never released and every thread that logs blocks forever, the event loop included: a fleet
bench (N = 200, 10% never ready, short steps as local activities that the SDK cancelled when it evicted runs) wedged
the worker that way (issue 13; all 87 logging threads in ``Handler.acquire``, no owner alive). The same can leak
urllib3's pool lock or the kube client's. So the steps opt out (``no_thread_cancel_exception``) and stop only at
points where nothing is half-held: between objects, between probes, in their waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import CancelledError

F = TypeVar("F", bound=Callable[..., Any])


def sync_activity(name: str) -> Callable[[F], F]:
    """``@activity.defn(name=...)`` for a sync step: cancels arrive through ``activity.is_cancelled()``, never as an
    exception injected into the thread."""
    return activity.defn(name=name, no_thread_cancel_exception=True)  # type: ignore[return-value]


def check() -> None:
    """Raises ``CancelledError`` if the step was cancelled (the SDK reports it as cancelled, as before)."""
    if activity.is_cancelled():
        raise CancelledError("step cancelled")


def heartbeat(*details: Any) -> None:
    """A heartbeat (which is also how a normal activity learns of a cancel), then a cancellation check. Called by
    activities.prepare and .release between objects, .health between probe rounds and .build per log line.

    Skipped for a local activity (the short steps since ``local-short-steps-v1``, activities/keepalive.py): the server
    knows nothing of it, so there is nothing to heartbeat to (the SDK core logs a warning for each heartbeat of one);
    a cancel reaches it without a heartbeat, and the check runs either way. Raises ``CancelledError`` when the step
    was cancelled."""
    if not activity.info().is_local:
        activity.heartbeat(*details)
    check()


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, with ``CancelledError``, when the step is cancelled."""
    activity.wait_for_cancelled_sync(max(0.0, seconds))
    check()
