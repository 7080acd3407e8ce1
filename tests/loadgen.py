"""A small HTTP load generator: steady request rate against a URL, counting answers by status code.

Used by tests/test_analysis.py (and the progressive delivery tests and bench) to drive traffic through a demo
app's Service ClusterIP from the host (kube-proxy routes it here), so Prometheus sees real request rates.

    python -m tests.loadgen http://10.96.0.12/ --rps 20 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter

import httpx


class LoadGen:
    """``async with LoadGen(url, rps=20) as g: ...``; ``g.codes`` counts answers (0 = connection error)."""

    def __init__(self, url: str, *, rps: float = 20, concurrency: int = 8, timeout: float = 2.0) -> None:
        self.url, self.rps, self.concurrency, self.timeout = url, rps, concurrency, timeout
        self.codes: Counter[int] = Counter()
        self.log: list[tuple[float, int]] = []  # (monotonic time, code) of every answer
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        # A new connection per request: kube-proxy balances per connection, so kept-alive connections opened
        # before a canary existed would never reach it.
        async with httpx.AsyncClient(timeout=self.timeout, headers={"Connection": "close"},
                                     limits=httpx.Limits(max_keepalive_connections=0)) as http:

            async def one() -> None:
                async with sem:
                    try:
                        code = (await http.get(self.url)).status_code
                    except httpx.HTTPError:
                        code = 0
                self.codes[code] += 1
                self.log.append((time.monotonic(), code))

            pending: set[asyncio.Task[None]] = set()
            period, nxt = 1.0 / self.rps, time.monotonic()
            try:
                while True:
                    t = asyncio.create_task(one())
                    pending.add(t)
                    t.add_done_callback(pending.discard)
                    nxt += period
                    await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            finally:
                for t in list(pending):
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> LoadGen:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def errors_since(self, t: float) -> int:
        return sum(1 for at, code in self.log if at >= t and (code >= 500 or code == 0))


async def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--rps", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    async with LoadGen(a.url, rps=a.rps) as g:
        await asyncio.sleep(a.seconds)
    print(dict(g.codes))


if __name__ == "__main__":
    asyncio.run(_main())
