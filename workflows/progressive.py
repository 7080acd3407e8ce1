"""Canary and blue-green steps, as workflow code (issue 11). Deterministic: every cluster change is the
``set_traffic`` activity (``activities.traffic``), every measurement ``workflows.analysis.run_analysis``.

Called by ``RolloutWorkflow.run`` in place of "apply + wait ready" when the release's strategy is not rolling
(behind ``workflow.patched("progressive-v1")``; the rolling path's commands are unchanged). The rollout's own
machinery stays in charge of everything else: pause/resume/abort signals, the rollback saga, bake, prune,
finalize. This module adds the steps, the ``promote`` decisions and what must happen to traffic before a
rollback (``stop_traffic``: canary to 0 pods, or activeService switched back).

History cost (bounded history, issue 11): a setWeight step is 2 activities (set_traffic, wait_ready) ≈ 12 events
plus one search-attribute upsert; a pause is 1 timer or 1 update ≈ 3 events; each analysis measurement is one
``measure_metric`` activity, one interval timer and two workflow tasks: 11 events (measured, bench/bench_canary.py).
Temporal warns at 10 240 events and fails at 51 200, so a canary continues as new (``_continue_as_new``, behind
``PATCH_CONTINUE_AS_NEW``) past ``maxHistoryEvents`` or when Temporal suggests it, at a safe point: between steps,
or in a pause while a background analysis runs. The new run gets a ``CarryOver`` (status, next step, rest of the
pause, background analysis counters, snapshot) and resumes; the status keeps the last 200 measurements.
"""

from __future__ import annotations

import asyncio
import builtins
import math
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from contract.analysis import (
        AnalysisArgs,
        AnalysisPhase,
        AnalysisRef,
        AnalysisResult,
        Measurement,
        MetricSummary,
        resolve_templates,
    )
    from contract.models import ApplyInput, CarryOver, ObjectRef, Phase, ReleasePlan, RevisionRef, Step
    from contract.spec import Promotion, ReleaseSpec
    from contract.strategy import (
        MAX_MEASUREMENTS_KEPT,
        PromotionRecord,
        StrategyKind,
        StrategyStatus,
    )
    from contract.traffic import TrafficAction, TrafficInput, TrafficResult
    from workflows.analysis import run_analysis

if TYPE_CHECKING:
    from workflows.rollout import RolloutWorkflow

T = TypeVar("T")
PATCH_PROGRESSIVE = "progressive-v1"
PATCH_CONTINUE_AS_NEW = "canary-continue-as-new-v1"  # bounded history: long canaries continue as new
# A continue-as-new drains the background analysis (a measurement in flight finishes and is recorded) instead of
# cancelling it, and the new run measures when the next one was due instead of one full interval after its start.
PATCH_DRAIN = "canary-continue-as-new-drain-v1"
SA_STEP = SearchAttributeKey.for_keyword("RolloutStep")
TRAFFIC_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=10), maximum_attempts=10,
                            non_retryable_error_types=["InvalidRelease", "InvalidManifest", "Forbidden"])


class AnalysisFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Progressive:
    """One canary or blue-green run inside a ``RolloutWorkflow``."""

    def __init__(self, wf: RolloutWorkflow, spec: ReleaseSpec, plan: ReleasePlan, revision: RevisionRef,
                 target: ObjectRef, carry: CarryOver | None = None) -> None:
        self.wf, self.spec, self.plan, self.revision, self.target = wf, spec, plan, revision, target
        kind = spec.strategy.kind
        steps = len(spec.strategy.canary.steps) if spec.strategy.canary else 0
        self.st = StrategyStatus(strategy=kind, steps=steps)
        # A run continued as new (bounded history): the status of the previous run goes on.
        self.carry = carry
        if carry is not None and carry.status.progressive is not None:
            self.st = carry.status.progressive.model_copy(update={"runs": carry.status.progressive.runs + 1})
        self.background_started = carry.background_started if carry is not None else False
        self.step_enum = Step.CANARY if kind == StrategyKind.CANARY else Step.BLUE_GREEN
        self.live = False  # the target existed: traffic was actually steered
        self.switched_at: datetime | None = None  # blue-green: when activeService went to the preview
        self.promoted = False
        self.full = carry.full if carry is not None else False
        self.stable_hash = ""  # blue-green: the stable ReplicaSet activeService is pinned to
        self.background: asyncio.Task[AnalysisResult] | None = None
        self.drainable = False  # the background analysis stops by draining at a continue-as-new (PATCH_DRAIN)
        self.draining = False
        wf._status.progressive = self.st

    # ---- entry points called by RolloutWorkflow ---------------------------------------------------------------

    async def run(self) -> None:
        if self.carry is not None:
            # Continued as new mid-canary: the target was live and the release applied by the first run.
            self.live = True
            try:
                await self._canary()
            finally:
                if self.background is not None and not self.background.done():
                    self.background.cancel()
            return
        prep = await self.traffic(TrafficAction.PREPARE, summary=f"prepare {self.target.kind}/{self.target.name}")
        self.live = prep.live
        if not prep.live:
            # Nothing to compare a canary with: the first rollout applies the release as a rolling one (Argo
            # does the same: the first revision goes straight to 100%).
            self._tag("first-rollout")
            await self.apply(None)
            await self.wf._wait_ready(self.spec, self.plan.workloads, self.spec.health.progress_deadline_seconds)
            self.st.weight = 100
            self.st.step_name = "first rollout of the workload: applied as rolling"
            return
        try:
            if self.spec.strategy.canary is not None:
                await self._canary()
            else:
                await self._blue_green()
        finally:
            if self.background is not None and not self.background.done():
                self.background.cancel()

    async def stop_traffic(self, cause: str) -> None:
        """Before the rollback: take the new version out of traffic as fast as possible. Never abortable."""
        if not self.live:
            return
        started = workflow.now()
        if self.spec.strategy.canary is not None:
            if not self.promoted or self.target.kind == "Deployment":
                await self.traffic(TrafficAction.CANARY_ABORT, abortable=False,
                                   summary=f"abort canary: scale {self.target.name}-canary to 0 ({cause[:80]})")
                self.st.weight, self.st.canary_replicas = 0, 0
        elif self.switched_at is not None:
            # Only the switch back here (seconds); the preview goes after the rollback (after_rollback).
            await self.traffic(TrafficAction.SWITCH_BACK, abortable=False,
                               summary="switch activeService back to the stable pods")
            self.st.switch_back_seconds = (workflow.now() - started).total_seconds()
            self.st.active = "stable"
        self._tag("aborted")
        self.wf._touch()

    async def after_rollback(self) -> None:
        """Blue-green: Services back to the release's selectors, preview deleted. A StatefulSet keeps its
        partition through the rollback (the previous template goes back to the pods that had the new one);
        afterwards every pod may follow the template again."""
        if self.live and self.spec.strategy.blue_green is not None:
            await self.traffic(TrafficAction.BG_CLEANUP, abortable=False,
                               summary="blue-green cleanup: Services back to the release's selectors, preview deleted")
        if self.live and self.spec.strategy.canary is not None and self.target.kind == "StatefulSet":
            await self.traffic(TrafficAction.PARTITION_RESET, abortable=False, summary="partition back to 0")
            # With the partition still set, the rollback's wait judged only the ordinals below it; now all pods.
            await self.wf._wait_ready(self.spec, [self.target], self.spec.health.progress_deadline_seconds,
                                      step=Step.ROLLBACK, abortable=False)

    # ---- canary -----------------------------------------------------------------------------------------------

    async def _canary(self) -> None:
        canary = self.spec.strategy.canary
        assert canary is not None
        carry, start = self.carry, 0
        if carry is None:
            # StatefulSet: the whole release is applied (the partition holds every pod on the old template).
            # Deployment: the stable keeps its template until the promotion; the canary Deployment carries the new
            # one.
            await self.apply(exclude=[self.target] if self.target.kind == "Deployment" else [])
            others = [w for w in self.plan.workloads if not _same(w, self.target)]
            if others:
                await self.wf._wait_ready(self.spec, others, self.spec.health.progress_deadline_seconds)
        else:
            start = carry.next_step
            if carry.background is not None and canary.analysis is not None:
                await self._start_background(canary.analysis, resume=carry.background)
        for i in range(start, len(canary.steps)):
            step = canary.steps[i]
            if self.full:
                break
            # Safe point between two steps (the previous one done, the next not begun): continue as new here when
            # the history is long. Not at the first step of a run, so a tiny limit cannot loop.
            if i > start and self._history_long() and workflow.patched(PATCH_CONTINUE_AS_NEW):
                await self._continue_as_new(i)
            self.st.step, self.st.step_name = i + 1, step.label
            self.wf._touch()
            if canary.analysis is not None and i == canary.analysis.starting_step and not self.background_started:
                await self._start_background(canary.analysis)
            await self.wf._checkpoint()
            await self._after_step(i + 1)
            if step.set_weight is not None:
                self._tag("setWeight")
                await self._set_weight(step.set_weight)
            elif step.pause is not None:
                self._tag("pause")
                secs = step.pause.seconds
                if carry is not None and i == start and carry.pause_until is not None:
                    secs = max(0.0, (carry.pause_until - workflow.now()).total_seconds())  # the rest of it
                why = (f"pause {secs:g}s (step {i + 1}/{len(canary.steps)}); promote to continue now" if secs is not None
                       else f"paused at step {i + 1}/{len(canary.steps)}: rollwright rollout promote to continue")
                await self._pause(secs, why, step=i + 1, reason="pause", index=i)
            elif step.analysis is not None:
                self._tag("analysis")
                await self._analysis(step.analysis, f"step {i + 1}", step=i + 1)
            await self._after_step(i + 1)
        await self._stop_background()
        # Promotion: the stable takes the new template, then the canary goes.
        self._tag("promote")
        self.wf._set(Step.PROMOTE, Phase.PROGRESSING, "promoting: the stable workload takes the new template")
        if self.target.kind == "Deployment":
            await self.apply(only=[self.target])
            await self.wf._wait_ready(self.spec, [self.target], self.spec.health.progress_deadline_seconds,
                                      step=Step.PROMOTE)
            self.promoted = True
            await self.traffic(TrafficAction.CANARY_PROMOTED, summary=f"delete {self.target.name}-canary")
        else:
            self.promoted = True
            r = await self.traffic(TrafficAction.CANARY_PROMOTED, summary="partition 0")
            await self.wf._wait_ready(self.spec, r.wait_for, self.spec.health.progress_deadline_seconds,
                                      step=Step.PROMOTE)
        self.st.weight, self.st.canary_replicas, self.st.stable_replicas = 100, 0, self.st.canary_replicas + \
            self.st.stable_replicas
        self._tag("promoted")

    async def _set_weight(self, weight: int) -> None:
        r = await self.traffic(TrafficAction.CANARY_WEIGHT, weight=weight, summary=f"setWeight {weight}")
        self.st.weight, self.st.canary_replicas, self.st.stable_replicas = weight, r.canary_replicas, r.stable_replicas
        self.wf._touch()
        await self.wf._wait_ready(self.spec, r.wait_for, self.spec.health.progress_deadline_seconds, step=Step.CANARY)

    # ---- blue-green -------------------------------------------------------------------------------------------

    async def _blue_green(self) -> None:
        bg = self.spec.strategy.blue_green
        assert bg is not None
        self.st.steps = 4
        await self.apply(exclude=[self.target])
        others = [w for w in self.plan.workloads if not _same(w, self.target)]
        self._set_step(1, "preview")
        r = await self.traffic(TrafficAction.PREVIEW, summary=f"preview {self.target.name}-preview behind "
                                                                f"{bg.preview_service}")
        self.st.canary_replicas, self.st.stable_replicas, self.st.active = r.canary_replicas, r.stable_replicas, \
            "stable"
        self.stable_hash = r.stable_hash
        await self.wf._wait_ready(self.spec, others + r.wait_for, self.spec.health.progress_deadline_seconds,
                                  step=Step.BLUE_GREEN)
        if bg.pre_promotion_analysis is not None:
            self._set_step(2, "prePromotionAnalysis")
            await self._analysis(bg.pre_promotion_analysis, "prePromotionAnalysis", step=0)
        await self.wf._checkpoint()
        if not bg.auto_promotion_enabled:
            self._tag("pause")
            await self._pause(None, f"preview ready behind {bg.preview_service}: rollwright rollout promote to "
                              f"switch {bg.active_service}", step=0, reason="blue-green promotion")
        elif bg.auto_promotion_seconds:
            self._tag("pause")
            await self._pause(float(bg.auto_promotion_seconds),
                              f"auto-promotion in {bg.auto_promotion_seconds}s; promote to switch now", step=0,
                              reason="blue-green promotion")
        self._set_step(3, "switch activeService")
        await self.traffic(TrafficAction.SWITCH_ACTIVE, summary=f"switch {bg.active_service} to the preview pods")
        self.switched_at = workflow.now()
        self.st.active, self.st.weight = "preview", 100
        self.wf._touch()
        if bg.post_promotion_analysis is not None:
            self._tag("postPromotionAnalysis")
            await self._analysis(bg.post_promotion_analysis, "postPromotionAnalysis", step=0)
        # The old pods stay up (a switch back is instant) until scaleDownDelaySeconds after the promotion.
        left = bg.scale_down_delay_seconds - (workflow.now() - self.switched_at).total_seconds()
        if left > 0:
            self.wf._status.message = f"old pods kept {math.ceil(left)}s more (scaleDownDelaySeconds)"
            await self._sleep(left, "scaleDownDelaySeconds")
        self._set_step(4, "scale down old side")
        self.wf._set(Step.PROMOTE, Phase.PROGRESSING, "the stable Deployment takes the new template")
        await self.apply(only=[self.target])
        await self.wf._wait_ready(self.spec, [self.target], self.spec.health.progress_deadline_seconds,
                                  step=Step.PROMOTE)
        self.promoted = True
        await self.traffic(TrafficAction.BG_CLEANUP, summary="Services back to the release's selectors, preview deleted")
        self.switched_at = None
        self._tag("promoted")

    def _set_step(self, k: int, name: str) -> None:
        self.st.step, self.st.step_name = k, name
        self._tag(name.split()[0])
        self.wf._touch()

    # ---- decisions ----------------------------------------------------------------------------------------------

    async def _pause(self, seconds: float | None, why: str, *, step: int, reason: str, index: int | None = None) -> None:
        """Waits for ``promote`` (or the duration); abort and a failed background analysis end it too. A canary's
        pause step (``index``) with a running background analysis may continue as new when the history gets long;
        the new run waits for the rest of it."""
        wf = self.wf
        if seconds is not None and seconds <= 0:
            return
        can = index is not None and self.background is not None and workflow.patched(PATCH_CONTINUE_AS_NEW)
        until = workflow.now() + timedelta(seconds=seconds) if seconds is not None else None
        before = wf._status.step
        wf._promotion = None
        wf._awaiting_promotion = self.st.awaiting_promotion = True
        self.st.paused_reason = why
        wf._set(before, Phase.PAUSED, why)
        wf._upsert(phase=Phase.PAUSED)
        try:
            await workflow.wait_condition(
                lambda: wf._promotion is not None or wf._abort is not None or wf._interrupt is not None
                or (can and self._background_running() and self._history_long()),
                timeout=timedelta(seconds=seconds) if seconds is not None else None,
                timeout_summary=f"pause {seconds:g}s" if seconds is not None else None)
        except builtins.TimeoutError:
            pass
        finally:
            wf._awaiting_promotion = self.st.awaiting_promotion = False
            self.st.paused_reason = None
        wf._raise_interrupts()
        if can and wf._promotion is None and self._background_running() and self._history_long() \
                and (until is None or workflow.now() < until):
            assert index is not None
            await self._continue_as_new(index, pause_until=until, pause_open=until is None)
        p = wf._promotion
        wf._promotion = None
        if p is not None:
            self._record(p, step, reason)
        wf._set(before, Phase.PROGRESSING, f"promoted by {p.approver}" if p else "pause over")

    def _record(self, p: Promotion, step: int, reason: str) -> None:
        self.st.promotions.append(PromotionRecord(approver=p.approver, full=p.full, comment=p.comment,
                                                  at=workflow.now(), step=step, reason=reason))
        if p.full:
            self.full = True

    async def _analysis(self, ref: AnalysisRef, where: str, *, step: int) -> None:
        """Runs one analysis to its end. Failed/Error: the rollout fails (rollback). Inconclusive: waits for a
        human (promote continues, abort rolls back)."""
        names = ",".join(t.template_name for t in ref.templates)
        self.wf._set(Step.ANALYSIS, Phase.PROGRESSING, f"analysis {names} ({where})")
        args = await self._args(ref)
        templates = resolve_templates(ref, self.spec.analysis_templates)
        result = await self._race(run_analysis(templates, args, on_measurement=self._on_measurement,
                                               ref_args=ref.args))
        self.st.analysis_phase = result.phase.value
        self.wf._touch()
        if result.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
            raise AnalysisFailed(f"analysis {names} ({where}) {result.phase.value}: {result.message}")
        if result.phase == AnalysisPhase.INCONCLUSIVE:
            self._tag("inconclusive")
            await self._pause(None, f"analysis {names} ({where}) inconclusive: {result.message}; "
                              "rollwright rollout promote to continue, abort to roll back",
                              step=step, reason="inconclusive analysis")

    async def _args(self, ref: AnalysisRef) -> AnalysisArgs:
        info = await self.traffic(TrafficAction.INFO, summary="pod-template hashes of canary and stable")
        return AnalysisArgs(namespace=self.spec.namespace, app=self.spec.app, canary_hash=info.canary_hash,
                            stable_hash=info.stable_hash, canary_labels=info.canary_labels,
                            stable_labels=info.stable_labels)

    async def _start_background(self, ref: AnalysisRef, resume: list[MetricSummary] | None = None) -> None:
        args = await self._args(ref)
        templates = resolve_templates(ref, self.spec.analysis_templates)
        names = ",".join(t.template_name for t in ref.templates)
        self.st.background_analysis = "Running"
        self.background_started = True
        # Decided once per run, when the background analysis starts (its timers are waited differently).
        self.drainable = workflow.patched(PATCH_DRAIN)
        self.draining = False

        async def watch() -> AnalysisResult:
            result = await run_analysis(templates, args, on_measurement=self._on_measurement, ref_args=ref.args,
                                        resume=resume, drain=(lambda: self.draining) if self.drainable else None)
            if not result.cancelled:
                self.st.background_analysis = result.phase.value
                if result.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
                    self.wf._interrupt = AnalysisFailed(f"background analysis {names} {result.phase.value}: "
                                                        f"{result.message}")
            return result

        self.background = asyncio.create_task(watch())

    async def _after_step(self, step: int) -> None:
        """Between steps: a failed background analysis fails the rollout; an inconclusive one waits for a human."""
        self.wf._raise_interrupts()
        b = self.background
        if b is not None and b.done() and not b.cancelled() and b.result().phase == AnalysisPhase.INCONCLUSIVE \
                and self.st.background_analysis == AnalysisPhase.INCONCLUSIVE.value:
            self.st.background_analysis = "Inconclusive (decided by a human)"
            self._tag("inconclusive")
            await self._pause(None, f"background analysis inconclusive: {b.result().message}; rollwright rollout "
                              "promote to continue, abort to roll back", step=step, reason="inconclusive analysis")

    async def _stop_background(self) -> None:
        b = self.background
        if b is None:
            return
        if not b.done():
            b.cancel()
        try:
            result = await b
        except asyncio.CancelledError:
            result = None
        self.wf._raise_interrupts()
        if result is not None and not result.cancelled:
            self.st.background_analysis = result.phase.value
        elif self.st.background_analysis == "Running":
            self.st.background_analysis = "Stopped (promoted)"

    def _on_measurement(self, m: Measurement) -> None:
        self.st.measurements.append(m)
        del self.st.measurements[:-MAX_MEASUREMENTS_KEPT]
        self.wf._touch()

    # ---- bounded history: continue-as-new -----------------------------------------------------------------------

    def _history_long(self) -> bool:
        canary = self.spec.strategy.canary
        info = workflow.info()
        return canary is not None and (info.is_continue_as_new_suggested()
                                       or info.get_current_history_length() >= canary.max_history_events)

    def _background_running(self) -> bool:
        return self.background is not None and not self.background.done()

    async def _continue_as_new(self, next_step: int, *, pause_until: datetime | None = None,
                               pause_open: bool = False) -> None:
        """Ends this run and starts a new one of the same workflow ID at canary step ``next_step``, with the status
        carried over (``CarryOver``). A running background analysis is stopped and goes on in the new run from its
        counters (``PATCH_DRAIN``: drained, so no measurement in flight is lost and the next one comes when it was
        due). Returns without continuing when the background analysis has a result a human must decide first
        (inconclusive): the step loop handles that, the next safe point continues."""
        wf, seeds = self.wf, None
        b = self.background
        if b is not None:
            if b.done() and not b.cancelled() and b.result().phase == AnalysisPhase.INCONCLUSIVE:
                return
            running = not b.done()
            if running and self.drainable:
                # Drain, not cancel: a measurement in flight finishes and lands in the carried status, and each
                # metric's next_at goes over to the new run. An abort (or a failed analysis) meanwhile wins.
                self.draining = True
                await workflow.wait_condition(lambda: b.done() or wf._abort is not None
                                              or wf._interrupt is not None)
                wf._raise_interrupts()
            if running and not b.done():
                b.cancel()
            try:
                result = await b
            except asyncio.CancelledError:
                result = None
            wf._raise_interrupts()
            if running and result is not None and result.cancelled:
                seeds = result.metrics
            elif result is not None and result.phase == AnalysisPhase.INCONCLUSIVE:
                return  # it decided just now: a human first (the background task is done, nothing is lost)
        wf._raise_interrupts()
        carry = CarryOver(plan=self.plan, revision=self.revision, status=wf._status, next_step=next_step,
                          pause_until=pause_until, pause_open=pause_open, full=self.full, paused=wf._paused,
                          background_started=self.background_started, background=seeds, warnings=wf._warnings)
        workflow.logger.info("continuing as new at canary step %d (history %d events)", next_step + 1,
                             workflow.info().get_current_history_length())
        workflow.continue_as_new(args=[self.spec, carry])

    # ---- plumbing -----------------------------------------------------------------------------------------------

    async def _race(self, aw: Awaitable[T]) -> T:
        """Awaits ``aw`` unless an abort (or a failed background analysis) comes first: then cancels it."""
        task = asyncio.ensure_future(aw)
        wf = self.wf
        try:
            await workflow.wait_condition(lambda: task.done() or wf._abort is not None or wf._interrupt is not None)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - cancelled on purpose; the abort is what matters
                pass
            wf._raise_interrupts()
        return task.result()

    async def _sleep(self, seconds: float, summary: str) -> None:
        wf = self.wf
        try:
            await workflow.wait_condition(lambda: wf._abort is not None or wf._interrupt is not None,
                                          timeout=timedelta(seconds=seconds), timeout_summary=summary)
        except builtins.TimeoutError:
            pass
        wf._raise_interrupts()

    async def apply(self, only: list[ObjectRef] | None = None, exclude: list[ObjectRef] | None = None) -> None:
        what = ("the release" if only is None else ", ".join(str(o) for o in only)) + \
            (f" except {', '.join(str(o) for o in exclude)}" if exclude else "")
        await self.wf._step(Step.APPLY if only is None else Step.PROMOTE, "apply_release",
                            ApplyInput(spec=self.spec, plan=self.plan, revision=self.revision, only=only,
                                       exclude=exclude or []),
                            list[str], timeout=timedelta(minutes=5), retry=TRAFFIC_RETRY,
                            summary=f"server-side apply {what}")

    async def traffic(self, action: TrafficAction, *, summary: str, weight: int = 0,
                      abortable: bool = True) -> TrafficResult:
        step = self.wf._status.step if self.wf._status.step in (Step.PROMOTE, Step.ROLLBACK) else self.step_enum
        return await self.wf._step(step, "set_traffic",
                                   TrafficInput(spec=self.spec, revision=self.revision, workload=self.target,
                                                action=action, weight=weight, stable_hash=self.stable_hash),
                                   TrafficResult, timeout=timedelta(minutes=2), retry=TRAFFIC_RETRY, summary=summary,
                                   abortable=abortable)

    def _tag(self, value: str) -> None:
        """``RolloutStep`` search attribute: lets a list filter e.g. ``RolloutStep='inconclusive'``. Only on step
        changes (each upsert is a history event)."""
        workflow.upsert_search_attributes([SA_STEP.value_set(value)])


def _same(a: ObjectRef, b: ObjectRef) -> bool:
    return (a.kind, a.name) == (b.kind, b.name)


def target_of(spec: ReleaseSpec, plan: ReleasePlan) -> ObjectRef:
    """The workload the strategy steps (validation already made sure there is exactly one)."""
    name = spec.strategy.workload
    allowed = ("Deployment", "StatefulSet") if spec.strategy.kind == StrategyKind.CANARY else ("Deployment",)
    cands = [w for w in plan.workloads if w.kind in allowed and (name is None or w.name == name)]
    return cands[0]


__all__ = ["PATCH_CONTINUE_AS_NEW", "PATCH_PROGRESSIVE", "AnalysisFailed", "Progressive", "target_of"]
