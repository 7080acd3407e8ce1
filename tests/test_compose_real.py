"""docker-compose.yml for real: PostgreSQL 15 → Temporal server 1.32 → Temporal UI → worker (+ Prometheus and the
codec server), every image built locally from real binaries (deploy/compose/images.sh, local.env). No stand-in.

One compose project for the module (own name, free host ports, removed at the end), with payload encryption on:
- `up --wait` brings everything up healthy, in depends_on order; a rollout started with the `rollwright` CLI
  runs on the compose worker, is listed by the compose UI's API and by `temporal workflow list --query
  'RolloutApp="…"'` (advanced visibility on PostgreSQL), and the UI carries the codec endpoint;
- `docker compose restart temporal` while a rollout is in flight: it completes;
- `down` then `up` (volumes kept): the history is still there;
- backup and restore (deploy/compose/backup.sh, restore.sh): pg_dump of both databases while a rollout is
  paused, restore into a fresh PostgreSQL (a second project with empty volumes), Temporal started on it, the
  paused rollout is there and resumes to Succeeded.
Times (`up --wait`, backup, restore) are printed, not asserted.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from tests.helpers import BIN, ROOT, cli, configmap, deployment, free_port, wait_until, write_release
from tests.test_codec import clear_text
from tests.test_web_ui import Chromium

# Cold, the fixtures build Go binaries and images (scripts/setup.sh normally did the Go part already).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

LOCAL_ENV = ROOT / "deploy/compose/local.env"
HOST_NET = ROOT / "deploy/compose/host-network.yaml"
APP_IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"
KEYS = f"c1={base64.b64encode(os.urandom(32)).decode()}"


class Project:
    """One compose project: its environment, files and helpers."""

    def __init__(self, base_env: dict[str, str], files: tuple[Path, ...], name: str) -> None:
        self.name = name
        self.files = files
        self.env = dict(base_env, COMPOSE_PROJECT_NAME=name, TEMPORAL_HOST_PORT=str(free_port()),
                        TEMPORAL_UI_HOST_PORT=str(free_port()), PROMETHEUS_HOST_PORT=str(free_port()),
                        WORKER_HTTP_PORT=str(free_port()), CODEC_HOST_PORT=str(free_port()))
        self.env["TEMPORAL_CODEC_ENDPOINT"] = f"http://127.0.0.1:{self.env['CODEC_HOST_PORT']}"
        self.address = f"127.0.0.1:{self.env['TEMPORAL_HOST_PORT']}"
        self.ui = f"http://127.0.0.1:{self.env['TEMPORAL_UI_HOST_PORT']}"

    def args(self) -> list[str]:
        return ["--env-file", str(LOCAL_ENV), "--profile", "encryption",
                *[a for p in (ROOT / "docker-compose.yml", *self.files) for a in ("-f", str(p))]]

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", "compose", *self.args(), *args], cwd=ROOT, env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"compose {' '.join(args)}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r

    def up(self) -> float:
        t = time.monotonic()
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "600", timeout=900)
        return time.monotonic() - t

    def down(self, volumes: bool) -> None:
        self.compose("down", *(["-v"] if volumes else []), "--timeout", "60", timeout=300, check=False)

    def cli_env(self, cli_env: dict[str, str]) -> dict[str, str]:
        return dict(cli_env, ROLLWRIGHT_TEMPORAL_ADDRESS=self.address, ROLLWRIGHT_TASK_QUEUE=self.env[
            "ROLLWRIGHT_TASK_QUEUE"], ROLLWRIGHT_CODEC_KEYS=KEYS)

    def temporal(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "temporal"), *args, "--address", self.address], capture_output=True,
                              text=True, timeout=120)


def _readable(p: Path) -> None:
    for d in [p, *[x for x in p.rglob("*") if x.is_dir()]]:
        d.chmod(0o755)
    for f in (x for x in p.rglob("*") if x.is_file()):
        f.chmod(0o644)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-real-releases")


@pytest.fixture(scope="module")
def stack_env(kubeconfig: Path, releases: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Builds the local images and the worker image once; returns what each project needs."""
    t = time.monotonic()
    r = subprocess.run(["bash", str(ROOT / "deploy/compose/images.sh")], capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"\nimages built/verified in {time.monotonic() - t:.0f}s: {r.stdout.split()}")
    d = tmp_path_factory.mktemp("compose-real")
    kc = d / "kubeconfig"
    kc.write_text(subprocess.run(["kubectl", "config", "view", "--raw", "--flatten", "--minify"],
                                 env=dict(os.environ, KUBECONFIG=str(kubeconfig)), capture_output=True, text=True,
                                 check=True).stdout)
    kc.chmod(0o644)
    mount = d / "mount-releases.yaml"
    mount.write_text(yaml.safe_dump({"services": {"worker": {"volumes": [
        {"type": "bind", "source": str(releases), "target": str(releases), "read_only": True}]}}}))
    env = dict(os.environ, DOCKER_BUILDKIT="0", ROLLWRIGHT_KUBECONFIG_HOST=str(kc),
               ROLLWRIGHT_TASK_QUEUE=f"rw-real-{uuid.uuid4().hex[:6]}", ROLLWRIGHT_LOG_FORMAT="json",
               WORKER_IMAGE="rollwright/worker:compose-real", ROLLWRIGHT_CODEC_KEYS=KEYS)
    files = (HOST_NET, mount)
    builder = Project(env, files, f"rw-real-build-{uuid.uuid4().hex[:4]}")
    builder.compose("build", "worker", timeout=1800)
    sizes = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
                           capture_output=True, text=True).stdout
    print("image sizes:\n" + "\n".join(x for x in sizes.splitlines()
                                       if x.split(":")[0] in ("rollwright/postgres", "rollwright/temporal",
                                                              "rollwright/temporal-ui", "rollwright/prometheus")
                                       or x.startswith("rollwright/worker:compose-real")))
    return {"env": env, "files": files}


