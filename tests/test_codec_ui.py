"""The Web UI shows an encrypted rollout decoded, through `rollwright codec-server`, in a real browser.

A second dev server (own ports, in memory) started with `--ui-codec-endpoint`, as `scripts/temporal.sh` does with
ROLLWRIGHT_UI_CODEC_ENDPOINT — the shared one is never restarted. A worker and client with encryption on run a
rollout; headless Chromium opens the run's page: the UI's JavaScript fetches the history, POSTs the encrypted
payloads to the codec server (a cross-origin call: CORS preflight included) and renders the decoded input.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio

from orchestrator.client import RolloutClient
from orchestrator.config import load_settings
from orchestrator.loader import load_spec
from orchestrator.models import Outcome
from tests.helpers import BIN, STATE, WorkerProcess, configmap, free_port, wait_until, write_release
from tests.test_codec import CodecServer, clear_text, show
from tests.test_web_ui import Chromium

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
KEYS = f"ui1={base64.b64encode(os.urandom(32)).decode()}"
SA = ["RolloutApp=Keyword", "RolloutEnvironment=Keyword", "RolloutPhase=Keyword", "RolloutOutcome=Keyword",
      "RolloutImage=Keyword", "RolloutRevision=Int", "RolloutInitiator=Keyword"]


class DevServer:
    def __init__(self, codec_endpoint: str, ui_port: int) -> None:
        self.port, self.ui_port = free_port(), ui_port
        self.address = f"127.0.0.1:{self.port}"
        self.log = STATE / "logs" / f"temporal-codec-ui-{self.port}.log"
        args = [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                "--ui-port", str(ui_port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--ui-codec-endpoint", codec_endpoint, "--log-level", "warn"]
        for a in SA:
            args += ["--search-attribute", a]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=fh, start_new_session=True)
        wait_until(lambda: subprocess.run([str(BIN / "temporal"), "operator", "search-attribute", "list",
                                           "--address", self.address], capture_output=True, text=True).stdout.count(
            "Rollout") >= len(SA), 90, interval=1, what="second dev server with search attributes")
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=3).status_code == 200,
                   60, what="dev server UI")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def codec_stack() -> Iterator[tuple[DevServer, CodecServer]]:
    ui_port = free_port()
    codec = CodecServer({"ROLLWRIGHT_CODEC_KEYS": KEYS}, "--cors-origin", f"http://127.0.0.1:{ui_port}")
    server = DevServer(codec.url, ui_port)
    try:
        yield server, codec
    finally:
        server.stop()
        codec.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Chromium]:
    b = Chromium()
    try:
        await b.connect()
        yield b
    finally:
        await b.close()


async def test_ui_decodes_the_rollout_input_through_the_codec_server(
        codec_stack: tuple[DevServer, CodecServer], browser: Chromium, kubeconfig: Path, namespace: str,
        registry: str, tmp_path: Path) -> None:
    server, codec = codec_stack
    settings_json = httpx.get(f"http://127.0.0.1:{server.ui_port}/api/v1/settings", timeout=5).json()
    assert settings_json["Codec"]["Endpoint"] == codec.url
    tq = f"rw-codec-ui-{uuid.uuid4().hex[:6]}"
    env = {"ROLLWRIGHT_CODEC_KEYS": KEYS, "ROLLWRIGHT_TEMPORAL_ADDRESS": server.address}
    w = WorkerProcess(tq, kubeconfig, name="codec-ui", extra_env=env)
    token = uuid.uuid4().hex[:10]
    app = f"encui-{token[:6]}"
    spec = write_release(tmp_path, app=app, namespace=namespace, registry=registry, image=False,
                         version=f"v{token}", objects=[configmap(f"{app}-cfg", {"K": "v"})])
    try:
        w.start()
        rc = await RolloutClient.connect(load_settings(codec_keys=KEYS, temporal_address=server.address,
                                                       task_queue=tq))
        handle = await rc.start(load_spec(spec))
        res = await rc.result(handle)
        assert res.outcome == Outcome.SUCCEEDED, res.cause
    finally:
        w.stop()
    wid, run_id = handle.id, handle.result_run_id
    # Encrypted at rest: the manifest name is nowhere in the raw history, and readable through the codec server.
    raw = clear_text(show(wid, address=server.address))
    assert f"manifests-v{token}" not in raw and namespace not in raw and app in raw
    assert f"manifests-v{token}" in clear_text(show(wid, "--codec-endpoint", codec.url, address=server.address))

    url = f"http://127.0.0.1:{server.ui_port}/namespaces/default/workflows/{quote(wid)}/{run_id}/history"
    await browser.open(url)
    text = await browser.wait_text(lambda t: f"manifests-v{token}.yaml" in t and namespace in t,
                                   "the decoded release spec (manifest name, namespace) on the run's page")
    assert "COMPLETED" in text.upper()
    await browser.screenshot("web-ui-codec-decoded-input.png")
