"""Fleet benchmark (issue 13): N concurrent rollouts, one small Deployment each in its own namespace, on KWOK nodes.
Not a test; results go to bench/RESULTS.md (by hand) and the raw JSON to bench/results/fleet.json.

    .venv/bin/python bench/bench_fleet.py [--n 20,60,200] [--rounds 2] [--mixed 200] [--two-workers 200]

For each N, side by side on the same cluster: Rollwright (its own worker process(es) on a private task queue, every
rollout started at once through the client, bundle push included) and the baseline, N parallel `kubectl apply` +
`kubectl rollout status` processes. The two alternate within each round (round 1 Rollwright first, round 2 kubectl
first, ...), so load from other users of the shared machine falls on both. Reported per run: wall time, p50/p95 per
rollout, peak RSS and CPU seconds (the worker from /proc; kubectl: the sum over its processes), apiserver
requests/s (delta of the apiserver's own `apiserver_request_total` over the run: every client of the shared
cluster counts, so it is an upper bound for ours), history events per rollout and where a rollout's time goes
(a sample of 5 histories: workflow-task latency and run time, each activity's queue and run time), outcomes.
--mixed N: N rollouts of which 10% never become ready (short progressDeadlineSeconds): the healthy ones' p95 next
to the clean run's. --two-workers N: the same N with two worker processes sharing the queue.
Announce the run in /tmp/stack-status.txt (the script does it and restores the content after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from orchestrator.client import RolloutClient  # noqa: E402
from orchestrator.loader import load_spec  # noqa: E402
from orchestrator.models import Outcome  # noqa: E402
from tests.helpers import STATE, TEMPORAL_ADDRESS, WorkerProcess, history_events, local_activities, simulated  # noqa: E402

KUBECONFIG = STATE / "kubeconfig"
STATUS = Path("/tmp/stack-status.txt")
SID = uuid.uuid4().hex[:5]


def kubectl(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(KUBECONFIG), *args], capture_output=True, text=True,
                          check=check, timeout=timeout)


def deployment(name: str, replicas: int, never_ready: bool) -> dict[str, Any]:
    labels = {"app": name}
    tpl = dict(labels, **({"sim.rollwright.io/behavior": "not-ready"} if never_ready else {}))
    pod = simulated({"containers": [{"name": "web", "image": "127.0.0.1:5000/rollwright/demo-app:base"}]})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 30 if never_ready else 600,
                     "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": tpl}, "spec": pod}}}


def apiserver_requests() -> float:
    text = kubectl("get", "--raw", "/metrics").stdout
    return sum(float(m.group(1)) for m in re.finditer(r"^apiserver_request_total\{[^}]*\} (\S+)$", text, re.M))


def dropped_dispatches() -> dict[str, float]:
    """Matching's answers from history that a task it just dispatched was already started, by task type, from the
    dev server's metrics (temporal.sh: port + 11). Each is a lost task: history committed the start, matching had
    given up on that write after 1 s (sync match) and dropped the dispatch (bench/RESULTS.md, lost tasks)."""
    host, port = TEMPORAL_ADDRESS.rsplit(":", 1)
    try:
        text = subprocess.run(["curl", "-s", "--max-time", "5", f"http://{host}:{int(port) + 11}/metrics"],
                              capture_output=True, text=True, timeout=10).stdout
    except (subprocess.SubprocessError, ValueError):
        return {}
    out: dict[str, float] = {}
    for m in re.finditer(r'^client_errors\{[^}]*error_type="serviceerror_TaskAlreadyStarted"[^}]*'
                         r'operation="HistoryClientRecord(\w+)TaskStarted"[^}]*\} (\S+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)  # idle + iowait, total


def settle(max_wait: float = 90, quiet: float = 0.6) -> float:
    """Waits until the machine is quiet (CPU idle >= ``quiet`` over two consecutive seconds) or ``max_wait`` passed,
    so that no run pays for the previous one's clean-up (namespace deletion, garbage collection of its pods): both
    tools start from the same state. Returns the idle fraction of the last second."""
    deadline, calm, frac = time.monotonic() + max_wait, 0, 0.0
    while time.monotonic() < deadline:
        i0, t0 = _cpu_times()
        time.sleep(1)
        i1, t1 = _cpu_times()
        frac = (i1 - i0) / max(1, t1 - t0)
        calm = calm + 1 if frac >= quiet else 0
        if calm >= 2:
            break
    return round(frac, 2)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 2) if xs else float("nan")


class ProcSampler(threading.Thread):
    """Peak RSS (MB) and CPU seconds of the worker processes, read from /proc every 0.5 s."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_mb, self.stop_ev = pids, 0.0, threading.Event()
        self.cpu0 = self._cpu()

    def _cpu(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / tick
            except OSError:
                pass
        return total

    def run(self) -> None:
        while not self.stop_ev.wait(0.5):
            rss = 0.0
            for pid in self.pids:
                try:
                    rss += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024  # type: ignore[union-attr]
                except (OSError, AttributeError):
                    pass
            self.peak_mb = max(self.peak_mb, rss)

    def finish(self) -> tuple[float, float]:
        self.stop_ev.set()
        return round(self.peak_mb, 1), round(self._cpu() - self.cpu0, 1)


def _t(e: dict[str, Any]) -> float:
    """Event time in seconds (RFC 3339 with nanoseconds)."""
    from datetime import datetime

    raw = e["eventTime"].rstrip("Z")
    head, _, frac = raw.partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]}+00:00").timestamp()


