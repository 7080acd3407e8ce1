"""Benchmarks Rollwright against what users would run instead, on the same local cluster. Not a test.

    .venv/bin/python bench/bench_rollout.py [--deployments 10] [--deadline 60] [--out bench/results/latest.json]

(a) wall time to roll out N Deployments (+ Service + ConfigMap each), image build excluded:
    Rollwright (one RolloutWorkflow) vs `kubectl apply -f` + `kubectl rollout status` for each Deployment.
    Measured for the first install and for an update of every ConfigMap and pod template.
(b) failure detection: from the moment the new pods are failing (CrashLoopBackOff seen in pod status, or pods
    scheduled but NotReady) to the start of the rollback (Rollwright: rollback_release scheduled) or to the
    failure report (`kubectl rollout status` exits non-zero) — same manifests, same progressDeadlineSeconds.
(c) history events per successful rollout of (a).
--real: (a) and (b) with pods that really run on the real node real-0 (the demo app image): install/update ratios,
    and a real CrashLoopBackOff / ImagePullBackOff → rollback started, beside the KWOK figures of the default run.

Needs the stack (scripts/stack.sh up) and a worker polling the task queue given by ROLLWRIGHT_TASK_QUEUE (the
script starts its own worker process on a private queue).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.client import RolloutClient  # noqa: E402
from orchestrator.loader import load_spec  # noqa: E402
from tests.helpers import STATE, WorkerProcess, history_events, simulated  # noqa: E402

KUBECONFIG = STATE / "kubeconfig"
IMAGE = "127.0.0.1:5000/rollwright/demo-app:base"


def kubectl(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(KUBECONFIG), *args], capture_output=True, text=True,
                          check=check, timeout=timeout)


def objects(n: int, rev: str, behavior: str | None = None, deadline: int = 600, real: bool = False,
            image: str = IMAGE, command: list[str] | None = None) -> list[dict[str, Any]]:
    """n apps (ConfigMap + Service + 2-replica Deployment); simulated on KWOK nodes unless ``real`` (then the
    demo app really runs on real-0, Ready when its /readyz answers)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        name = f"svc{i:02d}"
        labels = {"app": name}
        tpl = dict(labels, **({"sim.rollwright.io/behavior": behavior} if behavior else {}))
        out += [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-cfg"}, "data": {"REV": rev}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
             "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
             "spec": {"replicas": 2, "progressDeadlineSeconds": deadline, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": tpl, "annotations": {"rev": rev}}, "spec": {"containers": [
                          {"name": "web", "image": image, "envFrom": [{"configMapRef": {"name": f"{name}-cfg"}}]}]}}}},
        ]
        pod = out[-1]["spec"]["template"]["spec"]
        if not real:
            simulated(pod)
        else:
            pod["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1}
            if command:
                pod["containers"][0]["command"] = command
    return out


def write(d: Path, ns: str, app: str, objs: list[dict[str, Any]], rev: str, deadline: int = 600) -> Path:
    (d / f"m-{rev}.yaml").write_text(yaml.safe_dump_all(objs))
    spec = {"app": app, "environment": "bench", "namespace": ns, "manifests": [f"m-{rev}.yaml"],
            "health": {"progress_deadline_seconds": deadline}}
    p = d / f"release-{rev}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


async def rollwright(rc: RolloutClient, spec: Path) -> tuple[float, Any, str]:
    s = load_spec(spec)
    t0 = time.monotonic()
    h = await rc.start(s)
    res = await rc.result(h)
    return time.monotonic() - t0, res, h.result_run_id or ""


def kubectl_rollout(manifest: Path, ns: str, n: int, timeout: str = "900s") -> tuple[float, bool]:
    t0 = time.monotonic()
    kubectl("apply", "-n", ns, "-f", str(manifest))
    ok = True
    for i in range(n):
        r = kubectl("rollout", "status", "-n", ns, f"deployment/svc{i:02d}", f"--timeout={timeout}", check=False)
        ok = ok and r.returncode == 0
    return time.monotonic() - t0, ok


def first_failing_pod_time(ns: str, behavior: str, stop: threading.Event, out: dict[str, float]) -> None:
    """Polls pod status (kubectl) and records when the first new pod is visibly failing."""
    while not stop.is_set() and "t" not in out:
        r = kubectl("get", "pods", "-n", ns, "-o", "json", check=False)
        if r.returncode == 0:
            for p in json.loads(r.stdout)["items"]:
                if p["metadata"].get("labels", {}).get("sim.rollwright.io/behavior") != behavior:
                    continue
                sts = p.get("status", {}).get("containerStatuses") or []
                failing = any((c.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                              for c in sts) if behavior == "crashloop" else (p["status"].get("phase") == "Running")
                if failing:
                    out["t"] = time.time()
                    return
        time.sleep(0.1)


def first_real_failure(ns: str, stop: threading.Event, out: dict[str, float]) -> None:
    """Real node: records when a container of the bad revision first exits non-zero ("exit"), shows
    CrashLoopBackOff ("crashloop"), or fails its image pull ("pull": ErrImagePull/ImagePullBackOff)."""
    while not stop.is_set() and not ({"crashloop", "pull"} & out.keys()):
        r = kubectl("get", "pods", "-n", ns, "-l", "bench=bad", "-o", "json", check=False)
        if r.returncode == 0:
            now = time.time()
            for p in json.loads(r.stdout)["items"]:
                for c in p.get("status", {}).get("containerStatuses") or []:
                    st, last = c.get("state") or {}, c.get("lastState") or {}
                    reason = (st.get("waiting") or {}).get("reason")
                    if "terminated" in st or "terminated" in last:
                        out.setdefault("exit", now)
                    if reason == "CrashLoopBackOff":
                        out.setdefault("crashloop", now)
                    if reason in ("ErrImagePull", "ImagePullBackOff"):
                        out.setdefault("pull", now)
        time.sleep(0.1)


async def real_node(rc: RolloutClient, d: Path, tag: str, n: int, results: dict[str, Any]) -> None:
    """The same measurements with pods that really run on the real node (demo app image, 2 replicas each)."""
    ns_rw, ns_k = f"bench-rrw-{tag}", f"bench-rkc-{tag}"
    # The demo app from this checkout (rollwright/demo-app:base is shared by every checkout using the stack).
    image = f"127.0.0.1:5000/rollwright-bench/demo-app:{tag}"
    subprocess.run(["docker", "build", "-q", "-t", image, str(ROOT / "images/demo-app")], check=True,
                   capture_output=True)
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    for ns in (ns_rw, ns_k):
        kubectl("create", "namespace", ns)
    try:
        for phase in ("install", "update"):
            objs = objects(n, f"real-{phase}", real=True, image=image)
            t_rw, res, _ = await rollwright(rc, write(d, ns_rw, f"benchr{tag}", objs, f"real-{phase}"))
            assert res.outcome.value == "Succeeded", res
            mf = d / f"kubectl-real-{phase}.yaml"
            mf.write_text(yaml.safe_dump_all(objs))
            t_k, ok = kubectl_rollout(mf, ns_k, n)
            assert ok
            results[f"real_a_{phase}"] = {"rollwright_s": round(t_rw, 2), "kubectl_s": round(t_k, 2),
                                          "ratio_rollwright_over_kubectl": round(t_rw / t_k, 2)}
            print(f"(real a) {phase}: {n} Deployments x 2 real pods: rollwright {t_rw:.1f}s, "
                  f"kubectl {t_k:.1f}s, ratio {t_rw / t_k:.2f}")
        for ns in (ns_rw, ns_k):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
        crash = ["python3", "-c", "import sys; sys.exit(3)"]
        for kind in ("crashloop", "image-pull"):
            ns = f"bench-rf-{kind[:5]}-{tag}"
            kubectl("create", "namespace", ns)
            app = f"brf{kind[:3]}{tag}"
            ok = objects(1, "ok", real=True, image=image)
            await rollwright(rc, write(d, ns, app, ok, f"rok-{kind}"))
            bad = objects(1, f"bad-{kind}", real=True, deadline=600,
                          command=crash if kind == "crashloop" else None,
                          image=image if kind == "crashloop" else f"127.0.0.1:5000/absent/image:{tag}")
            bad[-1]["spec"]["template"]["metadata"]["labels"]["bench"] = "bad"
            stop, seen = threading.Event(), {}
            th = threading.Thread(target=first_real_failure, args=(ns, stop, seen), daemon=True)
            th.start()
            t0 = time.time()
            _, res, run_id = await rollwright(rc, write(d, ns, app, bad, f"rbad-{kind}", 600))
            stop.set()
            t_rb = event_time(history_events(f"rollout.{app}.bench", run_id), "rollback_release")
            key = "crashloop" if kind == "crashloop" else "pull"
            row = {"outcome": res.outcome.value, "cause": res.cause, "progress_deadline_s": 600,
                   "apply_to_rollback_s": round(t_rb - t0, 2) if t_rb else None,
                   "failing_to_rollback_s": round(t_rb - seen[key], 2) if t_rb and key in seen else None}
            if kind == "crashloop" and t_rb and "exit" in seen:
                row["first_exit_to_rollback_s"] = round(t_rb - seen["exit"], 2)
            results[f"real_b_{kind}"] = row
            print(f"(real b) {kind}: {row}")
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
    finally:
        for ns in (ns_rw, ns_k):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


def event_time(events: list[dict[str, Any]], activity: str) -> float | None:
    sched = {e["eventId"]: e for e in events if "activityTaskScheduledEventAttributes" in e}
    for e in sched.values():
        if e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == activity:
            return datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")).timestamp()
    return None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, default=10)
    ap.add_argument("--deadline", type=int, default=60, help="progressDeadlineSeconds for (b)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/latest.json"))
    ap.add_argument("--real", action="store_true", help="only the real-node figures (real pods on real-0)")
    a = ap.parse_args()
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    queue = f"rw-bench-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(queue, KUBECONFIG, name="bench")
    worker.start()
    client = await Client.connect(os.environ.get("ROLLWRIGHT_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
                                  data_converter=pydantic_data_converter)
    rc = RolloutClient(client, queue)
    tag = uuid.uuid4().hex[:5]
    results: dict[str, Any] = {"deployments": a.deployments, "when": datetime.now().isoformat(timespec="seconds")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            n = a.deployments
            if a.real:
                await real_node(rc, d, tag, n, results)
                out = Path(a.out).with_name("real.json") if a.out.endswith("latest.json") else Path(a.out)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2))
                return
            ns_rw, ns_k = f"bench-rw-{tag}", f"bench-kc-{tag}"
            for ns in (ns_rw, ns_k):
                kubectl("create", "namespace", ns)
            # (a) install, then update
            for phase in ("install", "update"):
                objs = objects(n, phase)
                t_rw, res, run_id = await rollwright(rc, write(d, ns_rw, f"bench{tag}", objs, phase))
                assert res.outcome.value == "Succeeded", res
                mf = d / f"kubectl-{phase}.yaml"
                mf.write_text(yaml.safe_dump_all(objs))
                t_k, ok = kubectl_rollout(mf, ns_k, n)
                assert ok
                evs = history_events(f"rollout.bench{tag}.bench", run_id)
                results[f"a_{phase}"] = {"rollwright_s": round(t_rw, 2), "kubectl_s": round(t_k, 2),
                                         "ratio_rollwright_over_kubectl": round(t_rw / t_k, 2),
                                         "history_events": len(evs)}
                print(f"(a) {phase}: rollwright {t_rw:.1f}s, kubectl apply+rollout status {t_k:.1f}s, "
                      f"ratio {t_rw / t_k:.2f}; {len(evs)} history events")
            # (b) failure detection
            for behavior in ("crashloop", "not-ready"):
                objs = objects(1, f"fail-{behavior}", behavior=behavior, deadline=a.deadline)
                for ns in (ns_rw, ns_k):
                    kubectl("delete", "deployment,configmap,service", "--all", "-n", ns, check=False)
                stop, seen = threading.Event(), {}
                th = threading.Thread(target=first_failing_pod_time, args=(ns_rw, behavior, stop, seen), daemon=True)
                th.start()
                app = f"bf{behavior[:3]}{tag}"
                base = write(d, ns_rw, app, objects(1, "ok"), f"base-{behavior}")
                await rollwright(rc, base)
                seen.clear()
                th = threading.Thread(target=first_failing_pod_time, args=(ns_rw, behavior, stop, seen), daemon=True)
                th.start()
                _, res, run_id = await rollwright(rc, write(d, ns_rw, app, objs, f"bad-{behavior}", a.deadline + 60))
                stop.set()
                evs = history_events(f"rollout.{app}.bench", run_id)
                t_rb = event_time(evs, "rollback_release")
                rw_detect = (t_rb - seen["t"]) if (t_rb and "t" in seen) else None
                # kubectl: apply the good revision, then the bad one, and time `rollout status` to its failure.
                mf_ok, mf_bad = d / f"k-ok-{behavior}.yaml", d / f"k-bad-{behavior}.yaml"
                mf_ok.write_text(yaml.safe_dump_all(objects(1, "ok")))
                mf_bad.write_text(yaml.safe_dump_all(objs))
                kubectl_rollout(mf_ok, ns_k, 1)
                kstop, kseen = threading.Event(), {}
                kth = threading.Thread(target=first_failing_pod_time, args=(ns_k, behavior, kstop, kseen), daemon=True)
                kubectl("apply", "-n", ns_k, "-f", str(mf_bad))
                kth.start()
                r = kubectl("rollout", "status", "-n", ns_k, "deployment/svc00", "--timeout=900s", check=False)
                t_kfail = time.time()
                kstop.set()
                k_detect = (t_kfail - kseen["t"]) if "t" in kseen else None
                results[f"b_{behavior}"] = {
                    "rollwright_outcome": res.outcome.value, "rollwright_cause": res.cause,
                    "rollwright_detect_s": round(rw_detect, 2) if rw_detect is not None else None,
                    "kubectl_rc": r.returncode, "kubectl_detect_s": round(k_detect, 2) if k_detect else None,
                    "progress_deadline_s": a.deadline}
                print(f"(b) {behavior}: rollwright failing→rollback {rw_detect}s ({res.outcome.value}: {res.cause}); "
                      f"kubectl rollout status failing→exit {k_detect}s (rc {r.returncode})")
            for ns in (ns_rw, ns_k):
                kubectl("delete", "namespace", ns, "--wait=false", check=False)
    finally:
        worker.stop()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
