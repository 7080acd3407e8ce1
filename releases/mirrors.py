"""Where this process sends a registry's HTTP requests: ``ROLLWRIGHT_REGISTRY_MIRRORS`` and plain-HTTP rules.

Called by ``releases.bundle.Registry`` (bundle push and fetch), ``activities.clients.Clients.registry_url``
(manifest digests, the reachability check) and ``orchestrator.config`` (validation at start).

Names never change: an image or bundle keeps the registry it was pushed under (``127.0.0.1:5000/app@sha256:…``),
and that name with its digest is the identity recorded in workflow history and pinned in manifests. A mirror only
says where to fetch it from, as containerd's ``hosts.toml`` does for a node. Content is verified by digest
wherever it comes from, so a mirror cannot substitute anything. The local stack needs this for a worker in a pod:
there ``127.0.0.1:5000`` is the pod itself, and the registry is at the node IP
(``ROLLWRIGHT_REGISTRY_MIRRORS=127.0.0.1:5000=10.244.0.1:5000``), while the nodes' containerd and the Docker
engine (on the host) keep using the name itself.
"""

from __future__ import annotations

import os
import re

ENV = "ROLLWRIGHT_REGISTRY_MIRRORS"
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def parse(value: str | None) -> dict[str, str]:
    """``name=endpoint[,name=endpoint…]`` → {name: endpoint}; an endpoint is ``host[:port]`` or ``http(s)://host[:port]``.

    Raises:
        ValueError: naming the entry and what is wrong with it.
    """
    out: dict[str, str] = {}
    for entry in (value or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, endpoint = entry.partition("=")
        name, endpoint = name.strip(), endpoint.strip()
        scheme, _, bare = endpoint.rpartition("://")
        if not sep or not _HOST_PORT.match(name) or not _HOST_PORT.match(bare) or scheme not in ("", "http", "https"):
            raise ValueError(f"entry {entry!r} must be <registry host[:port]>=<[http(s)://]host[:port]>")
        if name in out:
            raise ValueError(f"registry {name!r} is mapped twice")
        out[name] = endpoint
    return out


def insecure_registries() -> set[str]:
    return {r.strip() for r in os.environ.get("ROLLWRIGHT_INSECURE_REGISTRIES", "").split(",") if r.strip()}


def _plain(registry: str, insecure: set[str]) -> bool:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return host in LOOPBACK or registry in insecure


def registry_url(registry: str, insecure: set[str] | None = None) -> str:
    """The base URL for ``registry``'s API: its mirror if one is configured, else the registry itself. Plain HTTP
    for loopback names and ``ROLLWRIGHT_INSECURE_REGISTRIES`` (a mirror without a scheme inherits the name's)."""
    insecure = insecure_registries() if insecure is None else insecure
    endpoint = parse(os.environ.get(ENV)).get(registry, registry)
    if "://" in endpoint:
        return endpoint.rstrip("/")
    plain = _plain(registry, insecure) or endpoint in insecure
    return f"{'http' if plain else 'https'}://{endpoint}"
