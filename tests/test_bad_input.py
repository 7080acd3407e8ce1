"""Bad input gets a clear error naming the file, field and reason — and nothing is built, pushed or applied.

Runs the real CLI (`rollwright rollout start -f … --wait`) against the real stack. Errors found locally stop the
CLI before a workflow exists; errors only the servers can find (an immutable field, an unreachable registry, a
missing namespace) fail the workflow's first step, before any side effect. Either way the exit code is 2 and the
namespace's objects and the registry's tags are exactly what they were.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from tests.bomb import alias_bomb
from tests.helpers import WorkerProcess, cli, configmap, deployment, write_release

pytestmark = pytest.mark.e2e

APP = "badin"


def _edit_spec(**changes: Any) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / "release-v2.yaml"
        spec = yaml.safe_load(p.read_text())
        for k, v in changes.items():
            if isinstance(v, _Replace):
                spec[k] = v.value
            elif isinstance(v, dict) and isinstance(spec.get(k), dict):
                spec[k].update(v)
            else:
                spec[k] = v
        p.write_text(yaml.safe_dump(spec))
    return f


def _write_manifest(text: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        (d / "manifests-v2.yaml").write_text(text)
    return f


def _both(*fs: Callable[[Path], None]) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        for g in fs:
            g(d)
    return f


class _Replace:
    def __init__(self, value: Any) -> None:
        self.value = value
GOOD_DEPLOY = yaml.safe_dump(deployment("badin")).replace("REPO:", "127.0.0.1:5000/rollwright-test/badin:")
M = "manifests-v2.yaml"


def _write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        (d / name).write_bytes(data)
    return f


def _deploy_with(**changes: Any) -> str:
    """The good Deployment with changes applied at dotted paths (``spec.template.spec.containers.0.resources``)."""
    obj = yaml.safe_load(GOOD_DEPLOY)
    for path, value in changes.items():
        parts = path.split("__")
        cur = obj
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        if value is _DELETE:
            del cur[parts[-1]]
        elif isinstance(cur, list):
            cur[int(parts[-1])] = value
        else:
            cur[parts[-1]] = value
    return yaml.safe_dump(obj)


_DELETE = object()
_C0 = "spec__template__spec__containers__0"


def _cm(name: str, data: Any, **md: Any) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **md}, "data": data})


def _big_files(d: Path) -> None:
    """Three 2.9 MB manifest files: each within the per-file and per-object limits, together over 8 MiB."""
    names = []
    for i in range(3):
        (d / f"big{i}.yaml").write_text(_cm(f"big{i}", {"blob": "x" * (2900 * 1024)}))
        names.append(f"big{i}.yaml")
    p = d / "release-v2.yaml"
    spec = yaml.safe_load(p.read_text())
    spec["manifests"] = [M, *names]
    p.write_text(yaml.safe_dump(spec))


def _incompressible(d: Path) -> None:
    """ConfigMaps of random data, each within the apiserver's limits, together too large for a revision record."""
    import base64
    import os as _os
    docs = [_cm(f"rand{i}", {"blob": base64.b64encode(_os.urandom(300 * 1024)).decode()}) for i in range(2)]
    (d / M).write_text(GOOD_DEPLOY + "---\n" + "---\n".join(docs))

CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "broken-yaml": (_write_manifest("kind: Deployment\nmetadata: {name: [unclosed\n"),
                    ["manifests-v2.yaml", "not valid YAML", "line"]),
    "document-without-kind": (_write_manifest("apiVersion: v1\nmetadata: {name: x}\ndata: {a: b}\n"),
                              ["manifests-v2.yaml", "document 1", "kind: required"]),
    "unknown-kind": (_write_manifest("apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n"),
                     ["manifests-v2.yaml", "kind", "unknown kind 'Gadget'"]),
    "missing-image-repository": (_edit_spec(image=_Replace({"context": "app"})),
                                 ["release-v2.yaml", "image.repository", "Field required"]),
    "wrong-field-type-in-spec": (_edit_spec(health={"progress_deadline_seconds": "soon"}),
                                 ["release-v2.yaml", "health.progress_deadline_seconds", "integer"]),
    "wrong-field-type-in-manifest": (_write_manifest(GOOD_DEPLOY.replace("replicas: 2", "replicas: three")),
                                     ["manifests-v2.yaml", "Deployment/badin", "spec.replicas", "must be an integer"]),
    "missing-manifest-path": (_edit_spec(manifests=["nowhere.yaml"]),
                              ["nowhere.yaml", "manifests[0]", "manifest path not found"]),
    "empty-release": (_write_manifest("# nothing here\n---\n"), ["the release is empty"]),
    "unknown-spec-field": (_edit_spec(manifest=["x.yaml"]), ["release-v2.yaml", "manifest", "Extra inputs"]),
    "invalid-app-name": (_edit_spec(app="Bad_App"), ["release-v2.yaml", "app", "pattern"]),
    "missing-dockerfile": (_edit_spec(image={"dockerfile": "Nope.dockerfile"}),
                           ["Nope.dockerfile", "image.dockerfile", "Dockerfile not found"]),
    "container-missing-image": (_write_manifest(GOOD_DEPLOY.replace("image: 127.0.0.1", "imagex: 127.0.0.1")),
                                ["manifests-v2.yaml", "containers[0].image", "required"]),
    "duplicate-object": (_write_manifest(GOOD_DEPLOY + "---\n" + GOOD_DEPLOY), ["duplicate object"]),
    # Only the servers know these: they fail the workflow's Validate step, still before any side effect.
    "immutable-selector-change": (
        _write_manifest(GOOD_DEPLOY.replace("app: badin", "app: badin2")),
        ["server-side dry run rejected Deployment", "spec.selector", "field is immutable"]),
    "unreachable-registry": (_both(_edit_spec(image={"repository": "127.0.0.1:5999/rollwright-test/badin"}),
                                   _write_manifest(GOOD_DEPLOY.replace("127.0.0.1:5000", "127.0.0.1:5999"))),
                             ["registry 127.0.0.1:5999 is unreachable"]),
    "namespace-does-not-exist": (_edit_spec(namespace="no-such-ns-here"),
                                 ["namespace 'no-such-ns-here' does not exist"]),
    # ---- YAML (issue 10, finding 1) ----
    "yaml-alias-bomb": (_write_manifest(alias_bomb(name="badin-bomb")), [M, "document 1", "aliases expand"]),
    "yaml-too-many-aliases": (_write_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n"
                                              "  x: &x v\n" + "".join(f"  k{i}: *x\n" for i in range(101))),
                              [M, "document 1", "more than 100 YAML aliases"]),
    "yaml-recursive-alias": (_write_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
                                             "data: &d {x: *d}\n"), [M, "document 1", "recursive YAML alias"]),
    "yaml-nested-too-deep": (_write_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: "
                                             + "[" * 250 + "]" * 250 + "\n"), [M, "document 1", "nested deeper"]),
    "yaml-second-document-broken": (_write_manifest(GOOD_DEPLOY + "---\nkind: [\n"),
                                    [M, "not valid YAML", "line"]),
    "yaml-not-utf8": (_write_bytes(M, b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xff\xfe}\n"),
                      [M, "not UTF-8"]),
    "yaml-document-is-a-list": (_write_manifest("- a\n- b\n"), [M, "document 1", "must be a mapping"]),
    "spec-not-valid-yaml": (_write_bytes("release-v2.yaml", b"app: [x\n"), ["release-v2.yaml", "not valid YAML"]),
    "spec-is-a-list": (_write_bytes("release-v2.yaml", b"- app\n"), ["release-v2.yaml", "must be a mapping"]),
    "spec-alias-bomb": (_write_bytes("release-v2.yaml", alias_bomb().encode()),
                        ["release-v2.yaml", "aliases expand"]),
    # ---- sizes ----
    "object-over-3mib": (_write_manifest(_cm("huge", {"blob": "x" * (3200 * 1024)})),
                         [M, "document 1", "more than 3 MiB, the kube-apiserver's request limit"]),
    "alias-expansion-over-3mib": (_write_manifest(_cm("a", None).replace("data: null", "") + "data:\n  a: &a '"
                                                  + "x" * (1024 * 1024) + "'\n  b: *a\n  c: *a\n  d: *a\n"),
                                  [M, "document 1", "more than 3 MiB"]),
    "release-over-8mib": (_big_files, ["big2.yaml", "manifests", "a release is at most 8 MiB"]),
    "spec-file-over-1mib": (_write_bytes("release-v2.yaml", b"# " + b"x" * (1100 * 1024) + b"\napp: a\n"),
                            ["release-v2.yaml", "a release spec is at most"]),
    "release-too-large-to-record": (_incompressible, ["too large to record"]),
    # ---- paths ----
    "manifest-directory-empty": (_both(_edit_spec(manifests=["empty"]), lambda d: (d / "empty").mkdir()),
                                 ["empty", "manifests[0]", "directory holds no .yaml"]),
    "missing-build-context": (_edit_spec(image={"context": "no-such-dir"}),
                              ["no-such-dir", "image.context", "build context directory not found"]),
    "second-manifest-path-missing": (_edit_spec(manifests=[M, "also/missing.yaml"]),
                                     ["missing.yaml", "manifests[1]", "manifest path not found"]),
    # ---- spec fields ----
    "invalid-namespace-name": (_edit_spec(namespace="Bad_NS"), ["release-v2.yaml", "namespace", "pattern"]),
    "deadline-too-small": (_edit_spec(health={"progress_deadline_seconds": 1}),
                           ["release-v2.yaml", "health.progress_deadline_seconds", "greater than or equal to 5"]),
    "health-url-not-http": (_edit_spec(health={"http": [{"url": "ftp://x/healthz"}]}),
                            ["release-v2.yaml", "health.http.0.url", "pattern"]),
    "bad-image-tag": (_edit_spec(image={"tag": "no spaces allowed"}),
                      ["release-v2.yaml", "image.tag", "not a valid image tag"]),
    "repository-with-tag": (_edit_spec(image={"repository": "127.0.0.1:5000/rollwright-test/badin:v2"}),
                            ["release-v2.yaml", "image.repository", "without tag"]),
    "no-manifests": (_edit_spec(manifests=[]), ["release-v2.yaml", "at least one file"]),
    "approval-timeout-zero": (_edit_spec(approval={"timeout_seconds": 0}),
                              ["release-v2.yaml", "approval.timeout_seconds", "greater than or equal to 1"]),
    # ---- manifest fields ----
    "wrong-api-version": (_write_manifest(GOOD_DEPLOY.replace("apiVersion: apps/v1", "apiVersion: apps/v1beta1")),
                          [M, "Deployment/badin", "apiVersion", "must use apiVersion apps/v1"]),
    "missing-name": (_write_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n"),
                     [M, "document 1", "metadata.name: required"]),
    "cluster-scoped-with-namespace": (
        _write_manifest("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, "
                        "namespace: x}\nrules: []\n"), [M, "ClusterRole/r", "metadata.namespace", "cluster-scoped"]),
    "workload-in-another-namespace": (_write_manifest(_deploy_with(metadata__namespace="default")),
                                      [M, "Deployment/badin", "metadata.namespace", "must be in the release's"]),
    "invalid-object-namespace": (_write_manifest(_cm("a", {"x": "y"}, namespace="Not_Valid")),
                                 [M, "ConfigMap/a", "metadata.namespace", "not a valid namespace name"]),
    "no-pod-template": (_write_manifest(_deploy_with(spec__template=_DELETE)),
                       [M, "Deployment/badin", "spec.template.spec", "required"]),
    "no-containers": (_write_manifest(_deploy_with(spec__template__spec__containers=[])),
                      [M, "Deployment/badin", "spec.template.spec.containers", "at least one container"]),
    "configmap-data-is-a-list": (_write_manifest(_cm("a", ["x", "y"])), [M, "ConfigMap/a", "data", "must be a mapping"]),
    "built-image-unused": (_write_manifest(_deploy_with(**{f"{_C0}__image": "busybox:1"})),
                           ["image.repository", "nothing would run the built image"]),
    # ---- cluster refusals (server-side dry run; still before any side effect) ----
    "bad-cpu-quantity": (_write_manifest(_deploy_with(**{f"{_C0}__resources": {"requests": {"cpu": "100xm"}}})),
                         [M, "Deployment/badin", "server-side dry run rejected", "quantities must match"]),
    "secret-not-base64": (_write_manifest(GOOD_DEPLOY + "---\n" + yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "not base64!!"}})),
        [M, "document 2 (Secret/s)", "server-side dry run rejected", "illegal base64"]),
    "configmap-over-1mib": (_write_manifest(GOOD_DEPLOY + "---\n" + _cm("big", {"blob": "x" * (1536 * 1024)})),
                            [M, "ConfigMap/big", "server-side dry run rejected", "Too long"]),
    "invalid-label-value": (_write_manifest(GOOD_DEPLOY + "---\n" + _cm("a", {"x": "y"}, labels={"tier": "not valid!"})),
                            [M, "ConfigMap/a", "server-side dry run rejected", "metadata.labels", "Invalid value"]),
    "service-port-out-of-range": (_write_manifest(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
        "spec": {"selector": {"app": "badin"}, "ports": [{"port": 70000}]}}) + "---\n" + GOOD_DEPLOY),
        [M, "Service/svc", "server-side dry run rejected", "spec.ports[0].port"]),
    "object-namespace-missing": (_write_manifest(GOOD_DEPLOY + "---\n" + _cm("a", {"x": "y"}, namespace="nowhere-x")),
                                 [M, "ConfigMap/a", "metadata.namespace", "'nowhere-x' does not exist"]),
    "invalid-object-in-namespace-the-release-creates": (
        _write_manifest(GOOD_DEPLOY + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: badin-newns}\n---\n"
                        + _cm("a", {"x": "y"}, namespace="badin-newns", labels={"tier": "not valid!"})),
        [M, "ConfigMap/a", "server-side dry run rejected", "Invalid value"]),
}


