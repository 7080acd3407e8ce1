"""Typed messages between the rollout workflow, its activities and its clients.

Imported by ``workflows.rollout`` (through the sandbox pass-through), by every module in ``activities`` and by
the CLI/client. Pure data: no I/O, so it is safe inside the workflow sandbox. Vocabulary follows Argo Rollouts
where it fits (Progressing, Paused, Healthy, Degraded) so operators coming from it feel at home.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from contract.analysis import MetricSummary
from contract.spec import ReleaseSpec
from contract.strategy import StrategyStatus


class Phase(str, Enum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    AWAITING_APPROVAL = "AwaitingApproval"
    ROLLING_BACK = "RollingBack"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ABORTED = "Aborted"


class Step(str, Enum):
    VALIDATE = "Validate"
    APPROVAL = "Approval"
    BUILD = "Build"
    PUSH = "Push"
    SNAPSHOT = "Snapshot"
    APPLY = "Apply"
    WAIT_READY = "WaitReady"
    BAKE = "Bake"
    PRUNE = "Prune"
    FINALIZE = "Finalize"
    ROLLBACK = "Rollback"
    DONE = "Done"
    # canary / blue-green (issue 11)
    CANARY = "Canary"
    BLUE_GREEN = "BlueGreen"
    ANALYSIS = "Analysis"
    PROMOTE = "Promote"


class Outcome(str, Enum):
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    ABORTED = "Aborted"


class RevisionStatus(str, Enum):
    """The ``rollwright.io/status`` label of a revision record (same strings as before the enum existed, so
    recorded histories and existing records still decode)."""

    PENDING = "pending"
    DEPLOYED = "deployed"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ObjectRef(_Msg):
    """One object of the release. ``kind`` is the API kind, ``api_version`` its group/version."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"


class ReleasePlan(_Msg):
    """What validation found: the objects (references only) and a digest of the manifests' content.

    Later activities re-read the manifests and refuse to go on if the digest changed, so the release that was
    validated is exactly the release that gets applied.
    """

    objects: list[ObjectRef]
    workloads: list[ObjectRef]
    manifests_digest: str
    image_tag: str | None = None
    pinned_containers: int = 0


class BuildResult(_Msg):
    image: str  # repository:tag
    image_id: str | None = None
    cache_hit: bool = False


class PushResult(_Msg):
    image: str  # repository@sha256:...
    digest: str
    already_present: bool = False


class RevisionRef(_Msg):
    """A revision record stored in the target namespace (a Secret, Helm-style). History carries only this."""

    namespace: str
    name: str
    revision: int
    previous_revision: int | None = None
    created: list[ObjectRef] = Field(default_factory=list)  # objects that did not exist before this release
    # How many objects the prune step would delete (None: recorded by a worker that did not count them). The
    # workflow skips the prune step when it is 0: one activity and one workflow task less per rollout.
    prune_count: int | None = None


class WorkloadStatus(_Msg):
    kind: str
    name: str
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    ready_now: bool = False
    message: str = ""


class HealthResult(_Msg):
    name: str
    url: str
    ok: bool
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    checked_at: datetime | None = None


# ---- activity inputs -------------------------------------------------------------------------------------------


class PrepareInput(_Msg):
    spec: ReleaseSpec


class BuildInput(_Msg):
    spec: ReleaseSpec
    tag: str


class PushInput(_Msg):
    spec: ReleaseSpec
    tag: str


class SnapshotInput(_Msg):
    spec: ReleaseSpec
    plan: ReleasePlan
    image: str | None = None  # repo@digest the manifests get pinned to
    run_id: str
    workflow_id: str


class ApplyInput(_Msg):
    spec: ReleaseSpec
    plan: ReleasePlan
    revision: RevisionRef
    dry_run: bool = False
    # Canary / blue-green: the workload whose template changes step by step is applied separately (issue 11).
    exclude: list[ObjectRef] = Field(default_factory=list)
    only: list[ObjectRef] | None = None