def timeline(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Where one rollout's time went, from its history: workflow tasks (scheduled -> started is queueing in the
    server and the worker's pollers; started -> completed is the worker running workflow code) and each activity
    (scheduled -> started, started -> completed). Local activities (the short steps since local-short-steps-v1:
    ``MarkerRecorded`` events) run inside a workflow task, so their time is in ``wft_run_s``; ``local_activities``
    counts them."""
    t0 = _t(events[0])
    wft: list[list[float]] = []
    acts: dict[str, list[Any]] = {}
    for e in events:
        typ, t = e["eventType"].removeprefix("EVENT_TYPE_"), _t(e) - t0
        a = next((v for k, v in e.items() if k.endswith("Attributes")), {})
        if typ == "WORKFLOW_TASK_SCHEDULED":
            wft.append([t, t, t])
        elif typ == "WORKFLOW_TASK_STARTED":
            wft[-1][1] = wft[-1][2] = t
        elif typ == "WORKFLOW_TASK_COMPLETED":
            wft[-1][2] = t
        elif typ == "ACTIVITY_TASK_SCHEDULED":
            acts[str(e["eventId"])] = [a["activityType"]["name"], t, t, t]
        elif typ == "ACTIVITY_TASK_STARTED":
            acts[str(a["scheduledEventId"])][2] = acts[str(a["scheduledEventId"])][3] = t
        elif typ in ("ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED"):
            acts[str(a["scheduledEventId"])][3] = t
    local = local_activities(events)
    return {"total_s": round(_t(events[-1]) - t0, 2), "events": len(events), "workflow_tasks": len(wft),
            "local_activities": len(local),
            "wft_queue_s": round(sum(b - a for a, b, _ in wft), 2), "wft_run_s": round(sum(c - b for _, b, c in wft), 2),
            "activities": [[n, round(st - sc, 2), round(c - st, 2)] for n, sc, st, c in acts.values()]}


def profile(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the timelines of a few rollouts, per activity type: [queue s, run s]."""
    if not samples:
        return {}
    mean = lambda xs: round(statistics.mean(xs), 2)  # noqa: E731
    per: dict[str, list[list[float]]] = {}
    for s in samples:
        for n, q, r in s["activities"]:
            per.setdefault(n, []).append([q, r])
    return {"total_s": mean([s["total_s"] for s in samples]), "workflow_tasks": mean([s["workflow_tasks"] for s in samples]),
            "local_activities": mean([s.get("local_activities", 0) for s in samples]),
            "wft_queue_s": mean([s["wft_queue_s"] for s in samples]), "wft_run_s": mean([s["wft_run_s"] for s in samples]),
            "activities": {n: [mean([x[0] for x in v]), mean([x[1] for x in v])] for n, v in per.items()}}


class TreeSampler(threading.Thread):
    """Peak summed RSS (MB) of a set of processes and all their descendants (the kubectl baseline), from /proc."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.roots: set[int] = set()
        self.peak_mb, self.stop_ev = 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop_ev.wait(0.5):
            parent: dict[int, int] = {}
            rss: dict[int, float] = {}
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    parent[int(d.name)] = int(f[1])
                    rss[int(d.name)] = int(f[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
                except (OSError, IndexError, ValueError):
                    pass
            total = 0.0
            for pid in rss:
                p = pid
                while p > 1 and p not in self.roots:
                    p = parent.get(p, 0)
                if p in self.roots:
                    total += rss[pid]
            self.peak_mb = max(self.peak_mb, total)

    def finish(self) -> float:
        self.stop_ev.set()
        return round(self.peak_mb, 1)


async def lost_tasks(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Over all rollouts of a run: workflow tasks that timed out after being handed to a worker (a task the worker
    never got: 10 s lost each) and activity attempts retried after a timeout (start-to-close or heartbeat)."""
    out: dict[str, Any] = {"workflow_task_timeouts": 0, "activity_timeout_retries": 0}
    sem = asyncio.Semaphore(10)

    async def one(wid: str) -> None:
        async with sem:
            async for ev in client.get_workflow_handle(wid).fetch_history_events():
                if ev.HasField("workflow_task_timed_out_event_attributes"):
                    out["workflow_task_timeouts"] += 1
                elif ev.HasField("activity_task_started_event_attributes"):
                    a = ev.activity_task_started_event_attributes
                    if a.attempt > 1 and a.last_failure.HasField("timeout_failure_info"):
                        out["activity_timeout_retries"] += 1

    await asyncio.gather(*(one(w) for w in workflow_ids))
    return out


def namespaces(prefix: str, n: int) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(n)]
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in names]
    subprocess.run(["kubectl", "--kubeconfig", str(KUBECONFIG), "apply", "-f", "-"], input=yaml.safe_dump_all(docs),
                   text=True, check=True, capture_output=True)
    return names


