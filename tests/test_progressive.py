"""Canary and blue-green rollouts on the real node with real pods, real traffic and the stack's real Prometheus
(issue 11). Step sequencing in isolation is tests/test_progressive_units.py.

The demo app (images/demo-app) answers ``/`` and fails a share ``FAIL_RATE`` of those with 500; Prometheus
(scripts/prometheus.sh) scrapes its ``/metrics`` every 2 s through the pods' ``prometheus.io/scrape`` annotation,
with pod labels as Prometheus labels (``rollwright.io/track`` → ``rollwright_io_track``). Traffic comes from
tests/loadgen.py through the Service's ClusterIP. Times are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import Client
from temporalio.service import RPCError

from contract import workflow_id
from contract.models import Outcome, RolloutResult, RolloutStatus, Step
from orchestrator.client import RolloutClient
from orchestrator.config import load_settings
from orchestrator.loader import load_spec
from tests.helpers import (
    BIN,
    ROOT,
    SESSION,
    STATE,
    TEMPORAL_ADDRESS,
    WorkerProcess,
    cli,
    free_port,
    history_events,
    local_activities,
    temporal_cli,
    wait_until,
    write_release,
)

pytestmark = [pytest.mark.e2e]
async_test = pytest.mark.asyncio(loop_scope="session")
NODE = "real-0"
ENV = "test"


def _prometheus() -> str:
    r = subprocess.run(["bash", str(ROOT / "scripts/prometheus.sh"), "url"], capture_output=True, text=True,
                       env={"ROLLWRIGHT_STATE": str(STATE), "PATH": "/usr/bin:/bin"})
    return r.stdout.strip() or "http://127.0.0.1:9091"


PROM = _prometheus()
# Share of the canary's answers to / that are 5xx over the last 10 s (0 when it served only 200s).
ERROR_RATE = ('(sum(rate(demo_http_requests_total{namespace="{{args.namespace}}",{{args.canary-selector}},'
              'path="/",code=~"5.."}[10s])) or vector(0)) / sum(rate(demo_http_requests_total{'
              'namespace="{{args.namespace}}",{{args.canary-selector}},path="/"}[10s]))')


def error_rate(name: str, *, interval: str = "3s", count: int | None = 2, delay: str = "6s",
               failure_limit: int = 0) -> dict[str, Any]:
    m: dict[str, Any] = {"name": "error-rate", "interval": interval, "initialDelay": delay,
                         "failureLimit": failure_limit, "successCondition": "result[0] < 0.1",
                         "failureCondition": "result[0] >= 0.1",
                         "provider": {"prometheus": {"address": PROM, "query": ERROR_RATE}}}
    if count is not None:
        m["count"] = count
    return {"name": name, "metrics": [m]}


def constant(name: str, value: float, *, success: str, failure: str) -> dict[str, Any]:
    return {"name": name, "metrics": [{"name": "constant", "successCondition": success, "failureCondition": failure,
                                       "provider": {"prometheus": {"address": PROM, "query": f"vector({value})"}}}]}


def pod_template(app: str, image: str, version: str, fail_rate: float) -> dict[str, Any]:
    c = {"name": "web", "image": image, "ports": [{"containerPort": 8080}],
         "env": [{"name": "VERSION", "value": version}, {"name": "FAIL_RATE", "value": str(fail_rate)}],
         "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1},
         "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
         "resources": {"requests": {"cpu": "5m", "memory": "24Mi"}, "limits": {"memory": "96Mi"}}}
    return {"metadata": {"labels": {"app": app}, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"terminationGracePeriodSeconds": 10, "containers": [c],
                     "nodeSelector": {"kubernetes.io/hostname": NODE},
                     "tolerations": [{"key": "rollwright.io/real", "operator": "Exists", "effect": "NoSchedule"}]}}


def service(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}}


def deployment(app: str, image: str, version: str, *, replicas: int = 4, fail_rate: float = 0.0) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 180, "selector": {"matchLabels": {"app": app}},
                     "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": pod_template(app, image, version, fail_rate)}}


def statefulset(app: str, image: str, version: str, *, replicas: int = 3) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": app},
            "spec": {"replicas": replicas, "serviceName": app, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": app}}, "template": pod_template(app, image, version, 0.0)}}


class LoadGen:
    """Requests through a Service from a few threads, a NEW connection each (kube-proxy balances per connection, so
    kept-alive connections opened before the canary existed would never reach it). ``codes`` counts answers."""

    def __init__(self, url: str, *, rps: float = 20, threads: int = 4) -> None:
        self.url, self.period, self.n = url, threads / rps, threads
        self.codes: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                code = httpx.get(self.url, timeout=2, headers={"Connection": "close"}).status_code
            except httpx.HTTPError:
                code = 0
            self.codes[code] += 1
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t)))

    async def __aenter__(self) -> LoadGen:
        for t in self._threads:
            t.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            await asyncio.to_thread(t.join, 5)


@pytest.fixture(scope="module")
def demo_image(docker_client: Any, registry: str) -> str:
    ref = f"{registry}/rollwright-test/progressive-demo:{SESSION}"
    docker_client.images.build(path=str(ROOT / "images/demo-app"), tag=ref, rm=True)
    docker_client.images.push(ref)
    return ref


@pytest.fixture(scope="module")
def pworker(kubeconfig: Path) -> Iterator[WorkerProcess]:
    """This module's own worker (test 6 kills it)."""
    w = WorkerProcess(f"rw-prog-{SESSION}", kubeconfig, name="progressive")
    w.start()
    yield w
    w.stop()


