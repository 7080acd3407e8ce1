"""Canary and blue-green step sequencing (issue 11) in Temporal's time-skipping test server, with fake activities.

Pure workflow logic: which traffic change runs when, what a pause waits for, what ``promote`` (with ``full``) and
``abort`` do, what happens to traffic before a rollback. The fakes record every call (``set_traffic:<action>``,
``apply_release[only=...]``) so each test asserts the exact order. The cluster side is tests/test_progressive.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from contract.analysis import AnalysisPhase, MeasureInput, Measurement
from contract.models import ApplyInput, CarryOver, ObjectRef, Outcome, ReleasePlan, RolloutStatus, Step
from contract.spec import Abort, Promotion, ReleaseSpec
from contract.traffic import TrafficAction, TrafficInput, TrafficResult
from releases.loader import ReleaseError, load_manifests, load_spec
from tests.test_workflow_branches import TEST_SERVER, Fakes, Run

STS = ObjectRef(api_version="apps/v1", kind="StatefulSet", name="db", namespace="shop")
TEMPLATE = {"name": "errors", "metrics": [{"name": "error-rate", "interval": "10s", "count": 3, "failureLimit": 0,
                                           "provider": {"prometheus": {"query": "rate"}},
                                           "successCondition": "result[0] < 0.05",
                                           "failureCondition": "result[0] >= 0.2"}]}


def spec(strategy: dict[str, Any], **kw: Any) -> ReleaseSpec:
    base: dict[str, Any] = {"app": "shop", "environment": "prod", "namespace": "shop", "manifests": ["k8s/"],
                            "health": {"progress_deadline_seconds": 60}, "strategy": strategy,
                            "analysisTemplates": [TEMPLATE]}
    base.update(kw)
    return ReleaseSpec.model_validate(base)


class ProgFakes(Fakes):
    """The rollout fakes plus ``set_traffic`` and ``measure_metric``; ``values`` are the metric's results in order."""

    def __init__(self, *, live: bool = True, target: ObjectRef | None = None, values: list[float] | None = None,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.live, self.target, self.values = live, target, list(values or [])

    def activities(self) -> list[Callable[..., Any]]:
        f = self
        base = [a for a in super().activities()
                if getattr(a, "__temporal_activity_definition").name not in ("apply_release", "prepare_release")]

        @activity.defn(name="prepare_release")
        async def prepare_release(inp: Any) -> ReleasePlan:
            await f._run("prepare_release")
            w = f.target or ObjectRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")
            return ReleasePlan(objects=[w], workloads=[w], manifests_digest="sha256:x")

        @activity.defn(name="apply_release")
        async def apply_release(inp: ApplyInput) -> list[str]:
            tag = ("" if inp.only is None else f"[only={','.join(o.name for o in inp.only)}]") + \
                (f"[exclude={','.join(o.name for o in inp.exclude)}]" if inp.exclude else "")
            await f._run(f"apply_release{tag}")
            return []

        @activity.defn(name="set_traffic")
        async def set_traffic(inp: TrafficInput) -> TrafficResult:
            key = f"set_traffic:{inp.action.value}" + (f":{inp.weight}" if inp.action == TrafficAction.CANARY_WEIGHT
                                                       else "")
            await f._run(key)
            c = -(-inp.weight * 10 // 100)
            return TrafficResult(live=f.live, total=10, canary_replicas=c, stable_replicas=10 - c,
                                 wait_for=[inp.workload], canary_hash="c1", stable_hash="s1")

        @activity.defn(name="measure_metric")
        async def measure_metric(inp: MeasureInput) -> Measurement:
            await f._run("measure_metric")
            v = f.values.pop(0) if f.values else 0.0
            now = activity.info().started_time
            phase = AnalysisPhase.SUCCESSFUL if v < 0.05 else (AnalysisPhase.FAILED if v >= 0.2
                                                                 else AnalysisPhase.INCONCLUSIVE)
            return Measurement(metric=inp.metric.name, template=inp.attempt_info.template, value=f"[{v}]",
                               phase=phase, started_at=now, finished_at=now)

        return [*base, prepare_release, apply_release, set_traffic, measure_metric]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server for the tests that hold no activity (see ``own_env``)."""
    e = await _time_skipping()
    yield e
    await e.shutdown()


async def _time_skipping() -> WorkflowEnvironment:
    e = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER),
                                                      data_converter=pydantic_data_converter)
    kw, num = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, IndexedValueType.INDEXED_VALUE_TYPE_INT
    await e.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace="default", search_attributes={"RolloutApp": kw, "RolloutEnvironment": kw, "RolloutPhase": kw,
                                                "RolloutOutcome": kw, "RolloutImage": kw, "RolloutRevision": num,
                                                "RolloutStep": kw}))
    return e


HEAD = ["prepare_release", "snapshot_release", "set_traffic:prepare", "apply_release[exclude=web]"]
TAIL = ["prune_release", "finalize_revision:deployed"]
PROMOTE = ["apply_release[only=web]", "wait_ready", "set_traffic:canary-promoted"]


async def _awaiting_promotion(r: Run, step: int | None = None, skip_time: bool = False) -> RolloutStatus:
    """The status once the rollout waits for a promotion (at ``step``, if given). ``skip_time``: advance the test
    server's clock between queries, past timed pauses (it skips time only when told or awaiting a result)."""
    assert r.handle is not None
    for _ in range(600):
        st = await r.handle.query("status", result_type=RolloutStatus)
        if st.progressive is not None and st.progressive.awaiting_promotion and step in (None, st.progressive.step):
            return st
        await (r.env.sleep(300) if skip_time else asyncio.sleep(0.05))
    raise AssertionError(f"never paused for a promotion{f' at step {step}' if step else ''}")


async def _promote_when_paused(r: Run, req: Promotion) -> str:
    assert r.handle is not None
    await _awaiting_promotion(r)
    return str(await r.handle.execute_update("promote", req))




@pytest.mark.asyncio(loop_scope="session")
async def test_canary_steps_in_order_and_promote(env: WorkflowEnvironment) -> None:
    f = ProgFakes(hold={"snapshot_release"})
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 50},
                                   {"pause": {}}]}})
    async with Run(env, f, s) as r:
        assert r.handle is not None
        await r.when_started("snapshot_release")
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await r.handle.execute_update("promote", Promotion(approver="eve"))
        assert "is not paused for a promotion (phase Progressing" in str(e.value.cause)
        f.release("snapshot_release")
        answer = await _promote_when_paused_at(r, 4, Promotion(approver="alice", comment="looks good"))
        res = await r.result()
        await r.record("canary-promote-v3")  # tests/test_replay.py replays it
    assert answer == "promoted by alice at step 4"
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert f.calls == HEAD + ["set_traffic:canary-weight:20", "wait_ready", "set_traffic:canary-weight:50",
                              "wait_ready", *PROMOTE, *TAIL]
    p = res.progressive
    assert p is not None and p.weight == 100 and p.step == 4 and p.steps == 4
    assert [(x.approver, x.step, x.reason, x.comment) for x in p.promotions] == [("alice", 4, "pause", "looks good")]


