"""docker-compose.yml: valid in every configuration we ship, and a smoke test of the whole stack (stand-in images
from deploy/compose/standins.sh, the worker built by compose) whose worker becomes healthy and runs a real rollout
into the local cluster. Run by the test suite.

The worker joins the host's network (deploy/compose/host-network.yaml) because the local API server listens on
127.0.0.1 only, which no bridge network reaches; it then dials the stand-in Temporal on its published port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import BIN, cli, configmap, deployment, free_port, wait_until, write_release

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
STANDINS_ENV = ROOT / "deploy/compose/standins.env"
HOST_NET = ROOT / "deploy/compose/host-network.yaml"
APP_IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"


def compose(*args: str, env: dict[str, str] | None = None, files: tuple[Path, ...] = (),
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    f = [a for p in (ROOT / "docker-compose.yml", *files) for a in ("-f", str(p))]
    return subprocess.run(["docker", "compose", *f, *args], cwd=ROOT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("extra", [[], ["--env-file", str(STANDINS_ENV)]], ids=["defaults", "standins"])
@pytest.mark.parametrize("files", [(), (HOST_NET,)], ids=["base", "host-network"])
def test_compose_config_is_valid(extra: list[str], files: tuple[Path, ...], kubeconfig: Path) -> None:
    """`kubeconfig`: the default configuration mounts the local stack's (ROLLWRIGHT_STATE's, or ./.stack), which
    must exist."""
    r = compose(*extra, "config", "--format", "json", files=files)
    assert r.returncode == 0, r.stderr
    worker = json.loads(r.stdout)["services"]["worker"]
    # The grace period must outlast the worker's drain, or docker SIGKILLs it mid-activity.
    drain = float(worker["environment"]["ROLLWRIGHT_SHUTDOWN_TIMEOUT_SECONDS"])
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > drain, (grace, drain)
    mount = next(v for v in worker["volumes"] if v["target"] == "/etc/rollwright/kubeconfig")
    assert mount["read_only"] and Path(mount["source"]).is_file()
    if not extra:  # the stand-ins mount their own; the defaults mount the stack's, wherever its state is
        assert Path(mount["source"]) == kubeconfig, (mount["source"], kubeconfig)
    if files:
        assert worker["network_mode"] == "host"
        port = worker["environment"]["ROLLWRIGHT_TEMPORAL_ADDRESS"].rsplit(":", 1)[1]
        assert port == ("17233" if extra else "7233")  # the published port of the temporal service


@pytest.mark.parametrize("state", ["exported", "unset", "empty"])
def test_default_kubeconfig_follows_rollwright_state(state: str, tmp_path: Path) -> None:
    """Without ROLLWRIGHT_KUBECONFIG_HOST the worker mounts the kubeconfig of the same state directory the scripts
    (scripts/lib.sh, printed by `stack.sh env`) and the tests (tests/helpers.STATE) use: ROLLWRIGHT_STATE when
    exported, else ./.stack. (A shell exporting another clone's state once got this clone's ./.stack mounted.)
    No stack needed: only `docker compose config` and the two readers of the variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROLLWRIGHT_STATE", "ROLLWRIGHT_KUBECONFIG_HOST")}
    if state != "unset":
        env["ROLLWRIGHT_STATE"] = str(tmp_path / "state") if state == "exported" else ""  # empty: as if unset
    expected = Path(env["ROLLWRIGHT_STATE"]) if state == "exported" else ROOT / ".stack"
    expected /= "kubeconfig"
    r = compose("config", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    volumes = json.loads(r.stdout)["services"]["worker"]["volumes"]
    assert [v["source"] for v in volumes if v["target"] == "/etc/rollwright/kubeconfig"] == [str(expected)]
    scripts = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "env"], env=env, capture_output=True,
                             text=True, check=True).stdout
    assert f"export KUBECONFIG={expected} ROLLWRIGHT_KUBECONFIG={expected}\n" in scripts, scripts
    tests = subprocess.run([sys.executable, "-c", "from tests.helpers import STATE; print(STATE / 'kubeconfig')"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert tests == f"{expected}\n"


def _readable(p: Path) -> None:
    """The worker runs as uid 10001: what it reads through a bind mount must be world-readable."""
    for d in [p, *[x for x in p.rglob("*") if x.is_dir()]]:
        d.chmod(0o755)
    for f in (x for x in p.rglob("*") if x.is_file()):
        f.chmod(0o644)


@pytest.fixture
def smoke_env(kubeconfig: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a private compose project: own name, free host ports, a flattened kubeconfig."""
    kc = tmp_path / "kubeconfig"
    r = subprocess.run(["kubectl", "config", "view", "--raw", "--flatten", "--minify"],
                       env=dict(os.environ, KUBECONFIG=str(kubeconfig)), capture_output=True, text=True, check=True)
    kc.write_text(r.stdout)
    kc.chmod(0o644)
    env = dict(os.environ, DOCKER_BUILDKIT="0", COMPOSE_PROJECT_NAME=f"rw-smoke-{uuid.uuid4().hex[:6]}",
               TEMPORAL_HOST_PORT=str(free_port()), TEMPORAL_UI_HOST_PORT=str(free_port()),
               PROMETHEUS_HOST_PORT=str(free_port()), WORKER_HTTP_PORT=str(free_port()),
               ROLLWRIGHT_KUBECONFIG_HOST=str(kc), ROLLWRIGHT_TASK_QUEUE=f"rw-smoke-{uuid.uuid4().hex[:6]}",
               ROLLWRIGHT_LOG_FORMAT="json",
               # Not :dev, which a developer's own `docker compose up` may be using.
               WORKER_IMAGE="rollwright/worker:compose-smoke")
    yield env


def _health(container: str) -> str:
    r = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}"
                        "{{end}}", container], capture_output=True, text=True)
    return r.stdout.strip()


@pytest.mark.timeout(1500)
@pytest.mark.asyncio(loop_scope="session")
async def test_stack_with_standins_runs_a_rollout(smoke_env: dict[str, str], tmp_path: Path, namespace: str,
                                                  apps: k8s.AppsV1Api, core: k8s.CoreV1Api, registry: str) -> None:
    env = smoke_env
    r = subprocess.run(["bash", str(ROOT / "deploy/compose/standins.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    # A release without image (no docker socket in the container). Its files are NOT mounted into the worker: the
    # client pushes a release bundle and the containerised worker fetches it from the registry by digest.
    app = f"smoke-{uuid.uuid4().hex[:5]}"
    rel = tmp_path / "release"
    spec_path = write_release(rel, app=app, namespace=namespace, registry=registry, image=False,
                              objects=[configmap(f"{app}-cfg", {"FROM": "compose"}),
                                       deployment(app, replicas=2, image=APP_IMAGE, config=f"{app}-cfg")])
    files = (HOST_NET,)
    base = ["--env-file", str(STANDINS_ENV)]
    try:
        r = compose(*base, "build", "worker", env=env, files=files, timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        r = compose(*base, "up", "-d", "--no-build", env=env, files=files)
        assert r.returncode == 0, r.stderr
        ids = {s: compose(*base, "ps", "-q", s, env=env, files=files).stdout.strip()
               for s in ("temporal", "worker", "postgresql", "prometheus")}
        for service, cid in ids.items():
            assert cid, f"no container for {service}"
            wait_until(lambda cid=cid: _health(cid) == "running healthy", 240, interval=2,
                       what=f"{service} container healthy")

        address = f"127.0.0.1:{env['TEMPORAL_HOST_PORT']}"
        cli_env = dict(env, ROLLWRIGHT_TEMPORAL_ADDRESS=address)
        # The stand-in dev server starts without Rollwright's search attributes (like a fresh real server).
        r = cli("setup", env=cli_env, timeout=120)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: "RolloutOutcome" in subprocess.run(
            [str(BIN / "temporal"), "operator", "search-attribute", "list", "--address", address],
            capture_output=True, text=True).stdout, 60, what="search attributes registered")

        temporal = await Client.connect(address, data_converter=pydantic_data_converter)
        rc = RolloutClient(temporal, env["ROLLWRIGHT_TASK_QUEUE"])
        res = await rc.result(await rc.start(load_spec(spec_path)))
        assert res.outcome == Outcome.SUCCEEDED, res.cause
        d = apps.read_namespaced_deployment(app, namespace)
        assert d.status.available_replicas == 2
        assert d.metadata.labels["app.kubernetes.io/managed-by"] == "rollwright"
        assert core.read_namespaced_config_map(f"{app}-cfg", namespace).data == {"FROM": "compose"}
        # Run by the compose worker (the only poller of this queue on this server): its log has the activities.
        logs = subprocess.run(["docker", "logs", ids["worker"]], capture_output=True, text=True).stderr
        mine = [json.loads(x) for x in logs.splitlines() if f"rollout.{app}.test" in x]
        assert {x.get("activity_type") for x in mine} >= {"snapshot_release", "apply_release"}, logs[-2000:]
    finally:
        down = compose(*base, "down", "-v", "--timeout", "60", env=env, files=files, timeout=300)
    assert down.returncode == 0, down.stderr
    project = env["COMPOSE_PROJECT_NAME"]
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True).stdout.strip()
    vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True).stdout.strip()
    assert not left and not vols, (left, vols)
