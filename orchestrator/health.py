"""The worker's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (connected and polling), ``/metrics``.

Started by ``orchestrator.worker``. ``/metrics`` serves the Temporal SDK's Prometheus registry (SDK runtime
metrics plus Rollwright's own, which workflows and activities emit through the SDK's replay-safe meter), so
there is one scrape target per worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from aiohttp import web


class HealthServer:
    def __init__(self, host: str, port: int, *, ready: Callable[[], tuple[bool, str]], metrics_url: str) -> None:
        self.host, self.port, self._ready, self._metrics_url = host, port, ready, metrics_url
        self.started = time.time()
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(timeout=5)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # tests ask for any free port
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        await self._http.aclose()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_seconds": round(time.time() - self.started, 1)})

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, why = self._ready()
        return web.json_response({"status": "ready" if ok else "not ready", "reason": why}, status=200 if ok else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        try:
            r = await self._http.get(self._metrics_url)
            body = r.text
        except httpx.HTTPError:
            body = ""
        body += "# TYPE rollwright_worker_up gauge\nrollwright_worker_up 1\n"
        return web.Response(text=body, content_type="text/plain", charset="utf-8")
