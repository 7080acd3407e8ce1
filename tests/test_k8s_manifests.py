"""The worker's Kubernetes packaging (k8s/base + overlays via kustomize, and the Helm chart) against the real local
API server: every rendered object passes a server-side dry run, the RBAC grants exactly what the worker needs
(checked with SubjectAccessReviews after applying the RBAC objects for real), and values.schema.json rejects bad
values. Run by the test suite; helm comes from tools/helm/build.sh, kubectl (kustomize) from /usr/bin.
"""

from __future__ import annotations

import functools
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.kube import Kube, ref_of
from contract.kinds import KINDS
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "k8s/helm/rollwright"
KUBE_VERSION = "1.34.4"  # the local cluster's; helm otherwise assumes the version it was built against
MANAGER = "rollwright-test"


@functools.cache
def helm_bin() -> str:
    r = subprocess.run(["bash", str(ROOT / "tools/helm/build.sh")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@functools.cache
def render(source: str, release: str = "rollwright", namespace: str = "rollwright",
           managed: str = "apps") -> tuple[dict[str, Any], ...]:
    """Objects of one way of deploying the worker, as `kubectl apply` / `helm install` would send them. Release
    name and namespaces are install-time choices with Helm only; kustomize output names `rollwright` and `apps`."""
    if source.startswith("kustomize-"):
        r = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s/overlays" / source.removeprefix("kustomize-"))],
                           capture_output=True, text=True, timeout=120)
    else:
        values = ["-f", str(CHART / "values-prod.yaml")] if source == "helm-prod" else []
        r = helm("template", release, str(CHART), "-n", namespace, "--set", f"managedNamespaces={{{managed}}}",
                 "--kube-version", KUBE_VERSION, *values)
    assert r.returncode == 0, r.stderr
    objs = _docs(r.stdout)
    assert objs, f"{source} rendered nothing"
    return tuple(objs)


SOURCES = ["kustomize-dev", "kustomize-prod", "helm-default", "helm-prod"]


@pytest.fixture(scope="module")
def helm_target(core: k8s.CoreV1Api) -> Iterator[tuple[str, str, str]]:
    """(release, namespace, managed namespace) of a Helm install of our own: the kustomize objects of the same names
    may be live (tests/test_self_deploy.py deploys them), and a Deployment's selector is immutable, so the chart's
    (which adds app.kubernetes.io/instance) cannot dry-run over them."""
    tag = uuid.uuid4().hex[:5]
    target = (f"dry-{tag}", f"dry-{tag}", f"dry-{tag}-apps")
    for name in target[1:]:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield target
    for name in target[1:]:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def kustomize_target(core: k8s.CoreV1Api) -> None:
    """The namespaces the kustomize output names: `rollwright` (the worker's) and `apps` (the managed one). Created,
    never deleted: they are what a cluster running the worker has, and tests/test_self_deploy.py deploys there."""
    for name in ("rollwright", "apps"):
        # Another test may just have deleted it (tests/test_in_cluster.py cleans up): a terminating namespace takes
        # no new object, not even in a dry run, so wait until it is gone and create it again.
        wait_until(lambda n=name: _not_terminating(core, n), 180, interval=1, what=f"namespace {name} gone")
        try:
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        except ApiException as e:
            if e.status != 409:
                raise


def _not_terminating(core: k8s.CoreV1Api, name: str) -> bool:
    try:
        return core.read_namespace(name).metadata.deletion_timestamp is None
    except ApiException as e:
        if e.status == 404:
            return True
        raise


# ---------------------------------------------------------------------------------------------- dry run

@pytest.mark.parametrize("source", SOURCES)
def test_every_object_passes_server_side_dry_run(source: str, kube: Kube, kustomize_target: None,
                                                 helm_target: tuple[str, str, str]) -> None:
    objs = render(source) if source.startswith("kustomize-") else render(source, *helm_target)
    if source.startswith("helm-"):
        assert {o["metadata"].get("namespace") for o in objs} == {None, *helm_target[1:]}
    unknown = {o["kind"] for o in objs} - KINDS.keys()
    assert not unknown, f"kinds Rollwright cannot apply (so the worker could not deploy itself): {unknown}"
    rejected = []
    for o in objs:
        try:
            out = kube.apply(o, dry_run=True, manager=MANAGER)
            # Defaulting ran server-side: the answer is the object as it would be stored.
            assert out["metadata"]["name"] == o["metadata"]["name"] and "uid" in out["metadata"]
        except ApiException as e:
            rejected.append(f"{ref_of(o)}: {e.status} {e.body[:300]}")
    assert not rejected, "\n".join(rejected)


def test_kustomize_and_helm_deploy_the_same_objects() -> None:
    def kinds(source: str) -> list[str]:
        return sorted(o["kind"] for o in render(source) if o["kind"] != "Namespace")  # helm: --create-namespace

    assert kinds("kustomize-dev") == kinds("helm-default") == kinds("helm-prod") == kinds("kustomize-prod")
    for source, replicas in (("kustomize-prod", 3), ("helm-prod", 3), ("kustomize-dev", 2), ("helm-default", 2)):
        dep = next(o for o in render(source) if o["kind"] == "Deployment")
        hpa = next(o for o in render(source) if o["kind"] == "HorizontalPodAutoscaler")
        assert dep["spec"]["replicas"] == replicas == hpa["spec"]["minReplicas"], source


# ---------------------------------------------------------------------------------------------------- RBAC

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def _isolate(objs: tuple[dict[str, Any], ...], worker_ns: str, managed_ns: str, suffix: str) -> list[dict[str, Any]]:
    """The source's RBAC objects moved into test namespaces, cluster-scoped names suffixed, so applying them for
    real touches nothing a real install (or another test run) owns."""
    out = []
    for o in objs:
        if o["kind"] not in RBAC_KINDS:
            continue
        o = yaml.safe_load(yaml.safe_dump(o))  # deep copy: render() is cached
        md = o["metadata"]
        if KINDS[o["kind"]].namespaced:
            md["namespace"] = worker_ns if md["namespace"] == "rollwright" else managed_ns
        else:
            md["name"] += f"-{suffix}"
        if o["kind"].endswith("Binding"):
            if o["roleRef"]["kind"] == "ClusterRole":
                o["roleRef"]["name"] += f"-{suffix}"
            for s in o["subjects"]:
                s["namespace"] = worker_ns
        out.append(o)
    return out


@pytest.fixture
def rbac_namespaces(core: k8s.CoreV1Api) -> Iterator[tuple[str, str, str]]:
    """(worker namespace, managed namespace, an unmanaged namespace), fresh for the test."""
    tag = uuid.uuid4().hex[:5]
    names = (f"rbac-worker-{tag}", f"rbac-managed-{tag}", f"rbac-other-{tag}")
    for n in names:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=n)))
    yield names
    for n in names:
        core.delete_namespace(n)


