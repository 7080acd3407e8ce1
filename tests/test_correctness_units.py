"""Pure-logic tests for issue 10's fixes: YAML limits, field-set restriction, stale conditions, error classes,
workflow IDs and Docker-config credentials. No servers; the behaviour on the real stack is in
test_correctness_findings.py."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from activities.errors import from_api, is_invalid_input
from activities.fieldsets import owned_by, restrict, union, write_only_as_stored
from activities.readiness_rules import workload_failure
from activities.registry import docker_credentials
from orchestrator import legacy_workflow_id, parse_workflow_id, workflow_id, yamlsafe
from orchestrator.cli import result_exit
from orchestrator.models import Outcome, RolloutResult, Step
from tests.bomb import alias_bomb


def test_finding1_alias_bomb_is_refused_before_expansion() -> None:
    t0 = time.monotonic()
    with pytest.raises(yamlsafe.YamlLimitError) as e:
        yamlsafe.load_all(alias_bomb())
    assert time.monotonic() - t0 < 5  # generous: the point is "not minutes"; measured ~0.01 s
    assert e.value.document == 1 and "expand" in e.value.reason


@pytest.mark.parametrize("text,reason", [
    ("a: &a [1]\n" + "".join(f"b{i}: *a\n" for i in range(101)), "more than 100 YAML aliases"),
    ("a: &a [1, *a]\n", "recursive YAML alias"),
    ("a: " + "[" * 250 + "]" * 250 + "\n", "nested deeper"),
    ("a: &a '" + "x" * (1024 * 1024) + "'\nb: [*a, *a, *a]\n", "more than 3 MiB"),
])
def test_finding1_yaml_limits(text: str, reason: str) -> None:
    with pytest.raises(yamlsafe.YamlLimitError) as e:
        yamlsafe.load_all(text)
    assert reason in str(e.value)


def test_finding1_ordinary_aliases_still_load() -> None:
    docs = yamlsafe.load_all("base: &b {cpu: 100m}\nweb: {resources: *b}\n---\n---\nx: 1\n")
    assert docs == [{"base": {"cpu": "100m"}, "web": {"resources": {"cpu": "100m"}}}, None, {"x": 1}]


def test_finding2_http500_conversion_errors_are_invalid_input() -> None:
    body = json.dumps({"message": 'failed to create typed patch object (x/Deployment/web): .spec.template.spec.'
                                  'containers[name="web"].resources.requests.cpu: quantities must match the regular '
                                  'expression'})
    e = ApiException(status=500, reason="Internal Server Error")
    e.body = body
    assert is_invalid_input(e)
    err = from_api(e, "apply Deployment/web")
    assert err.type == "InvalidManifest" and err.non_retryable  # type: ignore[attr-defined]
    other = ApiException(status=500, reason="Internal Server Error")
    other.body = json.dumps({"message": "etcdserver: request timed out"})
    assert not is_invalid_input(other)
    assert getattr(from_api(other, "apply"), "non_retryable", False) is False


def _cond_deploy(updated: str) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": 3},
            "status": {"observedGeneration": 3, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "lastUpdateTime": updated, "message": "ReplicaSet web-2 has timed out progressing."}]}}


def test_finding3_stale_progress_deadline_is_ignored() -> None:
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    now = time.time()
    assert workload_failure(_cond_deploy(before), since=now) is None
    assert workload_failure(_cond_deploy(before)) is not None  # without a start time: judged as before
    fresh = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 1))
    assert "ProgressDeadlineExceeded" in (workload_failure(_cond_deploy(fresh), since=now) or "")


def test_finding3_rollback_restores_only_owned_fields() -> None:
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "team": "x"},
                         "managedFields": [
                             {"manager": "rollwright", "operation": "Apply", "fieldsV1": {
                                 "f:metadata": {"f:labels": {"f:app": {}}},
                                 "f:spec": {"f:template": {"f:spec": {"f:containers": {
                                     'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                             {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
                              "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "v1", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "s1"}]}}}}
    fs = owned_by(live, "rollwright")
    body = restrict(live, fs)
    assert body == {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "v1"}]}}}}
    assert "f:replicas" not in json.dumps(fs)
    more = union(fs, {"f:spec": {"f:replicas": {}}})
    assert restrict(live, more)["spec"]["replicas"] == 2


def test_finding3_secret_string_data_ownership_restores_data() -> None:
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop", "managedFields": [
        {"manager": "rollwright", "operation": "Apply", "fieldsV1": {"f:stringData": {"f:password": {}}}}]},
            "data": {"password": "djE=", "other": "eA=="}, "type": "Opaque"}
    body = restrict(live, write_only_as_stored(owned_by(live, "rollwright")))
    assert body == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
                    "data": {"password": "djE="}}


def test_finding4_workflow_ids_are_unambiguous() -> None:
    assert workflow_id("a-b", "c") != workflow_id("a", "b-c")
    assert legacy_workflow_id("a-b", "c") == legacy_workflow_id("a", "b-c")  # why it changed
    assert parse_workflow_id(workflow_id("a-b", "c-d")) == ("a-b", "c-d")
    assert parse_workflow_id("rollout-a-b") is None


def test_finding10_credentials_come_from_the_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"reg.example:5000": {"auth": base64.b64encode(b"ci:pw").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert docker_credentials("reg.example:5000") == ("ci", "pw")
    assert docker_credentials("other.example") is None


def test_exit_code_2_only_for_invalid_input() -> None:
    def res(err: str | None) -> RolloutResult:
        return RolloutResult(app="a", environment="e", outcome=Outcome.FAILED, failed_step=Step.VALIDATE,
                             error_type=err)
    assert result_exit(res("InvalidRelease")) == 2 and result_exit(res("InvalidManifest")) == 2
    assert result_exit(res(None)) == 2  # results of older workers carry no type
    assert result_exit(res("KubernetesApiError")) == 4
