"""``set_traffic``: the cluster changes of canary and blue-green steps (issue 11). Called by
``workflows.progressive`` through ``RolloutWorkflow``; registered by ``orchestrator.worker``.

Without a mesh the weight is a share of pods, as in Argo's basic canary:
- a Deployment ``web`` gets a second Deployment ``web-canary`` built from the release's new ``web`` (same labels,
  so the release's Services select both, plus ``rollwright.io/track: canary``); canary replicas = ceil(w% x total),
  the stable Deployment keeps the rest. Abort: the canary goes to 0 pods at once (the stable still serves), then
  it is deleted and the normal rollback runs;
- a StatefulSet steps ``updateStrategy.rollingUpdate.partition`` (pods with an ordinal >= partition run the new
  template);
- blue-green pins ``activeService`` to the stable ReplicaSet (``pod-template-hash`` added to its selector, as
  Argo does), runs ``web-preview`` (``rollwright.io/track: preview``) next to the stable pods, and adds the track
  label to ``previewService``'s selector; the switch replaces the hash with the track label in ``activeService``,
  the switch back puts the hash back — selector changes, effective as soon as kube-proxy has them, no pod is
  restarted.

Every change is a server-side apply, so a retry converges. Field manager: ``rollwright`` for the whole objects it
creates (the canary and preview Deployments), ``rollwright-traffic`` for the single fields it steers on the
release's own objects (replicas, partition, one selector key). A separate manager is needed because an apply
by ``rollwright`` that names only ``spec.replicas`` would drop every other field ``rollwright`` applied; the
rollback (``activities.release``) re-applies the snapshot as ``rollwright`` with force and takes them back.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cancellation import sync_activity
from activities.clients import Clients
from activities.errors import from_api
from activities.kube import Kube
from activities.release import _payload
from contract import FIELD_MANAGER
from contract.models import ObjectRef
from contract.traffic import TrafficAction, TrafficInput, TrafficResult
from releases.strategy import TRACK_LABEL

TRAFFIC_MANAGER = "rollwright-traffic"
log = activity.logger


def canary_replicas(weight: int, total: int) -> int:
    """Argo's basic canary: ceil(weight% x total), never more than total (10 replicas: 10% → 1, 41% → 5)."""
    return min(total, math.ceil(weight * total / 100))


def partition_for(weight: int, total: int) -> int:
    """StatefulSet: pods with ordinal >= partition are updated, so ceil(w% x total) pods run the new template."""
    return total - canary_replicas(weight, total)


def _track(obj: dict[str, Any], suffix: str, track: str, replicas: int) -> dict[str, Any]:
    """The release's Deployment renamed ``<name>-<suffix>`` with the track label on selector and pods."""
    o = copy.deepcopy(obj)
    md = o["metadata"]
    base = md["name"]
    md["name"] = f"{base}-{suffix}"
    md.setdefault("labels", {})[TRACK_LABEL] = track
    md.setdefault("annotations", {})["rollwright.io/track-of"] = base
    spec = o["spec"]
    spec["replicas"] = replicas
    spec.setdefault("selector", {}).setdefault("matchLabels", {})[TRACK_LABEL] = track
    spec["template"].setdefault("metadata", {}).setdefault("labels", {})[TRACK_LABEL] = track
    return o


def _steer(kube: Kube, ref: ObjectRef, spec: dict[str, Any]) -> None:
    kube.apply({"apiVersion": ref.api_version, "kind": ref.kind,
                "metadata": {"name": ref.name, "namespace": ref.namespace}, "spec": spec}, manager=TRAFFIC_MANAGER)


