"""Maps I/O failures to retryable or non-retryable Temporal errors, kopf-style.

Called by every activity module. The rule: what a retry can fix (429, 5xx, 409 conflicts, connection errors)
is re-raised as retryable; what it cannot (422 invalid, 400 bad request, 403 forbidden, 404 on dry run) becomes a
non-retryable ``ApplicationError`` with a type the workflow's retry policy also lists.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from orchestrator.loader import ReleaseError


def invalid_release(e: ReleaseError) -> ApplicationError:
    return ApplicationError(str(e), type="InvalidRelease", non_retryable=True)


def api_message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "{}")
        return str(body.get("message") or e.reason)
    except (ValueError, TypeError):
        return str(e.reason)


def from_api(e: ApiException, what: str) -> Exception:
    """Returns the error to raise for a failed API call on ``what`` (e.g. "apply Deployment/web")."""
    msg = f"{what}: {api_message(e)} (HTTP {e.status})"
    if e.status in (400, 404, 405, 415, 422):
        return ApplicationError(msg, type="InvalidManifest", non_retryable=True)
    if e.status in (401, 403):
        return ApplicationError(msg, type="Forbidden", non_retryable=True)
    return ApplicationError(msg, type="KubernetesApiError")  # 409, 429, 5xx: retry with backoff
