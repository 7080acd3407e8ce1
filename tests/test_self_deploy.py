"""Rollwright ships and deploys itself: k8s/rollwright.release.yaml builds this repo's Dockerfile and rolls out the
worker's own manifests (k8s/rendered/dev.yaml, from scripts/render-k8s.sh) through RolloutWorkflow, rolls back a
self-rollout whose pods never become ready, and the image it built runs a real rollout under Docker. Run by the
test suite against the real local stack (the session worker executes the self-rollouts).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import pytest_asyncio
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.kube import Kube, ref_of
from activities.registry import ACCEPT
from activities.revisions import decode, list_records
from activities.source import source_tag
from orchestrator.client import RolloutAlreadyRunning, RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, RolloutResult, Step
from tests.helpers import (
    WorkerProcess,
    configmap,
    deployment,
    free_port,
    simulated,
    wait_until,
    write_release,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "k8s/rollwright.release.yaml"
RENDERED = ROOT / "k8s/rendered/dev.yaml"
REPO = "127.0.0.1:5000/rollwright/worker"
BEHAVIOR = "sim.rollwright.io/behavior"
APP_IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"


def _worker_deployment(apps: k8s.AppsV1Api) -> k8s.V1Deployment:
    return apps.read_namespaced_deployment("rollwright-worker", "rollwright")


def _registry_digest(ref: str) -> str | None:
    r = httpx.head(f"http://127.0.0.1:5000/v2/rollwright/worker/manifests/{ref}", headers={"Accept": ACCEPT})
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def test_rendered_manifests_match_the_overlay(tmp_path: Path) -> None:
    out = tmp_path / "dev.yaml"
    r = subprocess.run(["bash", str(ROOT / "scripts/render-k8s.sh"), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == RENDERED.read_text(), "k8s/rendered/dev.yaml is stale: run scripts/render-k8s.sh"


def test_self_build_tag_ignores_files_the_build_never_sees() -> None:
    """Rebuilding unchanged source must be a cache hit (activities/source.py), so the tag may only depend on what
    docker actually receives; a worker log or the Temporal DB changing under the repo must not change it."""
    spec = load_spec(SPEC)
    before = source_tag(spec)
    scratch = ROOT / "test-artifacts" / f"tag-probe-{uuid.uuid4().hex[:6]}.log"
    scratch.parent.mkdir(exist_ok=True)
    try:
        scratch.write_text("not part of the image\n")
        assert source_tag(spec) == before
    finally:
        scratch.unlink()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def first(worker: WorkerProcess, temporal: Client, task_queue: str, core: k8s.CoreV1Api) -> RolloutResult:
    """The committed spec, rolled out once for the module (b and c build on its result)."""
    try:  # the manifests' RoleBinding lives in the managed namespace, which must exist beforehand
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="apps")))
    except ApiException as e:
        if e.status != 409:
            raise
    rc = RolloutClient(temporal, task_queue)
    try:
        handle = await rc.start(load_spec(SPEC))
    except RolloutAlreadyRunning as e:
        await _end_if_orphaned(temporal, e.workflow_id, e.run_id)
        handle = await rc.start(load_spec(SPEC))
    return await rc.result(handle)


async def _end_if_orphaned(temporal: Client, workflow_id: str, run_id: str | None) -> None:
    """A self-rollout left running by an interrupted test session would block every later one (one rollout per
    app/environment): terminated if its session's private queue has no poller left; anything else is re-raised."""
    h = temporal.get_workflow_handle(workflow_id, run_id=run_id)
    queue = (await h.describe()).task_queue
    pollers = (await temporal.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=temporal.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))).pollers
    if not queue.startswith("rw-test-") or pollers:
        raise RolloutAlreadyRunning(workflow_id, run_id)
    await h.terminate(f"orphaned self-rollout of an ended test session (queue {queue})")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_rollwright_rolls_out_its_own_worker(first: RolloutResult, apps: k8s.AppsV1Api, core: k8s.CoreV1Api,
                                                    kube: Kube, docker_client: docker.DockerClient) -> None:
    assert first.outcome == Outcome.SUCCEEDED, first.cause
    assert first.image and first.image.startswith(f"{REPO}@sha256:")
    digest = first.image.split("@", 1)[1]
    assert _registry_digest(digest) == digest
    # What was built is this repo's worker image, with the local base the spec passes.
    img = docker_client.images.get(first.image)
    assert img.attrs["Config"]["User"] == "10001:10001"
    assert img.labels["org.opencontainers.image.title"] == "rollwright-worker"
    assert img.labels["org.opencontainers.image.base.name"] == "rollwright/python-base:3.11"
    # Every object of the rendered manifests is live and Rollwright's; the worker container is pinned.
    for o in (d for d in yaml.safe_load_all(RENDERED.read_text()) if d):
        live = kube.get(ref_of(o))
        assert live is not None, ref_of(o)
        assert live["metadata"]["labels"]["rollwright.io/app"] == "rollwright"
    d = _worker_deployment(apps)
    assert d.spec.template.spec.containers[0].image == first.image
    assert d.status.observed_generation == d.metadata.generation
    assert d.status.available_replicas == d.spec.replicas == 2
    # Real pods on the real node (the dev overlay is the local stack's in-cluster worker; tests/test_in_cluster.py
    # runs rollouts on it).
    pods = [p for p in core.list_namespaced_pod("rollwright", label_selector="app.kubernetes.io/name=rollwright-worker")
            .items if p.spec.containers[0].image == first.image and not p.metadata.deletion_timestamp]
    assert len(pods) == 2 and all(p.spec.node_name == "real-0" for p in pods), [(p.metadata.name, p.spec.node_name)
                                                                                  for p in pods]
    # The revision is recorded, deployed, with the digest.
    recs = list_records(kube, "rollwright", "rollwright", "dev")
    rec = next(r for r in recs if int(r["metadata"]["labels"]["rollwright.io/revision"]) == first.revision)
    assert rec["metadata"]["labels"]["rollwright.io/status"] == "deployed"
    assert decode(rec["data"]["release"])["image"] == first.image