@pytest.fixture
def app(request: pytest.FixtureRequest, temporal: Client) -> Iterator[str]:
    """A per-test app name (its workflow ID is the lock); a run a failed test left behind is terminated."""
    name = "pd-" + request.node.name.split("_")[1][:12].strip("-").lower() + "-" + SESSION[:4]
    yield name
    r = subprocess.run([str(BIN / "temporal"), "workflow", "terminate", "-w", workflow_id(name, ENV),
                        "--reason", "test teardown", "--address", TEMPORAL_ADDRESS], capture_output=True, text=True)
    if r.returncode == 0:
        print(f"terminated a leftover run of {workflow_id(name, ENV)}")


def release(tmp: Path, app: str, ns: str, registry: str, objects: list[dict[str, Any]], version: str,
            strategy: dict[str, Any] | None = None, templates: list[dict[str, Any]] | None = None) -> Path:
    extra: dict[str, Any] = {}
    if strategy is not None:
        extra["strategy"] = strategy
    if templates:
        extra["analysisTemplates"] = templates
    return write_release(tmp, app=app, namespace=ns, objects=objects, registry=registry, version=version,
                         image=False, extra=extra, env=ENV, health={"progress_deadline_seconds": 240})


async def start(temporal: Client, w: WorkerProcess, path: Path) -> Any:
    return await RolloutClient(temporal, w.task_queue).start(load_spec(path))


async def result(temporal: Client, w: WorkerProcess, handle: Any) -> RolloutResult:
    return await RolloutClient(temporal, w.task_queue).result(handle)


async def status_when(handle: Any, pred: Any, timeout: float = 180, what: str = "status") -> RolloutStatus:
    t0 = time.monotonic()
    st = None
    while time.monotonic() - t0 < timeout:
        try:
            st = await handle.query("status", result_type=RolloutStatus)
        except RPCError as e:  # e.g. "buffered query cleared, please retry" while a workflow task is retried
            print(f"status query: {e} (retrying)")
            await asyncio.sleep(0.5)
            continue
        if pred(st):
            return st
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last status: {st.model_dump_json()[:1500] if st else None}")


def svc_url(core: k8s.CoreV1Api, ns: str, name: str) -> str:
    return f"http://{core.read_namespaced_service(name, ns).spec.cluster_ip}:80/"


def answers(url: str, n: int = 20) -> list[str]:
    out = []
    with httpx.Client(timeout=3) as c:
        for _ in range(n):
            try:
                r = c.get(url)
                out.append(f"{r.status_code} {r.text.strip()}")
            except httpx.HTTPError as e:
                out.append(f"error {type(e).__name__}")
    return out


