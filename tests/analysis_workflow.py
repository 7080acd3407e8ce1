"""A tiny workflow around ``workflows.analysis.run_analysis`` for tests/test_analysis.py (real Temporal, real
Prometheus): the test's own in-process worker registers it with the real ``measure_metric`` activity.

``stop_after_seconds`` runs the analysis as background analysis: the workflow cancels the task running it after
that long (a durable timer) and returns the result so far, as the rollout's background analysis does.
Its own module: the workflow sandbox re-imports the module that defines a workflow.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.analysis import AnalysisArgs, AnalysisPhase, AnalysisResult, AnalysisTemplate, Measurement
    from workflows.analysis import run_analysis


class AnalysisTestInput(BaseModel):
    templates: list[AnalysisTemplate]
    args: AnalysisArgs
    stop_after_seconds: float | None = None
    return_on_cancel: bool = True


@workflow.defn(name="AnalysisTestWorkflow")
class AnalysisTestWorkflow:
    def __init__(self) -> None:
        self.seen: list[Measurement] = []

    @workflow.query
    def measurements(self) -> list[Measurement]:
        return self.seen

    @workflow.run
    async def run(self, inp: AnalysisTestInput) -> AnalysisResult:
        task = asyncio.create_task(run_analysis(inp.templates, inp.args, on_measurement=self.seen.append,
                                                return_on_cancel=inp.return_on_cancel))
        if inp.stop_after_seconds is None:
            return await task
        done, _ = await workflow.wait([task], timeout=inp.stop_after_seconds)
        if not done:
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:  # return_on_cancel=False: the cancel propagates (a foreground step)
            return AnalysisResult(phase=AnalysisPhase.ERROR, message="cancel propagated", cancelled=True)
