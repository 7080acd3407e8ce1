"""The contract of a worker self-upgrade under Worker Versioning (``WorkerUpgradeWorkflow``).

Imported by ``workflows.upgrade`` (input, activity inputs and results), ``activities.versioning`` and
``orchestrator.upgrade`` (the CLI side that renders version B's manifests and starts the workflow). Pure data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contract.models import RolloutResult
from contract.spec import ReleaseSpec

UPGRADE_WORKFLOW_TYPE = "WorkerUpgradeWorkflow"
# Label on every object of one worker build (Deployment, HPA): what retiring the previous build deletes.
BUILD_LABEL = "rollwright.io/worker-build"
# Build IDs become part of Kubernetes object names and label values: a DNS label keeps both valid.
BuildId = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=40)]
DeploymentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([-_A-Za-z0-9]*[A-Za-z0-9])?$", min_length=1,
                                      max_length=100)]


def upgrade_workflow_id(deployment_name: str) -> str:
    """One upgrade at a time per worker deployment: the ID is the lock, like ``rollout.<app>.<env>``."""
    return f"worker-upgrade.{deployment_name}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerUpgradeInput(_Model):
    """Roll out worker build ``build_id`` (its release renders the build's own Deployment next to the running one),
    make it the deployment's current version once it polls, then retire the previous build once drained."""

    release: ReleaseSpec = Field(description="the worker's release for this build (bundle set)")
    deployment_name: DeploymentName = Field(description="Temporal Worker Deployment name, e.g. rollwright-worker")
    build_id: BuildId
    task_queues: list[str] = Field(min_length=1, description="queues the new build must poll before it is current")
    pollers_timeout_seconds: int = Field(600, ge=10, le=86400)
    drain_timeout_seconds: int = Field(7 * 86400, ge=10, le=30 * 86400)
    retire_previous: bool = Field(True, description="delete the previous build's Deployment once drained")


class DeploymentState(_Model):
    """What ``describe_worker_deployment`` reports, reduced to what the upgrade decides on."""

    deployment_name: str
    exists: bool
    current_build_id: str | None = Field(None, description="None: unversioned workers get new workflows")
    build_ids: list[str] = Field(default_factory=list)


class DescribeInput(_Model):
    deployment_name: DeploymentName


class PollersInput(_Model):
    deployment_name: DeploymentName
    build_id: BuildId
    task_queues: list[str]
    timeout_seconds: int


class PollersResult(_Model):
    task_queues: list[str]
    waited_seconds: float


class SetCurrentInput(_Model):
    deployment_name: DeploymentName
    build_id: BuildId
    identity: str


class SetCurrentResult(_Model):
    previous_build_id: str | None = Field(None, description="as the server reported it; None if unversioned")
    changed: bool = Field(description="False when the build was already current (a retried activity)")


class DrainInput(_Model):
    deployment_name: DeploymentName
    build_id: str
    timeout_seconds: int


class DrainResult(_Model):
    status: str = Field(description="drained, or inactive (never current: nothing was pinned to it)")
    waited_seconds: float


class RetireInput(_Model):
    namespace: str
    kube_context: str | None = None
    build_id: str


class RetireResult(_Model):
    deleted: list[str] = Field(default_factory=list, description="Kind/namespace/name of what was deleted")


class WorkerUpgradeResult(_Model):
    deployment_name: str
    build_id: str
    previous_build_id: str | None
    rollout: RolloutResult
    drained: str | None = Field(None, description="the previous version's final drainage status")
    deleted: list[str] = Field(default_factory=list)
    started_at: datetime
    switched_at: datetime | None = None
    finished_at: datetime
