"""Rollwright's demo app: a real HTTP service for the demo (examples/demo), the tests and the bench.

Runs in the image built from this directory (Dockerfile), on the stack's real node. Python standard library only.
  GET /          "demo <version>: <GREETING>"; FAIL_RATE (0..1) answers that share of these with 500
  GET /healthz   liveness: 200 while the process serves
  GET /readyz    readiness: 200 when every URL in READY_DEPENDS_ON answers 2xx, and not shutting down
  GET /metrics   Prometheus text: requests by path and status code, build info
SIGTERM: readiness turns 503, in-flight requests finish, the listener closes, exit 0 (the manifests add a
preStop sleep so endpoints are removed before the signal arrives).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("VERSION", "dev")
GREETING = os.environ.get("GREETING", "hello")
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0") or 0)
DEPENDS_ON = [u.strip() for u in os.environ.get("READY_DEPENDS_ON", "").split(",") if u.strip()]
PORT = int(os.environ.get("PORT", "8080"))

requests_total: Counter[tuple[str, int]] = Counter()
lock = threading.Lock()
draining = threading.Event()


def dependencies_ok() -> str | None:
    for url in DEPENDS_ON:
        try:
            with urllib.request.urlopen(url, timeout=0.5) as r:  # noqa: S310 - operator-given URLs
                if not 200 <= r.status < 300:
                    return f"{url}: HTTP {r.status}"
        except Exception as e:  # any failure means "not ready"; say which
            return f"{url}: {type(e).__name__}: {e}"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"demo/{VERSION}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/":
            if FAIL_RATE and random.random() < FAIL_RATE:
                code, body = 500, f"demo {VERSION}: injected failure\n"
            else:
                code, body = 200, f"demo {VERSION}: {GREETING}\n"
        elif path == "/healthz":
            code, body = 200, "ok\n"
        elif path == "/readyz":
            why = "shutting down" if draining.is_set() else dependencies_ok()
            code, body = (503, f"not ready: {why}\n") if why else (200, "ready\n")
        elif path == "/metrics":
            code, body = 200, metrics()
        else:
            code, body = 404, "not found\n"
        with lock:
            requests_total[(path if code != 404 else "other", code)] += 1
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4" if path == "/metrics" else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        if draining.is_set():
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        if not self.path.startswith(("/healthz", "/readyz", "/metrics")):
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


def metrics() -> str:
    lines = ["# HELP demo_http_requests_total HTTP requests served, by path and status code.",
             "# TYPE demo_http_requests_total counter"]
    with lock:
        for (path, code), n in sorted(requests_total.items()):
            lines.append(f'demo_http_requests_total{{path="{path}",code="{code}"}} {n}')
    lines += ["# HELP demo_build_info The running version.", "# TYPE demo_build_info gauge",
              f'demo_build_info{{version="{VERSION}"}} 1']
    return "\n".join(lines) + "\n"


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)  # noqa: S104 - a pod's own address
    server.daemon_threads = False  # server_close() then waits for in-flight requests

    def stop(signum: int, _frame: object) -> None:
        draining.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"demo {VERSION} listening on :{PORT}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print(f"demo {VERSION} stopped", flush=True)


if __name__ == "__main__":
    main()
