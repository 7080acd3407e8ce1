"""The Python client: start, follow and steer rollouts. The CLI is a thin shell over this module.

Used by ``orchestrator.cli``, tests, ``bench/`` and anyone scripting Rollwright from Python.

Errors (all carry structured fields)::

    OrchestratorError
    ├── ConfigError          (orchestrator.config)   bad ROLLWRIGHT_* value
    ├── ReleaseError         (releases.loader)   bad spec or manifest: file, document, field, reason
    ├── RolloutAlreadyRunning                        the app/environment lock is held: workflow_id, run_id
    └── RolloutNotFound                              no such rollout
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode

from contract.models import Outcome, RolloutResult, RolloutStatus
from contract.spec import Abort, Approval, Promotion, ReleaseSpec
from orchestrator import WORKFLOW_TYPE, legacy_workflow_id, parse_workflow_id, workflow_id
from orchestrator.config import Settings
from orchestrator.connect import connect
from releases.loader import ReleaseError, check_analysis, load_manifests
from workflows.rollout import SA_APP, SA_ENV, SA_PHASE, RolloutWorkflow


class OrchestratorError(Exception):
    """Root of the client's errors."""


class RolloutAlreadyRunning(OrchestratorError):
    def __init__(self, workflow_id: str, run_id: str | None) -> None:
        self.workflow_id, self.run_id = workflow_id, run_id
        super().__init__(f"a rollout is already running: {workflow_id} (run {run_id}); follow it with "
                         f"`rollwright rollout watch`, or stop it with `rollwright rollout abort`")