async def _promote_when_paused_at(r: Run, step: int, req: Promotion) -> str:
    assert r.handle is not None
    await _awaiting_promotion(r, step, skip_time=True)
    return str(await r.handle.execute_update("promote", req))


@pytest.mark.asyncio(loop_scope="session")
async def test_promote_full_skips_the_remaining_steps(env: WorkflowEnvironment) -> None:
    f = ProgFakes()
    s = spec({"canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}})
    async with Run(env, f, s) as r:
        await _promote_when_paused(r, Promotion(approver="bob", full=True))
        res = await r.result()
    assert res.outcome == Outcome.SUCCEEDED
    assert f.calls == HEAD + ["set_traffic:canary-weight:10", "wait_ready", *PROMOTE, *TAIL]
    assert res.progressive is not None and res.progressive.promotions[0].full


@pytest.mark.asyncio(loop_scope="session")
async def test_abort_during_pause_scales_canary_to_zero_before_the_rollback(env: WorkflowEnvironment) -> None:
    f = ProgFakes()
    s = spec({"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}})
    async with Run(env, f, s) as r:
        assert r.handle is not None
        st = await _awaiting_promotion(r)
        assert "promote to continue" in (st.progressive.paused_reason or "")
        await r.handle.signal("abort", Abort(reason="bad canary"))
        res = await r.result()
    assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: bad canary"
    assert f.calls == HEAD + ["set_traffic:canary-weight:30", "wait_ready", "set_traffic:canary-abort",
                              "rollback_release", "wait_ready", "finalize_revision:rolled-back"]


@pytest.mark.asyncio(loop_scope="session")
async def test_first_rollout_of_the_workload_is_rolling(env: WorkflowEnvironment) -> None:
    f = ProgFakes(live=False)
    res = await _run(env, f, spec({"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}))
    assert res.outcome == Outcome.SUCCEEDED
    assert f.calls == ["prepare_release", "snapshot_release", "set_traffic:prepare", "apply_release", "wait_ready",
                       *TAIL]


@pytest.mark.asyncio(loop_scope="session")
async def test_failed_step_analysis_rolls_back_with_canary_at_zero(env: WorkflowEnvironment) -> None:
    f = ProgFakes(values=[0.01, 0.3])
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                                   {"setWeight": 100}]}})
    res = await _run(env, f, s)
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    assert res.failed_step == Step.ANALYSIS and res.error_type == "AnalysisFailed"
    assert "errors" in (res.cause or "") and "Failed" in (res.cause or "")
    assert f.calls == HEAD + ["set_traffic:canary-weight:20", "wait_ready", "set_traffic:info", "measure_metric",
                              "measure_metric", "set_traffic:canary-abort", "rollback_release", "wait_ready",
                              "finalize_revision:rolled-back"]
    p = res.progressive
    assert p is not None and [m.value for m in p.measurements] == ["[0.01]", "[0.3]"]


@pytest.mark.asyncio(loop_scope="session")
async def test_inconclusive_analysis_waits_for_promote(env: WorkflowEnvironment) -> None:
    f = ProgFakes(values=[0.1, 0.1, 0.1])
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}}]}})
    async with Run(env, f, s) as r:
        await _promote_when_paused(r, Promotion(approver="carol"))
        res = await r.result()
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    p = res.progressive
    assert p is not None and p.analysis_phase == "Inconclusive"
    assert [(x.approver, x.reason) for x in p.promotions] == [("carol", "inconclusive analysis")]


