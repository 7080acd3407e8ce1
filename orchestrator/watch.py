"""Follows a rollout until it ends: ``rollwright rollout watch`` and ``rollout start --wait``.

Called by ``orchestrator.cli``. Polls the ``status`` query (no history cost) and prints what changed. On a TTY
it draws a live view with progress bars; otherwise it prints plain lines, no colour codes, so CI logs stay clean.
It survives a worker restart: a failed query (no worker polling for a moment) is retried, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import sys

import click
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from orchestrator.client import RolloutClient
from orchestrator.models import RolloutResult, RolloutStatus


def render_status_text(st: RolloutStatus) -> str:
    lines = [f"rollout {st.app}/{st.environment}: phase {st.phase.value}, step {st.step.value}"
             + (" (paused)" if st.paused else ""), f"  {st.message}"]
    if st.image:
        lines.append(f"  image: {st.image}")
    for w in st.workloads:
        lines.append(f"  {w.kind.lower()} {w.name}: {w.updated}/{w.desired} updated, {w.ready} ready, "
                     f"{w.available} available{' ✓' if w.ready_now else ''}")
    for h in st.health:
        lines.append(f"  health {h.name}: {'ok' if h.ok else 'FAILING'} ({h.successes} ok, {h.failures} failed)")
    if st.outcome:
        lines.append(f"  outcome: {st.outcome.value}" + (f" — {st.cause}" if st.cause else ""))
    return "\n".join(lines)


def _line(st: RolloutStatus) -> str:
    wl = " ".join(f"{w.name}={w.ready}/{w.desired}" for w in st.workloads)
    return f"[{st.phase.value}] {st.step.value}: {st.message}" + (f" | {wl}" if wl else "")


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width if total <= 0 else int(width * min(done, total) / total)
    return "█" * filled + "░" * (width - filled)


def _live(st: RolloutStatus) -> str:
    out = [f"{st.app} → {st.environment}   phase: {st.phase.value}   step: {st.step.value}", f"  {st.message}"]
    for w in st.workloads:
        out.append(f"  {w.kind[:6]:6} {w.name:24} {_bar(w.available, w.desired)} {w.available}/{w.desired} "
                   f"(updated {w.updated}, ready {w.ready})")
    for h in st.health:
        out.append(f"  check  {h.name[:40]:40} {'ok' if h.ok else 'FAILING'} {h.successes}✓ {h.failures}✗")
    return "\n".join(out)


async def follow(rc: RolloutClient, app: str, environment: str, *, output: str = "text",
                 interval: float = 1.0) -> RolloutResult:
    handle = rc.handle(app, environment)
    tty = sys.stdout.isatty() and output == "text"
    last = None
    drawn = 0
    while True:
        try:
            desc = await handle.describe()
        except RPCError:
            await asyncio.sleep(interval)
            continue
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        try:
            st = await asyncio.wait_for(handle.query("status", result_type=RolloutStatus), timeout=5)
        except (TimeoutError, RPCError):
            st = None  # no worker polling right now (restart): keep waiting
        if st is not None and output == "text":
            if tty:
                text = _live(st)
                if drawn:
                    click.echo(f"\x1b[{drawn}F\x1b[J", nl=False)
                click.echo(text)
                drawn = text.count("\n") + 1
            elif (line := _line(st)) != last:
                click.echo(line)
                last = line
        await asyncio.sleep(interval)
    res = await rc.result(handle)
    if output == "json":
        click.echo(json.dumps(res.model_dump(mode="json"), indent=2))
    else:
        click.echo(f"outcome: {res.outcome.value}" + (f" — {res.cause}" if res.cause else ""))
        if res.image:
            click.echo(f"image: {res.image}")
        if res.revision:
            click.echo(f"revision: {res.revision}")
    return res
