"""Reads image manifests from an OCI/Docker v2 registry over HTTP, with the credentials Docker itself would use.

Called by ``activities.build`` (cache hit on an existing tag, digest check after a push) and by tests that
assert the registry serves the pushed digest. Credentials come from the Docker config (``$DOCKER_CONFIG`` or
``~/.docker/config.json``: ``auths`` entries and credential helpers), the same place the Docker SDK reads them
for the push, so a private registry needs no second configuration. Basic and Bearer-token challenges are
answered; a 401/403 with (or without) credentials is a clear, non-retryable ``RegistryAuthFailed``.
"""

from __future__ import annotations

import re

import httpx
from temporalio.exceptions import ApplicationError

# One reading of the Docker config for the CLI's bundle push and the worker's image checks.
from releases.bundle import docker_credentials

ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _auth_denied(registry: str, status: int, creds: tuple[str, str] | None) -> ApplicationError:
    why = (f"refused the credentials of user {creds[0]!r} from the Docker config" if creds else
           "requires credentials and the Docker config has none for it (docker login " + registry + ")")
    return ApplicationError(f"registry {registry} {why} (HTTP {status})", type="RegistryAuthFailed",
                            non_retryable=True)


def manifest_digest(client: httpx.Client, base_url: str, repo_path: str, reference: str,
                    registry: str | None = None) -> str | None:
    """The digest the registry serves for ``repo_path:reference`` (tag or digest), or None when absent."""
    registry = registry or base_url.split("://", 1)[-1]
    url = f"{base_url}/v2/{repo_path}/manifests/{reference}"
    headers = {"Accept": ACCEPT}
    r = client.head(url, headers=headers)
    creds = None
    if r.status_code == 401:
        creds = docker_credentials(registry)
        if creds is None:
            raise _auth_denied(registry, 401, None)
        scheme, params = _challenge(r.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer" and params.get("realm"):
            q = {k: v for k, v in (("service", params.get("service")),
                                   ("scope", params.get("scope") or f"repository:{repo_path}:pull")) if v}
            t = client.get(params["realm"], params=q, auth=creds)
            if t.status_code in (401, 403):
                raise _auth_denied(registry, t.status_code, creds)
            t.raise_for_status()
            body = t.json()
            headers["Authorization"] = f"Bearer {body.get('token') or body.get('access_token')}"
            r = client.head(url, headers=headers)
        else:
            r = client.head(url, headers=headers, auth=creds)
    if r.status_code in (401, 403):
        raise _auth_denied(registry, r.status_code, creds)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.headers.get("Docker-Content-Digest")
