"""Revision records: one Secret per revision in the target namespace, Helm-style.

Called by ``activities.snapshot`` (creates a record), ``activities.rollback`` (reads one), ``activities.finalize``
(marks one deployed/rolled-back/failed) and the ``revisions`` CLI command via ``orchestrator.client``.
A record holds the rendered objects of the release and the pre-release snapshot of every object it touched,
gzip+JSON in a Secret, because both can contain Secret values; workflow history only ever sees ``RevisionRef``.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from activities.kube import Kube
from orchestrator.models import ObjectRef, RevisionStatus

RECORD_TYPE = "rollwright.io/release.v1"
L_OWNER, L_APP, L_ENV = "owner", "rollwright.io/app", "rollwright.io/environment"
L_REV, L_STATUS, L_RUN = "rollwright.io/revision", "rollwright.io/status", "rollwright.io/run-id"
HISTORY_MAX = 10
# A Secret holds at most 1 MiB of data. The record holds the release and the snapshot of what it replaces (about
# the same size again), so the release itself may take half, compressed.
MAX_RELEASE_RECORD_BYTES = 512 * 1024

_VOLATILE_MD = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
                "deletionTimestamp", "deletionGracePeriodSeconds")
_VOLATILE_ANN = ("deployment.kubernetes.io/revision",)


def record_name(app: str, env: str, revision: int) -> str:
    return f"rollwright.{app}.{env}.v{revision}"


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object as it should be re-applied: server-populated metadata and status removed."""
    o = json.loads(json.dumps(obj))
    o.pop("status", None)
    md = o.get("metadata", {})
    for k in _VOLATILE_MD:
        md.pop(k, None)
    ann = md.get("annotations") or {}
    for k in _VOLATILE_ANN:
        ann.pop(k, None)
    if not ann:
        md.pop("annotations", None)
    return o


def encode(payload: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(payload, separators=(",", ":")).encode())).decode()


def decode(data: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(base64.b64decode(data)))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def list_records(kube: Kube, namespace: str, app: str, env: str) -> list[dict[str, Any]]:
    """Records of one app/environment, oldest first (Secret objects, payload still encoded)."""
    sel = f"{L_OWNER}=rollwright,{L_APP}={app},{L_ENV}={env}"
    try:
        items = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets",
                             query=[("labelSelector", sel)]).get("items", [])
    except ApiException as e:
        if e.status == 404:
            return []
        raise
    return sorted(items, key=lambda s: int(s["metadata"]["labels"].get(L_REV, "0")))


def summary(secret: dict[str, Any], *, with_payload: bool = False) -> dict[str, Any]:
    """What ``rollwright history`` shows: no Secret values, only the record's metadata."""
    md = secret["metadata"]
    payload = decode(secret["data"]["release"])
    out = {"revision": int(md["labels"][L_REV]), "status": md["labels"][L_STATUS], "image": payload.get("image"),
           "created_at": payload.get("created_at"), "updated_at": payload.get("updated_at"),
           "cause": payload.get("cause"), "workflow_id": payload.get("workflow_id"),
           "run_id": payload.get("run_id"), "source_revision": payload.get("source_revision"),
           "objects": [str(ObjectRef.model_validate(r)) for r in payload.get("refs", [])]}
    if with_payload:
        out["payload"] = payload
    return out


def create_record(kube: Kube, namespace: str, app: str, env: str, revision: int, run_id: str,
                  payload: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Secret", "type": RECORD_TYPE,
            "metadata": {"name": record_name(app, env, revision), "namespace": namespace,
                         "labels": {L_OWNER: "rollwright", L_APP: app, L_ENV: env, L_REV: str(revision),
                                    L_STATUS: RevisionStatus.PENDING.value, L_RUN: run_id}},
            "data": {"release": encode(payload)}}
    return kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)


def update_record(kube: Kube, secret: dict[str, Any], status: str, **fields: Any) -> None:
    payload = decode(secret["data"]["release"])
    payload.update(fields, updated_at=now())
    md = secret["metadata"]
    patch = {"metadata": {"labels": {L_STATUS: status}}, "data": {"release": encode(payload)}}
    kube.request("PATCH", f"/api/v1/namespaces/{md['namespace']}/secrets/{md['name']}", body=patch,
                 content_type="application/merge-patch+json")