@pytest.mark.asyncio(loop_scope="session")
async def test_blue_green_manual_promotion_then_scale_down(env: WorkflowEnvironment) -> None:
    f = ProgFakes()
    s = spec({"blueGreen": {"activeService": "web", "previewService": "web-preview", "autoPromotionEnabled": False,
                            "scaleDownDelaySeconds": 600}})
    async with Run(env, f, s) as r:
        await _promote_when_paused(r, Promotion(approver="dave"))
        res = await r.result()
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert f.calls == HEAD + ["set_traffic:preview", "wait_ready", "set_traffic:switch-active",
                              "apply_release[only=web]", "wait_ready", "set_traffic:bg-cleanup", *TAIL]
    assert res.progressive is not None and res.progressive.active == "preview"


@pytest.mark.asyncio(loop_scope="session")
async def test_blue_green_failed_post_promotion_analysis_switches_back(env: WorkflowEnvironment) -> None:
    f = ProgFakes(values=[0.5])
    s = spec({"blueGreen": {"activeService": "web", "previewService": "web-preview",
                            "postPromotionAnalysis": {"templates": [{"templateName": "errors"}]}}})
    async with Run(env, f, s) as r:
        res = await r.result()
        await r.record("bluegreen-switch-back-v3")
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    assert f.calls == HEAD + ["set_traffic:preview", "wait_ready", "set_traffic:switch-active", "set_traffic:info",
                              "measure_metric", "set_traffic:switch-back", "rollback_release", "wait_ready",
                              "finalize_revision:rolled-back", "set_traffic:bg-cleanup"]
    p = res.progressive
    assert p is not None and p.active == "stable" and p.switch_back_seconds is not None


