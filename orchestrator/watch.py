"""Follows a rollout until it ends: ``rollwright rollout watch`` and ``rollout start --wait``.

Called by ``orchestrator.cli``. Polls the ``status`` query (no history cost) and prints what changed. On a TTY
it redraws a live view (phase, step, a progress bar per workload, health checks); otherwise it prints one plain
ASCII line per change, no escape codes, so CI logs stay clean. Both end with the outcome, its cause and what was
deployed; the CLI turns the outcome into the exit code. With ``-o json`` only the final result is printed.

It survives a worker restart (a query nobody answers for a moment is retried, not fatal) and a Temporal restart
(describe is retried until the server answers again). An unknown rollout is ``RolloutNotFound``, not a hang.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from typing import Any

import click
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from contract.models import HealthResult, Phase, RolloutResult, RolloutStatus, WorkloadStatus
from orchestrator.client import RolloutClient, RolloutNotFound

QUERY_TIMEOUT = 5.0  # a query waits for a worker; none polling (restart) must not stall the view for long


def render_status_text(st: RolloutStatus) -> str:
    """``rollwright rollout status``: the whole status, one fact per line."""
    lines = [f"rollout {st.app}/{st.environment}: phase {st.phase.value}, step {st.step.value}"
             + (" (paused)" if st.paused else "") + (" (awaiting approval)" if st.awaiting_approval else ""),
             f"  {st.message}"]
    if st.image:
        lines.append(f"  image: {st.image}")
    if st.revision:
        lines.append(f"  revision: {st.revision}")
    for w in st.workloads:
        lines.append(f"  {w.kind.lower()} {w.name}: {w.updated}/{w.desired} updated, {w.ready} ready, "
                     f"{w.available} available" + (f" ({w.message})" if w.message else ""))
    for h in st.health:
        lines.append(f"  health {h.name}: {_health_word(h)} ({h.successes} ok, {h.failures} failed)")
    if st.progressive is not None:
        lines += [f"  {x}" for x in st.progressive.lines()]
    if st.approved_by:
        lines.append(f"  approved by {st.approved_by}" + (f": {st.approval_comment}" if st.approval_comment else ""))
    if st.outcome:
        lines.append(f"  outcome: {st.outcome.value}" + (f" ({st.cause})" if st.cause else ""))
    return "\n".join(lines)


def _health_word(h: HealthResult) -> str:
    return "ok" if h.ok else "FAILING"


def _progress(w: WorkloadStatus) -> tuple[int, int]:
    """Replicas of the new revision that are up, out of those wanted (old replicas still serving do not count)."""
    total = max(w.desired, 0)
    return (total if w.ready_now else min(w.updated, w.available, total)), total


def _line(st: RolloutStatus) -> str:
    """One plain ASCII line for logs: phase, step, message, per-workload progress, health."""
    parts = [f"[{st.phase.value}] {st.step.value}: {st.message}"]
    for w in st.workloads:
        done, total = _progress(w)
        parts.append(f"{w.kind}/{w.name} {done}/{total} ready" + (f" ({w.message})" if w.message else ""))
    for h in st.health:
        parts.append(f"check {h.name}: {_health_word(h)} {h.successes} ok/{h.failures} failed")
    return " | ".join(parts)


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = width if total <= 0 else int(width * min(done, total) / total)
    return "█" * filled + "░" * (width - filled)


def _live(st: RolloutStatus) -> list[str]:
    """The TTY view: redrawn in place on every poll."""
    head = f"{st.app} → {st.environment}   phase: {st.phase.value}   step: {st.step.value}"
    if st.paused and st.phase != Phase.PAUSED:
        head += "   (pause requested)"
    out = [head, f"  {st.message}"]
    for w in st.workloads:
        done, total = _progress(w)
        out.append(f"  {w.kind[:11]:11} {w.name[:24]:24} {_bar(done, total)} {done}/{total}  {w.message}")
    if st.progressive is not None:
        out += [f"  {x}" for x in st.progressive.lines(3)]
    for h in st.health:
        out.append(f"  check       {h.name[:24]:24} {_health_word(h):7} {h.successes} ok, {h.failures} failed"
                   + (f" (last: {h.last_status or h.last_error})" if (h.last_status or h.last_error) else ""))
    return out


def _final(res: RolloutResult) -> list[str]:
    """What the rollout ended with; the first line is always ``outcome: <Outcome>``."""
    out = [f"outcome: {res.outcome.value}"]
    if res.cause:
        out.append(f"cause: {res.cause}")
    if res.failed_step:
        out.append(f"failed step: {res.failed_step.value}")
    if res.approved_by:
        out.append(f"approved by: {res.approved_by}" + (f" ({res.approval_comment})" if res.approval_comment else ""))
    if res.image:
        out.append(f"image: {res.image}")
    if res.revision:
        out.append(f"revision: {res.revision}")
    if res.rolled_back_to is not None:
        out.append(f"rolled back to revision: {res.rolled_back_to}" if res.rolled_back_to else
                   "rolled back: nothing was deployed before, the release's new objects were removed")
    for p in res.pruned:
        out.append(f"pruned: {p}")
    for warning in res.warnings:
        out.append(f"warning: {warning}")
    for w in res.workloads:
        done, total = _progress(w)
        out.append(f"workload {w.kind}/{w.name}: {done}/{total} ready" + (f" ({w.message})" if w.message else ""))
    for h in res.health:
        out.append(f"health {h.name}: {_health_word(h)} ({h.successes} ok, {h.failures} failed)")
    if res.progressive is not None:
        out += res.progressive.lines()
    return out


class _TtyView:
    """Redraws a block of lines in place (cursor up + clear to end of screen); lines are cut to the terminal
    width so a wrapped line never breaks the redraw."""

    def __init__(self) -> None:
        self.drawn = 0

    def draw(self, lines: list[str]) -> None:
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        text = "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in lines)
        if self.drawn:
            click.echo(f"\x1b[{self.drawn}F\x1b[J", nl=False)
        click.echo(text)
        self.drawn = len(lines)

    def finish(self, lines: list[str]) -> None:
        """Replaces the live block with the final lines, uncut: they stay in the scrollback."""
        if self.drawn:
            click.echo(f"\x1b[{self.drawn}F\x1b[J", nl=False)
        click.echo("\n".join(lines))
        self.drawn = 0


async def _query_status(handle: WorkflowHandle[Any, Any]) -> RolloutStatus | None:
    try:
        return await asyncio.wait_for(handle.query("status", result_type=RolloutStatus), timeout=QUERY_TIMEOUT)
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        return None  # no worker polling right now (restart), or the server is busy: keep waiting


async def follow(rc: RolloutClient, app: str, environment: str, *, output: str = "text",
                 interval: float = 1.0) -> RolloutResult:
    handle = rc.handle(app, environment)
    tty = output == "text" and sys.stdout.isatty()
    view = _TtyView() if tty else None
    last = None
    while True:
        try:
            desc = await handle.describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise RolloutNotFound(handle.id) from None
            await asyncio.sleep(interval)  # Temporal unreachable for a moment (restart): keep following
            continue
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        st = await _query_status(handle) if output == "text" else None
        if st is not None:
            if view is not None:
                view.draw(_live(st))
            elif (line := _line(st)) != last:
                click.echo(line)
                last = line
        await asyncio.sleep(interval)
    res = await _result(rc, handle, interval)
    if output == "json":
        click.echo(json.dumps(res.model_dump(mode="json"), indent=2))
    elif view is not None:
        view.finish(_final(res))
    else:
        for line in _final(res):
            click.echo(line)
    return res


async def _result(rc: RolloutClient, handle: WorkflowHandle[Any, Any], interval: float) -> RolloutResult:
    while True:
        try:
            return await rc.result(handle)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise RolloutNotFound(handle.id) from None
            await asyncio.sleep(interval)