@pytest.fixture(scope="module")
def project(stack_env: dict[str, Any]) -> Iterator[Project]:
    p = Project(stack_env["env"], stack_env["files"], f"rw-real-{uuid.uuid4().hex[:6]}")
    try:
        print(f"\ncompose up --wait (cold: empty volumes, schema setup) took {p.up():.1f}s")
        yield p
    finally:
        logs = p.compose("logs", "--no-color", "--tail", "200", "temporal", timeout=120, check=False).stdout
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        (ROOT / "test-artifacts" / f"compose-real-{p.name}-temporal.log").write_text(logs)
        p.down(volumes=True)
        _assert_gone(p.name)


def _assert_gone(name: str) -> None:
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
                          capture_output=True, text=True).stdout.strip()
    vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={name}"],
                          capture_output=True, text=True).stdout.strip()
    assert not left and not vols, (name, left, vols)


def _release(releases: Path, namespace: str, registry: str, *, approval: bool = False) -> tuple[str, Path]:
    app = f"real-{uuid.uuid4().hex[:6]}"
    dep = deployment(app, replicas=2, image=APP_IMAGE, config=f"{app}-cfg")
    # Scheduling contract of the shared cluster: quick test pods run on the simulated (KWOK) nodes.
    dep["spec"]["template"]["spec"].update(
        tolerations=[{"key": "rollwright.io/simulated", "operator": "Exists", "effect": "NoSchedule"}],
        nodeSelector={"type": "kwok"})
    spec = write_release(releases / app, app=app, namespace=namespace, registry=registry, image=False,
                         objects=[configmap(f"{app}-cfg", {"FROM": "compose-real"}), dep],
                         extra={"approval": {"required": True}} if approval else None)
    _readable(releases)
    return app, spec