def measurement_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of the measure_metric activities in a workflow history (`temporal workflow show -o json`)."""
    sched: dict[str, str] = {}
    out = []
    for e in events:
        a = e.get("activityTaskScheduledEventAttributes")
        if a:
            sched[str(e["eventId"])] = a["activityType"]["name"]
        c = e.get("activityTaskCompletedEventAttributes")
        if c and sched.get(str(c["scheduledEventId"])) == "measure_metric":
            out.append(json.loads(base64.b64decode(c["result"]["payloads"][0]["data"])))
    return out


def _event_time(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00"))


def _traffic_done(events: list[dict[str, Any]], action: str) -> datetime:
    """When the set_traffic activity with ``action`` completed (history event time)."""
    sched = {str(e["eventId"]) for e in events if "activityTaskScheduledEventAttributes" in e
             and e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "set_traffic"
             and action.encode() in base64.b64decode(
                 e["activityTaskScheduledEventAttributes"]["input"]["payloads"][0]["data"])}
    return next(_event_time(e) for e in events if "activityTaskCompletedEventAttributes" in e
                and str(e["activityTaskCompletedEventAttributes"]["scheduledEventId"]) in sched)


def deployments(apps: k8s.AppsV1Api, ns: str) -> dict[str, k8s.V1Deployment]:
    return {d.metadata.name: d for d in apps.list_namespaced_deployment(ns).items}


def env_of(tpl: Any) -> dict[str, str]:
    return {e.name: e.value for e in tpl.spec.containers[0].env}


async def install_v1(temporal: Client, w: WorkerProcess, tmp: Path, app: str, ns: str, registry: str,
                     objects: list[dict[str, Any]]) -> None:
    t0 = time.monotonic()
    res = await result(temporal, w, await start(temporal, w, release(tmp / "v1", app, ns, registry, objects, "v1")))
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    print(f"v1 installed (rolling) in {time.monotonic() - t0:.1f}s")


# ---- 1. a good canary -------------------------------------------------------------------------------------------


@async_test
async def test_good_canary_promotes_through_every_step(app: str, temporal: Client, pworker: WorkerProcess, demo_image: str,
                                                      registry: str, namespace: str, core: k8s.CoreV1Api,
                                                      apps: k8s.AppsV1Api, tmp_path: Path) -> None:
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v1")])
    strategy = {"canary": {"steps": [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                                     {"setWeight": 50}, {"pause": {"duration": "2s"}}]}}
    path = release(tmp_path / "v2", app, namespace, registry, [service(app, app), deployment(app, demo_image, "v2")],
                   "v2", strategy, [error_rate("errors")])
    t0 = time.monotonic()
    async with LoadGen(svc_url(core, namespace, app), rps=20) as load:
        handle = await start(temporal, pworker, path)
        st = await status_when(handle, lambda s: s.progressive is not None and s.progressive.weight == 25
                               and s.progressive.canary_replicas == 1, what="weight 25")
        assert st.progressive is not None and st.progressive.stable_replicas == 3
        d = deployments(apps, namespace)
        assert d[f"{app}-canary"].spec.replicas == 1 and d[app].spec.replicas == 3
        assert env_of(d[f"{app}-canary"].spec.template)["VERSION"] == "v2" and env_of(d[app].spec.template)[
            "VERSION"] == "v1"
        res = await result(temporal, pworker, handle)
    print(f"canary 25% → analysis → 50% → pause 2s → promoted in {time.monotonic() - t0:.1f}s; "
          f"load: {dict(load.codes)}")
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    p = res.progressive
    assert p is not None and p.weight == 100 and p.step == 4 and p.analysis_phase == "Successful"
    # Right after the canary turns Ready, Prometheus may have no sample of it yet: that first measurement is an
    # Error with an empty vector (it counts toward consecutiveErrorLimit only). Every other one carries a value.
    real = [m for m in p.measurements if not (m.phase.value == "Error" and m.value == "[]")]
    assert len(real) >= 2 and all(m.value not in (None, "", "[]") and m.phase.value == "Successful" for m in real), \
        p.measurements
    print("measurements:", [(m.value, m.phase.value, f"{m.finished_at:%H:%M:%S}") for m in p.measurements])
    # Prometheus really answered: the measurements are in the history, as the activity's results.
    values = measurement_results(history_events(handle.id, handle.result_run_id))
    assert len([v for v in values if v["value"] not in (None, "", "[]")]) >= 2, values
    d = deployments(apps, namespace)
    assert f"{app}-canary" not in d and d[app].spec.replicas == 4
    assert env_of(d[app].spec.template)["VERSION"] == "v2"
    assert all(a.startswith("200 demo v2") for a in answers(svc_url(core, namespace, app)))


# ---- 2. a bad canary is aborted by analysis ---------------------------------------------------------------------


@async_test
async def test_bad_canary_is_aborted_by_analysis_and_traffic_returns_to_stable(app: str,
        temporal: Client, pworker: WorkerProcess, demo_image: str, registry: str, namespace: str,
        core: k8s.CoreV1Api, apps: k8s.AppsV1Api, tmp_path: Path) -> None:
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v1")])
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                                     {"setWeight": 100}]}}
    tpl = error_rate("errors", interval="2s", count=10, delay="4s", failure_limit=0)
    path = release(tmp_path / "v2", app, namespace, registry,
                   [service(app, app), deployment(app, demo_image, "v2", fail_rate=0.3)], "v2", strategy, [tpl])
    url = svc_url(core, namespace, app)
    async with LoadGen(url, rps=20) as load:
        handle = await start(temporal, pworker, path)
        res = await result(temporal, pworker, handle)
        during = load.codes[500]
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    assert res.failed_step == Step.ANALYSIS and "errors" in (res.cause or ""), res.cause
    p = res.progressive
    assert p is not None and p.measurements and p.measurements[-1].phase.value == "Failed"
    failed = next(m for m in p.measurements if m.phase.value == "Failed")
    events = history_events(handle.id, handle.result_run_id)
    started = _traffic_done(events, '"info"')  # the analysis starts right after reading the pod-template hashes
    at_zero = _traffic_done(events, '"canary-abort"')
    bound = 4 + 2 * (0 + 1)  # initialDelay + interval x (failureLimit + 1)
    print(f"5xx answers while the canary served: {during}; analysis started {started:%H:%M:%S.%f}, verdict Failed at "
          f"{failed.finished_at:%H:%M:%S.%f} ({(failed.finished_at - started).total_seconds():.1f}s; Argo's bound "
          f"initialDelay + interval x (failureLimit+1) = {bound}s), canary at 0 pods "
          f"{(at_zero - failed.finished_at).total_seconds():.1f}s later; bad canary → traffic on stable: "
          f"{(at_zero - started).total_seconds():.1f}s; rollback done {(res.finished_at - at_zero).total_seconds():.1f}s "
          f"after that")
    assert during > 0, "the canary never served a 5xx: the test would prove nothing"
    # The canary is gone, its pods too; the stable serves every request.
    assert f"{app}-canary" not in deployments(apps, namespace)
    wait_until(lambda: not core.list_namespaced_pod(namespace, label_selector="rollwright.io/track=canary").items,
               60, what="canary pods gone")
    async with LoadGen(url, rps=20) as after:
        await asyncio.sleep(5)
    print(f"after the abort: {dict(after.codes)}")
    assert after.codes[500] == 0 and sum(after.codes.values()) > 20 and set(after.codes) == {200}
    assert all(a.startswith("200 demo v1") for a in answers(url))
    assert deployments(apps, namespace)[app].spec.replicas == 4


# ---- 3. inconclusive pauses; promote through the plain temporal CLI ---------------------------------------------


@async_test
async def test_inconclusive_analysis_waits_and_temporal_cli_promote_continues(app: str,
        temporal: Client, pworker: WorkerProcess, demo_image: str, registry: str, namespace: str,
        apps: k8s.AppsV1Api, tmp_path: Path, cli_env: dict[str, str]) -> None:
    objs = [service(app, app), deployment(app, demo_image, "v1", replicas=2)]
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry, objs)
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "maybe"}]}}]}}
    path = release(tmp_path / "v2", app, namespace, registry,
                   [service(app, app), deployment(app, demo_image, "v2", replicas=2)], "v2", strategy,
                   [constant("maybe", 0.5, success="result[0] < 0.1", failure="result[0] > 0.9")])
    handle = await start(temporal, pworker, path)
    st = await status_when(handle, lambda s: s.progressive is not None and s.progressive.awaiting_promotion,
                           what="paused on the inconclusive analysis")
    assert st.phase.value == "Paused" and "inconclusive" in (st.progressive.paused_reason or "")  # type: ignore[union-attr]
    wid = handle.id
    # Operators find it by the search attribute.
    wait_until(lambda: wid in temporal_cli("workflow", "list", "--query",
                                           f"RolloutStep='inconclusive' AND RolloutApp='{app}'", env=cli_env).stdout,
               30, what="RolloutStep='inconclusive' in visibility")
    r = temporal_cli("workflow", "update", "execute", "-w", wid, "--name", "promote", "--input",
                     '{"approver":"alice","comment":"error rate 0.4% is expected"}', env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "promoted by alice" in r.stdout
    res = await result(temporal, pworker, handle)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    assert res.progressive is not None
    assert [(x.approver, x.reason) for x in res.progressive.promotions] == [("alice", "inconclusive analysis")]
    assert env_of(deployments(apps, namespace)[app].spec.template)["VERSION"] == "v2"
    # Nothing waits any more: the update is refused and recorded nowhere.
    r = temporal_cli("workflow", "update", "execute", "-w", wid, "--name", "promote", "--input", '{"approver":"x"}',
                     env=cli_env)
    assert r.returncode != 0


# ---- 4. blue-green ----------------------------------------------------------------------------------------------


@async_test
async def test_blue_green_preview_then_failed_post_promotion_analysis_switches_back(app: str,
        temporal: Client, pworker: WorkerProcess, demo_image: str, registry: str, namespace: str,
        core: k8s.CoreV1Api, apps: k8s.AppsV1Api, tmp_path: Path, cli_env: dict[str, str]) -> None:
    objs = [service(app, app), service(f"{app}-preview", app), deployment(app, demo_image, "v1", replicas=2)]
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry, objs)
    strategy = {"blueGreen": {"activeService": app, "previewService": f"{app}-preview",
                              "autoPromotionEnabled": False, "scaleDownDelaySeconds": 30,
                              "postPromotionAnalysis": {"templates": [{"templateName": "bad"}]}}}
    objs2 = [service(app, app), service(f"{app}-preview", app), deployment(app, demo_image, "v2", replicas=2)]
    path = release(tmp_path / "v2", app, namespace, registry, objs2, "v2", strategy,
                   [{"name": "bad", "metrics": [{"name": "always", "initialDelay": "2s",
                                                 "successCondition": "result[0] < 1",
                                                 "failureCondition": "result[0] >= 1",
                                                 "provider": {"prometheus": {"address": PROM,
                                                                             "query": "vector(1)"}}}]}])
    handle = await start(temporal, pworker, path)
    await status_when(handle, lambda s: s.progressive is not None and s.progressive.awaiting_promotion,
                      what="preview ready, waiting for promote")
    active, preview = svc_url(core, namespace, app), svc_url(core, namespace, f"{app}-preview")
    assert all(a.startswith("200 demo v2") for a in answers(preview)), answers(preview, 3)
    assert all(a.startswith("200 demo v1") for a in answers(active)), answers(active, 3)
    r = cli("rollout", "promote", "--app", app, "--env", ENV, "--approver", "bob", env=cli_env)
    assert r.returncode == 0, r.stderr
    # activeService now selects the preview; then the post-promotion analysis fails and it switches back.
    seen_v2 = wait_until(lambda: any(a.startswith("200 demo v2") for a in answers(active, 3)), 20,
                         what="active answering v2") and time.monotonic()
    res = await result(temporal, pworker, handle)
    t_back = wait_until(lambda: all(a.startswith("200 demo v1") for a in answers(active, 5)), 20,
                        what="active answering v1 again") and time.monotonic()
    assert res.outcome == Outcome.ROLLED_BACK, res.cause
    p = res.progressive
    assert p is not None and p.active == "stable" and p.switch_back_seconds is not None
    print(f"blue-green switch back: set_traffic switch-back took {p.switch_back_seconds:.2f}s (workflow clock); "
          f"active answered v2 → v1 within {t_back - seen_v2:.1f}s (includes the analysis' 2s initialDelay and "
          f"the rollback)")
    assert f"{app}-preview" not in deployments(apps, namespace)
    for name in (app, f"{app}-preview"):
        assert core.read_namespaced_service(name, namespace).spec.selector == {"app": app}
    assert all(a.startswith("200 demo v1") for a in answers(active))


# ---- 5. StatefulSet canary through the partition ----------------------------------------------------------------


@async_test
async def test_statefulset_canary_by_partition_and_abort(app: str, temporal: Client, pworker: WorkerProcess, demo_image: str,
                                                        registry: str, namespace: str, core: k8s.CoreV1Api,
                                                        apps: k8s.AppsV1Api, tmp_path: Path) -> None:
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry,
                     [service(app, app), statefulset(app, demo_image, "v1")])
    strategy = {"canary": {"steps": [{"setWeight": 33}, {"pause": {}}]}}
    path = release(tmp_path / "v2", app, namespace, registry, [service(app, app), statefulset(app, demo_image, "v2")],
                   "v2", strategy)
    handle = await start(temporal, pworker, path)
    st = await status_when(handle, lambda s: s.progressive is not None and s.progressive.awaiting_promotion,
                           what="paused after setWeight 33")
    assert st.progressive is not None and st.progressive.canary_replicas == 1

    def versions() -> dict[str, str]:
        return {p.metadata.name: env_of(p)["VERSION"] for p in core.list_namespaced_pod(
            namespace, label_selector=f"app={app}").items if not p.metadata.deletion_timestamp}

    assert versions() == {f"{app}-0": "v1", f"{app}-1": "v1", f"{app}-2": "v2"}
    sts = apps.read_namespaced_stateful_set(app, namespace)
    assert sts.spec.update_strategy.rolling_update.partition == 2
    t0 = time.monotonic()
    await handle.signal("abort", {"reason": "canary looks wrong"})
    res = await result(temporal, pworker, handle)
    print(f"StatefulSet canary abort → previous template on every pod in {time.monotonic() - t0:.1f}s")
    assert res.outcome == Outcome.ABORTED and "canary looks wrong" in (res.cause or "")
    # The rollout ends only once every pod runs the previous template again (no wait here).
    assert versions() == {f"{app}-0": "v1", f"{app}-1": "v1", f"{app}-2": "v1"}
    sts = apps.read_namespaced_stateful_set(app, namespace)
    assert not sts.spec.update_strategy.rolling_update.partition
    assert env_of(sts.spec.template)["VERSION"] == "v1"


# ---- 5b. a long canary continues as new (bounded history) ---------------------------------------------------------


@async_test
async def test_long_canary_continues_as_new_and_finishes(app: str, temporal: Client, pworker: WorkerProcess,
                                                         demo_image: str, registry: str, namespace: str,
                                                         core: k8s.CoreV1Api, apps: k8s.AppsV1Api,
                                                         tmp_path: Path) -> None:
    """maxHistoryEvents 100: the background analysis (every 2 s, real Prometheus) during a 30 s pause pushes the
    history past it, so the rollout continues as new on the real server and worker, then finishes the canary."""
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v1", replicas=2)])
    bg = {"name": "bg", "metrics": [{"name": "constant", "interval": "2s", "successCondition": "result[0] < 1",
                                     "failureCondition": "result[0] >= 1",
                                     "provider": {"prometheus": {"address": PROM, "query": "vector(0)"}}}]}
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "30s"}}, {"setWeight": 100}],
                           "analysis": {"templates": [{"templateName": "bg"}], "startingStep": 1},
                           "maxHistoryEvents": 100}}
    path = release(tmp_path / "v2", app, namespace, registry,
                   [service(app, app), deployment(app, demo_image, "v2", replicas=2)], "v2", strategy, [bg])
    t0 = time.monotonic()
    handle = await start(temporal, pworker, path)
    res = await result(temporal, pworker, handle)
    assert res.outcome == Outcome.SUCCEEDED, res.cause
    p = res.progressive
    assert p is not None and p.runs >= 2 and p.weight == 100 and p.step == 3, p
    assert p.measurements and all(m.phase.value == "Successful" for m in p.measurements)
    first = history_events(handle.id, handle.first_execution_run_id)
    latest = (await temporal.get_workflow_handle(handle.id).describe()).run_id  # the start handle's is the first
    assert latest != handle.first_execution_run_id
    last = history_events(handle.id, latest)
    print(f"continued as new: {p.runs} runs, {len(p.measurements)} measurements carried into the result, first run "
          f"{len(first)} events, last run {len(last)}; canary done in {time.monotonic() - t0:.1f}s")
    assert "workflowExecutionContinuedAsNewEventAttributes" in first[-1], first[-1]
    # No measurement lost at a continue-as-new (drain): in every run each scheduled measure_metric completed, and
    # the result holds each one.
    chain, done = [first], 0
    while "workflowExecutionContinuedAsNewEventAttributes" in chain[-1][-1]:
        chain.append(history_events(
            handle.id, chain[-1][-1]["workflowExecutionContinuedAsNewEventAttributes"]["newExecutionRunId"]))
    for evs in chain:
        sched = {e["eventId"] for e in evs if e.get("activityTaskScheduledEventAttributes", {}).get(
            "activityType", {}).get("name") == "measure_metric"}
        completed = [e for e in evs if e.get("activityTaskCompletedEventAttributes", {}).get("scheduledEventId") in sched]
        assert len(completed) == len(sched), (len(completed), len(sched))
        done += len(completed)
    assert len(chain) == p.runs and done == len(p.measurements), (len(chain), p.runs, done, len(p.measurements))
    scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"] for e in last
                 if "activityTaskScheduledEventAttributes" in e] + [la["activity_type"] for la in local_activities(last)]
    assert "prepare_release" not in scheduled and "snapshot_release" not in scheduled and "finalize_revision" in \
        scheduled, scheduled
    d = deployments(apps, namespace)
    assert f"{app}-canary" not in d and d[app].spec.replicas == 2 and env_of(d[app].spec.template)["VERSION"] == "v2"
    assert all(a.startswith("200 demo v2") for a in answers(svc_url(core, namespace, app)))


# ---- 6. worker SIGKILL and abort in the middle of an analysis ---------------------------------------------------


@async_test
async def test_worker_sigkill_mid_analysis_then_abort(app: str, temporal: Client, pworker: WorkerProcess, demo_image: str,
                                                     registry: str, namespace: str, core: k8s.CoreV1Api,
                                                     apps: k8s.AppsV1Api, tmp_path: Path) -> None:
    await install_v1(temporal, pworker, tmp_path, app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v1", replicas=2)])
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "long"}]}},
                                     {"setWeight": 100}]}}
    path = release(tmp_path / "v2", app, namespace, registry,
                   [service(app, app), deployment(app, demo_image, "v2", replicas=2)], "v2", strategy,
                   [constant("long", 0, success="result[0] < 1", failure="result[0] >= 1") | {
                       "metrics": [{"name": "constant", "interval": "1s", "count": 600,
                                    "successCondition": "result[0] < 1", "failureCondition": "result[0] >= 1",
                                    "provider": {"prometheus": {"address": PROM, "query": "vector(0)"}}}]}])
    handle = await start(temporal, pworker, path)
    st = await status_when(handle, lambda s: s.progressive is not None and len(s.progressive.measurements) >= 2,
                           what="analysis measuring")
    pworker.kill()
    t0 = time.monotonic()
    pworker.start()
    n = len(st.progressive.measurements)  # type: ignore[union-attr]
    await status_when(handle, lambda s: s.progressive is not None and len(s.progressive.measurements) >= n + 3,
                      what="analysis measuring again after the SIGKILL")
    print(f"analysis resumed {time.monotonic() - t0:.1f}s after the worker was killed and restarted")
    await handle.signal("abort", {"reason": "enough"})
    res = await result(temporal, pworker, handle)
    assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: enough"
    assert f"{app}-canary" not in deployments(apps, namespace)
    assert all(a.startswith("200 demo v1") for a in answers(svc_url(core, namespace, app)))
    assert workflow_id(app, ENV) == handle.id


# ---- 6b. a Temporal restart in the middle of an analysis (a private server: the shared one is never restarted) ----


class PrivateTemporal:
    """`temporal server start-dev` with its own SQLite file and port, killed (SIGKILL) and restarted on the same
    file by the test. The shared dev server of the stack is not touched."""

    SA = ["RolloutApp=Keyword", "RolloutEnvironment=Keyword", "RolloutPhase=Keyword", "RolloutOutcome=Keyword",
          "RolloutImage=Keyword", "RolloutRevision=Int", "RolloutInitiator=Keyword", "RolloutStep=Keyword"]

    def __init__(self, db: Path) -> None:
        self.db, self.port = db, free_port()
        self.ports = [free_port(), free_port(), free_port()]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                "--ui-port", str(self.ports[0]), "--headless", "--http-port", str(self.ports[1]),
                "--metrics-port", str(self.ports[2]), "--db-filename", str(self.db), "--log-level", "error"]
        for a in self.SA:
            args += ["--search-attribute", a]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until(lambda: "RolloutStep" in subprocess.run(
            [str(BIN / "temporal"), "operator", "search-attribute", "list", "--address", self.address],
            capture_output=True, text=True, timeout=10).stdout, 120, interval=1, what=f"dev server {self.address}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@async_test
async def test_temporal_restart_mid_analysis_then_abort(app: str, kubeconfig: Path, demo_image: str, registry: str,
                                                       namespace: str, core: k8s.CoreV1Api, apps: k8s.AppsV1Api,
                                                       tmp_path: Path) -> None:
    server = PrivateTemporal(tmp_path / "temporal.db")
    server.start()
    w = WorkerProcess(f"rw-prog-restart-{SESSION}", kubeconfig, name="progressive-restart",
                      extra_env={"ROLLWRIGHT_TEMPORAL_ADDRESS": server.address})
    try:
        w.start()
        rc = await RolloutClient.connect(load_settings(temporal_address=server.address, task_queue=w.task_queue))
        v1 = release(tmp_path / "v1", app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v1", replicas=2)], "v1")
        assert (await rc.result(await rc.start(load_spec(v1)))).outcome == Outcome.SUCCEEDED
        long = {"name": "long", "metrics": [{"name": "constant", "interval": "1s", "count": 600,
                                             "successCondition": "result[0] < 1", "failureCondition": "result[0] >= 1",
                                             "provider": {"prometheus": {"address": PROM, "query": "vector(0)"}}}]}
        strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "long"}]}},
                                         {"setWeight": 100}]}}
        v2 = release(tmp_path / "v2", app, namespace, registry,
                     [service(app, app), deployment(app, demo_image, "v2", replicas=2)], "v2", strategy, [long])
        handle = await rc.start(load_spec(v2))
        st = await status_when(handle, lambda s: s.progressive is not None and len(s.progressive.measurements) >= 2,
                               what="analysis measuring")
        n = len(st.progressive.measurements)  # type: ignore[union-attr]
        server.kill()
        t0 = time.monotonic()
        await asyncio.sleep(3)
        server.start()
        print(f"private Temporal restarted in {time.monotonic() - t0:.1f}s (SIGKILL, same SQLite file)")
        st = await status_when(handle, lambda s: s.progressive is not None and len(s.progressive.measurements) >= n + 3,
                               what="analysis measuring again after the Temporal restart")
        print(f"analysis measuring again {time.monotonic() - t0:.1f}s after the kill "
              f"({len(st.progressive.measurements)} measurements)")  # type: ignore[union-attr]
        assert deployments(apps, namespace)[f"{app}-canary"].spec.replicas == 1
        await handle.signal("abort", {"reason": "after the restart"})
        res = await rc.result(handle)
        assert res.outcome == Outcome.ABORTED and res.cause == "aborted by operator: after the restart"
        assert f"{app}-canary" not in deployments(apps, namespace)
        assert all(a.startswith("200 demo v1") for a in answers(svc_url(core, namespace, app)))
    finally:
        w.stop()
        server.kill()
