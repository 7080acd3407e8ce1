"""Loads and validates a release: the spec file and the manifests it points to. Reads files, never the network.

Called by the CLI and the Python client before a rollout starts (so bad input is refused with no side effect),
and by ``activities.prepare`` / ``activities.apply`` in the worker, which re-read the manifests from the same
paths: the workflow history then carries paths and digests, never manifest content (and so no Secret values).

Every error names the file, the document, the field and the reason, e.g.::

    release.yaml: manifests → app.yaml document 2 (Deployment/web): spec.template.spec.containers[0].image:
    required
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contract.kinds import KINDS, WORKLOAD_KINDS, KindInfo
from contract.spec import ReleaseSpec
from releases import analysis_checks, strategy, yamlsafe

_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


_NOT_OBJECTS = {"kustomization.yaml", "kustomization.yml", "Kustomization"}


class ReleaseError(Exception):
    """Invalid release input. ``str()`` is the full one-line message for the operator."""

    def __init__(self, file: str, reason: str, *, document: str | None = None, field: str | None = None):
        self.file, self.document, self.field, self.reason = file, document, field, reason
        where = file + (f" {document}" if document else "") + (f": {field}" if field else "")
        super().__init__(f"{where}: {reason}")


@dataclass
class Manifest:
    """One YAML document: where it came from and what it says."""

    source: str  # path as given (relative to the spec's base_dir when possible)
    index: int  # 1-based document number within the file
    obj: dict[str, Any]
    info: KindInfo = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def where(self) -> str:
        md = self.obj.get("metadata") or {}
        name = md.get("name") if isinstance(md, dict) else None
        what = f" ({self.obj.get('kind')}/{name})" if name else ""
        return f"document {self.index}{what}"

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


# ---- spec -----------------------------------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str], **overrides: Any) -> ReleaseSpec:
    """Reads a release spec from YAML or JSON; relative paths in it resolve against the file's directory."""
    p = Path(path)
    if not p.is_file():
        raise ReleaseError(str(p), "file not found")
    if p.stat().st_size > yamlsafe.MAX_SPEC_BYTES:
        raise ReleaseError(str(p), f"file is {p.stat().st_size} bytes; a release spec is at most "
                           f"{yamlsafe.MAX_SPEC_BYTES} bytes")
    try:
        data = yamlsafe.load_one(_read_text(p))
    except yamlsafe.YamlLimitError as e:
        raise ReleaseError(str(p), str(e)) from None
    except yaml.YAMLError as e:
        raise ReleaseError(str(p), f"not valid YAML/JSON: {_yaml_reason(e)}") from None
    if not isinstance(data, dict):
        raise ReleaseError(str(p), f"must be a mapping of fields, got {type(data).__name__}")
    data.setdefault("base_dir", str(p.resolve().parent))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_spec(data, source=str(p))


def parse_spec(data: Any, *, source: str = "release spec") -> ReleaseSpec:
    """Validates a spec given as data (e.g. the JSON from ``temporal workflow start --input``)."""
    try:
        spec = ReleaseSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or None
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ReleaseError(source, f"{err['msg']}{more}", field=loc) from None
    check_analysis(spec, source=source)
    return spec


def check_analysis(spec: ReleaseSpec, *, source: str = "release spec") -> None:
    """Analysis templates: conditions parsed (never eval'd), JSONPaths, query args and template references
    resolved. Called by ``parse_spec`` (CLI, client) and ``prepare_release`` (a workflow started with plain
    ``temporal workflow start`` is checked too, before any side effect)."""
    bad = analysis_checks.problems(spec)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ReleaseError(source, f"{bad[0][1]}{more}", field=bad[0][0])


# ---- manifests ------------------------------------------------------------------------------------------------


def base_dir(spec: ReleaseSpec) -> Path:
    return Path(spec.base_dir)


