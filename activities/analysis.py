"""``measure_metric``: one measurement of one analysis metric (Prometheus instant query or web JSON).

Called by ``workflows.analysis.run_analysis`` once per measurement; registered on the main queue by
``orchestrator.worker``.
"""

from __future__ import annotations

from temporalio import activity

from contract.analysis import MeasureInput, Measurement


class AnalysisActivities:
    @activity.defn(name="measure_metric")
    async def measure_metric(self, inp: MeasureInput) -> Measurement:
        raise NotImplementedError
