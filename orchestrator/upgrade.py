"""``rollwright worker upgrade``: renders one worker build's release and starts ``WorkerUpgradeWorkflow``.

Called by ``orchestrator.cli`` and tests. The worker's release (e.g. k8s/rollwright.release.yaml) names one worker
Deployment (``rollwright-worker``); for build B it becomes ``rollwright-worker-<B>`` so that A's and B's pods run
side by side (rainbow), labelled ``rollwright.io/worker-build: <B>`` (selector included, so the two Deployments
never share pods), with ``ROLLWRIGHT_WORKER_DEPLOYMENT_NAME``/``ROLLWRIGHT_WORKER_BUILD_ID`` in its containers and
``rollwright.io/prune: "false"``: the release of B no longer contains A's Deployment, and the rollout's prune step
must not delete A while rollouts pinned to A still run; the upgrade workflow deletes A once A is drained. An HPA
that targets the worker Deployment follows it. The image tag is the build ID. Everything else is unchanged.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contract.spec import ReleaseSpec
from contract.upgrade import BUILD_LABEL, UPGRADE_WORKFLOW_TYPE, WorkerUpgradeInput, upgrade_workflow_id
from releases.loader import ReleaseError, load_manifests

PRUNE_ANNOTATION = "rollwright.io/prune"
DEFAULT_WORKLOAD = "rollwright-worker"
DEFAULT_DEPLOYMENT_NAME = "rollwright-worker"


class UpgradeAlreadyRunning(Exception):
    def __init__(self, workflow_id: str, run_id: str | None) -> None:
        self.workflow_id, self.run_id = workflow_id, run_id
        super().__init__(f"a worker upgrade is already running: {workflow_id} (run {run_id})")


def _labelled(md: dict[str, Any], build_id: str) -> None:
    md.setdefault("labels", {})[BUILD_LABEL] = build_id


def _kept(md: dict[str, Any]) -> None:
    md.setdefault("annotations", {})[PRUNE_ANNOTATION] = "false"


def render_build(spec: ReleaseSpec, *, build_id: str, deployment_name: str, workload: str = DEFAULT_WORKLOAD,
                 out_dir: Path | None = None) -> ReleaseSpec:
    """Returns the release of one worker build: the spec with its manifests replaced by one rendered file (written
    to ``out_dir``, a fresh temporary directory by default). Raises ReleaseError (exit 2) when the release has no
    Deployment named ``workload``."""
    manifests = load_manifests(spec)
    docs: list[dict[str, Any]] = []
    found = False
    new_name = f"{workload}-{build_id}"
    for m in manifests:
        obj = copy.deepcopy(m.obj)
        md = obj.setdefault("metadata", {})
        if obj.get("kind") == "Deployment" and md.get("name") == workload:
            found = True
            md["name"] = new_name
            _labelled(md, build_id)
            _kept(md)
            s = obj.setdefault("spec", {})
            s.setdefault("selector", {}).setdefault("matchLabels", {})[BUILD_LABEL] = build_id
            tpl = s.setdefault("template", {})
            _labelled(tpl.setdefault("metadata", {}), build_id)
            for c in tpl.get("spec", {}).get("containers", []):
                env = [e for e in c.get("env", []) if e.get("name") not in (
                    "ROLLWRIGHT_WORKER_DEPLOYMENT_NAME", "ROLLWRIGHT_WORKER_BUILD_ID")]
                c["env"] = env + [{"name": "ROLLWRIGHT_WORKER_DEPLOYMENT_NAME", "value": deployment_name},
                                  {"name": "ROLLWRIGHT_WORKER_BUILD_ID", "value": build_id}]
        elif obj.get("kind") == "HorizontalPodAutoscaler" and obj.get("spec", {}).get(
                "scaleTargetRef", {}).get("name") == workload:
            md["name"] = new_name
            obj["spec"]["scaleTargetRef"]["name"] = new_name
            _labelled(md, build_id)
            _kept(md)
        docs.append(obj)
    if not found:
        raise ReleaseError(", ".join(spec.manifests), f"no Deployment named {workload} in the release's manifests: "
                           "name the worker's Deployment with --workload", field="manifests")
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix=f"rollwright-{build_id}-"))
    out = out_dir / f"{new_name}.yaml"
    out.write_text(f"# Rendered by `rollwright worker upgrade` for worker build {build_id}.\n"
                   + yaml.safe_dump_all(docs, sort_keys=False))
    image = spec.image.model_copy(update={"tag": build_id}) if spec.image else None
    return spec.model_copy(update={"manifests": [str(out)], "image": image})


def upgrade_input(spec: ReleaseSpec, *, build_id: str, deployment_name: str, task_queue: str,
                  pollers_timeout_seconds: int = 600, drain_timeout_seconds: int = 7 * 86400,
                  retire_previous: bool = True) -> WorkerUpgradeInput:
    """Validates the workflow input locally (pydantic: build ID and deployment name format) before anything is
    pushed. The new build must poll the main queue and the readiness waits queue."""
    from pydantic import ValidationError

    try:
        return WorkerUpgradeInput(release=spec, deployment_name=deployment_name, build_id=build_id,
                                  task_queues=[task_queue, f"{task_queue}-waits"],
                                  pollers_timeout_seconds=pollers_timeout_seconds,
                                  drain_timeout_seconds=drain_timeout_seconds, retire_previous=retire_previous)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise ReleaseError("worker upgrade", f"{err['msg']} (got {err.get('input')!r})",
                           field=f"--{field.replace('_', '-')}") from None


async def start_upgrade(client: Client, inp: WorkerUpgradeInput, task_queue: str) -> WorkflowHandle[Any, Any]:
    """Starts the upgrade; one at a time per worker deployment (the workflow ID is the lock)."""
    wid = upgrade_workflow_id(inp.deployment_name)
    try:
        return await client.start_workflow(
            UPGRADE_WORKFLOW_TYPE, inp, id=wid, task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"worker {inp.deployment_name} → build {inp.build_id}")
    except WorkflowAlreadyStartedError as e:
        raise UpgradeAlreadyRunning(wid, e.run_id) from None
