"""Pure readiness and failure rules for workloads, on raw API objects (dicts). No I/O.

Called by ``activities.readiness`` on every watch event; unit-tested on its own. Success is kubectl's predicate
(``kubectl rollout status``); failure is detected early, the way operators wish kubectl and Helm did: a pod of the
*new* revision in CrashLoopBackOff / ImagePullBackOff / ErrImagePull, ``ReplicaFailure``, or the Deployment
controller's own ``ProgressDeadlineExceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contract.models import ObjectRef, WorkloadStatus

FATAL_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
Obj = dict[str, Any]


def _cond(obj: Obj, type_: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def workload_status(obj: Obj) -> WorkloadStatus:
    """kubectl's rollout-status predicate for Deployment, StatefulSet and DaemonSet."""
    kind, md, spec, st = obj["kind"], obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    observed = st.get("observedGeneration", 0) >= md.get("generation", 0)
    ws = WorkloadStatus(kind=kind, name=md["name"])
    if kind == "Deployment":
        want = spec.get("replicas", 1)
        ws.desired, ws.updated = want, st.get("updatedReplicas", 0)
        ws.ready, ws.available = st.get("readyReplicas", 0), st.get("availableReplicas", 0)
        total = st.get("replicas", 0)
        if not observed:
            ws.message = "waiting for the controller to observe the new generation"
        elif ws.updated < want:
            ws.message = f"{ws.updated} of {want} updated replicas"
        elif total > ws.updated:
            ws.message = f"{total - ws.updated} old replicas pending termination"
        elif ws.available < ws.updated:
            ws.message = f"{ws.available} of {ws.updated} updated replicas available"
        else:
            ws.ready_now, ws.message = True, "successfully rolled out"
    elif kind == "StatefulSet":
        want = spec.get("replicas", 1)
        ws.desired, ws.updated = want, st.get("updatedReplicas", 0)
        ws.ready, ws.available = st.get("readyReplicas", 0), st.get("availableReplicas", 0)
        strategy = spec.get("updateStrategy") or {}
        partition = ((strategy.get("rollingUpdate") or {}).get("partition")) or 0
        if not observed:
            ws.message = "waiting for the controller to observe the new generation"
        elif strategy.get("type") == "OnDelete":
            ws.ready_now, ws.message = True, "OnDelete strategy: nothing to wait for"
        elif ws.ready < want:
            ws.message = f"{ws.ready} of {want} pods ready"
        elif partition and ws.updated < want - partition:
            ws.message = f"{ws.updated} of {want - partition} partitioned pods updated"
        elif not partition and (st.get("updateRevision") != st.get("currentRevision") or ws.updated < want):
            # updated < want with equal revisions: a template reverted to the current revision (a StatefulSet
            # canary's rollback) while a pod still runs the other one; kubectl's predicate misses this case.
            ws.message = f"{ws.updated} of {want} pods at the update revision"
        else:
            ws.ready_now, ws.message = True, "successfully rolled out"
    elif kind == "DaemonSet":
        want = st.get("desiredNumberScheduled", 0)
        ws.desired, ws.updated = want, st.get("updatedNumberScheduled", 0)
        ws.ready, ws.available = st.get("numberReady", 0), st.get("numberAvailable", 0)
        if not observed:
            ws.message = "waiting for the controller to observe the new generation"
        elif ws.updated < want:
            ws.message = f"{ws.updated} of {want} updated pods scheduled"
        elif ws.available < want:
            ws.message = f"{ws.available} of {want} updated pods available"
        else:
            ws.ready_now, ws.message = True, "successfully rolled out"
    return ws