def _rows(out: str) -> list[dict[str, Any]]:
    """`temporal workflow list -o json`: a JSON array, or one object a line (depends on the CLI version)."""
    out = out.strip()
    if not out:
        return []
    if out.startswith("["):
        rows: list[dict[str, Any]] = json.loads(out)
        return rows
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def _status(env: dict[str, str], app: str) -> dict[str, Any]:
    r = cli("rollout", "status", "--app", app, "--env", "test", "-o", "json", env=env, check=True)
    st: dict[str, Any] = json.loads(r.stdout)
    return st


def _start(env: dict[str, str], spec: Path) -> str:
    """Starts with the CLI. Right after `up` the frontend may still be settling: retried on connection errors."""
    for _ in range(20):
        r = cli("rollout", "start", "-f", str(spec), "-o", "json", env=env)
        if r.returncode == 0:
            wid: str = json.loads(r.stdout)["workflow_id"]
            return wid
        if "cannot connect" not in r.stderr and "Unavailable" not in r.stderr:
            break
        time.sleep(3)
    raise AssertionError(r.stderr)


async def test_up_wait_then_a_cli_rollout_visible_in_ui_and_visibility_query(
        project: Project, cli_env: dict[str, str], namespace: str, registry: str, releases: Path) -> None:
    env = project.cli_env(cli_env)
    app, spec = _release(releases, namespace, registry)
    wid = _start(env, spec)
    r = cli("rollout", "watch", "--app", app, "--env", "test", "-o", "json", env=env, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["outcome"] == "Succeeded", r.stdout[-2000:] + r.stderr
    # Advanced visibility on PostgreSQL: a custom search attribute query.
    q = project.temporal("workflow", "list", "-o", "json", "--query", f'RolloutApp="{app}" AND RolloutOutcome="Succeeded"')
    assert q.returncode == 0, q.stderr
    assert [x["execution"]["workflowId"] for x in _rows(q.stdout)] == [wid], q.stdout
    # The compose UI lists it (its API, which the pages call), and is configured with the codec endpoint.
    ui = httpx.get(f"{project.ui}/api/v1/namespaces/default/workflows",
                   params={"query": f'RolloutApp="{app}"'}, timeout=30)
    assert ui.status_code == 200 and wid in ui.text, ui.text[:2000]
    settings = httpx.get(f"{project.ui}/api/v1/settings", timeout=10).json()
    assert settings["Codec"]["Endpoint"] == project.env["TEMPORAL_CODEC_ENDPOINT"]
    # Encrypted at rest in PostgreSQL; the compose codec server decodes it for the CLI (and the UI's browser).
    raw = project.temporal("workflow", "show", "-w", wid, "-o", "json")
    assert raw.returncode == 0 and namespace not in clear_text(json.loads(raw.stdout)) and app in clear_text(
        json.loads(raw.stdout))
    decoded = project.temporal("workflow", "show", "-w", wid, "-o", "json", "--codec-endpoint",
                               project.env["TEMPORAL_CODEC_ENDPOINT"])
    assert decoded.returncode == 0 and namespace in clear_text(json.loads(decoded.stdout)), decoded.stderr
    # In a real browser: the compose UI shows the run, its input decoded through the compose codec server.
    b = Chromium()
    try:
        await b.connect()
        await b.open(f"{project.ui}/namespaces/default/workflows/{quote(wid)}")
        await b.wait_text(lambda t: wid in t and "COMPLETED" in t.upper() and namespace in t,
                          "the run with its decoded input (namespace) on the compose UI")
        await b.screenshot("compose-real-ui-run.png")
    finally:
        await b.close()
    project.env["FIRST_WID"] = wid


def test_restart_temporal_mid_rollout_completes(project: Project, cli_env: dict[str, str], namespace: str,
                                               registry: str, releases: Path) -> None:
    env = project.cli_env(cli_env)
    app, spec = _release(releases, namespace, registry, approval=True)
    _start(env, spec)
    wait_until(lambda: _status(env, app)["awaiting_approval"], 120, interval=1, what="approval gate")
    t = time.monotonic()
    project.compose("restart", "temporal", timeout=300)
    wait_until(lambda: project.temporal("operator", "namespace", "describe", "--namespace", "default").returncode
               == 0, 180, interval=2, what="temporal back after restart")
    print(f"\ntemporal restart until serving: {time.monotonic() - t:.1f}s")
    # The worker reconnects by itself; the workflow waited in the database meanwhile.
    wait_until(lambda: cli("rollout", "approve", "--app", app, "--env", "test", env=env).returncode == 0, 120,
               interval=3, what="approve after restart (worker reconnected)")
    r = cli("rollout", "watch", "--app", app, "--env", "test", "-o", "json", env=env, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["outcome"] == "Succeeded", r.stdout[-2000:] + r.stderr


def test_down_then_up_keeps_history(project: Project) -> None:
    wid = project.env.get("FIRST_WID")
    assert wid, "needs the first test's rollout"
    before = json.loads(project.temporal("workflow", "show", "-w", wid, "-o", "json").stdout)["events"]
    project.compose("down", "--timeout", "60", timeout=300)
    print(f"\ncompose up --wait (warm: volumes kept) took {project.up():.1f}s")
    r = project.temporal("workflow", "describe", "-w", wid, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    after = json.loads(project.temporal("workflow", "show", "-w", wid, "-o", "json").stdout)["events"]
    assert len(after) == len(before) > 10


def test_backup_while_paused_restore_into_fresh_postgres_and_resume(
        project: Project, stack_env: dict[str, Any], cli_env: dict[str, str], namespace: str, registry: str,
        releases: Path, tmp_path: Path) -> None:
    env = project.cli_env(cli_env)
    app, spec = _release(releases, namespace, registry, approval=True)
    wid = _start(env, spec)
    wait_until(lambda: _status(env, app)["awaiting_approval"], 120, interval=1, what="approval gate")
    cli("rollout", "pause", "--app", app, "--env", "test", env=env, check=True)
    cli("rollout", "approve", "--app", app, "--env", "test", env=env, check=True)
    wait_until(lambda: _status(env, app)["phase"] == "Paused", 60, interval=1, what="rollout paused")

    dumps = tmp_path / "backup"
    t = time.monotonic()
    r = subprocess.run(["bash", str(ROOT / "deploy/compose/backup.sh"), str(dumps), *project.args()],
                       env=project.env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    print(f"\nbackup (pg_dump of both databases) took {time.monotonic() - t:.1f}s: {r.stdout.strip()}")
    # The original stack goes away entirely (so only the restored one can run the rollout).
    project.compose("stop", "--timeout", "60", timeout=300)

    fresh = Project(stack_env["env"], stack_env["files"], f"rw-restore-{uuid.uuid4().hex[:6]}")
    try:
        t = time.monotonic()
        r = subprocess.run(["bash", str(ROOT / "deploy/compose/restore.sh"), str(dumps), *fresh.args()],
                           env=fresh.env, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        print(f"restore into a fresh PostgreSQL + Temporal up --wait took {time.monotonic() - t:.1f}s")
        fenv = fresh.cli_env(cli_env)
        st = _status(fenv, app)
        assert st["phase"] == "Paused" and st["paused"], st
        d = fresh.temporal("workflow", "describe", "-w", wid, "-o", "json")
        assert json.loads(d.stdout)["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_RUNNING"
        q = fresh.temporal("workflow", "list", "-o", "json", "--query", f'RolloutApp="{app}" AND RolloutPhase="Paused"')
        assert [x["execution"]["workflowId"] for x in _rows(q.stdout)] == [wid], q.stdout + q.stderr
        cli("rollout", "resume", "--app", app, "--env", "test", env=fenv, check=True)
        r = cli("rollout", "watch", "--app", app, "--env", "test", "-o", "json", env=fenv, timeout=600)
        assert r.returncode == 0 and json.loads(r.stdout)["outcome"] == "Succeeded", r.stdout[-2000:] + r.stderr
    finally:
        fresh.down(volumes=True)
        _assert_gone(fresh.name)
