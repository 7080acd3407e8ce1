"""Renders the rollout's "Current Details" (Temporal markdown) shown in the Web UI.

Called by ``workflows.rollout`` on every status change. Pure and deterministic: it formats the status it is
given, nothing else (``set_current_details`` costs no history event, so it can be refreshed freely).
"""

from __future__ import annotations

from contract.models import RolloutStatus
from contract.spec import ReleaseSpec


def render_details(spec: ReleaseSpec, s: RolloutStatus) -> str:
    lines = [f"**{spec.app}** → `{spec.environment}` (namespace `{spec.namespace}`)", "",
             f"phase: **{s.phase.value}** · step: **{s.step.value}**" + (" · paused" if s.paused else ""),
             "", f"{s.message}"]
    if s.image:
        lines += ["", f"image: `{s.image}`"]
    if s.revision:
        lines += [f"revision: {s.revision}"]
    # Lists, not tables: the Web UI renders markdown tables without cell padding.
    if s.workloads:
        lines += ["", "**workloads** (updated / ready / available of desired)"]
        lines += [f"- `{w.kind}/{w.name}`: {w.updated} / {w.ready} / {w.available} of {w.desired}"
                  + (" — ready" if w.ready_now else f" — {w.message}") for w in s.workloads]
    if s.health:
        lines += ["", "**health checks**"]
        # Words, not emoji: browsers without an emoji font (headless Chromium here) show empty boxes.
        lines += [f"- {'passing' if h.ok else 'FAILING'} `{h.name}`: {h.successes} ok, {h.failures} failed"
                  + (f", last {h.last_status or h.last_error}" if (h.last_status or h.last_error) else "")
                  for h in s.health]
    if s.progressive is not None:
        lines += ["", "**progressive delivery**"] + [f"- {x}" for x in s.progressive.lines(10)]
    if s.outcome:
        lines += ["", f"outcome: **{s.outcome.value}**" + (f": {s.cause}" if s.cause else "")]
    return "\n".join(lines)
