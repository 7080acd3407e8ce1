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

from tests.helpers import cli, configmap, deployment, write_release

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
    return {"catalog": sorted(catalog), "tags": sorted(tags or [])}


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
                                                          cli_env: dict[str, str]) -> None:
    mutate, expected = CASES[case]
    spec = write_release(tmp_path, app=APP, namespace=deployed, registry=registry, version="v2",
                         objects=[configmap("badin-cfg", {"A": "2"}), configmap("badin-new", {"B": "1"}),
                                  deployment(APP, replicas=3)])
    mutate(tmp_path)
    before = _cluster_state(core, apps, deployed), _registry_state(registry)
    r = cli("rollout", "start", "-f", str(spec), "--wait", env=cli_env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"exit {r.returncode}:\n{out}"
    for s in expected:
        assert s in out, f"{s!r} missing from:\n{out}"
    assert "Traceback" not in out
    assert (_cluster_state(core, apps, deployed), _registry_state(registry)) == before