def drop(names: list[str]) -> None:
    kubectl("delete", "namespace", "--wait=false", *names, check=False)


async def run_rollwright(client: Client, queue: str, n: int, replicas: int, never: int, workers: list[WorkerProcess],
                         tmp: Path, label: str) -> dict[str, Any]:
    nss = namespaces(f"bf{SID}{label}", n)
    specs = []
    for i, ns in enumerate(nss):
        d = tmp / f"{label}{i}"
        d.mkdir(parents=True)
        (d / "m.yaml").write_text(yaml.safe_dump(deployment("web", replicas, i < never)))
        (d / "r.yaml").write_text(yaml.safe_dump({"app": f"bf{SID}{label}{i}", "environment": "bench",
                                                  "namespace": ns, "manifests": ["m.yaml"],
                                                  "health": {"progress_deadline_seconds": 600}}))
        specs.append(load_spec(d / "r.yaml"))
    rc = RolloutClient(client, queue)
    sampler = ProcSampler([w.proc.pid for w in workers if w.proc])
    sampler.start()
    req0, t0 = apiserver_requests(), time.monotonic()
    drop0 = dropped_dispatches()

    starts: list[float] = []

    async def one(s: Any) -> tuple[float, Any]:
        t = time.monotonic()
        handle = await rc.start(s)  # local checks + bundle push + start
        starts.append(time.monotonic() - t)
        res = await rc.result(handle)
        return time.monotonic() - t, res

    done = await asyncio.gather(*(one(s) for s in specs))
    wall = time.monotonic() - t0
    req1 = apiserver_requests()
    rss, cpu = sampler.finish()
    healthy = [t for i, (t, _) in enumerate(done) if i >= never]
    outcomes: dict[str, int] = {}
    wrong = []
    for i, (_, r) in enumerate(done):
        outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1
        ok = r.outcome == (Outcome.ROLLED_BACK if i < never else Outcome.SUCCEEDED) and (i >= never or r.cause)
        if not ok:
            wrong.append(f"{specs[i].app}: {r.outcome.value} {r.cause}")
    samples = [timeline(history_events(f"rollout.{s.app}.bench")) for s in specs[never:][::max(1, (n - never) // 5)][:5]]
    lost = await lost_tasks(client, [f"rollout.{s.app}.bench" for s in specs])
    drop1 = dropped_dispatches()  # every user of the server counts: an upper bound for ours
    lost["server_dropped_dispatches"] = {k: int(v - drop0.get(k, 0)) for k, v in drop1.items()}
    events = [x["events"] for x in samples]
    drop(nss)
    return {"n": n, "never_ready": never, "workers": len(workers), "wall_s": round(wall, 2),
            "p50_s": pct(healthy, 50), "p95_s": pct(healthy, 95), "worker_peak_rss_mb": rss, "worker_cpu_s": cpu,
            "apiserver_req_per_s": round((req1 - req0) / wall, 1), "history_events_per_rollout":
            round(statistics.mean(events), 1) if events else None, "outcomes": outcomes, "wrong": wrong[:10],
            "client_start_p50_s": pct(starts, 50), "profile": profile(samples), "lost_tasks": lost}


def run_kubectl(n: int, replicas: int, tmp: Path) -> dict[str, Any]:
    nss = namespaces(f"bk{SID}{tmp.name}", n)  # own names per run: an earlier run's may still be terminating
    tmp.mkdir(parents=True, exist_ok=True)
    files = []
    for i, ns in enumerate(nss):
        f = tmp / f"k{i}.yaml"
        obj = deployment("web", replicas, False)
        obj["metadata"]["namespace"] = ns
        f.write_text(yaml.safe_dump(obj))
        files.append((f, ns))
    sampler = TreeSampler()
    sampler.start()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    req0, t0 = apiserver_requests(), time.monotonic()
    procs = [(time.monotonic(), subprocess.Popen(
        ["bash", "-c", f"kubectl --kubeconfig {KUBECONFIG} apply -f {f} >/dev/null && "
                       f"kubectl --kubeconfig {KUBECONFIG} -n {ns} rollout status deploy/web --timeout=600s >/dev/null"]))
        for f, ns in files]
    sampler.roots.update(p.pid for _, p in procs)
    times, failed = [], 0
    for started, p in procs:
        rc = p.wait()
        times.append(time.monotonic() - started)  # upper bound: waited in order
        failed += rc != 0
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    req1 = apiserver_requests()
    rss = sampler.finish()
    drop(nss)
    return {"n": n, "wall_s": round(wall, 2), "p50_s": pct(times, 50), "p95_s": pct(times, 95),
            "peak_rss_mb": rss, "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "apiserver_req_per_s": round((req1 - req0) / wall, 1), "failed": failed}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="20,60,200")
    ap.add_argument("--rounds", type=int, default=2, help="repeat every N this often, alternating which goes first")
    ap.add_argument("--mixed", type=int, default=200)
    ap.add_argument("--two-workers", type=int, default=200)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--worker-env", action="append", default=[], metavar="K=V",
                    help="extra environment for the worker processes (e.g. ROLLWRIGHT_MAX_CONCURRENT_ACTIVITIES=40)")
    ap.add_argument("--no-kubectl", action="store_true", help="Rollwright only (profiling)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/fleet.json"))
    a = ap.parse_args()
    queue = f"bench-fleet-{SID}"
    previous = STATUS.read_text() if STATUS.exists() else None
    STATUS.write_text(f"BENCH by fleet2 (started {time.strftime('%H:%M:%S', time.gmtime())} UTC)\n"
                      + (previous or ""))
    extra = dict(kv.split("=", 1) for kv in a.worker_env)
    w1 = WorkerProcess(queue, KUBECONFIG, name="bench-fleet-1", extra_env=extra)
    w2 = WorkerProcess(queue, KUBECONFIG, name="bench-fleet-2", extra_env=extra)
    out: dict[str, Any] = {"runs": []}
    try:
        w1.start()
        client = await Client.connect(TEMPORAL_ADDRESS, data_converter=pydantic_data_converter)
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            # The worker is a long-running service: one rollout first, so the measured ones do not pay its
            # one-time costs (first workflow sandbox, first bundle cache directory, the pydantic validators).
            await run_rollwright(client, queue, 1, a.replicas, 0, [w1], tmp, "warm")
            for rnd in range(a.rounds):
                for j, n in enumerate(int(x) for x in a.n.split(",") if x):
                    label = f"c{n}r{rnd}x{j}"  # the same N may be listed twice (--n 20,20): own directories
                    if a.no_kubectl:
                        r = await run_rollwright(client, queue, n, a.replicas, 0, [w1], tmp, label)
                        k = {"wall_s": float("nan")}
                    elif rnd % 2 == 0:
                        idle_r = settle()
                        r = await run_rollwright(client, queue, n, a.replicas, 0, [w1], tmp, label)
                        idle_k = settle()
                        k = run_kubectl(n, a.replicas, tmp / f"k{n}r{rnd}x{j}")
                    else:
                        idle_k = settle()
                        k = run_kubectl(n, a.replicas, tmp / f"k{n}r{rnd}x{j}")
                        idle_r = settle()
                        r = await run_rollwright(client, queue, n, a.replicas, 0, [w1], tmp, label)
                    if not a.no_kubectl:
                        r["idle_at_start"], k["idle_at_start"] = idle_r, idle_k
                    run = {"round": rnd, "n": n, "load_avg": os.getloadavg()[0], "rollwright": r, "kubectl": k,
                           "wall_ratio": round(r["wall_s"] / k["wall_s"], 2)}
                    print(json.dumps(run), flush=True)
                    out["runs"].append(run)
            if a.mixed:
                settle()
                r = await run_rollwright(client, queue, a.mixed, a.replicas, a.mixed // 10, [w1], tmp, "m")
                print(json.dumps({"mixed": r}), flush=True)
                out["mixed"] = r
            if a.two_workers:
                w2.start()
                settle()
                r = await run_rollwright(client, queue, a.two_workers, a.replicas, 0, [w1, w2], tmp, "t")
                print(json.dumps({"two_workers": r}), flush=True)
                out["two_workers"] = r
    finally:
        w1.stop()
        w2.stop()
        if previous is None:
            STATUS.unlink(missing_ok=True)
        else:
            STATUS.write_text(previous)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
