"""Session fixtures that start (or reuse) the real local stack and hand tests its clients.

Every part is real: the Temporal dev server, the Docker engine, the registry and a kube-apiserver with
kube-controller-manager, kube-scheduler, KWOK nodes and the real node real-0 (scripts/stack.sh). A part that cannot be started fails the
tests that need it, loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
import pytest_asyncio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.kube import Kube
from tests.helpers import STATE, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_ADDRESS = os.environ.get("ROLLWRIGHT_TEMPORAL_ADDRESS", "127.0.0.1:7233")
REGISTRY = os.environ.get("ROLLWRIGHT_REGISTRY", "127.0.0.1:5000")


@pytest.fixture(scope="session")
def stack() -> None:
    """Starts every part of the stack that is not already running (idempotent)."""
    r = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "up"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"the local stack could not be started:\n{r.stderr[-3000:]}", pytrace=False)


@pytest.fixture(scope="session")
def kubeconfig(stack: None) -> Path:
    p = STATE / "kubeconfig"
    if not p.is_file():
        pytest.fail(f"no kubeconfig at {p}: the cluster did not start", pytrace=False)
    os.environ["KUBECONFIG"] = str(p)
    os.environ["ROLLWRIGHT_KUBECONFIG"] = str(p)
    return p


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Kube:
    return Kube(kubeconfig, None)


@pytest.fixture(scope="session")
def k8s_api(kubeconfig: Path) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return k8s.ApiClient(cfg)


@pytest.fixture(scope="session")
def core(k8s_api: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_api)


@pytest.fixture(scope="session")
def apps(k8s_api: k8s.ApiClient) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(k8s_api)


@pytest.fixture(scope="session")
def docker_client(stack: None) -> Iterator[docker.DockerClient]:
    c = docker.from_env(timeout=300)
    c.ping()
    yield c
    c.close()


@pytest.fixture(scope="session")
def registry(stack: None) -> str:
    return REGISTRY


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal(stack: None) -> AsyncIterator[Client]:
    """A Temporal client with the project's data converter (the one the worker and CLI use)."""
    yield await Client.connect(TEMPORAL_ADDRESS, data_converter=pydantic_data_converter)


@pytest.fixture(scope="session")
def task_queue() -> str:
    """The session's own task queue, so a developer's worker on `rollwright` never picks up test rollouts."""
    return f"rw-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def worker(kubeconfig: Path, task_queue: str) -> Iterator[WorkerProcess]:
    """A real `rollwright worker` process for the session."""
    w = WorkerProcess(task_queue, kubeconfig, name="session")
    w.start()
    yield w
    w.stop()


@pytest.fixture
def namespace(core: k8s.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards)."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def cli_env(kubeconfig: Path, task_queue: str) -> dict[str, str]:
    """Environment for running `rollwright` and `temporal` as subprocesses against the session's stack."""
    env = dict(os.environ)
    env.update(ROLLWRIGHT_TEMPORAL_ADDRESS=TEMPORAL_ADDRESS, TEMPORAL_ADDRESS=TEMPORAL_ADDRESS,
               ROLLWRIGHT_TASK_QUEUE=task_queue, ROLLWRIGHT_KUBECONFIG=str(kubeconfig), KUBECONFIG=str(kubeconfig),
               PYTHONPATH=str(ROOT))
    env.pop("ROLLWRIGHT_HTTP_PORT", None)
    return env


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return Path(sys.executable).parent
