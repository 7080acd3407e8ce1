"""The dev server as ``scripts/temporal.sh`` starts it: search-attribute cache on, four writes in flight per history
shard (issue 13, lost tasks).

Why it matters: on a sync match, matching gives history 1 s to record a task as started; past that it drops the
dispatch although history committed it, and the task sits until its timeout (bench/RESULTS.md "lost tasks"). That
write queues behind the other workflows' writes on the dev server's single shard (one at a time by default), and the
CLI's dev server turns the search-attribute and namespace caches off, adding database reads to each of them.

Each test starts its own server through the real script (private state directory and ports; the shared stack is not
touched), checks the flags on the server process, and counts on the server's own metrics the cluster-metadata reads
(where search attributes live) that a few workflows with search-attribute upserts cause. The control run with both
settings off (the CLI's defaults) shows the count the first assertion would see without them.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from tests.helpers import ROOT
from tests.trivial_workflow import TrivialWorkflow

WORKFLOWS = 5
SETTINGS = ("TEMPORAL_SA_CACHE", "TEMPORAL_SHARD_IO_CONCURRENCY")


def _free_block() -> int:
    """A port P with P, P+10 and P+11 free (frontend, HTTP API and metrics, as temporal.sh lays them out)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 11 > 65535:
            continue
        try:
            for p in (port + 10, port + 11):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise AssertionError("no free block of ports for a private dev server")


class DevServer:
    """`scripts/temporal.sh up` with its own state directory (database, logs, pid file) and ports."""

    def __init__(self, state: Path, settings: dict[str, str]) -> None:
        self.port, self.ui_port = _free_block(), _free_block()
        self.env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
        self.env.update(settings, ROLLWRIGHT_STATE=str(state), TEMPORAL_PORT=str(self.port),
                        TEMPORAL_UI_PORT=str(self.ui_port))
        self.state = state

    def up(self) -> None:
        r = subprocess.run(["bash", str(ROOT / "scripts/temporal.sh"), "up"], env=self.env, capture_output=True,
                           text=True, timeout=240)
        assert r.returncode == 0, f"temporal.sh up failed: {r.stderr[-2000:]}"

    def down(self) -> None:
        subprocess.run(["bash", str(ROOT / "scripts/temporal.sh"), "down"], env=self.env, capture_output=True,
                       timeout=60)

    def cmdline(self) -> list[str]:
        """The server process' command line (its pid from the script's pid file)."""
        pid = (self.state / "run/temporal.pid").read_text().strip()
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")

    def _reads_now(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port + 11}/metrics", timeout=10).text
        return sum(float(m.group(1)) for m in re.finditer(
            r'^persistence_requests\{[^}]*operation="GetCurrentClusterMetadata"[^}]*service_name="history"[^}]*\} (\S+)$',
            text, re.M))

    async def cluster_metadata_reads(self) -> float:
        """history's GetCurrentClusterMetadata calls to the database, from the server's Prometheus endpoint, once
        the count has settled: the server publishes its counters on a reporting interval (about a second), so a
        read right after the workflows can miss the last ones. Settled = the same value three times, 1 s apart."""
        seen = [self._reads_now()]
        for _ in range(60):
            await asyncio.sleep(1)
            seen.append(self._reads_now())
            if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
                return seen[-1]
        raise AssertionError(f"the server's cluster-metadata read count never settled: {seen[-5:]}")


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DevServer]:
    s = DevServer(tmp_path / "state", request.param or {})
    try:
        s.up()
        yield s
    finally:
        s.down()


async def _run_workflows(s: DevServer) -> tuple[float, list[str], list[str]]:
    """WORKFLOWS trivial workflows (each upserts RolloutApp): the cluster-metadata reads they caused, the apps
    started, and the apps the visibility store finds by that attribute afterwards."""
    client = await Client.connect(f"127.0.0.1:{s.port}")
    queue, tag = f"devsrv-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    apps = [f"app{i}-{tag}" for i in range(WORKFLOWS)]
    async with Worker(client, task_queue=queue, workflows=[TrivialWorkflow]):
        # One workflow first: the cache is cold after the start, and its first load is a read in both modes.
        await client.execute_workflow(TrivialWorkflow.run, f"warm-{tag}", id=f"warm-{tag}", task_queue=queue)
        before = await s.cluster_metadata_reads()
        for app in apps:
            assert await client.execute_workflow(TrivialWorkflow.run, app, id=app, task_queue=queue) == f"hello {app}"
        reads = await s.cluster_metadata_reads() - before
    print(f"cluster-metadata reads for {WORKFLOWS} workflows: {reads:.0f}")

    async def listed() -> list[str]:
        out = []
        for app in apps:
            out += [w.id async for w in client.list_workflows(f"RolloutApp = '{app}'")
                    if w.status == WorkflowExecutionStatus.COMPLETED]
        return sorted(out)

    found: list[str] = []
    for _ in range(120):  # visibility is eventually consistent
        found = await listed()
        if found == apps:
            break
        await asyncio.sleep(0.5)
    return reads, apps, found


@pytest.mark.parametrize("server", [None], indirect=True, ids=["defaults"])
async def test_temporal_sh_dev_server_serves_search_attributes_from_its_cache(server: DevServer) -> None:
    cmdline = server.cmdline()
    assert "history.shardIOConcurrency=4" in cmdline
    assert "system.forceSearchAttributesCacheRefreshOnRead=false" in cmdline
    reads, apps, found = await _run_workflows(server)
    # The search attributes still work (the cache holds the ones temporal.sh registered at start)...
    assert found == apps
    # ... and the workflows' upserts and visibility writes read them from the cache: at most the cache's own
    # refresh (once a minute), where the CLI's default reads the database on every use (the control below).
    assert reads <= 2, f"{reads} cluster-metadata reads for {WORKFLOWS} workflows: search-attribute cache is off"


OFF = {"TEMPORAL_SA_CACHE": "off", "TEMPORAL_SHARD_IO_CONCURRENCY": "1"}


@pytest.mark.parametrize("server", [OFF], indirect=True, ids=["all-off"])
async def test_control_without_the_cache_every_workflow_reads_the_database(server: DevServer) -> None:
    cmdline = server.cmdline()
    assert "history.shardIOConcurrency=1" in cmdline
    assert "system.forceSearchAttributesCacheRefreshOnRead=false" not in cmdline
    reads, apps, found = await _run_workflows(server)
    assert found == apps
    assert reads >= WORKFLOWS, f"only {reads} cluster-metadata reads for {WORKFLOWS} workflows with the cache off"
