"""Activities that change the cluster: snapshot, apply, rollback, finalize.

Called by ``RolloutWorkflow``. Each is idempotent, so a retry after a worker crash converges instead of repeating:
the snapshot is keyed by the workflow run (a retry finds the record it already made, and never re-snapshots the
new state as "previous"), apply is server-side apply, rollback re-applies a fixed snapshot and deletes by name.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import fieldsets
from activities import revisions as rec
from activities.cancellation import heartbeat, sync_activity
from activities.clients import Clients
from activities.errors import from_api
from activities.keepalive import keepalive
from activities.kube import Kube, ref_of
from activities.objects import check_digest, recorded_payload, release_objects
from contract import FIELD_MANAGER
from contract.kinds import KINDS, WORKLOAD_KINDS
from contract.models import (
    ApplyInput,
    FinalizeInput,
    ObjectRef,
    PruneInput,
    PruneResult,
    RevisionRef,
    RevisionStatus,
    RollbackInput,
    RollbackResult,
    SnapshotInput,
)

log = activity.logger

# On a live object: keep it even when a later release no longer contains it (kubectl/Helm use similar opt-outs).
PRUNE_ANNOTATION = "rollwright.io/prune"


class ReleaseActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    @sync_activity("snapshot_release")
    @keepalive
    def snapshot_release(self, inp: SnapshotInput) -> RevisionRef:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        try:
            records = rec.list_records(kube, spec.namespace, spec.app, spec.environment)
            for r in records:
                if r["metadata"]["labels"].get(rec.L_RUN) == inp.run_id:
                    log.info("snapshot already recorded by this run, reusing %s", r["metadata"]["name"])
                    return _ref(r)
            objects, digest = release_objects(spec, kube, inp.image)
            check_digest(inp.plan.manifests_digest, digest)
            if spec.from_revision is not None and inp.image is None:
                inp_image = recorded_payload(spec, kube, spec.from_revision).get("image")
            else:
                inp_image = inp.image
            ns_objs = [o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == spec.namespace]
            if ns_objs and not kube.namespace_exists(spec.namespace):
                kube.apply(ns_objs[0])  # the record lives in the namespace: create it first
            previous: list[dict[str, Any]] = []
            for o in objects:
                live = kube.get(ref_of(o))
                previous.append(_snapshot_entry(ref_of(o), live))
            deployed = [r for r in records if r["metadata"]["labels"][rec.L_STATUS] == RevisionStatus.DEPLOYED]
            # Prune inventory: what the deployed revision had and this one drops. Their live state joins the
            # snapshot, so a rollback restores them if they were pruned.
            prune: list[dict[str, Any]] = []
            if deployed:
                keep = {_key(ref_of(o)) for o in objects}
                for r in rec.decode(deployed[-1]["data"]["release"]).get("refs", []):
                    ref = ObjectRef.model_validate(r)
                    if _key(ref) in keep or ref.kind == "Namespace" or ref.kind not in KINDS:
                        continue  # a Namespace holds the records (and everything else): never pruned
                    live = kube.get(ref)
                    if live is not None:
                        previous.append(_snapshot_entry(ref, live))
                        prune.append(ref.model_dump())
            prev_rev = int(deployed[-1]["metadata"]["labels"][rec.L_REV]) if deployed else None
            number = (int(records[-1]["metadata"]["labels"][rec.L_REV]) if records else 0) + 1
            payload = {"revision": number, "app": spec.app, "environment": spec.environment,
                       "image": inp_image, "workflow_id": inp.workflow_id, "run_id": inp.run_id,
                       "created_at": rec.now(), "previous_revision": prev_rev, "source_revision": spec.from_revision,
                       "spec": spec.model_dump(mode="json"), "refs": [ref_of(o).model_dump() for o in objects],
                       "objects": objects, "previous": previous, "prune": prune}
            created = rec.create_record(kube, spec.namespace, spec.app, spec.environment, number, inp.run_id, payload)
            log.info("recorded revision %d of %s/%s (%d objects, %d new)", number, spec.app, spec.environment,
                     len(objects), sum(p["object"] is None for p in previous))
            return _ref(created, payload)
        except ApiException as e:
            raise from_api(e, "snapshot") from None

    @sync_activity("apply_release")
    @keepalive
    def apply_release(self, inp: ApplyInput) -> list[str]:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        payload = _payload(kube, inp.revision)
        done = []
        objects = payload["objects"]  # already in dependency order (see contract.kinds)
        # Canary / blue-green (issue 11): the stepped workload is held back, then applied alone at the promotion.
        skip = {(r.kind, r.name) for r in inp.exclude}
        only = None if inp.only is None else {(r.kind, r.name) for r in inp.only}
        objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) not in skip
                   and (only is None or (o["kind"], o["metadata"]["name"]) in only)]
        for o in objects:
            heartbeat(str(ref_of(o)))
            try:
                kube.apply(o, dry_run=inp.dry_run)
            except ApiException as e:
                raise from_api(e, f"apply {ref_of(o)}") from None
            done.append(str(ref_of(o)))
        log.info("applied %d objects of revision %d", len(done), inp.revision.revision)
        return done

    @sync_activity("rollback_release")
    @keepalive
    def rollback_release(self, inp: RollbackInput) -> RollbackResult:
        kube = self.c.kube(inp.spec.kube_context)
        payload = _payload(kube, inp.revision)
        out = RollbackResult()
        # Reverse dependency order: workloads go back before the config they read disappears.
        for entry in sorted(payload["previous"], key=lambda p: -KINDS[p["ref"]["kind"]].order):
            ref = ObjectRef.model_validate(entry["ref"])
            heartbeat(str(ref))
            try:
                if entry["object"] is None:
                    if ref.kind == "Namespace":
                        continue  # holds the revision records; never deleted by a rollback
                    if kube.delete(ref):
                        out.deleted.append(str(ref))
                else:
                    body = _restore_body(kube, ref, entry)
                    if body is None:
                        continue
                    kube.apply(body)
                    out.restored.append(str(ref))
                    if ref.kind in WORKLOAD_KINDS:
                        out.workloads.append(ref)
            except ApiException as e:
                raise from_api(e, f"rollback {ref}") from None
        log.info("rolled back revision %d: restored %d, deleted %d", inp.revision.revision, len(out.restored),
                 len(out.deleted))
        return out

    @sync_activity("finalize_revision")
    @keepalive
    def finalize_revision(self, inp: FinalizeInput) -> None:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        try:
            records = rec.list_records(kube, spec.namespace, spec.app, spec.environment)
            mine = [r for r in records if r["metadata"]["name"] == inp.revision.name]
            if not mine:
                return
            rec.update_record(kube, mine[0], RevisionStatus(inp.status).value, cause=inp.cause)
            if inp.status == RevisionStatus.DEPLOYED:
                for r in records:
                    if r is not mine[0] and r["metadata"]["labels"][rec.L_STATUS] == RevisionStatus.DEPLOYED:
                        rec.update_record(kube, r, RevisionStatus.SUPERSEDED.value)
            for r in records[: max(0, len(records) - rec.HISTORY_MAX)]:
                try:
                    kube.request("DELETE", f"/api/v1/namespaces/{spec.namespace}/secrets/{r['metadata']['name']}")
                except ApiException as e:
                    if e.status != 404:  # already gone (a retry, or another run pruned it): that is the goal
                        raise
        except ApiException as e:
            if e.status == 404:
                raise ApplicationError(f"finalize: {e.reason} (HTTP 404)", type="KubernetesApiError") from None
            raise from_api(e, "finalize") from None

    @sync_activity("prune_release")
    @keepalive
    def prune_release(self, inp: PruneInput) -> PruneResult:
        """Deletes the objects the previous deployed revision had and this one dropped (the inventory is the
        revision record), unless annotated ``rollwright.io/prune: "false"`` or no longer Rollwright's.
        Idempotent: an object already gone counts as pruned."""
        kube = self.c.kube(inp.spec.kube_context)
        payload = _payload(kube, inp.revision)
        out = PruneResult()
        for r in payload.get("prune", []):
            ref = ObjectRef.model_validate(r)
            heartbeat(str(ref))
            try:
                live = kube.get(ref)
                if live is None:
                    out.pruned.append(str(ref))
                    continue
                md = live.get("metadata") or {}
                if (md.get("annotations") or {}).get(PRUNE_ANNOTATION) == "false":
                    out.kept.append(str(ref))
                    continue
                if (md.get("labels") or {}).get("rollwright.io/app") != inp.spec.app:
                    out.kept.append(str(ref))  # someone else's object now: not ours to delete
                    continue
                kube.delete(ref)
                out.pruned.append(str(ref))
            except ApiException as e:
                raise from_api(e, f"prune {ref}") from None
        log.info("pruned %d objects (%d kept by annotation or owner)", len(out.pruned), len(out.kept))
        return out


def _key(ref: ObjectRef) -> tuple[str, str | None, str]:
    return ref.kind, ref.namespace, ref.name


def _snapshot_entry(ref: ObjectRef, live: dict[str, Any] | None) -> dict[str, Any]:
    if live is None:
        return {"ref": ref.model_dump(), "object": None}
    # "owned": the fields Rollwright applied before this release; the rollback restores only those (and the ones
    # this release took), never fields other managers own.
    return {"ref": ref.model_dump(), "object": rec.clean(live), "owned": fieldsets.owned_by(live, FIELD_MANAGER)}


def _restore_body(kube: Kube, ref: ObjectRef, entry: dict[str, Any]) -> dict[str, Any] | None:
    """What the rollback applies for an object that existed before: the snapshot, restricted to the fields
    Rollwright owned then or owns now. Records made before field sets were recorded restore the whole object."""
    if "owned" not in entry:
        return dict(entry["object"])
    current = kube.get(ref)
    if current is None:
        return dict(entry["object"])  # deleted since (pruned, or by someone): recreate it as it was
    fs = fieldsets.union(entry["owned"], fieldsets.owned_by(current, FIELD_MANAGER))
    if ref.kind == "Secret":
        fs = fieldsets.write_only_as_stored(fs)
    if not fs:
        return None  # Rollwright never set anything on it: nothing to restore
    return fieldsets.restrict(entry["object"], fs)


def _payload(kube: Kube, ref: RevisionRef) -> dict[str, Any]:
    try:
        secret = kube.request("GET", f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}")
    except ApiException as e:
        raise from_api(e, f"read revision record {ref.name}") from None
    return rec.decode(secret["data"]["release"])


def _ref(secret: dict[str, Any], payload: dict[str, Any] | None = None) -> RevisionRef:
    payload = payload or rec.decode(secret["data"]["release"])
    md = secret["metadata"]
    return RevisionRef(namespace=md["namespace"], name=md["name"], revision=int(md["labels"][rec.L_REV]),
                       previous_revision=payload.get("previous_revision"),
                       created=[ObjectRef.model_validate(p["ref"]) for p in payload["previous"] if p["object"] is None],
                       prune_count=len(payload.get("prune", [])))
