"""``run_analysis``: the workflow-side measurement loop of analysis templates (deterministic workflow code).

Called from workflow code: the canary / blue-green steps and background analysis of ``RolloutWorkflow``, and test
workflows. Every metric of every template runs concurrently: wait ``initialDelay``, then measure with the
``measure_metric`` activity, sleep ``interval`` on a durable timer, and again, until the metric's phase is decided
by ``workflows.analysis_rules`` (Argo's rules). The run stops as soon as one metric is Failed, Error or
Inconclusive; the other metrics are cancelled.

Background analysis (metrics without ``count``) runs until the caller cancels the task running it; the result
so far is then returned (``cancelled=True``, phase as Argo assesses a terminating run: Successful unless a limit
was already exceeded). Pass ``return_on_cancel=False`` for a foreground step so that a cancel of the workflow
itself still propagates.

Draining (``drain``, for a canary that continues as new, behind ``PATCH_DRAIN`` in ``workflows.progressive``):
when ``drain()`` becomes true, every metric stops at its next quiet point instead of being cancelled: a
measurement in flight finishes and is recorded (``on_measurement``) first; an interval wait ends at once. Each
metric's ``MetricSummary.next_at`` says when its next measurement is due, and a run resumed from those summaries
waits only for the rest of that interval (measures at once when it is past). So a continue-as-new neither loses a
measurement nor restarts an interval.

History cost per measurement: one activity (scheduled, started, completed) and one timer (started, fired),
i.e. 5 events, plus the workflow tasks around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from contract.analysis import (
        AnalysisArgs,
        AnalysisPhase,
        AnalysisResult,
        AnalysisTemplate,
        Argument,
        AttemptInfo,
        MeasureInput,
        Measurement,
        Metric,
        MetricSummary,
    )
    from workflows import analysis_rules as rules

# A measurement is one HTTP request: retry a crashed worker or a lost task quickly, a few times, then record an
# Error measurement (which counts toward consecutiveErrorLimit) rather than failing the rollout on the spot.
MEASURE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=5), maximum_attempts=3,
                            non_retryable_error_types=["InvalidAnalysis"])


def _timeout(metric: Metric) -> timedelta:
    p = metric.provider.prometheus
    seconds = p.timeout if p else (metric.provider.web.timeout_seconds if metric.provider.web else 10)
    return timedelta(seconds=seconds + 10)


async def run_analysis(templates: list[AnalysisTemplate], args: AnalysisArgs, *,
                       on_measurement: Callable[[Measurement], None] | None = None,
                       ref_args: list[Argument] | None = None, task_queue: str | None = None,
                       return_on_cancel: bool = True, resume: list[MetricSummary] | None = None,
                       drain: Callable[[], bool] | None = None) -> AnalysisResult:
    """Measures every metric of ``templates`` until their phase is decided; returns the run's result.

    ``ref_args``: the referencing step's args (override the templates' defaults). ``on_measurement`` is called
    after every measurement (e.g. to put it in the status query). ``task_queue``: where ``measure_metric`` runs
    (default: the workflow's own queue). ``resume``: the counters of the same run before a continue-as-new (one per
    metric, in order): the limits count on from them and the next measurement comes one interval later (with
    ``drain``: when their ``next_at`` says). ``drain``: see the module docstring; the result is then
    ``cancelled=True`` unless a metric decided the run meanwhile."""
    measurements: list[Measurement] = []
    metrics: list[tuple[AnalysisTemplate, Metric]] = [(t, m) for t in templates for m in t.metrics]
    summaries = [MetricSummary(metric=m.name, template=t.name) for t, m in metrics]
    if resume is not None and len(resume) == len(summaries):
        summaries = [s.model_copy(update={"phase": None}) for s in resume]
    finals: list[AnalysisPhase | None] = [None] * len(metrics)
    first_reason: list[str] = []
    stop = asyncio.Event()

    def due(i: int, at: datetime) -> None:
        if drain is not None:
            summaries[i] = summaries[i].model_copy(update={"next_at": at})

    async def wait(i: int, seconds: float) -> bool:
        """Sleeps ``seconds`` (the next measurement is due then); True when draining: the metric stops here."""
        due(i, workflow.now() + timedelta(seconds=seconds))
        if drain is None:
            await workflow.sleep(seconds)
            return False
        if drain():
            return True
        try:
            await workflow.wait_condition(drain, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            pass
        return drain()

    def add(i: int, m: Measurement) -> None:
        measurements.append(m)
        summaries[i] = rules.record(summaries[i], m)
        if on_measurement is not None:
            on_measurement(m)

    async def one(i: int, t: AnalysisTemplate, metric: Metric) -> None:
        targs = args.for_template(t, ref_args)
        last: Measurement | None = None
        resumed_at = summaries[i].next_at if drain is not None else None
        if summaries[i].count + summaries[i].error:  # resumed after continue-as-new: one interval after the last
            done = rules.metric_phase(metric, summaries[i])
            if done is not None:  # e.g. its count was reached before the continue-as-new
                _decide(i, done, rules.why(metric, summaries[i], done))
                return
        if resumed_at is not None:
            # Drained before a continue-as-new: the rest of the interval (or initialDelay) it was in, if any.
            first: float | None = (resumed_at - workflow.now()).total_seconds()
        elif summaries[i].count + summaries[i].error:
            first = metric.interval_seconds
        else:
            first = metric.initial_delay_seconds
        if first and first > 0 and await wait(i, first):
            return
        while True:
            delay = rules.next_delay(metric, last) if last is not None else None
            if delay:
                if await wait(i, delay):
                    return
            elif drain is not None and drain():
                due(i, workflow.now())
                return
            started = workflow.now()
            due(i, started)  # in flight: with drain it finishes before the run stops
            try:
                last = await workflow.execute_activity(
                    "measure_metric",
                    MeasureInput(metric=metric, args=targs,
                                 attempt_info=AttemptInfo(template=t.name,
                                                           measurement=summaries[i].count + summaries[i].error)),
                    result_type=Measurement, start_to_close_timeout=_timeout(metric), retry_policy=MEASURE_RETRY,
                    task_queue=task_queue, summary=f"measure {t.name}/{metric.name}")
            except ActivityError as e:
                cause = e.cause
                if isinstance(cause, CancelledError):
                    return  # the run is stopping (another metric decided it, or the caller cancelled)
                msg = str(cause.message if isinstance(cause, ApplicationError) else cause or e)
                last = Measurement(metric=metric.name, template=t.name, phase=AnalysisPhase.ERROR,
                                   started_at=started, finished_at=workflow.now(), message=msg[:500])
                add(i, last)
                if isinstance(cause, ApplicationError) and cause.type == "InvalidAnalysis":
                    # The query itself is refused: no later measurement can do better. Deviation from Argo,
                    # which would retry it consecutiveErrorLimit + 1 times.
                    _decide(i, AnalysisPhase.ERROR, f"metric {metric.name!r}: {msg}")
                    return
            else:
                add(i, last)
            phase = rules.metric_phase(metric, summaries[i])
            if phase is not None:
                _decide(i, phase, rules.why(metric, summaries[i], phase))
                return

    def _decide(i: int, phase: AnalysisPhase, reason: str) -> None:
        finals[i] = phase
        if phase in rules.STOPS_RUN:
            if not first_reason:
                first_reason.append(reason)
            stop.set()

    tasks = [asyncio.create_task(one(i, t, m)) for i, (t, m) in enumerate(metrics)]
    stopper = asyncio.create_task(stop.wait())
    cancelled = False
    try:
        pending: set[asyncio.Task[object]] = set(tasks)  # type: ignore[arg-type]
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for d in done:
                if d is not stopper and d.exception() is not None:
                    raise d.exception()  # type: ignore[misc]
    except asyncio.CancelledError:
        cancelled = True
        if not return_on_cancel:
            await _cancel_all([*tasks, stopper])
            raise
    except BaseException:
        await _cancel_all([*tasks, stopper])  # a bug in one metric's loop: stop the others, then fail the task
        raise
    await _cancel_all([*tasks, stopper])

    if drain is not None and drain() and not stop.is_set():
        cancelled = True  # drained: stopped by the caller, like a cancel, with nothing in flight lost
    terminating = cancelled or stop.is_set()
    for i, (_, metric) in enumerate(metrics):
        if finals[i] is None:
            finals[i] = rules.metric_phase(metric, summaries[i], terminating=terminating)
        summaries[i] = summaries[i].model_copy(update={"phase": finals[i]})
    decided = [p for p in finals if p is not None]
    phase = rules.worst(decided)
    if first_reason:
        message = first_reason[0]
    else:
        done_n = sum(s.count for s in summaries)
        message = f"{phase.value}: {done_n} measurements of {len(metrics)} metric(s)" + (
            " (stopped by the caller)" if cancelled else "")
    return AnalysisResult(phase=phase, measurements=measurements, metrics=summaries, message=message,
                          cancelled=cancelled)


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
