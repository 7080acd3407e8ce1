"""The shared watch cache (activities/watch_cache.py) against the real apiserver, without Temporal.

One cache, two waiters on different namespaces: a change in one namespace wakes only that namespace's waiter, the
store follows creates and deletes, and the informers stay one per kind however many waits acquire them; in
namespace scope (namespace-only RBAC) there is one per namespace, stopped with its last wait. The relist after an
outage is covered by tests/test_zz_fleet_watch_cache_restart.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import watch

from activities.kube import Kube
from activities.watch_cache import WatchCache, _listers

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _cm(name: str) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data={"a": "1"})


def _pod(name: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/none:x"}],
                     "tolerations": [{"key": "rollwright.io/simulated", "operator": "Exists", "effect": "NoSchedule"}],
                     "nodeSelector": {"type": "kwok"}}}


async def test_shared_cache_follows_pods_and_wakes_only_the_namespace_that_changed(
        kubeconfig: Path, core: k8s.CoreV1Api) -> None:
    a, b = (f"wc-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for ns in (a, b):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    cache = WatchCache(Kube(kubeconfig, None), scope="cluster")
    try:
        ev_a, ev_b = cache.subscribe(a), cache.subscribe(b)
        infs = cache.acquire({"Pod"}, a) + cache.acquire({"Pod"}, b)
        assert len({id(i) for i in infs}) == 1, "one informer per kind, shared by every wait"
        pod = infs[0]
        await asyncio.wait_for(asyncio.to_thread(pod.synced.wait, 60), 65)
        ev_a.clear()
        ev_b.clear()
        core.create_namespaced_pod(a, _pod("p1"))
        await asyncio.wait_for(ev_a.wait(), 30)
        assert "p1" in pod.snapshot(a)
        assert not ev_b.is_set(), "a change in namespace a woke the waiter of namespace b"

        core.delete_namespaced_pod("p1", a, grace_period_seconds=0)
        for _ in range(300):
            if "p1" not in pod.snapshot(a):
                break
            await asyncio.sleep(0.1)
        assert "p1" not in pod.snapshot(a)
        assert pod.relists == 1, "no relist without a reason"
    finally:
        cache.release({"Pod"}, a)
        cache.release({"Pod"}, b)
        for inf in cache.informers():
            inf.stop()
        for ns in (a, b):
            core.delete_namespace(ns)


async def test_namespace_scope_has_one_informer_per_namespace_stopped_with_its_last_wait(kubeconfig: Path) -> None:
    cache = WatchCache(Kube(kubeconfig, None), scope="namespace")
    first = cache.acquire({"Pod"}, "default")
    again = cache.acquire({"Pod"}, "default")
    other = cache.acquire({"Pod"}, "kube-system")
    assert first[0] is again[0] and first[0] is not other[0] and first[0].namespace == "default"
    await asyncio.wait_for(asyncio.to_thread(first[0].synced.wait, 60), 65)
    cache.release({"Pod"}, "default")
    assert not first[0].stopped.is_set(), "stopped while a wait still uses it"
    cache.release({"Pod"}, "default")
    cache.release({"Pod"}, "kube-system")
    assert first[0].stopped.is_set() and other[0].stopped.is_set() and cache.informers() == []


def test_informer_watches_hand_over_json_not_model_objects(kubeconfig: Path, core: k8s.CoreV1Api) -> None:
    """The informers keep ``raw_object``: a watch that also built ``V1Pod`` models for every event spent a quarter
    of the worker's CPU on objects nobody read. Streamed from the real apiserver, in both scopes."""
    kube = Kube(kubeconfig, None)
    for kind in ("Pod", "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet"):
        for scope in (None, "default"):
            assert not watch.Watch().get_return_type(_listers(kube, kind, scope)), (kind, scope)
    ns = f"wj-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    try:
        core.create_namespaced_pod(ns, _pod("p"))
        for scope in (None, ns):
            w, seen = watch.Watch(), 0
            for ev in w.stream(_listers(kube, "Pod", scope), timeout_seconds=2, _request_timeout=10):
                assert isinstance(ev["object"], dict) and ev["object"] is ev["raw_object"], type(ev["object"])
                seen += 1
            assert seen, f"no pod event in {scope or 'the cluster'} although pod {ns}/p exists"
    finally:
        core.delete_namespace(ns)