def _allowed(authz: k8s.AuthorizationV1Api, sa: str, ns: str | None, verb: str, resource: str,
             group: str = "") -> bool:
    sa_ns, sa_name = sa.split("/")
    review = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{sa_ns}:{sa_name}",
        groups=["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}", "system:authenticated"],
        resource_attributes=k8s.V1ResourceAttributes(namespace=ns, verb=verb, group=group, resource=resource)))
    return bool(authz.create_subject_access_review(review).status.allowed)


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


@pytest.mark.parametrize("source", ["kustomize-dev", "helm-default"])
def test_worker_service_account_can_do_its_job_and_nothing_more(source: str, kube: Kube, k8s_api: k8s.ApiClient,
                                                                rbac_namespaces: tuple[str, str, str]) -> None:
    worker_ns, managed, other = rbac_namespaces
    suffix = worker_ns.rsplit("-", 1)[1]
    objs = _isolate(render(source), worker_ns, managed, suffix)
    assert {o["kind"] for o in objs} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding"}
    sas = [o for o in objs if o["kind"] == "ServiceAccount"]
    assert len(sas) == 1
    sa = f"{worker_ns}/{sas[0]['metadata']['name']}"
    cluster_scoped = [o for o in objs if not KINDS[o["kind"]].namespaced]
    try:
        for o in sorted(objs, key=lambda o: KINDS[o["kind"]].order):
            kube.apply(o, manager=MANAGER)
        authz = k8s.AuthorizationV1Api(k8s_api)
        can = functools.partial(_allowed, authz, sa)
        # Every kind the loader accepts (contract/kinds.py), with the verbs apply, snapshot, rollback and prune use:
        # namespaced kinds in a managed namespace, cluster-scoped ones cluster-wide. Iterating over the table means
        # a kind added to the loader without RBAC fails here.
        must = [(managed if info.namespaced else None, verb, info.plural, _group(info.api_versions[0]))
                for info in KINDS.values() for verb in ("get", "create", "patch", "delete")]
        # What the readiness wait and the revision records need on top.
        must += [(managed, v, r, "apps") for r in ("deployments", "replicasets") for v in ("list", "watch")]
        must += [(managed, "watch", "pods", ""), (managed, "list", "pods", ""), (managed, "list", "secrets", "")]
        missing = [m for m in must if not can(m[0], m[1], m[2], m[3])]
        assert not missing, f"{source}: the worker cannot {missing}"
        # Least privilege: no reach outside the managed namespaces, no `update` (SSA patches), no watch on Secrets,
        # no self-escalation verbs, nothing on pods but reading them.
        must_not = [(other if info.namespaced else None, "update", info.plural, _group(info.api_versions[0]))
                    for info in KINDS.values()]
        must_not += [(other, v, info.plural, _group(info.api_versions[0])) for info in KINDS.values()
                     if info.namespaced for v in ("get", "patch", "delete")]
        must_not += [(managed, "update", info.plural, _group(info.api_versions[0])) for info in KINDS.values()
                     if info.namespaced]
        must_not += [(managed, "watch", "secrets", ""), (other, "list", "secrets", ""),
                     (worker_ns, "get", "secrets", ""), (None, "list", "secrets", ""), (None, "delete", "nodes", ""),
                     (managed, "update", "pods", ""), (managed, "delete", "pods", ""), (managed, "create", "pods", ""),
                     (managed, "patch", "replicasets", "apps"), (managed, "create", "pods/exec", ""),
                     (managed, "bind", "roles", "rbac.authorization.k8s.io"),
                     (managed, "escalate", "roles", "rbac.authorization.k8s.io"),
                     (None, "bind", "clusterroles", "rbac.authorization.k8s.io"),
                     (None, "escalate", "clusterroles", "rbac.authorization.k8s.io"),
                     (None, "impersonate", "serviceaccounts", "")]
        excess = [m for m in must_not if can(m[0], m[1], m[2], m[3])]
        assert not excess, f"{source}: the worker may {excess}"
    finally:
        for o in cluster_scoped:
            kube.delete(ref_of(o))


