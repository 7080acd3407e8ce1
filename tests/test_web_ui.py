"""The Temporal Web UI, rendered by a real browser, shows what the README promises about a rollout.

Headless Debian Chromium is driven over the DevTools protocol (a websocket, through aiohttp — no browser download,
no extra package). For a succeeded and a rolled-back rollout it opens the run's page, waits for the single-page
app to render, clicks the *User Metadata* and *Search Attributes* tabs like an operator would, and reads the
rendered text — including the markdown the UI renders in its iframes: the static summary and details set at
start, the Current Details the workflow renders (fetched by the UI through a query, so the session worker must be
polling), and the search attributes. Screenshots of every view are kept in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from temporalio.client import Client

from orchestrator.client import RolloutClient
from orchestrator.loader import load_spec
from orchestrator.models import Outcome, RolloutResult
from tests.helpers import ROOT, HealthTarget, WorkerProcess, deployment, write_release

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

UI = os.environ.get("ROLLWRIGHT_TEMPORAL_UI", "http://127.0.0.1:8233")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ROLLWRIGHT_TEST_ARTIFACTS", ROOT / "test-artifacts"))

# The page's text plus the text of its same-origin iframes (the UI renders markdown in /render iframes).
PAGE_TEXT = """(() => {
  const parts = [document.body ? document.body.innerText : ''];
  for (const f of document.querySelectorAll('iframe')) {
    let t = '';
    try { t = f.contentDocument && f.contentDocument.body ? f.contentDocument.body.innerText : ''; } catch (e) {}
    parts.push('[iframe ' + f.id + ']\\n' + t);
  }
  return parts.join('\\n');
})()"""


class Chromium:
    """Headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="rw-chromium-")
        self.log = open(Path(self.profile) / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "--window-size=1600,1100", "about:blank"],
            stdout=self.log, stderr=self.log, start_new_session=True)
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.seq = 0

    async def connect(self, timeout: float = 60) -> None:
        port_file = Path(self.profile) / "DevToolsActivePort"  # written once the DevTools server listens
        end = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"chromium did not start (rc {self.proc.poll()}): {self.log_text()}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")

    def log_text(self) -> str:
        self.log.flush()
        return (Path(self.profile) / "chromium.log").read_text(errors="replace")[-2000:]

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.seq += 1
        await self.ws.send_json({"id": self.seq, "method": method, "params": params})
        while True:  # events arrive interleaved with replies; only our reply matters here
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("id") == self.seq:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    async def eval(self, expr: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def text(self) -> str:
        return str(await self.eval(PAGE_TEXT))

    async def wait_text(self, pred: Callable[[str], bool], what: str, timeout: float = 90) -> str:
        """Polls the rendered text until ``pred`` holds (the SPA loads data asynchronously)."""
        end = time.monotonic() + timeout
        text = ""
        while time.monotonic() < end:
            with contextlib.suppress(AssertionError):  # a navigation in progress has no document yet
                text = await self.text()
                if pred(text):
                    return text
            await asyncio.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; the page shows:\n{text[-3000:]}")

    async def click(self, selector: str) -> None:
        """A real mouse click (pressed + released at the element's centre), as a user's."""
        await self.wait_for_js(f"!!document.querySelector({selector!r})", f"element {selector}")
        x, y = await self.eval(f"""(() => {{ const e = document.querySelector({selector!r});
            e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def wait_for_js(self, expr: str, what: str, timeout: float = 60) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(AssertionError):
                if v := await self.eval(expr):
                    return v
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    async def screenshot(self, name: str) -> Path:
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        p = ARTIFACTS / name
        p.write_bytes(base64.b64decode(data["data"]))
        assert p.stat().st_size > 10_000, f"{p} looks empty"
        return p

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(stack: None) -> AsyncIterator[Chromium]:
    b = Chromium()
    try:
        await b.connect()
        yield b
    finally:
        await b.close()


async def _rollout(temporal: Client, task_queue: str, spec_path: Path) -> tuple[str, str, RolloutResult]:
    rc = RolloutClient(temporal, task_queue)
    handle = await rc.start(load_spec(spec_path))
    return handle.id, handle.result_run_id or "", await rc.result(handle)


def sa(text: str, key: str, value: str | int) -> bool:
    """The Search Attributes tab renders them as JSON."""
    v = f'"{value}"' if isinstance(value, str) else str(value)
    return re.search(rf'"{key}"\s*:\s*{re.escape(v)}', text) is not None


def iframe(text: str, name: str) -> str:
    """The rendered text of one of the User Metadata iframes."""
    m = re.search(rf"\[iframe {name}\]\n(.*?)(?=\n\[iframe |\Z)", text, re.S)
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else ""


async def _check_run_pages(b: Chromium, *, wid: str, run_id: str, status: str, summary: str, details: list[str],
                           current: list[str], attrs: dict[str, str | int], shot: str) -> None:
    base = f"{UI}/namespaces/default/workflows/{quote(wid)}/{run_id}"
    await b.open(f"{base}/history")
    text = await b.wait_text(lambda t: wid in t and status in t and "RolloutWorkflow" in t and summary in t,
                             f"the {status} run {wid} with its summary in the event history")
    assert run_id in text
    await b.screenshot(f"web-ui-{shot}-history.png")

    await b.click('[data-testid="user-metadata-tab"]')
    text = await b.wait_text(
        lambda t: iframe(t, "user-metadata-summary") == summary
        and all(d in iframe(t, "user-metadata-details") for d in details)
        and all(c in iframe(t, "user-metadata-current-details") for c in current),
        "summary, details and current details in the User Metadata tab")
    assert (await b.eval("location.pathname")).endswith("/user-metadata")
    assert "Current Details" in text
    await b.screenshot(f"web-ui-{shot}-user-metadata.png")

    await b.click('[data-testid="search-attributes-tab"]')
    await b.wait_text(lambda t: all(sa(t, k, v) for k, v in attrs.items()), f"search attributes {attrs}")
    assert (await b.eval("location.pathname")).endswith("/search-attributes")
    await b.screenshot(f"web-ui-{shot}-search-attributes.png")


async def test_ui_shows_a_succeeded_rollout(browser: Chromium, worker: WorkerProcess, temporal: Client,
                                            task_queue: str, namespace: str, tmp_path: Path, registry: str) -> None:
    app = f"uiok-{uuid.uuid4().hex[:6]}"
    target = HealthTarget()
    try:
        p = write_release(tmp_path, app=app, namespace=namespace, registry=registry, objects=[deployment(app)],
                          health={"progress_deadline_seconds": 120, "bake_seconds": 1,
                                  "http": [{"name": "healthz", "url": target.url, "interval_seconds": 0.3}]})
        wid, run_id, res = await _rollout(temporal, task_queue, p)
    finally:
        target.close()
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    await _check_run_pages(
        browser, wid=wid, run_id=run_id, status="COMPLETED", shot="succeeded",
        summary=f"{app} → test: {registry}/rollwright-test/{app}",
        details=[f"namespace: {namespace}", f"Deployment/{app}", "manifests-v1.yaml"],
        current=[f"{app} → test (namespace {namespace})", "phase: Healthy · step: Done", f"image: {res.image}",
                 "revision: 1", f"Deployment/{app}", "ready", "passing healthz", "outcome: Succeeded"],
        attrs={"RolloutApp": app, "RolloutEnvironment": "test", "RolloutOutcome": "Succeeded",
               "RolloutPhase": "Healthy", "RolloutImage": res.image or "", "RolloutRevision": 1})

    # The README's list URL: the rollouts of one app, filtered by the RolloutApp search attribute.
    await browser.open(f"{UI}/namespaces/default/workflows?query={quote(f'RolloutApp={chr(34)}{app}{chr(34)}')}")
    await browser.wait_text(lambda t: wid in t and "completed" in t.lower(), f"{wid} in the filtered workflow list")
    await browser.screenshot("web-ui-succeeded-list.png")


async def test_ui_shows_a_rolled_back_rollout_with_its_cause(browser: Chromium, worker: WorkerProcess,
                                                             temporal: Client, task_queue: str, namespace: str,
                                                             tmp_path: Path, registry: str) -> None:
    app = f"uirb-{uuid.uuid4().hex[:6]}"
    p = write_release(tmp_path, app=app, namespace=namespace, registry=registry,
                      objects=[deployment(app, behavior="not-ready", deadline=10)])
    wid, run_id, res = await _rollout(temporal, task_queue, p)
    assert res.outcome == Outcome.ROLLED_BACK and res.cause, res
    assert f"deployment {app}: ProgressDeadlineExceeded" in res.cause
    await _check_run_pages(
        browser, wid=wid, run_id=run_id, status="FAILED", shot="rolled-back",
        summary=f"{app} → test: {registry}/rollwright-test/{app}",
        details=[f"namespace: {namespace}", f"Deployment/{app}"],
        current=["phase: Degraded · step: Done", f"outcome: RolledBack: deployment {app}: ProgressDeadlineExceeded"],
        attrs={"RolloutApp": app, "RolloutOutcome": "RolledBack", "RolloutPhase": "Degraded", "RolloutRevision": 1})
    # The failure message on the run's page starts with the outcome and names the cause.
    await browser.open(f"{UI}/namespaces/default/workflows/{quote(wid)}/{run_id}/history")
    await browser.wait_text(lambda t: f"RolledBack: deployment {app}: ProgressDeadlineExceeded" in t,
                            "the failure message with the outcome and cause")
