"""One shared watch cache per worker process: an informer per (cluster, resource kind), fed by one list+watch each.

Used by ``activities.readiness.wait_ready`` (an ``async def`` activity): every readiness wait on this worker reads
the same in-memory copy of Deployments, StatefulSets, DaemonSets, ReplicaSets and Pods, and sleeps on an asyncio
event that the informer sets when something in the wait's namespace changed. So the apiserver sees one watch per
kind however many waits run, and a wait holds neither a thread nor an activity-executor slot while it waits.

Informers run on their own threads (the kubernetes client is synchronous): five per cluster, not per wait. They
resume the watch from the last resourceVersion (bookmarks keep it fresh) and list again on 410 Gone or after any
broken connection they cannot resume — e.g. a kube-apiserver restart — then notify every namespace, so no event
is lost: what the relist shows replaces the store, deletions included.

Scope: cluster-wide by default. A worker whose RBAC only grants namespaces (k8s/base binds the managed role per
namespace) gets 403 on the cluster-wide list; then that cluster falls back to per-namespace informers, still shared
by every wait in the namespace and stopped when the last one ends. ``ROLLWRIGHT_WATCH_SCOPE=namespace`` forces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from activities.kube import Kube

log = logging.getLogger(__name__)
Obj = dict[str, Any]
KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")


def _listers(kube: Kube, kind: str, namespace: str | None) -> Callable[..., Any]:
    """The list call of ``kind``, wrapped so that it carries no return type: ``watch.Watch`` finds the model type
    of a generated API method (its docstring) and turns every event into a model object (``V1Pod``…), which the
    informer never reads (it keeps ``raw_object``). That conversion was a quarter of the worker's CPU under a
    60-rollout fleet (py-spy). Without a type the watch hands over the decoded JSON only."""
    core, apps = kube.core, kube.apps
    if namespace is None:
        every = {"Pod": core.list_pod_for_all_namespaces,
                 "ReplicaSet": apps.list_replica_set_for_all_namespaces,
                 "Deployment": apps.list_deployment_for_all_namespaces,
                 "StatefulSet": apps.list_stateful_set_for_all_namespaces,
                 "DaemonSet": apps.list_daemon_set_for_all_namespaces}[kind]
        return lambda **kw: every(**kw)
    fn = {"Pod": core.list_namespaced_pod, "ReplicaSet": apps.list_namespaced_replica_set,
          "Deployment": apps.list_namespaced_deployment, "StatefulSet": apps.list_namespaced_stateful_set,
          "DaemonSet": apps.list_namespaced_daemon_set}[kind]
    return lambda **kw: fn(namespace, **kw)


def _slim(obj: Obj, kind: str) -> Obj:
    obj.setdefault("kind", kind)
    obj.get("metadata", {}).pop("managedFields", None)  # the largest part of an object, never read by the rules
    return obj


class Informer(threading.Thread):
    """List+watch of one kind (cluster-wide or in one namespace) into ``store[namespace][name]``."""

    def __init__(self, cache: WatchCache, kind: str, namespace: str | None) -> None:
        super().__init__(daemon=True, name=f"informer-{kind}-{namespace or '*'}")
        self.cache, self.kind, self.namespace = cache, kind, namespace
        self.lister = _listers(cache.kube, kind, namespace)
        self.store: dict[str, dict[str, Obj]] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self.error: ApiException | None = None  # last list failure, for a wait to report a 403
        self.relists = 0
        self._w: watch.Watch | None = None

    def snapshot(self, namespace: str) -> dict[str, Obj]:
        with self.lock:
            return dict(self.store.get(namespace, {}))

    def _list(self) -> str:
        resp = self.lister(_preload_content=False, _request_timeout=60)
        body = json.loads(resp.data)
        fresh: dict[str, dict[str, Obj]] = {}
        for item in body.get("items", []):
            md = item["metadata"]
            fresh.setdefault(md.get("namespace", ""), {})[md["name"]] = _slim(item, self.kind)
        with self.lock:
            touched = set(self.store) | set(fresh)
            self.store = fresh
        self.relists += 1
        self.error = None
        self.synced.set()
        self.cache.notify(touched)
        return str(body["metadata"]["resourceVersion"])

    def run(self) -> None:
        rv: str | None = None
        backoff = 0.5
        while not self.stopped.is_set():
            try:
                if rv is None:
                    rv = self._list()
                self._w = watch.Watch()
                for ev in self._w.stream(self.lister, resource_version=rv, timeout_seconds=240,
                                         allow_watch_bookmarks=True, _request_timeout=300):
                    if self.stopped.is_set():
                        break
                    obj, typ = ev["raw_object"], ev["type"]
                    if typ == "ERROR":  # 410 Gone as an event: the resourceVersion expired, list again
                        rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if typ == "BOOKMARK":
                        continue
                    md = obj["metadata"]
                    ns = md.get("namespace", "")
                    with self.lock:
                        if typ == "DELETED":
                            self.store.get(ns, {}).pop(md["name"], None)
                        else:
                            self.store.setdefault(ns, {})[md["name"]] = _slim(obj, self.kind)
                    self.cache.notify({ns})
                backoff = 0.5
            except ApiException as e:
                rv = None
                if e.status != 410:
                    self.error = e
                    log.warning("informer %s: %s (HTTP %s); relisting in %.1fs", self.name, e.reason, e.status,
                                backoff)
                    self.stopped.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            except Exception as e:  # connection refused/reset (apiserver restart): relist, which catches us up
                rv = None
                log.info("informer %s interrupted (%s); relisting in %.1fs", self.name, e, backoff)
                self.stopped.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self.stopped.set()
        if self._w is not None:
            self._w.stop()


class WatchCache:
    """The informers of one cluster (kube context) and the asyncio waiters they wake."""

    def __init__(self, kube: Kube, scope: str | None = None) -> None:
        self.kube = kube
        self.scope = scope or os.environ.get("ROLLWRIGHT_WATCH_SCOPE", "cluster")
        self._lock = threading.Lock()
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._refs: dict[tuple[str, str | None], int] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    # ---- informers ------------------------------------------------------------------------------------------

    def _key(self, kind: str, namespace: str) -> tuple[str, str | None]:
        return (kind, None if self.scope == "cluster" else namespace)

    def acquire(self, kinds: set[str], namespace: str) -> list[Informer]:
        out = []
        with self._lock:
            for kind in sorted(kinds):
                key = self._key(kind, namespace)
                inf = self._informers.get(key)
                if inf is None or inf.stopped.is_set():
                    inf = self._informers[key] = Informer(self, kind, key[1])
                    inf.start()
                self._refs[key] = self._refs.get(key, 0) + 1
                out.append(inf)
        return out

    def release(self, kinds: set[str], namespace: str) -> None:
        with self._lock:
            for kind in kinds:
                key = self._key(kind, namespace)
                self._refs[key] = self._refs.get(key, 1) - 1
                if key[1] is not None and self._refs[key] <= 0:  # namespace informers end with their last wait
                    inf = self._informers.pop(key, None)
                    self._refs.pop(key, None)
                    if inf is not None:
                        inf.stop()

    def fall_back_to_namespaces(self) -> None:
        """Cluster-wide list forbidden: from now on, informers per namespace (see module docstring)."""
        with self._lock:
            if self.scope == "namespace":
                return
            log.warning("cluster-wide watch forbidden: using per-namespace informers")
            self.scope = "namespace"
            for inf in self._informers.values():
                inf.stop()
            self._informers.clear()
            self._refs.clear()

    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    # ---- notifications --------------------------------------------------------------------------------------

    def subscribe(self, namespace: str) -> asyncio.Event:
        ev = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(namespace, set()).add((asyncio.get_running_loop(), ev))
        return ev

    def unsubscribe(self, namespace: str, ev: asyncio.Event) -> None:
        with self._lock:
            subs = self._waiters.get(namespace, set())
            for item in [s for s in subs if s[1] is ev]:
                subs.discard(item)
            if not subs:
                self._waiters.pop(namespace, None)

    def notify(self, namespaces: set[str]) -> None:
        """Called from informer threads: wakes the waits of these namespaces on their event loop."""
        with self._lock:
            targets = [s for ns in namespaces for s in self._waiters.get(ns, ())]
        for loop, ev in targets:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # loop closed (worker shutting down)
                pass


class WatchCaches:
    """The worker's caches, one per kube context, created on first use."""

    def __init__(self, kube_for: Callable[[str | None], Kube]) -> None:
        self._kube_for = kube_for
        self._lock = threading.Lock()
        self._caches: dict[str | None, WatchCache] = {}

    def __call__(self, context: str | None) -> WatchCache:
        with self._lock:
            if context not in self._caches:
                self._caches[context] = WatchCache(self._kube_for(context))
            return self._caches[context]