class RolloutNotFound(OrchestratorError):
    def __init__(self, workflow_id: str, *, detail: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(detail or f"no rollout {workflow_id} found")


@dataclass
class RolloutSummary:
    workflow_id: str
    run_id: str
    status: str
    app: str | None
    environment: str | None
    phase: str | None
    outcome: str | None
    image: str | None
    start_time: str | None
    close_time: str | None


def validate_locally(spec: ReleaseSpec) -> list[str]:
    """Everything checkable without the cluster, before a workflow exists (raises ReleaseError).
    Returns the release's objects as ``Kind/name`` for the workflow's static details."""
    if spec.from_revision is not None:
        return []
    check_analysis(spec)
    objects = [f"{m.kind}/{m.name}" for m in load_manifests(spec)]
    if spec.image is not None:
        from releases.bundle import check_context  # local file checks only

        check_context(spec)
    return objects


def push_bundle(spec: ReleaseSpec, repository: str | None = None) -> ReleaseSpec:
    """Packs the release's files into a bundle, pushes it, and returns the spec the workflow gets: the bundle
    reference instead of paths (``base_dir`` reset, so no path of this machine reaches the worker). Raises
    ReleaseError (exit 2) for a limit or a missing file before anything is pushed."""
    import httpx

    from releases import bundle
    from releases.loader import ReleaseError

    packed = bundle.pack(spec)
    repo = repository or bundle.default_repository(spec)
    field = "image.repository" if repository is None and spec.image else "ROLLWRIGHT_BUNDLE_REPOSITORY"
    try:
        with bundle.Registry(repo) as reg:
            ref = reg.push(packed)
    except httpx.TransportError as e:
        # Same wording as the worker's registry check: the release names a registry nobody can reach.
        raise ReleaseError("release bundle", f"registry {repo.split('/', 1)[0]} is unreachable: {e} (the release "
                           f"bundle is pushed to {repo})", field=field) from None
    return spec.model_copy(update={"bundle": ref, "base_dir": "."})


@dataclass
class Started:
    """One release of ``RolloutClient.start_many``: its handle, or why it did not start."""

    spec: ReleaseSpec
    handle: WorkflowHandle[Any, Any] | None
    error: Exception | None


def _prepare(spec: ReleaseSpec, validate: bool) -> tuple[ReleaseSpec, list[str]]:
    """Local checks, then the bundle push: the spec the workflow gets and its objects (``Kind/name``)."""
    objects = validate_locally(spec) if validate else []
    if spec.bundle is None and spec.from_revision is None:
        spec = push_bundle(spec)
    return spec, objects


class RolloutClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> RolloutClient:
        return cls(await connect(settings, tracing=False), settings.task_queue)

    async def start(self, spec: ReleaseSpec, *, validate: bool = True) -> WorkflowHandle[Any, Any]:
        """Starts a rollout; refuses with RolloutAlreadyRunning while one runs for the same app/environment."""
        # Off the event loop: parsing manifests and pushing the bundle are CPU and blocking I/O, and a program
        # starting a fleet from one loop would otherwise parse one release while the others' starts wait.
        spec, objects = await asyncio.to_thread(_prepare, spec, validate)
        return await self._start_prepared(spec, objects)

    async def start_many(self, specs: Sequence[ReleaseSpec], sources: Sequence[str] | None = None) -> list[Started]:
        """Starts a fleet: every release is checked before anything happens, then all are pushed and started.

        Raises ReleaseError, with nothing pushed or started, when any release is invalid or two name the same
        app and environment. After that each release stands alone: one whose lock is held, or whose registry
        refuses its bundle, is reported in its ``Started.error`` and the others start. ``sources`` (the spec
        files, in order) name the releases in errors."""
        from releases.bundle import BundleError

        names = list(sources) if sources is not None else [f"release {s.app} → {s.environment}" for s in specs]
        where: dict[tuple[str, str], str] = {}
        for s, path in zip(specs, names, strict=True):
            key = (s.app, s.environment)
            if key in where:
                raise ReleaseError(path, f"{s.app} → {s.environment} is also released by {where[key]}; a fleet "
                                   f"starts one rollout per app and environment", field="app")
            where[key] = path
        objects = await asyncio.to_thread(lambda: [validate_locally(s) for s in specs])

        async def one(spec: ReleaseSpec, objs: list[str]) -> Started:
            try:
                pushed = await asyncio.to_thread(_prepare, spec, False)
                return Started(spec, await self._start_prepared(pushed[0], objs), None)
            except (OrchestratorError, ReleaseError, BundleError) as e:
                return Started(spec, None, e)

        return list(await asyncio.gather(*(one(s, o) for s, o in zip(specs, objects, strict=True))))

    async def _start_prepared(self, spec: ReleaseSpec, objects: list[str]) -> WorkflowHandle[Any, Any]:
        wid = workflow_id(spec.app, spec.environment)
        legacy = await self._legacy_running(spec.app, spec.environment)
        if legacy is not None:  # started by a pre-0.2 client under the old ID: it still holds the lock
            raise RolloutAlreadyRunning(legacy.id, legacy.run_id)
        repo = spec.image.repository if spec.image else "manifests only"
        summary = f"{spec.app} → {spec.environment}: {repo}" + (
            f" (rollback to revision {spec.from_revision})" if spec.from_revision else "")
        details = "\n".join([f"namespace: `{spec.namespace}`", f"bundle: `{spec.bundle}`", "", "objects:"] + [f"- `{o}`" for o in objects]
                            + ["", "manifests:"] + [f"- `{m}`" for m in spec.manifests])
        try:
            return await self.client.start_workflow(
                RolloutWorkflow.run, spec, id=wid, task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SA_APP, spec.app), SearchAttributePair(SA_ENV, spec.environment),
                    SearchAttributePair(SA_PHASE, "Pending")]),
                static_summary=summary, static_details=details)
        except WorkflowAlreadyStartedError as e:
            raise RolloutAlreadyRunning(wid, e.run_id) from None

    def handle(self, app: str, environment: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id(app, environment))

    async def _legacy_running(self, app: str, environment: str) -> WorkflowHandle[Any, Any] | None:
        """A running rollout of this app/environment under the pre-0.2 ID ``rollout-<app>-<env>``. The old ID is
        ambiguous, so its search attributes must name exactly this app and environment."""
        h = self.client.get_workflow_handle(legacy_workflow_id(app, environment))
        try:
            d = await h.describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        sa = {p.key.name: p.value for p in d.typed_search_attributes}
        if d.status != WorkflowExecutionStatus.RUNNING or (sa.get("RolloutApp"), sa.get("RolloutEnvironment")) != (
                app, environment):
            return None
        return self.client.get_workflow_handle(d.id, run_id=d.run_id)

    async def result(self, handle: WorkflowHandle[Any, Any]) -> RolloutResult:
        """Waits for the rollout and returns its typed result, for every outcome (failures carry it as details)."""
        try:
            return RolloutResult.model_validate(await handle.result())
        except WorkflowFailureError as e:
            cause = e.cause
            if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
                return RolloutResult.model_validate(cause.details[0])
            app, env = parse_workflow_id(handle.id) or (handle.id, "?")
            if isinstance(cause, CancelledError):
                return RolloutResult(app=app, environment=env, outcome=Outcome.ABORTED, cause="workflow cancelled")
            if isinstance(cause, TerminatedError):
                return RolloutResult(app=app, environment=env, outcome=Outcome.FAILED, cause="workflow terminated")
            return RolloutResult(app=app, environment=env, outcome=Outcome.FAILED, cause=str(cause or e))

    async def status(self, app: str, environment: str) -> RolloutStatus:
        try:
            return await self.handle(app, environment).query(RolloutWorkflow.status)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise RolloutNotFound(workflow_id(app, environment)) from None
            raise

    async def is_running(self, app: str, environment: str) -> bool:
        try:
            d = await self.handle(app, environment).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return d.status == WorkflowExecutionStatus.RUNNING

    async def _running_handle(self, app: str, environment: str) -> WorkflowHandle[Any, Any]:
        legacy = await self._legacy_running(app, environment)
        if legacy is not None and not await self.is_running(app, environment):
            return self.client.get_workflow_handle(legacy.id)
        if not await self.is_running(app, environment):
            wid = workflow_id(app, environment)
            raise RolloutNotFound(wid, detail=f"rollout {wid} is not running")
        return self.handle(app, environment)

    async def pause(self, app: str, environment: str) -> None:
        await (await self._running_handle(app, environment)).signal(RolloutWorkflow.pause)

    async def resume(self, app: str, environment: str) -> None:
        await (await self._running_handle(app, environment)).signal(RolloutWorkflow.resume)

    async def abort(self, app: str, environment: str, reason: str) -> None:
        await (await self._running_handle(app, environment)).signal(RolloutWorkflow.abort, Abort(reason=reason))

    async def approve(self, app: str, environment: str, approver: str, comment: str | None = None) -> str:
        h = await self._running_handle(app, environment)
        return str(await h.execute_update("approve", Approval(approver=approver, comment=comment), result_type=str))

    async def promote(self, app: str, environment: str, approver: str, *, full: bool = False,
                      comment: str | None = None) -> str:
        """Continues a canary / blue-green rollout paused at a step or on an inconclusive analysis (issue 11)."""
        h = await self._running_handle(app, environment)
        return str(await h.execute_update("promote", Promotion(approver=approver, full=full, comment=comment),
                                          result_type=str))

    async def list(self, *, app: str | None = None, environment: str | None = None, outcome: str | None = None,
                   limit: int = 50) -> list[RolloutSummary]:
        clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
        for key, val in (("RolloutApp", app), ("RolloutEnvironment", environment), ("RolloutOutcome", outcome)):
            if val:
                clauses.append(f"{key} = '{_q(val)}'")
        out = []
        async for w in self.client.list_workflows(" AND ".join(clauses), limit=limit):
            sa = {p.key.name: p.value for p in w.typed_search_attributes}
            get = sa.get
            out.append(RolloutSummary(
                workflow_id=w.id, run_id=w.run_id, status=w.status.name if w.status else "UNKNOWN",
                app=get("RolloutApp"), environment=get("RolloutEnvironment"), phase=get("RolloutPhase"),
                outcome=get("RolloutOutcome"), image=get("RolloutImage"),
                start_time=w.start_time.isoformat() if w.start_time else None,
                close_time=w.close_time.isoformat() if w.close_time else None))
        return out


def _q(v: str) -> str:
    return v.replace("'", "")