class WaitInput(_Msg):
    namespace: str
    kube_context: str | None = None
    workloads: list[ObjectRef]
    deadline_seconds: int
    workflow_id: str | None = None


class WaitResult(_Msg):
    workloads: list[WorkloadStatus]
    seconds: float


class HealthInput(_Msg):
    spec: ReleaseSpec


class RollbackInput(_Msg):
    spec: ReleaseSpec
    revision: RevisionRef


class RollbackResult(_Msg):
    restored: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    workloads: list[ObjectRef] = Field(default_factory=list)  # restored workloads to wait for


class FinalizeInput(_Msg):
    spec: ReleaseSpec
    revision: RevisionRef
    status: RevisionStatus
    cause: str | None = None


class PruneInput(_Msg):
    spec: ReleaseSpec
    revision: RevisionRef


class PruneResult(_Msg):
    pruned: list[str] = Field(default_factory=list)  # Kind/namespace/name of each deleted object
    kept: list[str] = Field(default_factory=list)  # dropped from the release but annotated to be kept


# ---- workflow status and result ---------------------------------------------------------------------------------


class RolloutStatus(_Msg):
    """What the ``status`` query returns, and what ``rollwright rollout status|watch`` shows."""

    app: str
    environment: str
    phase: Phase = Phase.PENDING
    step: Step = Step.VALIDATE
    message: str = ""
    paused: bool = False
    image: str | None = None
    revision: int | None = None
    workloads: list[WorkloadStatus] = Field(default_factory=list)
    health: list[HealthResult] = Field(default_factory=list)
    outcome: Outcome | None = None
    cause: str | None = None
    approved_by: str | None = None
    approval_comment: str | None = None
    awaiting_approval: bool = False
    progressive: StrategyStatus | None = None  # canary / blue-green: step k/n, weight, measurements, pause reason
    started_at: datetime | None = None
    updated_at: datetime | None = None
    step_started_at: datetime | None = None


class RolloutResult(_Msg):
    """The workflow's result. ``cause`` is written for a person: what failed, where, and why."""

    app: str
    environment: str
    outcome: Outcome
    cause: str | None = None
    failed_step: Step | None = None
    image: str | None = None
    revision: int | None = None
    rolled_back_to: int | None = None  # the revision restored by the rollback; 0 = nothing was deployed before
    error_type: str | None = None  # the failing activity's error type, e.g. InvalidRelease (exit code 2)
    pruned: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    workloads: list[WorkloadStatus] = Field(default_factory=list)
    health: list[HealthResult] = Field(default_factory=list)
    approved_by: str | None = None
    approval_comment: str | None = None
    progressive: StrategyStatus | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CarryOver(_Msg):
    """What a canary needs to go on in a new run after continue-as-new (bounded history, issue 11): the second
    argument of ``RolloutWorkflow.run``. The new run skips validate/build/snapshot and resumes the steps."""

    plan: ReleasePlan
    revision: RevisionRef  # the snapshot the rollback restores
    status: RolloutStatus  # includes progressive: step, weight, measurements, promotions (approvers)
    next_step: int  # 0-based index of the canary step the new run starts with
    pause_until: datetime | None = None  # a timed pause in progress at next_step: it ends then
    pause_open: bool = False  # an untimed pause (`pause: {}`) in progress at next_step: waits for promote again
    full: bool = False  # promote --full was given: skip the remaining steps
    paused: bool = False  # paused by the operator (pause signal)
    background_started: bool = False  # the background analysis has been started (it is not started again)
    background: list[MetricSummary] | None = None  # its counters when it was still running: it goes on from them
    warnings: list[str] = Field(default_factory=list)


class ProgressReport(_Msg):
    """Sent by the readiness and health activities to the workflow when what they observe changes."""

    workloads: list[WorkloadStatus] | None = None
    health: list[HealthResult] | None = None
