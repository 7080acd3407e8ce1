"""Reads image manifests from an OCI/Docker v2 registry over HTTP.

Called by ``activities.build`` (cache hit on an existing tag, digest check after a push) and by tests that
assert the registry serves the pushed digest.
"""

from __future__ import annotations

import httpx

ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def manifest_digest(client: httpx.Client, base_url: str, repo_path: str, reference: str) -> str | None:
    """The digest the registry serves for ``repo_path:reference`` (tag or digest), or None when absent."""
    r = client.head(f"{base_url}/v2/{repo_path}/manifests/{reference}", headers={"Accept": ACCEPT})
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.headers.get("Docker-Content-Digest")