def _never_ready_copy(d: Path) -> Path:
    """The committed spec and manifests, except that the worker pods never become ready (on the KWOK nodes, by
    their label) and the image differs (a build arg in its labels), so a rollback has something to restore."""
    d.mkdir()
    objs: list[dict[str, Any]] = [o for o in yaml.safe_load_all(RENDERED.read_text()) if o]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    dep["spec"]["template"]["metadata"]["labels"][BEHAVIOR] = "not-ready"
    dep["spec"]["template"]["spec"] = simulated(dep["spec"]["template"]["spec"])
    dep["spec"]["progressDeadlineSeconds"] = 15  # the controller's verdict, instead of waiting out 600 s
    (d / "dev.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    spec = yaml.safe_load(SPEC.read_text())
    spec["image"]["context"] = str(ROOT)
    spec["image"]["build_args"]["VERSION"] = "0.1.0-never-ready"
    spec["manifests"] = ["dev.yaml"]
    spec["health"]["progress_deadline_seconds"] = 120
    (d / "release.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return d / "release.yaml"


@pytest.mark.asyncio(loop_scope="session")
async def test_b_never_ready_self_rollout_rolls_back_to_the_first(first: RolloutResult, worker: WorkerProcess,
                                                                 temporal: Client, task_queue: str, tmp_path: Path,
                                                                 apps: k8s.AppsV1Api, kube: Kube) -> None:
    assert first.outcome == Outcome.SUCCEEDED, first.cause
    rc = RolloutClient(temporal, task_queue)
    res = await rc.result(await rc.start(load_spec(_never_ready_copy(tmp_path / "bad"))))
    assert res.outcome == Outcome.ROLLED_BACK, res
    assert res.failed_step == Step.WAIT_READY
    assert res.image and res.image.startswith(f"{REPO}@sha256:") and res.image != first.image
    d = _worker_deployment(apps)
    assert d.spec.template.spec.containers[0].image == first.image
    assert BEHAVIOR not in d.spec.template.metadata.labels
    assert d.status.available_replicas == 2
    recs = list_records(kube, "rollwright", "rollwright", "dev")
    assert recs[-1]["metadata"]["labels"]["rollwright.io/status"] == "rolled-back"
    assert int(recs[-1]["metadata"]["labels"]["rollwright.io/revision"]) == res.revision


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"rw-selftest-{uuid.uuid4().hex[:6]}"
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.asyncio(loop_scope="session")
async def test_c_built_image_runs_a_rollout_under_docker(first: RolloutResult, temporal: Client, kubeconfig: Path,
                                                        tmp_path: Path, namespace: str, registry: str,
                                                        apps: k8s.AppsV1Api, container_name: str) -> None:
    assert first.outcome == Outcome.SUCCEEDED and first.image, first.cause
    # Self-contained kubeconfig (certificates inlined), readable by uid 10001.
    kc = tmp_path / "kubeconfig"
    kc.write_text(subprocess.run(["kubectl", "config", "view", "--raw", "--flatten", "--minify"], check=True,
                                 env=dict(os.environ, KUBECONFIG=str(kubeconfig)), capture_output=True,
                                 text=True).stdout)
    kc.chmod(0o644)
    # No image build inside (no docker socket there): a release of manifests only, read by the containerised
    # worker at the path the client resolved, hence mounted at the same path.
    app = f"inbox-{uuid.uuid4().hex[:5]}"
    rel = tmp_path / "release"
    spec = write_release(rel, app=app, namespace=namespace, registry=registry, image=False,
                         objects=[configmap(f"{app}-cfg", {"RUN_BY": "container"}),
                                  deployment(app, replicas=2, image=APP_IMAGE, config=f"{app}-cfg")])
    for p in [rel, *rel.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    queue, port = f"rw-docker-{uuid.uuid4().hex[:6]}", free_port()
    r = subprocess.run(
        ["docker", "run", "-d", "--name", container_name, "--network", "host",
         "-v", f"{kc}:/etc/rollwright/kubeconfig:ro", "-v", f"{rel}:{rel}:ro",
         "-e", "ROLLWRIGHT_KUBECONFIG=/etc/rollwright/kubeconfig", "-e", "ROLLWRIGHT_TEMPORAL_ADDRESS=127.0.0.1:7233",
         "-e", f"ROLLWRIGHT_TASK_QUEUE={queue}", "-e", "ROLLWRIGHT_HTTP_HOST=127.0.0.1",
         "-e", f"ROLLWRIGHT_HTTP_PORT={port}", first.image], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    def ready() -> bool:
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", container_name], capture_output=True,
                               text=True).stdout.strip()
        assert state == "running", subprocess.run(["docker", "logs", container_name], capture_output=True,
                                                  text=True).stderr[-3000:]
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code == 200

    wait_until(ready, 120, interval=1, what="containerised worker /readyz")
    rc = RolloutClient(temporal, queue)
    res = await rc.result(await rc.start(load_spec(spec)))
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    d = apps.read_namespaced_deployment(app, namespace)
    assert d.status.available_replicas == 2
    logs = subprocess.run(["docker", "logs", container_name], capture_output=True, text=True).stderr
    assert f"rollout.{app}.test" in logs, logs[-2000:]  # the container ran it: the only poller of its queue
    # docker stop = SIGTERM: the worker drains and exits cleanly.
    subprocess.run(["docker", "stop", "-t", "60", container_name], capture_output=True, check=True)
    code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container_name], capture_output=True,
                          text=True).stdout.strip()
    assert code == "0", logs[-2000:]