# ----------------------------------------------------------------------------------------------- values

def test_chart_lints_with_default_and_prod_values() -> None:
    for extra in ([], ["-f", str(CHART / "values-prod.yaml")]):
        r = helm("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *extra)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("flag", "where"), [
    ("replicaCount=0", "/replicaCount"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("temporal.address=no-port", "/temporal/address"),
    ("managedNamespaces[0]=Not_A_Namespace", "/managedNamespaces/0"),
    ("resources.requests.cpu=lots", "/resources/requests/cpu"),
    ("unknownKey=1", "unknownKey"),
])
def test_values_schema_rejects_bad_values(flag: str, where: str) -> None:
    r = helm("template", "rollwright", str(CHART), "-n", "rollwright", "--kube-version", KUBE_VERSION, "--set", flag)
    assert r.returncode != 0 and r.stdout == "", r.stdout
    assert "values don't meet the specifications of the schema" in r.stderr, r.stderr
    assert where in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------ NetworkPolicy
# The local stack's CNI (the bridge plugin) does not enforce NetworkPolicies, so the policy is tested as an object:
# a server dry run (test_every_object_passes_server_side_dry_run) and this table of what its rules allow.


def _policy_allows(policy: dict[str, Any], direction: str, port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy semantics for port-only rules: allowed if any rule lists the port (or has no ports)."""
    assert direction.capitalize() in policy["spec"]["policyTypes"]
    for rule in policy["spec"].get(direction, []):
        assert "to" not in rule and "from" not in rule, "table test assumes port-only rules"
        ports = rule.get("ports")
        if not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports):
            return True
    return False


EGRESS_ALLOWED = [(7233, "TCP", "Temporal"), (443, "TCP", "apiserver Service / HTTPS registry"),
                  (6443, "TCP", "apiserver after DNAT"), (5000, "TCP", "registry"), (80, "TCP", "health check"),
                  (8080, "TCP", "health check after DNAT"), (53, "UDP", "DNS"), (53, "TCP", "DNS")]
EGRESS_DENIED = [(22, "TCP"), (2379, "TCP"), (5432, "TCP"), (9090, "TCP"), (10250, "TCP"), (5000, "UDP")]


@pytest.mark.parametrize("source", ["kustomize-dev", "kustomize-prod", "helm-default", "helm-prod"])
def test_network_policy_allows_exactly_the_workers_destinations(source: str) -> None:
    pols = [o for o in render(source) if o["kind"] == "NetworkPolicy"]
    assert len(pols) == 1, source
    pol = pols[0]
    for port, proto, what in EGRESS_ALLOWED:
        assert _policy_allows(pol, "egress", port, proto), f"{source}: egress to {what} ({port}/{proto}) blocked"
    for port, proto in EGRESS_DENIED:
        assert not _policy_allows(pol, "egress", port, proto), f"{source}: egress to {port}/{proto} allowed"
    assert _policy_allows(pol, "ingress", 9090) and not _policy_allows(pol, "ingress", 7233)


def test_network_policy_health_check_ports_are_configurable() -> None:
    out = helm("template", "rw", str(CHART), "-n", "rollwright", "--kube-version", KUBE_VERSION,
               "--set", "networkPolicy.healthCheckPorts={8443}")
    assert out.returncode == 0, out.stderr
    pol = next(o for o in _docs(out.stdout) if o["kind"] == "NetworkPolicy")
    assert _policy_allows(pol, "egress", 8443) and not _policy_allows(pol, "egress", 8080)


# ------------------------------------------------------------------------------------------------ Docker engine


def _config(objs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return next(o for o in objs if o["kind"] == "ConfigMap")["data"]


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "kustomize-dev"])
def test_no_engine_by_default_and_never_a_host_socket(source: str) -> None:
    """Production sources: no engine, no host path. The dev overlay (the local stack's in-cluster worker) is the
    one that opts into the socket component, checked below."""
    objs = render(source)
    assert _config(objs).get("ROLLWRIGHT_DOCKER_ENGINE") == "none", source
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert not [v for v in dep["spec"]["template"]["spec"]["volumes"] if "hostPath" in v], source


def test_helm_docker_host_replaces_the_no_engine_default() -> None:
    r = helm("template", "rw", str(CHART), "-n", "rollwright", "--kube-version", KUBE_VERSION,
             "--set", "dockerHost=tcp://engine.builds:2375")
    assert r.returncode == 0, r.stderr
    data = _config(tuple(_docs(r.stdout)))
    assert data["DOCKER_HOST"] == "tcp://engine.builds:2375" and "ROLLWRIGHT_DOCKER_ENGINE" not in data


def test_dev_docker_socket_component_renders_and_passes_dry_run(kube: Kube, kustomize_target: None) -> None:
    """The dev overlay (the local stack's in-cluster worker) uses k8s/components/docker-socket: the socket only
    through the component, and its namespace's Pod Security relaxed to allow the hostPath (still warning)."""
    assert "../../components/docker-socket" in yaml.safe_load(
        (ROOT / "k8s/overlays/dev/kustomization.yaml").read_text())["components"]
    objs = render("kustomize-dev")
    ns = next(o for o in objs if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    dep = next(o for o in objs if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock" and env["ROLLWRIGHT_DOCKER_ENGINE"] == "docker"
    assert {"name": "docker-socket", "mountPath": "/var/run/docker.sock"} in c["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    kube.apply(dep, dry_run=True, manager=MANAGER)
