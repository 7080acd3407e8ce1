"""Service health checks tolerate kube-proxy's sync at the start of the bake (activities/health.py
``SERVICE_WARMUP_SECONDS``), unit level: ``run_health_checks`` in the SDK's ``ActivityEnvironment`` against a real
local HTTP server; the Service → ClusterIP lookup is replaced by that server's URL (the rule under test is the
counting, not the lookup, which tests/test_real_node.py exercises on the real node)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import health
from activities.clients import Clients
from contract.models import HealthInput
from contract.spec import ReleaseSpec


class _Server:
    """Answers 404 to the first ``bad`` requests (a ClusterIP kube-proxy has not programmed yet, behind an egress
    proxy), then ``then`` forever."""

    def __init__(self, bad: int, then: int) -> None:
        self.bad, self.then, self.n = bad, then, 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.n += 1
                code = 404 if outer.n <= outer.bad else outer.then
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    s = _Server(*request.param)
    yield s
    s.httpd.shutdown()


def _run(monkeypatch: pytest.MonkeyPatch, s: _Server, target: dict[str, str], warmup: float) -> Any:
    monkeypatch.setattr(health, "SERVICE_WARMUP_SECONDS", warmup)
    acts = health.HealthActivities(Clients())
    monkeypatch.setattr(acts, "target_url", lambda inp, c: s.url)
    acts.c.report_progress = lambda *a, **k: None  # type: ignore[method-assign]
    acts.c.flush_progress = lambda *a, **k: None  # type: ignore[method-assign]
    spec = ReleaseSpec.model_validate({
        "app": "w", "environment": "test", "namespace": "w", "manifests": ["m.yaml"],
        "health": {"bake_seconds": 1, "http": [dict(target, interval_seconds=0.1, failure_threshold=3)]}})
    return ActivityEnvironment().run(acts.run_health_checks, HealthInput(spec=spec))


@pytest.mark.parametrize("server", [(5, 200)], indirect=True)
def test_a_service_check_that_answers_after_kube_proxy_synced_passes(monkeypatch: pytest.MonkeyPatch,
                                                                      server: _Server) -> None:
    res = _run(monkeypatch, server, {"service": "web"}, warmup=10)
    assert res[0].ok and res[0].failures == 5 and res[0].successes >= 1 and res[0].last_status == 200


@pytest.mark.parametrize("server", [(5, 200)], indirect=True)
def test_a_url_check_gets_no_warmup(monkeypatch: pytest.MonkeyPatch, server: _Server) -> None:
    with pytest.raises(ApplicationError, match="failed 3/3 .*HTTP 404"):
        _run(monkeypatch, server, {"url": "http://web.example/"}, warmup=10)


@pytest.mark.parametrize("server", [(0, 500)], indirect=True)
def test_a_service_that_never_answers_right_fails_once_the_warmup_is_over(monkeypatch: pytest.MonkeyPatch,
                                                                          server: _Server) -> None:
    with pytest.raises(ApplicationError, match="failed 3/3 .*HTTP 500"):
        _run(monkeypatch, server, {"service": "web"}, warmup=1)
    assert server.n >= 3 + 1 / 0.1 * 0.5, server.n  # it kept probing through the warm-up first