def _cluster_state(core: k8s.CoreV1Api, apps: k8s.AppsV1Api, ns: str) -> dict[str, Any]:
    def rv(items: Any) -> dict[str, str]:
        return {i.metadata.name: i.metadata.resource_version for i in items.items}
    return {"cm": rv(core.list_namespaced_config_map(ns)), "secrets": rv(core.list_namespaced_secret(ns)),
            "svc": rv(core.list_namespaced_service(ns)), "deploy": rv(apps.list_namespaced_deployment(ns))}


def _registry_state(registry: str) -> dict[str, Any]:
    catalog = httpx.get(f"http://{registry}/v2/_catalog?n=1000").json()["repositories"]
    tags = httpx.get(f"http://{registry}/v2/rollwright-test/{APP}/tags/list").json().get("tags") \
        if f"rollwright-test/{APP}" in catalog else None
    # Only this app's repository: other sessions push to the shared registry concurrently.
    return {"repository": f"rollwright-test/{APP}" in catalog, "tags": sorted(tags or [])}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, worker: Any, core: k8s.CoreV1Api, registry: str,
             cli_env: dict[str, str]) -> Any:
    """A namespace where revision 1 of the app is deployed: the baseline that bad input must not change."""
    ns = f"t-badinput-{tmp_path_factory.getbasetemp().name[-6:].replace('_', '')}".lower()
    ns = "".join(ch for ch in ns if ch.isalnum() or ch == "-")
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    d = tmp_path_factory.mktemp("base")
    p = write_release(d, app=APP, namespace=ns, registry=registry, version="v1",
                      objects=[configmap("badin-cfg", {"A": "1"}), deployment(APP)])
    r = cli("rollout", "start", "-f", str(p), "--wait", env=cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    yield ns
    core.delete_namespace(ns)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_clearly_with_no_side_effect(case: str, deployed: str, tmp_path: Path, registry: str,
                                                          core: k8s.CoreV1Api, apps: k8s.AppsV1Api,
                                                          cli_env: dict[str, str], worker: WorkerProcess) -> None:
    mutate, expected = CASES[case]
    spec = write_release(tmp_path, app=APP, namespace=deployed, registry=registry, version="v2",
                         objects=[configmap("badin-cfg", {"A": "2"}), configmap("badin-new", {"B": "1"}),
                                  deployment(APP, replicas=3)])
    mutate(tmp_path)
    before = _cluster_state(core, apps, deployed), _registry_state(registry), _namespaces(core)
    r = cli("rollout", "start", "-f", str(spec), "--wait", env=cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"exit {r.returncode}:\n{out}"
    for s in expected:
        assert s in out, f"{s!r} missing from:\n{out}"
    assert "Traceback" not in out
    assert (_cluster_state(core, apps, deployed), _registry_state(registry), _namespaces(core)) == before
    assert httpx.get(worker.url("/readyz"), timeout=5).status_code == 200, "the worker is still ready"


def test_corpus_size() -> None:
    assert len(CASES) >= 40


def _namespaces(core: k8s.CoreV1Api) -> set[str]:
    # Only the release's own (other tests share the cluster and create theirs concurrently).
    return {n.metadata.name for n in core.list_namespace().items if n.metadata.name.startswith(APP)}
