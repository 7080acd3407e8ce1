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


# The apiserver answers some invalid input with HTTP 500 rather than 400/422: server-side apply converts the
# request to a typed object first, and a value that cannot convert (a quantity "100xm", non-base64 Secret data)
# fails there as an "internal" error. These messages are about the input, so a retry can never fix them.
_INVALID_500 = ("failed to create typed patch object", "quantities must match the regular expression",
                "illegal base64 data", "unable to decode", "cannot unmarshal", "error decoding")


def is_invalid_input(e: ApiException) -> bool:
    """True when the apiserver refused the request's content (a retry cannot help)."""
    if e.status in (400, 415, 422):
        return True
    return e.status == 500 and any(m in api_message(e) for m in _INVALID_500)


def from_api(e: ApiException, what: str) -> Exception:
    """Returns the error to raise for a failed API call on ``what`` (e.g. "apply Deployment/web")."""
    msg = f"{what}: {api_message(e)} (HTTP {e.status})"
    if e.status in (404, 405) or is_invalid_input(e):
        return ApplicationError(msg, type="InvalidManifest", non_retryable=True)
    if e.status in (401, 403):
        return ApplicationError(msg, type="Forbidden", non_retryable=True)
    return ApplicationError(msg, type="KubernetesApiError")  # 409, 429, 5xx: retry with backoff
