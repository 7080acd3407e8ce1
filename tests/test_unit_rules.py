"""Unit tests of pure logic: kubectl's readiness predicate, fail-fast rules, image pinning, config errors.

No servers: these functions take plain dicts, so table tests cover cases a live cluster rarely shows
(StatefulSet partitions, DaemonSets, stale conditions from the previous generation).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.readiness_rules import Tracker, pod_failure, workload_failure, workload_status
from orchestrator.config import ConfigError, load_settings
from orchestrator.loader import Manifest, image_repository, load_manifests, parse_spec, render
from orchestrator.models import ObjectRef


def dep(gen: int = 2, observed: int = 2, replicas: int = 3, updated: int = 3, total: int = 3, available: int = 3,
        conditions: list[dict[str, str]] | None = None) -> dict:
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": gen, "uid": "d1",
                                               "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "readyReplicas": available, "conditions": conditions or []}}


@pytest.mark.parametrize("kw,ready,msg", [
    ({}, True, "successfully rolled out"),
    ({"observed": 1}, False, "observe the new generation"),
    ({"updated": 1}, False, "1 of 3 updated"),
    ({"total": 4}, False, "old replicas pending termination"),
    ({"available": 2}, False, "2 of 3 updated replicas available"),
])
def test_deployment_predicate_matches_kubectl(kw: dict, ready: bool, msg: str) -> None:
    ws = workload_status(dep(**kw))
    assert ws.ready_now is ready and msg in ws.message


def test_statefulset_and_daemonset_predicates() -> None:
    sts = {"kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
           "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
           "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                      "updateRevision": "r2", "currentRevision": "r1"}}
    assert not workload_status(sts).ready_now
    sts["status"]["currentRevision"] = "r2"
    assert workload_status(sts).ready_now
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    sts["status"].update(currentRevision="r1", updatedReplicas=1)
    assert workload_status(sts).ready_now  # partition met: 1 of (2-1) updated
    # A template reverted to the current revision (StatefulSet canary rollback, issue 11): revisions are equal at
    # once, but a pod still runs the other revision until the controller replaces it.
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    sts["status"].update(updateRevision="r1", currentRevision="r1", updatedReplicas=1)
    assert not workload_status(sts).ready_now
    sts["status"]["updatedReplicas"] = 2
    assert workload_status(sts).ready_now
    ds = {"kind": "DaemonSet", "metadata": {"name": "agent", "generation": 3},
          "status": {"observedGeneration": 3, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
                     "numberAvailable": 2, "numberReady": 2}}
    assert not workload_status(ds).ready_now
    ds["status"]["numberAvailable"] = 3
    assert workload_status(ds).ready_now


def test_progress_deadline_only_counts_for_the_observed_generation() -> None:
    cond = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]
    assert "ProgressDeadlineExceeded" in (workload_failure(dep(available=0, conditions=cond)) or "")
    # A condition left over from the previous (failed) rollout must not fail the new one.
    assert workload_failure(dep(gen=3, observed=2, conditions=cond)) is None


def _pod(name: str, owner: str, waiting: str | None) -> dict:
    st = {"containerStatuses": [{"name": "web", "restartCount": 4,
                                 "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}]}
    return {"kind": "Pod", "metadata": {"name": name, "ownerReferences": [{"uid": owner}]}, "status": st}


def test_crashloop_of_new_replicaset_fails_but_old_replicaset_pods_do_not() -> None:
    t = Tracker(targets=[ObjectRef(api_version="apps/v1", kind="Deployment", name="web")])
    t.observe("Deployment", "ADDED", dep(available=0))
    for rs, rev in (("rs-old", "1"), ("rs-new", "2")):
        t.observe("ReplicaSet", "ADDED", {"kind": "ReplicaSet", "metadata": {
            "name": rs, "uid": rs, "ownerReferences": [{"uid": "d1"}],
            "annotations": {"deployment.kubernetes.io/revision": rev}}})
    t.observe("Pod", "ADDED", _pod("web-old-1", "rs-old", "CrashLoopBackOff"))
    assert t.evaluate()[2] is None  # the old revision's pods are not ours to judge
    t.observe("Pod", "ADDED", _pod("web-new-1", "rs-new", "ImagePullBackOff"))
    statuses, done, failure = t.evaluate()
    assert not done and failure and failure.startswith("pod web-new-1 ImagePullBackOff")
    assert pod_failure(_pod("p", "x", "ContainerCreating")) is None


def test_image_repository_parsing_and_pinning(tmp_path: Path) -> None:
    assert image_repository("127.0.0.1:5000/a/b:tag") == "127.0.0.1:5000/a/b"
    assert image_repository("127.0.0.1:5000/a/b@sha256:ab") == "127.0.0.1:5000/a/b"
    assert image_repository("127.0.0.1:5000/a/b") == "127.0.0.1:5000/a/b"
    (tmp_path / "m.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  selector: {matchLabels: {a: b}}\n"
        "  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n"
        "      - {name: a, image: '127.0.0.1:5000/shop:old'}\n      - {name: b, image: 'other/sidecar:1'}\n")
    spec = parse_spec({"app": "shop", "environment": "prod", "namespace": "shop", "manifests": ["m.yaml"],
                       "base_dir": str(tmp_path), "image": {"context": ".", "repository": "127.0.0.1:5000/shop"}})
    out = render(load_manifests(spec), spec, "127.0.0.1:5000/shop@sha256:00")
    cs = out[0]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in cs] == ["127.0.0.1:5000/shop@sha256:00", "other/sidecar:1"]
    assert out[0]["metadata"]["namespace"] == "shop"
    assert out[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rollwright"


def test_render_orders_by_dependency() -> None:
    from orchestrator.kinds import KINDS
    from orchestrator.spec import ReleaseSpec

    spec = ReleaseSpec(app="a", environment="e", namespace="n", manifests=["x"])
    objs = [{"apiVersion": v, "kind": k, "metadata": {"name": k.lower()}} for k, v in
            (("Deployment", "apps/v1"), ("Service", "v1"), ("ConfigMap", "v1"), ("Namespace", "v1"))]
    ms = [Manifest(source="x", index=i, obj=o, info=KINDS[o["kind"]]) for i, o in enumerate(objs)]
    assert [o["kind"] for o in render(ms, spec, None)] == ["Namespace", "ConfigMap", "Service", "Deployment"]


@pytest.mark.parametrize("env,needle", [
    ({"ROLLWRIGHT_HTTP_PORT": "abc"}, "ROLLWRIGHT_HTTP_PORT"),
    ({"ROLLWRIGHT_TEMPORAL_ADDRESS": "nohostport"}, "ROLLWRIGHT_TEMPORAL_ADDRESS"),
    ({"ROLLWRIGHT_LOG_LEVEL": "loud"}, "ROLLWRIGHT_LOG_LEVEL"),
    ({"ROLLWRIGHT_CORE_LOG_LEVEL": "chatty"}, "ROLLWRIGHT_CORE_LOG_LEVEL"),
    ({"ROLLWRIGHT_TEMPORAL_TLS_CERT": "/nope.pem"}, "ROLLWRIGHT_TEMPORAL_TLS_CERT"),
])
def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict, needle: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert needle in str(e.value)
