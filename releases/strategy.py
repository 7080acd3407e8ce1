"""Checks a release's ``strategy`` against its manifests, before any side effect (issue 11).

Called by ``releases.loader.load_manifests`` (so the CLI, the Python client and the worker's validation step all
refuse the same releases with the same message). The spec alone cannot know which workload a canary targets or
whether the blue-green Services exist: that needs the objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contract.spec import ReleaseSpec
from contract.strategy import StrategyKind

if TYPE_CHECKING:
    from releases.loader import Manifest

# Pod label that tells the canary's / preview's pods from the stable ones (the Services select both tracks
# through the release's own labels; this label is what a blue-green activeService adds to pin one side).
TRACK_LABEL = "rollwright.io/track"
CANARY_KINDS = ("Deployment", "StatefulSet")


def target(spec: ReleaseSpec, objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The workload a canary or blue-green release changes step by step (None for rolling)."""
    kind = spec.strategy.kind
    if kind == StrategyKind.ROLLING:
        return None
    allowed = CANARY_KINDS if kind == StrategyKind.CANARY else ("Deployment",)
    name = spec.strategy.workload
    workloads = [o for o in objects if o.get("kind") in ("Deployment", "StatefulSet", "DaemonSet")]
    if name is not None:
        workloads = [o for o in workloads if o["metadata"]["name"] == name]
    if len(workloads) != 1:
        found = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in workloads) or "none"
        raise ValueError(f"{'strategy.' + kind.value}: needs exactly one workload"
                         f"{f' named {name!r}' if name else ''} ({'/'.join(allowed)}); found: {found}"
                         + ("" if name else "; name it with strategy." + kind.value + ".workload"))
    w = workloads[0]
    if w["kind"] not in allowed:
        raise ValueError(f"strategy.{kind.value}: {w['kind']}/{w['metadata']['name']} cannot be rolled out with "
                         f"{kind.value}; supported kinds: {', '.join(allowed)}")
    return w


def check(spec: ReleaseSpec, manifests: list[Manifest]) -> None:
    """Raises ReleaseError naming the file/document/field when the strategy does not fit the manifests."""
    from releases.loader import ReleaseError

    kind = spec.strategy.kind
    if kind == StrategyKind.ROLLING:
        return
    try:
        w = target(spec, [m.obj for m in manifests])
    except ValueError as e:
        raise ReleaseError("release spec", str(e), field=f"strategy.{kind.value}") from None
    assert w is not None
    m = next(m for m in manifests if m.obj is w)
    wspec = w.get("spec") or {}
    labels = ((wspec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if TRACK_LABEL in labels or TRACK_LABEL in ((wspec.get("selector") or {}).get("matchLabels") or {}):
        raise ReleaseError(m.source, f"label {TRACK_LABEL} is set by Rollwright for {kind.value} rollouts",
                           document=m.where, field="spec.template.metadata.labels")
    if w["kind"] == "StatefulSet":
        upd = wspec.get("updateStrategy") or {}
        if upd.get("type", "RollingUpdate") != "RollingUpdate":
            raise ReleaseError(m.source, "a StatefulSet canary needs updateStrategy.type RollingUpdate",
                               document=m.where, field="spec.updateStrategy.type")
        if (upd.get("rollingUpdate") or {}).get("partition") is not None:
            raise ReleaseError(m.source, "the canary steps set the partition; remove it from the manifest",
                               document=m.where, field="spec.updateStrategy.rollingUpdate.partition")
    if kind == StrategyKind.BLUE_GREEN:
        bg = spec.strategy.blue_green
        assert bg is not None
        services = {mm.obj["metadata"]["name"]: mm for mm in manifests if mm.obj.get("kind") == "Service"}
        pod_labels = {str(k): str(v) for k, v in labels.items()}
        for field, name in (("activeService", bg.active_service), ("previewService", bg.preview_service)):
            svc = services.get(name)
            if svc is None:
                raise ReleaseError("release spec", f"Service {name!r} is not in the release's manifests "
                                   f"(Services: {', '.join(sorted(services)) or 'none'})",
                                   field=f"strategy.blueGreen.{field}")
            sel = (svc.obj.get("spec") or {}).get("selector") or {}
            if not sel or any(pod_labels.get(k) != str(v) for k, v in sel.items()):
                raise ReleaseError(svc.source, f"the selector must match the pods of {w['kind']}/"
                                   f"{w['metadata']['name']} (strategy.blueGreen.{field})",
                                   document=svc.where, field="spec.selector")