def manifest_files(spec: ReleaseSpec) -> list[Path]:
    """Expands the spec's manifest entries (files or directories) into a sorted, de-duplicated file list."""
    files: list[Path] = []
    for i, entry in enumerate(spec.manifests):
        p = Path(entry) if os.path.isabs(entry) else base_dir(spec) / entry
        if p.is_dir():
            # kustomization.yaml describes a build, it is not an object: skip it when expanding a directory.
            found = sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml", ".json") and x.is_file()
                           and x.name not in _NOT_OBJECTS)
            if not found:
                raise ReleaseError(str(p), "directory holds no .yaml/.yml/.json files", field=f"manifests[{i}]")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ReleaseError(str(p), "manifest path not found", field=f"manifests[{i}]")
    seen: set[Path] = set()
    return [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]  # type: ignore[func-returns-value]


def load_manifests(spec: ReleaseSpec) -> list[Manifest]:
    """Parses every document of every manifest file and validates it; see ``validate_manifest``."""
    out: list[Manifest] = []
    total = 0
    for f in manifest_files(spec):
        # Sizes are checked from the file system before reading, so a huge file costs nothing.
        size = f.stat().st_size
        total += size
        if size > yamlsafe.MAX_FILE_BYTES:
            raise ReleaseError(str(f), f"file is {size} bytes; a manifest file is at most "
                               f"{yamlsafe.MAX_FILE_BYTES // (1024 * 1024)} MiB", field="manifests")
        if total > yamlsafe.MAX_RELEASE_BYTES:
            raise ReleaseError(str(f), f"the release's manifest files total {total} bytes with this file; a release "
                               f"is at most {yamlsafe.MAX_RELEASE_BYTES // (1024 * 1024)} MiB", field="manifests")
        try:
            docs = yamlsafe.load_all(_read_text(f))
        except yamlsafe.YamlLimitError as e:
            raise ReleaseError(str(f), str(e), document=f"document {e.document}") from None
        except yaml.YAMLError as e:
            raise ReleaseError(str(f), f"not valid YAML: {_yaml_reason(e)}") from None
        for i, doc in enumerate(docs, start=1):
            if doc is None:  # an empty document between '---' separators
                continue
            m = Manifest(source=str(f), index=i, obj=doc)
            validate_manifest(m, spec)
            size = len(json.dumps(doc, separators=(",", ":"), default=str))
            if size > yamlsafe.MAX_DOCUMENT_BYTES:
                raise ReleaseError(m.source, f"object is {size} bytes as JSON; the kube-apiserver accepts at most "
                                   f"{yamlsafe.MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB per request",
                                   document=m.where)
            out.append(m)
    if not out:
        raise ReleaseError(", ".join(spec.manifests), "the release is empty: no Kubernetes objects found",
                           field="manifests")
    _check_duplicates(out)
    strategy.check(spec, out)
    return out


def validate_manifest(m: Manifest, spec: ReleaseSpec) -> None:
    """Structural checks a server-side dry run would report less clearly (or only after other side effects)."""
    o = m.obj
    if not isinstance(o, dict):
        raise ReleaseError(m.source, f"a document must be a mapping, got {type(o).__name__}", document=f"document {m.index}")
    for key in ("apiVersion", "kind"):
        if not isinstance(o.get(key), str) or not o.get(key):
            raise ReleaseError(m.source, "required", document=m.where, field=key)
    info = KINDS.get(o["kind"])
    if info is None:
        raise ReleaseError(m.source, f"unknown kind {o['kind']!r}; supported: {', '.join(sorted(KINDS))}",
                           document=m.where, field="kind")
    if o["apiVersion"] not in info.api_versions:
        raise ReleaseError(m.source, f"{o['kind']} must use apiVersion {' or '.join(info.api_versions)}",
                           document=m.where, field="apiVersion")
    md = o.get("metadata")
    if not isinstance(md, dict) or not isinstance(md.get("name"), str) or not md["name"]:
        raise ReleaseError(m.source, "required", document=m.where, field="metadata.name")
    ns = md.get("namespace")
    if ns is not None and (not info.namespaced or not isinstance(ns, str) or not _DNS.match(ns)):
        reason = f"{o['kind']} is cluster-scoped" if not info.namespaced else "not a valid namespace name"
        raise ReleaseError(m.source, reason, document=m.where, field="metadata.namespace")
    if o["kind"] in WORKLOAD_KINDS:
        if ns is not None and ns != spec.namespace:
            # The readiness wait watches spec.namespace only: a workload elsewhere would never be judged (or a
            # same-named one in spec.namespace would be judged instead).
            raise ReleaseError(m.source, f"workloads must be in the release's namespace {spec.namespace!r} "
                               f"(spec field namespace), got {ns!r}", document=m.where, field="metadata.namespace")
        _validate_workload(m)
    if o["kind"] in ("ConfigMap", "Secret"):
        for k in ("data", "stringData", "binaryData"):
            if k in o and not isinstance(o[k], dict):
                raise ReleaseError(m.source, "must be a mapping", document=m.where, field=k)
    m.info = info


