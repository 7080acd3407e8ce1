"""Replays recorded histories (success, rollback, abort mid-wait, approval, pause, cancel, failed rollback) against
today's workflow code.

A workflow change that would break rollouts already in flight fails here: it must go behind
``workflow.patched(...)``. The histories were exported from real runs with scripts/record-histories.sh.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from contract.models import CarryOver
from orchestrator.models import RolloutResult
from orchestrator.spec import ReleaseSpec
from workflows.rollout import PinnedRolloutWorkflow, RolloutWorkflow


@workflow.defn(name="RolloutWorkflow")
class ChangedWithoutPatch(RolloutWorkflow):
    """Today's workflow plus a new first activity, not behind workflow.patched: must not replay."""

    @workflow.run
    async def run(self, spec: ReleaseSpec, carry: CarryOver | None = None) -> RolloutResult:
        await workflow.execute_activity("preflight", spec, start_to_close_timeout=timedelta(seconds=5))
        return await super().run(spec, carry)


HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"success-v1", "rollback-never-ready-v1"} <= names
    # Issue 10: approval, pause, cancel and a failed rollback, recorded after the workflow.patched() changes (from
    # tests/test_workflow_branches.py with ROLLWRIGHT_RECORD_HISTORIES=1, and from real runs on the dev server).
    assert {"approval-v2", "pause-resume-v2", "pause-then-abort-apply-v2", "cancel-mid-wait-v2", "rollback-failed-v2",
            "cancel-mid-wait-real-v2", "approval-real-v2"} <= names
    # Issue 13: the short steps as local activities (workflow.patched("local-short-steps-v1")), recorded from
    # tests/test_workflow_branches.py and from a real rolling rollout on the dev server.
    assert {"approval-local-steps", "pause-resume-local-steps", "pause-then-abort-apply-local-steps",
            "pause-then-abort-prepare-local-steps", "cancel-mid-wait-local-steps", "rollback-failed-local-steps",
            "success-local-steps-real"} <= names
    for p in HISTORIES:
        if p.stem.endswith("local-steps") or p.stem.endswith("local-steps-real"):
            assert '"core_local_activity"' in p.read_text(), f"{p.name} has no local activity marker"
    # A canary's continue-as-new drains its background analysis (workflow.patched("canary-continue-as-new-drain-v1")):
    # the first run (drain) and the last run (resumed on time) of tests/test_progressive_units.py's long canary; the
    # -v1 pair, recorded before the patch, still replays the old path (cancel, full interval).
    drain = {"canary-continue-as-new-drain-first-run-v2", "canary-continue-as-new-drain-last-run-v2"}
    assert drain | {"canary-continue-as-new-first-run-v1", "canary-continue-as-new-last-run-v1"} <= names
    for p in HISTORIES:
        ids = _patch_ids(p)
        assert ("canary-continue-as-new-drain-v1" in ids) == (p.stem in drain), (p.name, ids)


def _patch_ids(path: Path) -> set[str]:
    """The ids of the workflow.patched() markers a recorded history holds."""
    ids = set()
    for e in json.loads(path.read_text())["events"]:
        a = e.get("markerRecordedEventAttributes", {})
        if a.get("markerName") == "core_patch":
            for pl in a["details"]["patch-data"]["payloads"]:
                ids.add(json.loads(base64.b64decode(pl["data"]))["id"])
    return ids


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[RolloutWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_on_a_versioned_worker(path: Path) -> None:
    """Versioned workers register PinnedRolloutWorkflow (same name, PINNED): old histories replay on it too."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[PinnedRolloutWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


@pytest.mark.asyncio(loop_scope="session")
async def test_replay_detects_an_unpatched_change() -> None:
    """The test can fail: a workflow that schedules an extra activity first must not replay the success history."""
    path = next(p for p in HISTORIES if p.stem == "success-v1")
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(workflows=[ChangedWithoutPatch], data_converter=pydantic_data_converter).replay_workflow(
        history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