def _rs_hash(kube: Kube, ns: str, name: str) -> str:
    """pod-template-hash of the Deployment's current ReplicaSet ("" if not created yet)."""
    dep = kube.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    rev = (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    sel = ",".join(f"{k}={v}" for k, v in (dep["spec"]["selector"].get("matchLabels") or {}).items())
    rss = kube.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets", query=[("labelSelector", sel)])
    for rs in rss.get("items", []):
        owners = rs["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == dep["metadata"]["uid"] for o in owners) and \
                (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == rev:
            return str((rs["metadata"].get("labels") or {}).get("pod-template-hash", ""))
    return ""


class TrafficActivities:
    def __init__(self, clients: Clients) -> None:
        self.c = clients

    @sync_activity("set_traffic")
    def set_traffic(self, inp: TrafficInput) -> TrafficResult:
        kube = self.c.kube(inp.spec.kube_context)
        try:
            return self._run(kube, inp)
        except ApiException as e:
            raise from_api(e, f"{inp.action.value} {inp.workload}") from None

    def _run(self, kube: Kube, inp: TrafficInput) -> TrafficResult:
        w, ns, a = inp.workload, inp.spec.namespace, inp.action
        new = next((o for o in _payload(kube, inp.revision)["objects"]
                    if o["kind"] == w.kind and o["metadata"]["name"] == w.name), None)
        if new is None:
            raise ApplicationError(f"{w} is not in revision {inp.revision.revision}", type="InvalidRelease",
                                   non_retryable=True)
        live = kube.get(w)
        total = int(new["spec"].get("replicas", (live or {}).get("spec", {}).get("replicas", 1)))
        pod_labels = {str(k): str(v) for k, v in
                      ((new["spec"]["template"].get("metadata") or {}).get("labels") or {}).items()}
        out = TrafficResult(live=live is not None, total=total)
        canary = w.model_copy(update={"name": f"{w.name}-canary"})
        preview = w.model_copy(update={"name": f"{w.name}-preview"})

        if a == TrafficAction.PREPARE:
            if live is not None and w.kind == "StatefulSet":
                # Before the apply changes the template: no pod may pick it up until a setWeight says so.
                _steer(kube, w, {"updateStrategy": {"type": "RollingUpdate",
                                                    "rollingUpdate": {"partition": total}}})
                out.partition = total
            out.message = "target is live" if live is not None else "first rollout of the target: rolling"
        elif a == TrafficAction.CANARY_WEIGHT:
            c = canary_replicas(inp.weight, total)
            out.canary_replicas, out.stable_replicas = c, total - c
            if w.kind == "StatefulSet":
                out.partition = total - c
                _steer(kube, w, {"updateStrategy": {"type": "RollingUpdate",
                                                    "rollingUpdate": {"partition": total - c}}})
                out.wait_for = [w]
            else:
                # Canary first when growing, stable first when shrinking the canary: capacity never dips.
                body = _track(new, "canary", "canary", c)
                current = (kube.get(canary) or {}).get("spec", {}).get("replicas", 0)
                steps = [lambda: kube.apply(body, manager=FIELD_MANAGER),
                         lambda: _steer(kube, w, {"replicas": total - c})]
                for step in (steps if c >= current else steps[::-1]):
                    step()
                out.wait_for = [canary, w]
            out.message = f"weight {inp.weight}%: {out.canary_replicas} canary, {out.stable_replicas} stable pods"
        elif a == TrafficAction.CANARY_ABORT:
            if w.kind == "Deployment":
                if kube.get(canary) is not None:
                    # Fast path first: 0 canary pods now (their endpoints go at once), then the stable's count.
                    kube.apply(_track(new, "canary", "canary", 0), manager=FIELD_MANAGER)
                if live is not None:
                    _steer(kube, w, {"replicas": total})
                kube.delete(canary)
                out.message = "canary scaled to 0 and deleted; stable back to all replicas"
            else:
                out.message = "StatefulSet: the rollback re-applies the previous template to the updated pods"
        elif a == TrafficAction.CANARY_PROMOTED:
            if w.kind == "Deployment":
                kube.delete(canary)
                out.message = "canary deleted"
            elif live is not None:
                _steer(kube, w, {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}})
                out.partition = 0
                out.wait_for = [w]
                out.message = "partition 0: every pod runs the new template"
            out.canary_replicas = total
        elif a == TrafficAction.PARTITION_RESET:
            if live is not None and w.kind == "StatefulSet":
                _steer(kube, w, {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}})
            out.partition, out.message = 0, "partition 0"
        elif a == TrafficAction.PREVIEW:
            # activeService selects the release's labels, which the preview pods carry too: pin it to the stable
            # ReplicaSet's pod-template-hash first (as Argo does), then start the preview.
            out.stable_hash = _rs_hash(kube, ns, w.name)
            if not out.stable_hash:
                raise ApplicationError(f"no current ReplicaSet of {w} yet", type="TrafficNotReady")
            self._select(kube, inp, "active_service", {"pod-template-hash": out.stable_hash})
            kube.apply(_track(new, "preview", "preview", total), manager=FIELD_MANAGER)
            self._select(kube, inp, "preview_service", {TRACK_LABEL: "preview"})
            out.wait_for = [preview]
            out.canary_replicas, out.stable_replicas = total, (live or {}).get("spec", {}).get("replicas", 0)
            out.message = f"preview {preview.name} with {total} pods behind previewService"
        elif a == TrafficAction.SWITCH_ACTIVE:
            self._select(kube, inp, "active_service", {TRACK_LABEL: "preview"})
            out.message = "activeService selects the preview pods"
        elif a == TrafficAction.SWITCH_BACK:
            self._select(kube, inp, "active_service", {"pod-template-hash": inp.stable_hash})
            out.message = f"activeService selects the stable pods (pod-template-hash {inp.stable_hash}) again"
        elif a == TrafficAction.BG_CLEANUP:
            self._select(kube, inp, "active_service", {})
            self._select(kube, inp, "preview_service", {})
            kube.delete(preview)
            out.message = "Services back to the release's selectors; preview deleted"
        elif a == TrafficAction.INFO:
            base = {k: v for k, v in pod_labels.items() if k != TRACK_LABEL}
            if w.kind == "StatefulSet":
                st = (live or {}).get("status") or {}
                out.canary_hash, out.stable_hash = st.get("updateRevision", ""), st.get("currentRevision", "")
                out.canary_labels = {**base, "controller-revision-hash": out.canary_hash}
                out.stable_labels = {**base, "controller-revision-hash": out.stable_hash}
            else:
                track = canary if kube.get(canary) is not None else preview
                out.canary_hash = _rs_hash(kube, ns, track.name) if kube.get(track) is not None else ""
                out.stable_hash = _rs_hash(kube, ns, w.name) if live is not None else ""
                out.canary_labels = {**base, TRACK_LABEL: "canary" if track is canary else "preview"}
                out.stable_labels = {**base, "pod-template-hash": out.stable_hash}
        log.info("%s %s: %s", a.value, w, out.message)
        return out

    def _select(self, kube: Kube, inp: TrafficInput, which: str, keys: dict[str, str]) -> None:
        """The Service's selector = the release's selector + ``keys``. The extra keys are owned by
        rollwright-traffic alone: an apply without a key removes it from the selector."""
        bg = inp.spec.strategy.blue_green
        assert bg is not None
        ref = ObjectRef(api_version="v1", kind="Service", name=getattr(bg, which), namespace=inp.spec.namespace)
        _steer(kube, ref, {"selector": keys} if keys else {})
