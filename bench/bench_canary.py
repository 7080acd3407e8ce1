"""Bad-canary benchmark (issue 11): time from a bad canary to traffic back on the stable, on the real node.
Not a test; results go to bench/RESULTS.md (by hand) and the raw JSON to bench/results/canary.json.

    .venv/bin/python bench/bench_canary.py [--profiles default,fast,argo,flagger] [--scale 1] [--replicas 2]

Each profile is one real rollout, all profiles at once (own namespace and app each, one private worker): v1 of the
demo app (images/demo-app, FAIL_RATE 0) installed rolling, then v2 with FAIL_RATE 0.3 as a canary (setWeight 50 →
analysis of the canary's 5xx share from the stack's Prometheus → setWeight 100). A request loop through the
Service's ClusterIP opens a NEW connection per request (kube-proxy balances per connection) and logs every answer.

Measured per profile (Temporal history event times and the request loop's clock, same host):
  serving      first 5xx the loop saw (the bad canary serves traffic)
  analysis     the analysis' start (the ``set_traffic info`` activity completed: pod-template hashes read)
  failed       the Failed measurement's end (the verdict)
  at_zero      ``set_traffic canary-abort`` completed: canary Deployment at 0 pods (endpoints gone)
  last_5xx     the last 5xx the loop saw
  recovered    max(at_zero, last_5xx): canary at 0 pods AND no 5xx seen afterwards
History cost: events of the run, measure_metric activities, and the events between consecutive measurements
(= events with k+1 measurements minus events with k: the rest of the history is the same).

Profiles (analysis settings; ``--scale N`` divides every interval and delay by N, to check the formula quickly):
  default  Rollwright's defaults (failureLimit 0, no initialDelay) with the README's interval 10s
  fast     tests/test_progressive.py's settings: initialDelay 4s, interval 2s, failureLimit 0
  argo     Argo Rollouts' docs example: interval 5m, failureLimit 3 (first measurement at once)
  flagger  Flagger's docs example: interval 1m, threshold 10 → failureLimit 9, first check one interval in
Argo and Flagger cannot run here (no image can be pulled): their times are COMPUTED from the same settings,
interval × (failureLimit + 1) and interval × (threshold + 1) (Flagger rolls back on the check after the 10th
failure); Rollwright's are MEASURED with those settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from contract.models import Outcome  # noqa: E402
from orchestrator.client import RolloutClient  # noqa: E402
from orchestrator.loader import load_spec  # noqa: E402
from tests.helpers import STATE, TEMPORAL_ADDRESS, WorkerProcess, history_events  # noqa: E402
from tests.loadgen import LoadGen  # noqa: E402
from tests.test_progressive import (  # noqa: E402
    _event_time,
    _traffic_done,
    deployment,
    error_rate,
    release,
    service,
)

KUBECONFIG = STATE / "kubeconfig"
SID = uuid.uuid4().hex[:5]
REGISTRY = os.environ.get("ROLLWRIGHT_REGISTRY", "127.0.0.1:5000")

# name: (interval s, initialDelay s, failureLimit, vendor, vendor's documented interval, vendor's limit)
PROFILES: dict[str, dict[str, Any]] = {
    "default": {"interval": 10, "delay": 0, "failure_limit": 0, "about": "Rollwright defaults, interval 10s"},
    "fast": {"interval": 2, "delay": 4, "failure_limit": 0, "about": "tests/test_progressive.py settings"},
    "argo": {"interval": 300, "delay": 0, "failure_limit": 3, "about": "Argo Rollouts docs: 5m x failureLimit 3",
             "vendor": "Argo Rollouts", "computed": 300 * (3 + 1), "lower_bound": 300 * 3},
    "flagger": {"interval": 60, "delay": 60, "failure_limit": 9, "about": "Flagger docs: 1m x threshold 10",
                "vendor": "Flagger", "computed": 60 * (10 + 1), "lower_bound": 60 * 10},
}


def dur(seconds: float) -> str:
    return f"{seconds:g}s"


def demo_image() -> str:
    ref = f"{REGISTRY}/rollwright-bench/canary-demo:{SID}"
    c = docker.from_env(timeout=300)
    c.images.build(path=str(ROOT / "images/demo-app"), tag=ref, rm=True)
    c.images.push(ref)
    return ref


def events_between_measurements(events: list[dict[str, Any]]) -> list[int]:
    """Event-id gaps between consecutive measure_metric schedules: the history cost of one more measurement."""
    ids = [int(e["eventId"]) for e in events if "activityTaskScheduledEventAttributes" in e
           and e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "measure_metric"]
    return [b - a for a, b in zip(ids, ids[1:], strict=False)]


async def one(name: str, prof: dict[str, Any], scale: float, temporal: Client, w: WorkerProcess, image: str,
              core: k8s.CoreV1Api, replicas: int, rps: float) -> dict[str, Any]:
    app = f"bc-{name[:8]}-{SID}"
    ns = f"bench-canary-{name[:8]}-{SID}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-canary-{name}-"))
    interval, delay = prof["interval"] / scale, prof["delay"] / scale
    client = RolloutClient(temporal, w.task_queue)
    try:
        v1 = release(tmp / "v1", app, ns, REGISTRY, [service(app, app), deployment(app, image, "v1", replicas=replicas)],
                     "v1")
        r1 = await client.result(await client.start(load_spec(v1)))
        assert r1.outcome == Outcome.SUCCEEDED, r1.cause
        limit = prof["failure_limit"]
        tpl = error_rate("errors", interval=dur(interval), count=limit + 6, delay=dur(delay), failure_limit=limit)
        strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "errors"}]}},
                                         {"setWeight": 100}]}}
        v2 = release(tmp / "v2", app, ns, REGISTRY,
                     [service(app, app), deployment(app, image, "v2", replicas=replicas, fail_rate=0.3)], "v2",
                     strategy, [tpl])
        ip = core.read_namespaced_service(app, ns).spec.cluster_ip
        off = time.time() - time.monotonic()  # loop times are monotonic; history times are wall clock
        async with LoadGen(f"http://{ip}:80/", rps=rps) as load:
            handle = await client.start(load_spec(v2))
            res = await client.result(handle)
            await asyncio.sleep(10)  # keep the loop running: any 5xx after the abort would show here
        assert res.outcome == Outcome.ROLLED_BACK, f"{name}: {res.outcome} {res.cause}"
        events = history_events(handle.id, handle.result_run_id)
        analysis = _traffic_done(events, '"info"')
        at_zero = _traffic_done(events, '"canary-abort"')
        p = res.progressive
        assert p is not None
        failed = p.measurements[-1]  # the measurement that decided the run (failureLimit + 1-th Failed)
        assert failed.phase.value == "Failed", p.measurements
        bad = [off + t for t, code in load.log if code >= 500]
        assert bad, f"{name}: the loop never saw a 5xx: nothing was measured"
        serving, last_5xx = bad[0], bad[-1]
        z = at_zero.timestamp()
        recovered = max(z, last_5xx)
        phases = [m.phase.value for m in p.measurements]
        gaps = events_between_measurements(events)
        out = {
            "profile": name, "about": prof["about"], "interval_s": interval, "initial_delay_s": delay,
            "failure_limit": limit, "replicas": replicas,
            "serving_to_recovered_s": round(recovered - serving, 2),
            "analysis_to_failed_s": round((failed.finished_at - analysis).total_seconds(), 2),
            "failed_to_zero_s": round((at_zero - failed.finished_at).total_seconds(), 2),
            "analysis_to_recovered_s": round(recovered - analysis.timestamp(), 2),
            "fivexx_after_zero": sum(1 for t in bad if t > z), "last_5xx_minus_zero_s": round(last_5xx - z, 2),
            "bound_s": round(delay + interval * (limit + 1), 2),
            "measurement_phases": phases, "events": len(events),
            "events_per_measurement": gaps,
            "loop": dict(load.codes),
            "history_start": str(_event_time(events[0])), "workflow_id": handle.id, "run_id": handle.result_run_id,
        }
        print(json.dumps(out), flush=True)
        return out
    finally:
        core.delete_namespace(ns)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="default,fast,argo,flagger")
    ap.add_argument("--scale", type=float, default=1.0, help="divide intervals and delays by this")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--rps", type=float, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench/results/canary.json"))
    a = ap.parse_args()
    os.environ["KUBECONFIG"] = os.environ["ROLLWRIGHT_KUBECONFIG"] = str(KUBECONFIG)
    k8s_config.load_kube_config(str(KUBECONFIG))
    core = k8s.CoreV1Api()
    image = demo_image()
    temporal = await Client.connect(TEMPORAL_ADDRESS, data_converter=pydantic_data_converter)
    w = WorkerProcess(f"rw-bench-canary-{SID}", KUBECONFIG, name="bench-canary")
    w.start()
    t0 = datetime.now()
    try:
        names = a.profiles.split(",")
        results = await asyncio.gather(*(one(n, PROFILES[n], a.scale, temporal, w, image, core, a.replicas, a.rps)
                                         for n in names), return_exceptions=True)
    finally:
        w.stop()
    rows = []
    for n, r in zip(names, results, strict=True):
        if isinstance(r, BaseException):
            print(f"{n}: FAILED {type(r).__name__}: {r}")
            continue
        prof = PROFILES[n]
        if "vendor" in prof:
            r["vendor"] = prof["vendor"]
            r["vendor_computed_s"] = prof["computed"] / a.scale
            r["vendor_lower_bound_s"] = prof["lower_bound"] / a.scale
            r["ratio_rollwright_to_vendor"] = round(r["serving_to_recovered_s"] / r["vendor_computed_s"], 3)
        rows.append(r)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"started": str(t0), "scale": a.scale, "results": rows}, indent=1))
    print(f"\n{'profile':9} {'settings':40} {'serving→recovered':>18} {'analysis→Failed':>16} {'Failed→0':>9} "
          f"{'5xx after 0':>11} {'vendor computed':>15} ratio")
    for r in rows:
        print(f"{r['profile']:9} {r['about'][:40]:40} {r['serving_to_recovered_s']:17.1f}s "
              f"{r['analysis_to_failed_s']:15.1f}s {r['failed_to_zero_s']:8.2f}s {r['fivexx_after_zero']:11d} "
              f"{r.get('vendor_computed_s', float('nan')):14.0f}s {r.get('ratio_rollwright_to_vendor', '')}")
        print(f"          measurements {r['measurement_phases']}; events {r['events']}; "
              f"events between measurements {r['events_per_measurement']}")


if __name__ == "__main__":
    asyncio.run(main())
