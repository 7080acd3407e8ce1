"""``run_analysis``: the workflow-side measurement loop of analysis templates (deterministic).

Called from workflow code (canary / blue-green steps, background analysis). Measures every metric of every
template concurrently with ``measure_metric`` activities and durable timers, and aggregates with
``workflows.analysis_rules`` (Argo's rules).
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.analysis import AnalysisArgs, AnalysisResult, AnalysisTemplate, Measurement


async def run_analysis(templates: list[AnalysisTemplate], args: AnalysisArgs, *,
                       on_measurement: Callable[[Measurement], None] | None = None) -> AnalysisResult:
    raise NotImplementedError
