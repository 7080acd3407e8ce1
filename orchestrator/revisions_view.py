"""Reads revision records for the CLI: ``rollwright history`` and ``rollwright rollback``.

Called by ``orchestrator.cli``. Records are Secrets labelled by app and environment (see activities.revisions);
without ``--namespace`` every namespace is searched, since the CLI knows the app, not where it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activities.kube import Kube
from activities.revisions import L_APP, L_ENV, L_OWNER, L_REV, L_STATUS, decode, summary
from contract.models import RevisionStatus
from contract.spec import ReleaseSpec
from orchestrator.client import RolloutNotFound


def _records(app: str, env: str, namespace: str | None, kubeconfig: str | None) -> list[dict[str, Any]]:
    kube = Kube(Path(kubeconfig) if kubeconfig else None, None)
    sel = f"{L_OWNER}=rollwright,{L_APP}={app},{L_ENV}={env}"
    path = f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"
    items = kube.request("GET", path, query=[("labelSelector", sel)]).get("items", [])
    return sorted(items, key=lambda s: int(s["metadata"]["labels"][L_REV]))


def list_history(app: str, env: str, namespace: str | None, kubeconfig: str | None) -> list[dict[str, Any]]:
    return [summary(s) for s in _records(app, env, namespace, kubeconfig)]


def rollback_spec(app: str, env: str, to_revision: int | None, namespace: str | None,
                  kubeconfig: str | None) -> ReleaseSpec:
    """The spec of a rollout that redeploys a recorded revision (default: the one before the current)."""
    records = _records(app, env, namespace, kubeconfig)
    if not records:
        raise RolloutNotFound(f"revision history of {app}/{env}")
    by_rev = {int(s["metadata"]["labels"][L_REV]): s for s in records}
    if to_revision is None:
        deployed = [r for r, s in by_rev.items() if s["metadata"]["labels"][L_STATUS] == RevisionStatus.DEPLOYED]
        earlier = [r for r, s in by_rev.items() if s["metadata"]["labels"][L_STATUS] == RevisionStatus.SUPERSEDED
                   and (not deployed or r < max(deployed))]
        if not earlier:
            raise RolloutNotFound(f"a revision of {app}/{env} to roll back to (no earlier deployed revision)")
        to_revision = max(earlier)
    if to_revision not in by_rev:
        raise RolloutNotFound(f"revision {to_revision} of {app}/{env}")
    payload = decode(by_rev[to_revision]["data"]["release"])
    # A rollback goes straight to the recorded revision: no canary steps or blue-green preview on the way back.
    data = dict(payload["spec"], from_revision=to_revision, initiator="rollwright rollback", strategy={})
    return ReleaseSpec.model_validate(data)