@pytest.mark.asyncio(loop_scope="session")
async def test_statefulset_canary_abort_resets_the_partition_after_the_rollback(env: WorkflowEnvironment) -> None:
    f = ProgFakes(target=STS)
    s = spec({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    async with Run(env, f, s) as r:
        assert r.handle is not None
        await _awaiting_promotion(r)
        await r.handle.signal("abort", Abort(reason="stop"))
        res = await r.result()
    assert res.outcome == Outcome.ABORTED
    assert f.calls == ["prepare_release", "snapshot_release", "set_traffic:prepare", "apply_release",
                       "set_traffic:canary-weight:50", "wait_ready", "set_traffic:canary-abort", "rollback_release",
                       "wait_ready", "finalize_revision:rolled-back", "set_traffic:partition-reset", "wait_ready"]


async def _run(env: WorkflowEnvironment, f: ProgFakes, s: ReleaseSpec) -> Any:
    async with Run(env, f, s) as r:
        return await r.result()


@pytest.mark.asyncio(loop_scope="session")
async def test_background_analysis_failure_stops_a_pause_and_rolls_back(env: WorkflowEnvironment) -> None:
    """A background analysis that fails while the canary waits at `pause: {}` ends the pause at once."""
    f = ProgFakes(values=[0.01, 0.01, 0.5])
    tpl = {**TEMPLATE, "metrics": [{**TEMPLATE["metrics"][0], "count": None}]}  # type: ignore[dict-item]
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}],
                         "analysis": {"templates": [{"templateName": "errors"}], "startingStep": 1}}},
             analysisTemplates=[tpl])
    res = await _run(env, f, s)
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    assert res.failed_step == Step.ANALYSIS and (res.cause or "").startswith("background analysis errors Failed")
    assert f.calls == HEAD + ["set_traffic:canary-weight:20", "wait_ready", "set_traffic:info", "measure_metric",
                              "measure_metric", "measure_metric", "set_traffic:canary-abort", "rollback_release",
                              "wait_ready", "finalize_revision:rolled-back"]
    assert res.progressive is not None and res.progressive.background_analysis == "Failed"


@pytest.mark.asyncio(loop_scope="session")
async def test_background_analysis_stops_at_the_promotion(env: WorkflowEnvironment) -> None:
    f = ProgFakes(values=[0.01] * 1000)
    tpl = {**TEMPLATE, "metrics": [{**TEMPLATE["metrics"][0], "count": None}]}  # type: ignore[dict-item]
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "35s"}}, {"setWeight": 60}],
                         "analysis": {"templates": [{"templateName": "errors"}]}}}, analysisTemplates=[tpl])
    res = await _run(env, f, s)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    n = f.calls.count("measure_metric")
    assert 3 <= n <= 6, f.calls  # every 10 s during the 35 s pause (+ the setWeight steps), then stopped
    assert f.calls[-len(PROMOTE) - 2:] == [*PROMOTE, *TAIL]
    assert res.progressive is not None and res.progressive.background_analysis in ("Successful", "Stopped (promoted)")


@pytest.mark.asyncio(loop_scope="session")
async def test_operator_pause_during_an_analysis_holds_the_next_step(env: WorkflowEnvironment) -> None:
    """As in a rolling rollout: `pause` takes effect before the next step; the running analysis finishes."""
    f = ProgFakes(values=[0.01, 0.01, 0.01], hold={"measure_metric#2"})
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                                   {"setWeight": 50}]}})
    async with Run(env, f, s) as r:
        assert r.handle is not None
        await r.when_started("measure_metric#2")
        await r.handle.signal("pause")
        f.release("measure_metric#2")
        st = await _status_until(r, lambda st: st.phase.value == "Paused")
        assert st.progressive is not None and st.progressive.step == 3 and "set_traffic:canary-weight:50" not in f.calls
        await r.handle.signal("resume")
        res = await r.result()
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert f.calls.count("measure_metric") == 3 and "set_traffic:canary-weight:50" in f.calls


async def _status_until(r: Run, pred: Callable[[RolloutStatus], bool]) -> RolloutStatus:
    assert r.handle is not None
    for _ in range(600):
        st = await r.handle.query("status", result_type=RolloutStatus)
        if pred(st):
            return st
        await r.env.sleep(5)
    raise AssertionError(f"status never matched; last: {st}")


# ---- validation (pure: the loader, no Temporal) ------------------------------------------------------------------


def _release(tmp: Path, objects: list[dict[str, Any]], strategy: dict[str, Any],
             templates: list[dict[str, Any]] | None = None) -> Path:
    (tmp / "m.yaml").write_text(yaml.safe_dump_all(objects))
    spec = {"app": "shop", "environment": "prod", "namespace": "shop", "manifests": ["m.yaml"], "strategy": strategy,
            "analysisTemplates": templates or []}
    (tmp / "release.yaml").write_text(yaml.safe_dump(spec))
    return tmp / "release.yaml"


