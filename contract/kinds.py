"""The Kubernetes kinds a release may contain, with what applying them needs to know.

Used by ``releases.loader`` (validation, apply order) and ``activities.kube`` (REST paths). A table rather
than discovery so validation works offline, before any side effect, and the order is explicit: namespaces, then
identities and config, then services, then workloads (what `helm install` does too).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindInfo:
    api_versions: tuple[str, ...]
    plural: str
    namespaced: bool
    order: int


KINDS: dict[str, KindInfo] = {
    "Namespace": KindInfo(("v1",), "namespaces", False, 0),
    "ServiceAccount": KindInfo(("v1",), "serviceaccounts", True, 10),
    "ClusterRole": KindInfo(("rbac.authorization.k8s.io/v1",), "clusterroles", False, 11),
    "ClusterRoleBinding": KindInfo(("rbac.authorization.k8s.io/v1",), "clusterrolebindings", False, 12),
    "Role": KindInfo(("rbac.authorization.k8s.io/v1",), "roles", True, 11),
    "RoleBinding": KindInfo(("rbac.authorization.k8s.io/v1",), "rolebindings", True, 12),
    "ConfigMap": KindInfo(("v1",), "configmaps", True, 20),
    "Secret": KindInfo(("v1",), "secrets", True, 20),
    "Service": KindInfo(("v1",), "services", True, 30),
    "NetworkPolicy": KindInfo(("networking.k8s.io/v1",), "networkpolicies", True, 35),
    "PodDisruptionBudget": KindInfo(("policy/v1",), "poddisruptionbudgets", True, 35),
    "Ingress": KindInfo(("networking.k8s.io/v1",), "ingresses", True, 35),
    "Deployment": KindInfo(("apps/v1",), "deployments", True, 40),
    "StatefulSet": KindInfo(("apps/v1",), "statefulsets", True, 40),
    "DaemonSet": KindInfo(("apps/v1",), "daemonsets", True, 40),
    "HorizontalPodAutoscaler": KindInfo(("autoscaling/v2",), "horizontalpodautoscalers", True, 50),
}

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