def _epoch(ts: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# Clock skew allowed between the worker and the apiserver when judging whether a condition predates the wait.
SKEW_SECONDS = 2.0


def workload_failure(obj: Obj, since: float | None = None) -> str | None:
    """A terminal condition set by the controller for the current generation.

    ``since`` (epoch seconds) is when this wait started: a ``ProgressDeadlineExceeded`` last updated before it is
    stale. The Deployment controller keeps that condition once set until progress is made, even after the template
    changes, so right after a rollback it still describes the failed revision."""
    md, st = obj["metadata"], obj.get("status") or {}
    if st.get("observedGeneration", 0) < md.get("generation", 0):
        return None  # conditions still describe the previous generation
    p = _cond(obj, "Progressing")
    updated = _epoch(p.get("lastUpdateTime")) if p else None
    stale = since is not None and updated is not None and updated < since - SKEW_SECONDS
    if p and p.get("status") == "False" and p.get("reason") == "ProgressDeadlineExceeded" and not stale:
        return f"{obj['kind'].lower()} {md['name']}: ProgressDeadlineExceeded ({p.get('message', '')})"
    rf = _cond(obj, "ReplicaFailure")
    if rf and rf.get("status") == "True":
        return f"{obj['kind'].lower()} {md['name']}: ReplicaFailure {rf.get('reason', '')}: {rf.get('message', '')}"
    return None


def pod_failure(pod: Obj) -> str | None:
    """``pod web-7d9f… CrashLoopBackOff: back-off 5m0s…`` for a pod whose container can never become ready."""
    st = pod.get("status") or {}
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING:
            msg = waiting.get("message")
            return f"pod {pod['metadata']['name']} {reason}" + (f": {msg}" if msg else "") + \
                f" (container {cs.get('name')}, restarts {cs.get('restartCount', 0)})"
    return None


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or [])


@dataclass
class Tracker:
    """Caches what the watches saw and judges the set of workloads as a whole."""

    targets: list[ObjectRef]
    since: float | None = None  # epoch seconds the wait started (see workload_failure)
    workloads: dict[tuple[str, str], Obj] = field(default_factory=dict)
    replicasets: dict[str, Obj] = field(default_factory=dict)
    pods: dict[str, Obj] = field(default_factory=dict)

    def observe(self, kind: str, event_type: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        table: dict[Any, Obj]
        key: Any
        if kind == "ReplicaSet":
            table, key = self.replicasets, name
        elif kind == "Pod":
            table, key = self.pods, name
        else:
            table, key = self.workloads, (kind, name)
        if event_type == "DELETED":
            table.pop(key, None)
        else:
            table[key] = obj

    def _current_pods(self, w: Obj) -> list[Obj]:
        """Pods of the revision being rolled out (not the old one, whose pods may legitimately be failing)."""
        kind, uid = w["kind"], w["metadata"]["uid"]
        if kind == "Deployment":
            rev = (w["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            new_rs = [rs for rs in self.replicasets.values() if _owned_by(rs, uid) and rev is not None and
                      (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == rev]
            uids = {rs["metadata"]["uid"] for rs in new_rs}
            return [p for p in self.pods.values() if any(_owned_by(p, u) for u in uids)]
        if kind == "StatefulSet":
            want = (w.get("status") or {}).get("updateRevision")
            return [p for p in self.pods.values() if _owned_by(p, uid) and
                    p["metadata"].get("labels", {}).get("controller-revision-hash") == want]
        gen = str(w["metadata"].get("generation"))
        return [p for p in self.pods.values() if _owned_by(p, uid) and
                p["metadata"].get("labels", {}).get("pod-template-generation") == gen]

    def evaluate(self) -> tuple[list[WorkloadStatus], bool, str | None]:
        """(per-workload status, all ready, first failure)."""
        statuses, failure = [], None
        for t in self.targets:
            w = self.workloads.get((t.kind, t.name))
            if w is None:
                statuses.append(WorkloadStatus(kind=t.kind, name=t.name, message="not found yet"))
                continue
            ws = workload_status(w)
            statuses.append(ws)
            if failure is None and not ws.ready_now:
                failure = workload_failure(w, self.since)
                for p in sorted(self._current_pods(w), key=lambda p: p["metadata"]["name"]):
                    failure = failure or pod_failure(p)
        return statuses, all(s.ready_now for s in statuses), failure