def _workload(kind: str, name: str = "web", **spec: Any) -> dict[str, Any]:
    tpl = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": tpl, **spec}}


def _svc(name: str, app: str = "web") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}}


@pytest.mark.parametrize(("objects", "strategy", "templates", "message"), [
    ([_workload("DaemonSet")], {"canary": {"steps": [{"setWeight": 10}]}}, None,
     "DaemonSet/web cannot be rolled out with canary; supported kinds: Deployment, StatefulSet"),
    ([_workload("Deployment"), _workload("Deployment", "api")], {"canary": {"steps": [{"setWeight": 10}]}}, None,
     "needs exactly one workload (Deployment/StatefulSet); found: Deployment/web, Deployment/api"),
    ([_workload("StatefulSet", updateStrategy={"rollingUpdate": {"partition": 2}})],
     {"canary": {"steps": [{"setWeight": 10}]}}, None, "the canary steps set the partition"),
    ([_workload("Deployment"), _svc("web")], {"blueGreen": {"activeService": "web", "previewService": "web-pre"}},
     None, "strategy.blueGreen.previewService: Service 'web-pre' is not in the release's manifests"),
    ([_workload("Deployment"), _svc("web"), _svc("web-pre", app="other")],
     {"blueGreen": {"activeService": "web", "previewService": "web-pre"}}, None,
     "the selector must match the pods of Deployment/web (strategy.blueGreen.previewService)"),
    ([_workload("Deployment")], {"canary": {"steps": [{"analysis": {"templates": [{"templateName": "nope"}]}}]}},
     None, "strategy.canary.steps[0].analysis.templates[0].templateName: unknown analysis template 'nope'"),
    ([_workload("Deployment")], {"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}, None,
     "a step is exactly one of setWeight, pause, analysis"),
])
def test_bad_strategies_are_refused_before_any_side_effect(tmp_path: Path, objects: list[dict[str, Any]],
                                                           strategy: dict[str, Any], templates: Any,
                                                           message: str) -> None:
    with pytest.raises(ReleaseError) as e:
        load_manifests(load_spec(_release(tmp_path, objects, strategy, templates)))
    assert message in str(e.value), str(e.value)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_rollback_redeploy_of_a_canary_release_is_not_stepped(env: WorkflowEnvironment) -> None:
    f = ProgFakes()
    res = await _run(env, f, spec({"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}, from_revision=1))
    assert res.outcome == Outcome.SUCCEEDED and res.progressive is None
    assert f.calls == ["prepare_release", "snapshot_release", "apply_release", "wait_ready", *TAIL]


def test_status_lines_say_step_weight_pause_reason_and_measurements() -> None:
    from datetime import UTC, datetime

    from contract.strategy import PromotionRecord, StrategyKind, StrategyStatus

    at = datetime(2026, 11, 27, 10, 42, 7, tzinfo=UTC)
    st = StrategyStatus(strategy=StrategyKind.CANARY, step=3, steps=5, step_name="analysis errors", weight=20,
                        canary_replicas=1, stable_replicas=4, paused_reason="analysis errors inconclusive",
                        analysis_phase="Inconclusive",
                        measurements=[Measurement(metric="error-rate", template="errors", value="[0.07]",
                                                  phase=AnalysisPhase.INCONCLUSIVE, started_at=at, finished_at=at)],
                        promotions=[PromotionRecord(approver="alice", at=at, step=3, reason="inconclusive analysis")])
    assert st.lines() == [
        "canary step 3/5 analysis errors: weight 20% (1 canary / 4 stable pods)",
        "paused: analysis errors inconclusive",
        "analysis: last Inconclusive",
        "measurement errors/error-rate 10:42:07: [0.07] → Inconclusive",
        "promoted by alice at 10:42:07 (inconclusive analysis)",
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_workflow_cancel_mid_analysis_scales_the_canary_to_zero_then_rolls_back(env: WorkflowEnvironment) -> None:
    f = ProgFakes(values=[0.01] * 10, hold={"measure_metric#2"})
    s = spec({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}}]}})
    async with Run(env, f, s) as r:
        assert r.handle is not None
        await r.when_started("measure_metric#2")
        await r.handle.cancel()
        res = await r.result()
    assert res.outcome == Outcome.ABORTED and res.cause == "workflow cancelled"  # a Canceled run, as reported
    calls = [c for c in f.calls if not c.startswith("cancelled:")]
    # The held measurement's cancellation is not awaited (background analysis): when it lands while the last
    # workflow task runs, the server refuses that task's completion, and the retried task runs its local
    # activity (finalize, idempotent) again. The history records it once.
    if calls[-2:] == ["finalize_revision:rolled-back"] * 2:
        calls.pop()
    assert calls == HEAD + [
        "set_traffic:canary-weight:20", "wait_ready", "set_traffic:info", "measure_metric", "measure_metric",
        "set_traffic:canary-abort", "rollback_release", "wait_ready", "finalize_revision:rolled-back"]


# ---- bounded history: continue-as-new mid-canary ------------------------------------------------------------------

@pytest_asyncio.fixture(loop_scope="session")
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own: the time-skipping server does not skip time while an activity is running, and
    activities other tests leave held (``hold``) keep running until their timeout in a shared server."""
    e = await _time_skipping()
    yield e
    await e.shutdown()


BG = {**TEMPLATE, "metrics": [{**TEMPLATE["metrics"][0], "count": None, "failureLimit": 1}]}  # type: ignore[dict-item]


def long_canary(limit: int) -> ReleaseSpec:
    """Background analysis every 10 s from step 1; a timed pause long enough to grow the history past ``limit``."""
    return spec({"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "3m"}}, {"setWeight": 20},
                                      {"pause": {}}, {"setWeight": 50}],
                            "analysis": {"templates": [{"templateName": "errors"}]}, "maxHistoryEvents": limit}},
                analysisTemplates=[BG])


async def _latest_status(r: Run, pred: Callable[[RolloutStatus], bool]) -> RolloutStatus:
    """Status of the LATEST run of the workflow ID (the start handle is pinned to the first run)."""
    assert r.handle is not None
    h = r.env.client.get_workflow_handle(r.handle.id)
    for _ in range(600):
        try:
            st = await h.query("status", result_type=RolloutStatus)
        except Exception:  # noqa: BLE001 - between two runs a query may find none open yet
            st = None
        if st is not None and pred(st):
            return st
        await r.env.sleep(20)
    raise AssertionError(f"status never matched; last {st}")


async def _runs(r: Run) -> list[str]:
    """The run chain from the first run, following each ContinueAsNew event of the recorded histories."""
    assert r.handle is not None
    runs = [r.handle.first_execution_run_id or r.handle.run_id or ""]
    while True:
        hist = await r.env.client.get_workflow_handle(r.handle.id, run_id=runs[-1]).fetch_history()
        last = hist.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            return runs
        runs.append(last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


@pytest.mark.parametrize("limit", [30, 35, 40, 45, 50])
@pytest.mark.asyncio(loop_scope="session")
async def test_long_canary_continues_as_new_and_carries_its_status_over(own_env: WorkflowEnvironment,
                                                                         limit: int) -> None:
    """A tiny maxHistoryEvents forces continue-as-new during the timed pause (background analysis running) and
    between steps. The new runs skip validate/build/snapshot/apply, resume at the right step with the rest of the
    pause, keep the measurements, counters and the approver of the `pause: {}`, and finish the canary once.

    Several limits, because each puts the continue-as-new at another point of the 10 s measurement cycle (just after
    a measurement, in the interval wait, as the interval timer fires): none may lose a measurement. Before the drain
    (PATCH_DRAIN) 35 and 45 did: every run restarted the full interval, and a measurement due as the pause's
    continue-as-new fired was cancelled, so the cadence became 20 s (11 and 14 measurements instead of ~20)."""
    f = ProgFakes(values=[0.01] * 1000)
    async with Run(own_env, f, long_canary(limit)) as r:
        st = await _latest_status(r, lambda s: s.progressive is not None and s.progressive.awaiting_promotion
                                  and s.progressive.step == 4)
        assert st.progressive is not None and st.progressive.runs >= 2, st.progressive
        assert st.revision is not None and st.progressive.weight == 20
        h = r.env.client.get_workflow_handle(r.handle.id)  # type: ignore[union-attr]
        answer = await h.execute_update("promote", Promotion(approver="alice", comment="ok"))
        res = await r.result()
        runs = await _runs(r)
        hists = [await own_env.client.get_workflow_handle(r.handle.id, run_id=x).fetch_history()  # type: ignore[union-attr]
                 for x in runs]
        if os.environ.get("ROLLWRIGHT_RECORD_HISTORIES") == "1" and limit == 50:  # tests/test_replay.py
            for name, hist in (("canary-continue-as-new-drain-first-run-v2", hists[0]),
                               ("canary-continue-as-new-drain-last-run-v2", hists[-1])):
                (Path(__file__).parent / "histories" / f"{name}.json").write_text(hist.to_json())
    assert answer == "promoted by alice at step 4"
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    p = res.progressive
    assert p is not None and p.runs >= 3 and p.weight == 100 and p.step == 5, p
    assert [(x.approver, x.step, x.comment) for x in p.promotions] == [("alice", 4, "ok")]
    # One validate, snapshot, prepare and apply for the whole rollout; the steps ran once each, in order.
    steps = [c for c in f.calls if c not in ("measure_metric", "set_traffic:info")]
    assert steps == HEAD + ["set_traffic:canary-weight:10", "wait_ready", "set_traffic:canary-weight:20",
                            "wait_ready", "set_traffic:canary-weight:50", "wait_ready", *PROMOTE, *TAIL]
    assert len(runs) == p.runs

    # No measurement lost. Every measure_metric activity scheduled in any run completed (none cancelled or left in
    # flight at a continue-as-new), and each one is in the final status, exactly once, in order.
    done = sum(_measures(hist, "completed") for hist in hists)
    assert [_measures(hist, "scheduled") for hist in hists] == [_measures(hist, "completed") for hist in hists]
    assert len(p.measurements) == done == f.calls.count("measure_metric"), (len(p.measurements), done)
    starts = [m.started_at for m in p.measurements]
    assert starts == sorted(set(starts)), starts  # ordered, no duplicate
    # No measurement slot lost: one measurement per 10 s interval across every continue-as-new. Workflow time of the
    # time-skipping server (timer durations), not wall-clock: a lost slot is a gap of two intervals (20 s).
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g < 15 for g in gaps), gaps
    # ~18 in the 3-minute pause plus the rest; it was not restarted by the continue-as-new (not 2 x 18).
    assert 18 <= len(p.measurements) <= 30, len(p.measurements)

    # The carried status of each new run: the measurements so far (a prefix of the final list), the background
    # counters matching them, and when its next measurement is due (after the last one taken).
    carries = [await _carry(own_env, r, run_id) for run_id in runs[1:]]
    for c in carries:
        assert c.status.progressive is not None
        kept = c.status.progressive.measurements
        assert kept == p.measurements[:len(kept)]
        assert c.background is not None and len(c.background) == 1, c.background
        b = c.background[0]
        assert b.count == b.successful == len(kept) and b.failed == b.error == 0, b
        assert b.next_at is not None and (not kept or b.next_at > kept[-1].started_at), (b, kept[-1:])
    # Both safe points were used: inside the timed pause (the new run gets the rest of it) and between two steps.
    assert any(c.next_step == 1 and c.pause_until is not None for c in carries), carries
    where = [(c.next_step, c.pause_until is not None, c.pause_open) for c in carries]
    assert any(c.pause_until is None and c.next_step in (2, 3, 4) for c in carries), where
    assert all(c.revision.revision == carries[0].revision.revision and c.background_started for c in carries)


def _measures(hist: Any, what: str) -> int:
    """How many ``measure_metric`` activities a run's history scheduled (``scheduled``) or completed."""
    sched = {e.event_id for e in hist.events if e.HasField("activity_task_scheduled_event_attributes")
             and e.activity_task_scheduled_event_attributes.activity_type.name == "measure_metric"}
    if what == "scheduled":
        return len(sched)
    return sum(1 for e in hist.events if e.HasField("activity_task_completed_event_attributes")
               and e.activity_task_completed_event_attributes.scheduled_event_id in sched)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_measurement_in_flight_at_a_continue_as_new_finishes_and_is_kept(own_env: WorkflowEnvironment) -> None:
    """The history passes maxHistoryEvents while a background measurement is in flight (held here; the signals
    grow the history). The continue-as-new waits for it (drain, PATCH_DRAIN) instead of cancelling it: its result is
    in the carried status and counters, and the new run takes the next one when it is due."""
    f = ProgFakes(values=[0.01] * 1000, hold={"measure_metric#4"})
    async with Run(own_env, f, long_canary(100)) as r:
        assert r.handle is not None
        for _ in range(100):  # ~30 s into the timed pause, history well below 100 (time skips only when told)
            if f.started("measure_metric#4").is_set():
                break
            await r.env.sleep(5)
        await r.when_started("measure_metric#4")
        first = r.handle
        for _ in range(100):  # each signal adds ~4 events; "resume" without a pause changes nothing
            if (await first.describe()).raw_description.workflow_execution_info.history_length >= 100:
                break
            await first.signal("resume")
        f.release("measure_metric#4")
        await _latest_status(r, lambda s: s.progressive is not None and s.progressive.awaiting_promotion
                             and s.progressive.step == 4)
        await r.env.client.get_workflow_handle(r.handle.id).execute_update("promote", Promotion(approver="bob"))
        res = await r.result()
        runs = await _runs(r)
        carry = await _carry(own_env, r, runs[1])
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert "cancelled:measure_metric" not in f.calls, f.calls
    p = res.progressive
    assert p is not None and len(p.measurements) == f.calls.count("measure_metric"), (p, f.calls)
    # The first continue-as-new came inside the timed pause, after the held measurement had finished.
    assert carry.next_step == 1 and carry.pause_until is not None, carry
    assert carry.status.progressive is not None and len(carry.status.progressive.measurements) == 4
    assert carry.status.progressive.measurements == p.measurements[:4]
    assert carry.background is not None and carry.background[0].count == 4, carry.background
    nxt = carry.background[0].next_at
    assert nxt is not None and nxt > p.measurements[3].started_at
    # The new run's first measurement is the one due then (not one interval after the new run started).
    assert p.measurements[4].started_at >= nxt


async def _carry(e: WorkflowEnvironment, r: Run, run_id: str) -> CarryOver:
    """The CarryOver a continued run was started with (its second input payload)."""
    assert r.handle is not None
    hist = await e.client.get_workflow_handle(r.handle.id, run_id=run_id).fetch_history()
    payloads = hist.events[0].workflow_execution_started_event_attributes.input.payloads
    _, carry = pydantic_data_converter.payload_converter.from_payloads(payloads, [ReleaseSpec, CarryOver])
    return carry  # type: ignore[no-any-return]


@pytest.mark.asyncio(loop_scope="session")
async def test_failure_counts_and_abort_survive_continue_as_new(own_env: WorkflowEnvironment) -> None:
    """failureLimit 1: one Failed measurement before the continue-as-new and one after fail the analysis (the
    counter was carried over); and an abort after a continue-as-new scales the canary to 0 and rolls back."""
    f = ProgFakes(values=[0.5] + [0.01] * 12 + [0.5] + [0.01] * 1000)
    async with Run(own_env, f, long_canary(60)) as r:
        res = await r.result()
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    assert "failed (2) > failureLimit (1)" in (res.cause or ""), res.cause
    assert res.progressive is not None and res.progressive.runs >= 2
    assert f.calls.count("snapshot_release") == 1
    assert f.calls[-4:] == ["set_traffic:canary-abort", "rollback_release", "wait_ready", "finalize_revision:rolled-back"]

    f = ProgFakes(values=[0.01] * 1000)
    # 50 (60 before the short steps became local activities: fewer events per step) puts one continue-as-new inside
    # the timed pause and one between steps.
    async with Run(own_env, f, long_canary(60)) as r:
        st = await _latest_status(r, lambda s: s.progressive is not None and s.progressive.runs >= 2)
        h = r.env.client.get_workflow_handle(r.handle.id)  # type: ignore[union-attr]
        await h.signal("abort", Abort(reason="enough"))
        res = await r.result()
    assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: enough", res.cause
    assert st.progressive is not None and res.progressive is not None and res.progressive.runs >= 2
    assert res.rolled_back_to is not None
    assert f.calls.count("snapshot_release") == 1 and f.calls.count("prepare_release") == 1
    assert f.calls[-4:] == ["set_traffic:canary-abort", "rollback_release", "wait_ready", "finalize_revision:rolled-back"]
