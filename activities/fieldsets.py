"""Server-side apply field sets (``metadata.managedFields[].fieldsV1``): which fields a manager owns, and the part
of an object made of exactly those fields. Pure; no I/O.

Called by ``activities.release``: the snapshot records which fields Rollwright owned in each live object, and the
rollback re-applies the snapshot restricted to those fields (plus the ones the failed release took), so it never
takes ownership of fields another manager owns, e.g. ``spec.replicas`` of a Deployment scaled by an HPA.
"""

from __future__ import annotations

import json
from typing import Any

FieldSet = dict[str, Any]


def owned_by(obj: dict[str, Any], manager: str) -> FieldSet:
    """The union of the field sets ``manager`` owns through server-side apply in ``obj`` (empty if none)."""
    out: FieldSet = {}
    for mf in (obj.get("metadata") or {}).get("managedFields") or []:
        if mf.get("manager") == manager and mf.get("operation") == "Apply" and not mf.get("subresource"):
            out = union(out, mf.get("fieldsV1") or {})
    return out


def union(a: FieldSet, b: FieldSet) -> FieldSet:
    out = dict(a)
    for k, v in b.items():
        out[k] = union(out[k], v) if k in out else v
    return out


def write_only_as_stored(fs: FieldSet) -> FieldSet:
    """A Secret's ``stringData`` is write-only: the apiserver stores it in ``data``, so a live object (and the
    snapshot) never has it. Owning ``stringData.x`` means owning the value stored at ``data.x``."""
    if "f:stringData" not in fs:
        return fs
    out = {k: v for k, v in fs.items() if k != "f:stringData"}
    return union(out, {"f:data": fs["f:stringData"]})


def _matches(item: Any, key: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in key.items())


def select(value: Any, fs: FieldSet) -> Any:
    """``value`` reduced to the fields in ``fs``. A leaf (empty set) keeps the whole value."""
    members = {k: v for k, v in fs.items() if k != "."}
    if not members:
        return value
    if isinstance(value, dict):
        out = {}
        for k, sub in members.items():
            if k.startswith("f:") and k[2:] in value:
                out[k[2:]] = select(value[k[2:]], sub)
        return out
    if isinstance(value, list):
        keyed = [(json.loads(k[2:]), sub) for k, sub in members.items() if k.startswith("k:")]
        values = [json.loads(k[2:]) for k in members if k.startswith("v:")]
        indexes = {int(k[2:]): sub for k, sub in members.items() if k.startswith("i:")}
        items = []
        for i, item in enumerate(value):  # the object's order, not the field set's
            hit = next(((key, sub) for key, sub in keyed if _matches(item, key)), None)
            if hit is not None:
                kept = select(item, hit[1])
                items.append({**hit[0], **kept} if isinstance(kept, dict) else kept)
            elif item in values:
                items.append(item)
            elif i in indexes:
                items.append(select(item, indexes[i]))
        return items
    return value


def restrict(obj: dict[str, Any], fs: FieldSet) -> dict[str, Any]:
    """An apply body: ``obj`` restricted to ``fs``, always with its identity (apiVersion, kind, name, namespace)."""
    out = select(obj, fs) if fs else {}
    md = obj.get("metadata") or {}
    out_md = dict(out.get("metadata") or {})
    out_md["name"] = md.get("name")
    if md.get("namespace"):
        out_md["namespace"] = md["namespace"]
    out.update(apiVersion=obj["apiVersion"], kind=obj["kind"], metadata=out_md)
    return out
