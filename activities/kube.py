"""A thin Kubernetes REST layer for activities: server-side apply, get, delete and list for any kind in
``contract.kinds``, on top of the official client's ``ApiClient``.

Called by ``activities.prepare``, ``activities.apply``, ``activities.revisions``, ``activities.rollback`` and
``activities.readiness``. Generic paths instead of the typed APIs keep apply uniform across kinds, and avoid
DynamicClient's discovery round-trips at every activity start.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from contract import FIELD_MANAGER
from contract.kinds import KINDS
from contract.models import ObjectRef


def path_for(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    info = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if info.namespaced else ""
    return f"{base}{ns}/{info.plural}" + (f"/{name}" if name else "")


def ref_of(obj: dict[str, Any]) -> ObjectRef:
    md = obj["metadata"]
    ns = md.get("namespace") if KINDS[obj["kind"]].namespaced else None
    return ObjectRef(api_version=obj["apiVersion"], kind=obj["kind"], name=md["name"], namespace=ns)


class Kube:
    """One API client per (kubeconfig, context); thread-safe for the worker's activity thread pool."""

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        cfg = client.Configuration()
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(context=context, client_configuration=cfg)
        else:
            config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                                    client_configuration=cfg)
        # One pooled connection per concurrent caller: the default pool (10) discarded connections as soon as more
        # steps ran at once (64 activity slots, the watch cache's threads), and each new one is a TLS handshake.
        cfg.connection_pool_maxsize = 128
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def request(self, method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None,
                content_type: str = "application/json", timeout: float = 30) -> dict[str, Any]:
        """One REST call; raises ApiException (with status and body) on a non-2xx answer."""
        m, url, headers, data, post = self.api.param_serialize(
            method, path, query_params=query or [], header_params={"Content-Type": content_type,
                                                                   "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(m, url, header_params=headers, body=data, post_params=post,
                                 _request_timeout=timeout)
        raw = resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(status=resp.status, reason=resp.reason, body=raw.decode(errors="replace") if raw else "")
        return json.loads(raw) if raw else {}

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            return self.request("GET", path_for(ref.api_version, ref.kind, ref.namespace, ref.name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply with ``force``: Rollwright owns the fields its release declares."""
        ref = ref_of(obj)
        q = [("fieldManager", manager), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
        return self.request("PATCH", path_for(ref.api_version, ref.kind, ref.namespace, ref.name), body=obj,
                            query=q, content_type="application/apply-patch+yaml")

    def delete(self, ref: ObjectRef) -> bool:
        try:
            self.request("DELETE", path_for(ref.api_version, ref.kind, ref.namespace, ref.name),
                         body={"propagationPolicy": "Background"})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def namespace_exists(self, name: str) -> bool:
        return self.get(ObjectRef(api_version="v1", kind="Namespace", name=name)) is not None


class KubeFactory:
    """Caches ``Kube`` clients per context; the worker builds one factory and shares it across activities."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self._kubeconfig = kubeconfig
        self._lock = threading.Lock()
        self._clients: dict[str | None, Kube] = {}

    def __call__(self, context: str | None = None) -> Kube:
        with self._lock:
            if context not in self._clients:
                self._clients[context] = Kube(self._kubeconfig, context)
            return self._clients[context]
