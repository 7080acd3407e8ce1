"""``run_health_checks``: HTTP checks repeated through the bake time after readiness.

Called by ``RolloutWorkflow`` once workloads are ready. A check that names a ``service`` is resolved to the
Service's ClusterIP through the Kubernetes API when the bake starts (kept in the heartbeat, so a retry probes
the same address). A check fails the release when it reaches
``failure_threshold`` consecutive failures (Argo's ``failureLimit`` / Flagger's ``threshold``); it passes when the
bake ends and its latest run of successes reached ``success_threshold``. Heartbeats carry the counters, so a
retried attempt resumes with them and keeps the original bake end.

A check through a Service's ClusterIP can run before kube-proxy has programmed the new Service: the workloads are
Ready, but the ClusterIP does not route yet (connection refused or timed out; on hosts with an egress proxy even an
HTTP 404 from the proxy). So for ``service`` checks, failures before the check's first success do not count toward
``failure_threshold`` during the first ``SERVICE_WARMUP_SECONDS`` of the bake (they are still counted in
``failures`` and reported); a version that never answers correctly still fails, once the warm-up is over.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import cancellation
from activities.cancellation import sync_activity
from activities.clients import Clients
from contract.models import HealthInput, HealthResult, ProgressReport
from contract.spec import HttpCheck

log = activity.logger

# Long enough for kube-proxy to sync a new Service on a loaded node (it syncs within ~1 s when idle; with short
# steps as local activities the bake starts ~1 s after apply), short against any real bake.
SERVICE_WARMUP_SECONDS = 10.0


class BakeProgress(BaseModel):
    bake_end: float
    warmup_end: float = 0.0  # service checks: failures before the first success count only after this
    results: list[HealthResult]
    streaks: list[int]


def probe(client: httpx.Client, check: HttpCheck, url: str) -> tuple[bool, int | None, str | None]:
    try:
        r = client.get(url, timeout=check.timeout_seconds)
    except httpx.HTTPError as e:
        return False, None, f"{type(e).__name__}: {e}"[:200]
    return r.status_code == check.expected_status, r.status_code, None


class HealthActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    def target_url(self, inp: HealthInput, check: HttpCheck) -> str:
        """The check's URL; a ``service`` reference becomes its ClusterIP and port, read from the API now."""
        if check.url is not None:
            return check.url
        assert check.service is not None
        ns = inp.spec.namespace
        try:
            svc = self.c.kube(inp.spec.kube_context).core.read_namespaced_service(check.service, ns)
        except ApiException as e:
            if e.status == 404:
                raise ApplicationError(f"health check: Service {ns}/{check.service} not found",
                                       type="HealthCheckFailed", non_retryable=True) from e
            raise  # API unavailable: retryable
        spec = svc.spec
        assert spec is not None  # the API always returns a spec
        ip = spec.cluster_ip
        if not ip or ip == "None":
            raise ApplicationError(f"health check: Service {ns}/{check.service} has no ClusterIP (headless)",
                                   type="HealthCheckFailed", non_retryable=True)
        ports = [p.port for p in spec.ports or []]
        if check.port is not None and check.port not in ports:
            raise ApplicationError(f"health check: Service {ns}/{check.service} has no port {check.port} "
                                   f"(ports: {ports})", type="HealthCheckFailed", non_retryable=True)
        port = check.port or ports[0]
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{port}{check.path}"

    @sync_activity("run_health_checks")
    def run_health_checks(self, inp: HealthInput) -> list[HealthResult]:
        checks = inp.spec.health.http
        info = activity.info()
        if info.heartbeat_details:
            st = BakeProgress.model_validate(info.heartbeat_details[0])
            log.info("resuming bake from heartbeat (attempt %d)", info.attempt)
        else:
            urls = [self.target_url(inp, c) for c in checks]
            st = BakeProgress(bake_end=time.time() + inp.spec.health.bake_seconds,
                              warmup_end=time.time() + SERVICE_WARMUP_SECONDS,
                              results=[HealthResult(name=c.label, url=u, ok=True) for c, u in zip(checks, urls, strict=True)],
                              streaks=[0] * len(checks))
        next_at = [0.0] * len(checks)
        with self.c.http() as client:
            while True:
                now = time.time()
                for i, c in enumerate(checks):
                    if now < next_at[i]:
                        continue
                    next_at[i] = now + c.interval_seconds
                    r = st.results[i]
                    ok, code, err = probe(client, c, r.url)
                    r.last_status, r.last_error, r.checked_at = code, err, datetime.now(UTC)
                    if ok:
                        r.successes += 1
                        r.consecutive_failures = 0
                        st.streaks[i] += 1
                    else:
                        r.failures += 1
                        if not (c.service and not r.successes and now < st.warmup_end):
                            r.consecutive_failures += 1
                        st.streaks[i] = 0
                    r.ok = r.consecutive_failures < c.failure_threshold
                    if not r.ok:
                        self.c.flush_progress(ProgressReport(health=st.results))
                        what = f"HTTP {code}" if code is not None else err
                        raise ApplicationError(
                            f"health check {r.url} failed {r.consecutive_failures}/{c.failure_threshold} "
                            f"(last: {what}, expected {c.expected_status})", type="HealthCheckFailed",
                            non_retryable=True)
                cancellation.heartbeat(st.model_dump(mode="json"))
                self.c.report_progress(ProgressReport(health=st.results))
                settled = all(s >= c.success_threshold for s, c in zip(st.streaks, checks, strict=True))
                if time.time() >= st.bake_end and settled:
                    self.c.flush_progress(ProgressReport(health=st.results))
                    return st.results
                cancellation.sleep(min([0.5] + [max(0.05, t - time.time()) for t in next_at]))
