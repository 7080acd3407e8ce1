"""``prepare_release``: everything that can be checked before a side effect, in one activity.

Called by ``RolloutWorkflow`` as its first step (and reused by the CLI's ``--dry-run``). It loads and validates the
manifests, fixes the image tag from the source, checks the registry answers, and runs a server-side dry run of
the whole set (with the tag in place of the digest, which is not known yet). Bad input fails here, non-retryably,
before anything is built, pushed or applied.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from activities import revisions as rec
from activities.bundles import local_spec
from activities.cancellation import heartbeat, sync_activity
from activities.clients import Clients
from activities.errors import api_message, from_api, invalid_release, is_invalid_input
from activities.keepalive import keepalive
from activities.kube import Kube, ref_of
from activities.objects import release_objects
from activities.source import source_tag
from contract.kinds import WORKLOAD_KINDS
from contract.models import PrepareInput, ReleasePlan
from releases.loader import ReleaseError, check_analysis, count_pinned


class PrepareActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    @sync_activity("prepare_release")
    @keepalive
    def prepare_release(self, inp: PrepareInput) -> ReleasePlan:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        building = spec.image is not None and spec.from_revision is None
        tag = image = None
        pinned = 0
        try:
            local_spec(spec)  # a path-only input is refused here, before anything reads a file
            check_analysis(spec, source="workflow input")
            if building:
                assert spec.image is not None
                _check_engine()
                tag = source_tag(spec)
                image = f"{spec.image.repository}:{tag}"
            where: dict[tuple[str, str], str] = {}
            objects, digest = release_objects(spec, kube, image, where)
            if building:
                assert spec.image is not None and image is not None
                pinned = count_pinned(objects, image)
                if pinned == 0:
                    raise ReleaseError(", ".join(spec.manifests), f"no container uses image repository "
                                       f"{spec.image.repository}; nothing would run the built image",
                                       field="image.repository")
                self._check_registry(spec.image.registry)
        except ReleaseError as e:
            raise invalid_release(e) from None
        # One lookup per namespace, not per object.
        new_namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
        used = {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}
        exists = {ns: kube.namespace_exists(ns) for ns in used | new_namespaces}
        for o in objects:
            ns = o["metadata"].get("namespace")
            if ns and not exists[ns] and ns not in new_namespaces:
                raise ApplicationError(f"{_source(where, o)}metadata.namespace: namespace {ns!r} does not exist and "
                                       f"the release does not create it", type="InvalidRelease", non_retryable=True)
        size = len(rec.encode({"objects": objects}))
        if size > rec.MAX_RELEASE_RECORD_BYTES:
            raise ApplicationError(f"the release is too large to record: its objects take {size} bytes compressed, "
                                   f"the limit is {rec.MAX_RELEASE_RECORD_BYTES} (the revision record is one Secret "
                                   f"holding the release and the snapshot; see README, Limits)",
                                   type="InvalidRelease", non_retryable=True)
        scratch = False
        for o in objects:
            ns = o["metadata"].get("namespace")
            body = o
            if ns and not exists[ns]:
                # Its namespace is created by this release and does not exist yet, so the server cannot dry-run
                # the object there. Dry-run it in Rollwright's own empty namespace instead: same admission,
                # defaulting and validation, and nothing of the release exists before the apply.
                if not scratch:
                    _ensure_scratch_namespace(kube)
                    scratch = True
                body = {**o, "metadata": {**o["metadata"], "namespace": DRY_RUN_NAMESPACE}}
            heartbeat(str(ref_of(o)))
            try:
                kube.apply(body, dry_run=True)
            except ApiException as e:
                if e.status in (403, 404, 409) or is_invalid_input(e):
                    raise ApplicationError(f"{_source(where, o)}server-side dry run rejected {ref_of(o)}: "
                                           f"{api_message(e).replace(DRY_RUN_NAMESPACE, ns or '')} (HTTP {e.status})",
                                           type="InvalidManifest", non_retryable=True) from None
                raise from_api(e, f"dry run {ref_of(o)}") from None
        refs = [ref_of(o) for o in objects]
        return ReleasePlan(objects=refs, workloads=[r for r in refs if r.kind in WORKLOAD_KINDS],
                           manifests_digest=digest, image_tag=tag, pinned_containers=pinned)

    def _check_registry(self, registry: str) -> None:
        url = self.c.registry_url(registry) + "/v2/"
        try:
            with self.c.http(timeout=5) as h:
                r = h.get(url)
        except httpx.HTTPError as e:
            raise ReleaseError("image.repository", f"registry {registry} is unreachable: {e}",
                               field="image.repository") from None
        if r.status_code not in (200, 401):
            raise ReleaseError("image.repository", f"{url} answered HTTP {r.status_code}; not a registry",
                               field="image.repository")


DRY_RUN_NAMESPACE = "rollwright-dry-run"


def _check_engine() -> None:
    """A worker deployed without a Docker engine (``ROLLWRIGHT_DOCKER_ENGINE=none``: the prod overlay's and the
    chart's default) refuses a release that builds, before anything happens, instead of failing at the build."""
    if os.environ.get("ROLLWRIGHT_DOCKER_ENGINE", "").lower() == "none":
        raise ReleaseError("image", "this worker has no Docker engine (ROLLWRIGHT_DOCKER_ENGINE=none), so it cannot "
                           "build the release's image: deploy manifests only (no `image:`, images pinned in the "
                           "manifests), or run the build on a worker with an engine (DOCKER_HOST; README \"Builds "
                           "from a worker in a pod\")", field="image")


def _source(where: dict[tuple[str, str], str], o: dict[str, Any]) -> str:
    """``manifests.yaml document 2 (Deployment/web): `` for an object of the release, '' if unknown (a revision)."""
    w = where.get((o["kind"], o["metadata"]["name"]))
    return f"{w}: " if w else ""


def _ensure_scratch_namespace(kube: Kube) -> None:
    """Creates Rollwright's dry-run namespace once per cluster (idempotent). Nothing is ever stored in it: every
    request made there is ``dryRun=All``."""
    if kube.namespace_exists(DRY_RUN_NAMESPACE):
        return
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": DRY_RUN_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "rollwright"},
                         "annotations": {"rollwright.io/purpose": "server-side dry runs of objects whose namespace "
                                                                  "a release creates; always empty"}}}
    try:
        kube.apply(body)
    except ApiException as e:
        raise from_api(e, f"create namespace {DRY_RUN_NAMESPACE} for dry runs") from None
