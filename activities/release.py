"""Activities that change the cluster: snapshot, apply, rollback, finalize.

Called by ``RolloutWorkflow``. Each is idempotent, so a retry after a worker crash converges instead of repeating:
the snapshot is keyed by the workflow run (a retry finds the record it already made, and never re-snapshots the
new state as "previous"), apply is server-side apply, rollback re-applies a fixed snapshot and deletes by name.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from temporalio import activity

from activities import revisions as rec
from activities.clients import Clients
from activities.errors import from_api
from activities.kube import Kube, ref_of
from activities.objects import check_digest, recorded_payload, release_objects
from orchestrator.kinds import KINDS, WORKLOAD_KINDS
from orchestrator.models import (
    ApplyInput,
    FinalizeInput,
    ObjectRef,
    RevisionRef,
    RollbackInput,
    RollbackResult,
    SnapshotInput,
)

log = activity.logger


class ReleaseActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    @activity.defn(name="snapshot_release")
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
                previous.append({"ref": ref_of(o).model_dump(), "object": rec.clean(live) if live else None})
            deployed = [r for r in records if r["metadata"]["labels"][rec.L_STATUS] == "deployed"]
            prev_rev = int(deployed[-1]["metadata"]["labels"][rec.L_REV]) if deployed else None
            number = (int(records[-1]["metadata"]["labels"][rec.L_REV]) if records else 0) + 1
            payload = {"revision": number, "app": spec.app, "environment": spec.environment,
                       "image": inp_image, "workflow_id": inp.workflow_id, "run_id": inp.run_id,
                       "created_at": rec.now(), "previous_revision": prev_rev, "source_revision": spec.from_revision,
                       "spec": spec.model_dump(mode="json"), "refs": [ref_of(o).model_dump() for o in objects],
                       "objects": objects, "previous": previous}
            created = rec.create_record(kube, spec.namespace, spec.app, spec.environment, number, inp.run_id, payload)
            log.info("recorded revision %d of %s/%s (%d objects, %d new)", number, spec.app, spec.environment,
                     len(objects), sum(p["object"] is None for p in previous))
            return _ref(created, payload)
        except ApiException as e:
            raise from_api(e, "snapshot") from None

    @activity.defn(name="apply_release")
    def apply_release(self, inp: ApplyInput) -> list[str]:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        payload = _payload(kube, inp.revision)
        done = []
        for o in payload["objects"]:  # already in dependency order (see orchestrator.kinds)
            activity.heartbeat(str(ref_of(o)))
            try:
                kube.apply(o, dry_run=inp.dry_run)
            except ApiException as e:
                raise from_api(e, f"apply {ref_of(o)}") from None
            done.append(str(ref_of(o)))
        log.info("applied %d objects of revision %d", len(done), inp.revision.revision)
        return done

    @activity.defn(name="rollback_release")
    def rollback_release(self, inp: RollbackInput) -> RollbackResult:
        kube = self.c.kube(inp.spec.kube_context)
        payload = _payload(kube, inp.revision)
        out = RollbackResult()
        # Reverse dependency order: workloads go back before the config they read disappears.
        for entry in sorted(payload["previous"], key=lambda p: -KINDS[p["ref"]["kind"]].order):
            ref = ObjectRef.model_validate(entry["ref"])
            activity.heartbeat(str(ref))
            try:
                if entry["object"] is None:
                    if ref.kind == "Namespace":
                        continue  # holds the revision records; never deleted by a rollback
                    if kube.delete(ref):
                        out.deleted.append(str(ref))
                else:
                    kube.apply(entry["object"])
                    out.restored.append(str(ref))
                    if ref.kind in WORKLOAD_KINDS:
                        out.workloads.append(ref)
            except ApiException as e:
                raise from_api(e, f"rollback {ref}") from None
        log.info("rolled back revision %d: restored %d, deleted %d", inp.revision.revision, len(out.restored),
                 len(out.deleted))
        return out

    @activity.defn(name="finalize_revision")
    def finalize_revision(self, inp: FinalizeInput) -> None:
        spec = inp.spec
        kube = self.c.kube(spec.kube_context)
        try:
            records = rec.list_records(kube, spec.namespace, spec.app, spec.environment)
            mine = [r for r in records if r["metadata"]["name"] == inp.revision.name]
            if not mine:
                return
            rec.update_record(kube, mine[0], inp.status, cause=inp.cause)
            if inp.status == "deployed":
                for r in records:
                    if r is not mine[0] and r["metadata"]["labels"][rec.L_STATUS] == "deployed":
                        rec.update_record(kube, r, "superseded")
            for r in records[: max(0, len(records) - rec.HISTORY_MAX)]:
                kube.request("DELETE", f"/api/v1/namespaces/{spec.namespace}/secrets/{r['metadata']['name']}")
        except ApiException as e:
            raise from_api(e, "finalize") from None


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
                       created=[ObjectRef.model_validate(p["ref"]) for p in payload["previous"] if p["object"] is None])
