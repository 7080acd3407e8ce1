"""Where a release's objects come from: the manifest files of the spec, or a recorded revision.

Called by ``activities.prepare``, ``activities.snapshot`` and ``activities.apply``; each re-reads the source and
checks the digest computed at validation, so what was validated is what gets applied.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.errors import invalid_release
from activities.kube import Kube
from activities.revisions import decode, list_records
from orchestrator.loader import ReleaseError, load_manifests, manifests_digest, render
from orchestrator.spec import ReleaseSpec


def release_objects(spec: ReleaseSpec, kube: Kube, image: str | None,
                    where: dict[tuple[str, str], str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Rendered objects (image pinned to ``image`` when given) and the digest of their source. ``where``, when
    given, is filled with (kind, name) → ``<file> document <n> (<Kind>/<name>)`` so errors can name the source."""
    if spec.from_revision is not None:
        payload = recorded_payload(spec, kube, spec.from_revision)
        objs = payload["objects"]
        return objs, "sha256:" + hashlib.sha256(json.dumps(objs, sort_keys=True).encode()).hexdigest()
    try:
        ms = load_manifests(spec)
    except ReleaseError as e:
        raise invalid_release(e) from None
    if where is not None:
        where.update({(m.kind, m.name): f"{m.source} {m.where}" for m in ms})
    return render(ms, spec, image), manifests_digest(ms)


def recorded_payload(spec: ReleaseSpec, kube: Kube, revision: int) -> dict[str, Any]:
    for rec in list_records(kube, spec.namespace, spec.app, spec.environment):
        if int(rec["metadata"]["labels"]["rollwright.io/revision"]) == revision:
            return decode(rec["data"]["release"])
    raise ApplicationError(f"revision {revision} of {spec.app}/{spec.environment} not found in namespace "
                           f"{spec.namespace} (see: rollwright history)", type="RevisionNotFound", non_retryable=True)


def check_digest(expected: str, actual: str) -> None:
    if expected != actual:
        raise ApplicationError("the manifests changed on disk since the release was validated; start a new rollout",
                               type="InvalidRelease", non_retryable=True)
