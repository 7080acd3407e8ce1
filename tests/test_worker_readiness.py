"""orchestrator.worker.readiness, the rule behind /readyz (the real endpoint is exercised in test_worker_process:
Temporal killed → 503 naming it; draining → 503). Here the edge a loaded CI run hit: one failed health check."""

from __future__ import annotations

from orchestrator.worker import READY_WITHIN_SECONDS, readiness


def state(**kw: object) -> dict[str, object]:
    return {"connected": True, "checked": 100.0, "running": True, "why": "starting", **kw}


def test_one_failed_check_after_a_success_keeps_the_worker_ready_and_says_so() -> None:
    s = state(connected=False, why="Temporal unreachable: deadline exceeded")
    ok, why = readiness(s, 100.0 + 4)
    assert ok and "last health check failed" in why and "deadline exceeded" in why


def test_no_success_within_the_window_is_not_ready_with_the_reason() -> None:
    s = state(connected=False, why="Temporal unreachable: connection refused")
    assert readiness(s, 100.0 + READY_WITHIN_SECONDS + 0.1) == (False, "Temporal unreachable: connection refused")
    never = state(connected=False, checked=0.0, why="Temporal unreachable: certificate verify failed")
    assert readiness(never, 5.0) == (False, "Temporal unreachable: certificate verify failed")


def test_healthy_polling_and_draining() -> None:
    assert readiness(state(), 101.0) == (True, "polling")
    assert readiness(state(running=False, why="shutting down"), 101.0) == (False, "shutting down")
