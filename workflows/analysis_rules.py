"""Argo Rollouts' analysis rules as pure functions: counting measurements, a metric's phase, the run's phase.

Called by ``workflows.analysis.run_analysis`` after every measurement (deterministic: no I/O, no clock) and by
unit tests. The rules (Argo ``analysis.go`` ``assessMetricStatus`` / ``assessRunStatus``):

- Successful, Failed and Inconclusive measurements count toward ``count`` and reset the consecutive errors;
  an Error measurement does not count and adds one consecutive error.
- A metric is Failed when its Failed measurements exceed ``failureLimit`` (``-1``: never on count), else
  Inconclusive when its Inconclusive ones exceed ``inconclusiveLimit``, else Error when consecutive errors exceed
  ``consecutiveErrorLimit``, else Successful once ``count`` measurements were taken (or when the run is being
  stopped: background analysis cancelled by its caller), else still running (``None``).
- The run takes the worst phase of its metrics (Successful < Inconclusive < Error < Failed) once every metric
  is done; as soon as one metric is Failed, Error or Inconclusive the run stops (the others are cancelled).
"""

from __future__ import annotations

from contract.analysis import AnalysisPhase, Measurement, Metric, MetricSummary

P = AnalysisPhase
_ORDER = {P.SUCCESSFUL: 0, P.INCONCLUSIVE: 1, P.ERROR: 2, P.FAILED: 3}
STOPS_RUN = frozenset({P.FAILED, P.ERROR, P.INCONCLUSIVE})
# Argo retries a measurement that errored after DefaultErrorRetryInterval (10 s), not after the metric's interval;
# a shorter interval is kept (a 2 s metric retries in 2 s).
ERROR_RETRY_SECONDS = 10.0


def record(s: MetricSummary, m: Measurement) -> MetricSummary:
    """The summary after one more measurement."""
    s = s.model_copy()
    if m.phase == P.ERROR:
        s.error += 1
        s.consecutive_error += 1
        return s
    s.count += 1
    s.consecutive_error = 0
    if m.phase == P.SUCCESSFUL:
        s.successful += 1
    elif m.phase == P.FAILED:
        s.failed += 1
    else:
        s.inconclusive += 1
    return s


def metric_phase(metric: Metric, s: MetricSummary, *, terminating: bool = False) -> AnalysisPhase | None:
    """The metric's phase, or None while it should keep measuring."""
    if s.count + s.error == 0:
        return P.SUCCESSFUL if terminating else None  # stopped before its first measurement: nothing failed
    if metric.failure_limit >= 0 and s.failed > metric.failure_limit:
        return P.FAILED
    if s.inconclusive > metric.inconclusive_limit:
        return P.INCONCLUSIVE
    if s.consecutive_error > metric.consecutive_error_limit:
        return P.ERROR
    count = metric.effective_count
    if count is not None and s.count >= count:
        return P.SUCCESSFUL
    return P.SUCCESSFUL if terminating else None


def why(metric: Metric, s: MetricSummary, phase: AnalysisPhase) -> str:
    """Argo-style words for a metric's final phase."""
    if phase == P.FAILED:
        return f"metric {metric.name!r} assessed Failed due to failed ({s.failed}) > failureLimit ({metric.failure_limit})"
    if phase == P.INCONCLUSIVE:
        return (f"metric {metric.name!r} assessed Inconclusive due to inconclusive ({s.inconclusive}) > "
                f"inconclusiveLimit ({metric.inconclusive_limit})")
    if phase == P.ERROR:
        return (f"metric {metric.name!r} assessed Error due to consecutiveErrors ({s.consecutive_error}) > "
                f"consecutiveErrorLimit ({metric.consecutive_error_limit})")
    return f"metric {metric.name!r} Successful ({s.successful}/{s.count} measurements successful)"


def worst(phases: list[AnalysisPhase]) -> AnalysisPhase:
    return max(phases, key=lambda p: _ORDER[p]) if phases else P.SUCCESSFUL


def next_delay(metric: Metric, last: Measurement | None) -> float | None:
    """Seconds to wait before the next measurement (None: no interval, measure again right away)."""
    interval = metric.interval_seconds
    if last is not None and last.phase == P.ERROR:
        return min(interval, ERROR_RETRY_SECONDS) if interval else ERROR_RETRY_SECONDS
    return interval