def _validate_workload(m: Manifest) -> None:
    spec = m.obj.get("spec")
    if not isinstance(spec, dict):
        raise ReleaseError(m.source, "required", document=m.where, field="spec")
    if "replicas" in spec and (not isinstance(spec["replicas"], int) or isinstance(spec["replicas"], bool)):
        raise ReleaseError(m.source, f"must be an integer, got {type(spec['replicas']).__name__}",
                           document=m.where, field="spec.replicas")
    tpl = spec.get("template")
    pod = tpl.get("spec") if isinstance(tpl, dict) else None
    if not isinstance(pod, dict):
        raise ReleaseError(m.source, "required", document=m.where, field="spec.template.spec")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ReleaseError(m.source, "at least one container is required", document=m.where,
                           field="spec.template.spec.containers")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("image"), str) or not c["image"]:
            raise ReleaseError(m.source, "required", document=m.where,
                               field=f"spec.template.spec.containers[{i}].image")


def _check_duplicates(ms: list[Manifest]) -> None:
    seen: dict[tuple[str, str], Manifest] = {}
    for m in ms:
        key = (m.kind, m.name)
        if key in seen:
            first = seen[key]
            raise ReleaseError(m.source, f"duplicate object, first defined in {first.source} {first.where}",
                               document=m.where, field="metadata.name")
        seen[key] = m


def manifests_digest(ms: Iterable[Manifest]) -> str:
    """Content digest of the loaded manifests (canonical JSON), used to detect edits during a rollout."""
    h = hashlib.sha256()
    for m in ms:
        h.update(json.dumps(m.obj, sort_keys=True, separators=(",", ":"), default=str).encode())
    return "sha256:" + h.hexdigest()


# ---- rendering ------------------------------------------------------------------------------------------------


def image_repository(image: str) -> str:
    """``reg:5000/a/b:tag`` or ``reg:5000/a/b@sha256:…`` → ``reg:5000/a/b``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        ref = ref[: len(ref) - len(last[-1]) + last[-1].index(":")]
    return ref


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj.get("kind") in WORKLOAD_KINDS:
        return [obj["spec"]["template"]["spec"]]
    return []


def count_pinned(objects: Iterable[dict[str, Any]], image: str) -> int:
    """How many containers of rendered objects run ``image`` (i.e. were pinned to it by ``render``)."""
    n = 0
    for o in objects:
        for pod in _pod_specs(o):
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                n += c.get("image") == image
    return n


def render(ms: Iterable[Manifest], spec: ReleaseSpec, image: str | None) -> list[dict[str, Any]]:
    """Returns the objects to apply: namespace filled in, ownership labels added, and every container whose
    image repository is the spec's repository pinned to ``image`` (``repo@sha256:…``, or ``repo:tag`` for the
    dry run that precedes the build)."""
    out = []
    repo = spec.image.repository if spec.image else None
    for m in ms:
        o = json.loads(json.dumps(m.obj))  # deep copy; the loaded documents stay as the user wrote them
        md = o["metadata"]
        if m.info.namespaced:
            md.setdefault("namespace", spec.namespace)
        labels = md.setdefault("labels", {}) or {}
        md["labels"] = labels
        labels.update({"app.kubernetes.io/managed-by": "rollwright", "rollwright.io/app": spec.app,
                       "rollwright.io/environment": spec.environment})
        if repo and image:
            for pod in _pod_specs(o):
                for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                    if image_repository(c["image"]) == repo:
                        c["image"] = image
        out.append(o)
    return sorted(out, key=lambda o: KINDS[o["kind"]].order)


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ReleaseError(str(p), f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ReleaseError(str(p), f"cannot be read: {e.strerror}") from None


def _yaml_reason(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)
