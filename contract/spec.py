"""The release spec: what an operator asks Rollwright to roll out.

Loaded from YAML/JSON by ``releases.loader`` (CLI, Python client) and received as the workflow input when a
rollout is started with plain ``temporal workflow start --input``: the same pydantic model serves both, so the
two paths cannot drift. Only references travel here (paths, repository names), never manifest content, so no
Secret value ever lands in the workflow history.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.analysis import AnalysisTemplate
from contract.strategy import Strategy

# DNS-1123 label: what Kubernetes accepts for namespaces, and what we accept for app/environment so that the
# workflow ID and revision record names are always valid object names.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, min_length=1, max_length=40)]
_BUNDLE = r"^[a-zA-Z0-9.-]+(:[0-9]+)?/[a-z0-9]+([._/-][a-z0-9]+)*@sha256:[0-9a-f]{64}$"
_REPO = re.compile(r"^(?P<registry>[a-zA-Z0-9.-]+(:[0-9]+)?)/(?P<path>[a-z0-9]+([._/-][a-z0-9]+)*)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Model):
    """How to build and where to push the release's image."""

    context: str = Field(".", description="build context directory, relative to the spec file (unused with a bundle)")
    dockerfile: str = Field("Dockerfile", description="path inside the context")
    repository: str = Field(description="registry/repo, e.g. 127.0.0.1:5000/shop")
    tag: str | None = Field(None, description="defaults to src-<content hash of the context>")
    build_args: dict[str, str] = Field(default_factory=dict)
    target: str | None = Field(None, description="multi-stage build target")

    @field_validator("repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if "@" in v or not _REPO.match(v):
            raise ValueError("must be <registry>/<repository> without tag or digest, e.g. 127.0.0.1:5000/shop")
        return v

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", v):
            raise ValueError("not a valid image tag")
        return v

    @property
    def registry(self) -> str:
        return self.repository.split("/", 1)[0]


class HttpCheck(_Model):
    """An HTTP probe run repeatedly during the bake time.

    The target is either ``url`` or ``service``: a Service of the release's namespace, which the health activity
    resolves through the Kubernetes API to ``http://<clusterIP>:<port><path>`` when the bake starts. That reaches
    the app through its Service from wherever the worker runs, as long as it can reach ClusterIPs (in a pod, or
    on a node running kube-proxy, like the local stack's host)."""

    name: str | None = None
    url: str | None = Field(None, pattern=r"^https?://")
    service: DnsLabel | None = Field(None, description="a Service in the release's namespace, instead of url")
    port: int | None = Field(None, ge=1, le=65535, description="the Service port; default: its first port")
    path: str = Field("/", pattern=r"^/", description="request path, with service")
    expected_status: int = Field(200, ge=100, le=599)
    interval_seconds: float = Field(2.0, gt=0, le=300)
    timeout_seconds: float = Field(2.0, gt=0, le=60)
    success_threshold: int = Field(1, ge=1, le=100)
    failure_threshold: int = Field(3, ge=1, le=100)

    @model_validator(mode="after")
    def _one_target(self) -> HttpCheck:
        if (self.url is None) == (self.service is None):
            raise ValueError("exactly one of url or service is required")
        if self.url is not None and (self.port is not None or self.path != "/"):
            raise ValueError("port and path go with service; put them in url")
        return self

    @property
    def label(self) -> str:
        return self.name or self.url or f"service/{self.service}{':' + str(self.port) if self.port else ''}{self.path}"


class HealthSpec(_Model):
    """When a release counts as healthy."""

    progress_deadline_seconds: int = Field(600, ge=5, le=86400)
    bake_seconds: float = Field(0, ge=0, le=86400)
    http: list[HttpCheck] = Field(default_factory=list)


class RollbackPolicy(_Model):
    automatic: bool = True


class ApprovalSpec(_Model):
    """An optional gate before the apply: the rollout waits for ``rollwright rollout approve``."""

    required: bool = False
    timeout_seconds: int | None = Field(None, ge=1, le=30 * 86400)


class ReleaseSpec(_Model):
    """A release: identity, image, manifests and policies. Also the workflow's input."""

    app: DnsLabel
    environment: DnsLabel
    namespace: DnsLabel
    kube_context: str | None = Field(None, description="kubeconfig context; the worker's default when unset")
    image: ImageSpec | None = Field(None, description="omit to deploy manifests as they are")
    manifests: list[str] = Field(default_factory=list, description="files or directories of YAML, relative to base_dir")
    health: HealthSpec = Field(default_factory=lambda: HealthSpec())
    rollback: RollbackPolicy = Field(default_factory=lambda: RollbackPolicy())
    approval: ApprovalSpec = Field(default_factory=lambda: ApprovalSpec())
    base_dir: str = Field(".", description="directory relative paths resolve against (set by the loader)")
    # Set by `rollwright rollback`: redeploy a recorded revision instead of building from source.
    from_revision: int | None = Field(None, ge=1)
    initiator: str | None = Field(None, max_length=200)
    # The release's files as an immutable OCI artifact (releases.bundle). Set, the worker fetches manifests and
    # build context by this digest and ignores base_dir, manifests and image.context.
    bundle: str | None = Field(None, pattern=_BUNDLE, description="registry/repository@sha256:<64 hex>")
    # Issue 11: how the workloads change (contract.strategy; default rolling = what a plain apply does) and the
    # analysis templates its steps reference by name.
    strategy: Strategy = Field(default_factory=lambda: Strategy())
    analysis_templates: list[AnalysisTemplate] = Field(
        default_factory=list, max_length=50,
        validation_alias=AliasChoices("analysisTemplates", "analysis_templates"))

    @model_validator(mode="after")
    def _has_content(self) -> ReleaseSpec:
        if not self.manifests and self.from_revision is None and self.bundle is None:
            raise ValueError("manifests: at least one file or directory is required")
        return self

    @model_validator(mode="after")
    def _templates_exist(self) -> ReleaseSpec:
        names = [t.name for t in self.analysis_templates]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"analysisTemplates: template names must be unique, repeated: {', '.join(dup)}")
        for where, ref in self.strategy.analysis_refs():
            for i, t in enumerate(ref.templates):
                if t.template_name not in names:
                    have = ", ".join(names) or "none"
                    raise ValueError(f"{where}.templates[{i}].templateName: unknown analysis template "
                                     f"{t.template_name!r} (analysisTemplates defines: {have})")
        return self


class Abort(_Model):
    reason: str = Field("no reason given", max_length=1000)


class Approval(_Model):
    approver: str = Field("unknown", max_length=200)
    comment: str | None = Field(None, max_length=2000)


class Promotion(_Model):
    """Input of the ``promote`` update: continue a paused canary/blue-green step (or an inconclusive analysis);
    ``full`` skips every remaining step and analysis (Argo's ``promote --full``)."""

    approver: str = Field("unknown", min_length=1, max_length=200)
    full: bool = False
    comment: str | None = Field(None, max_length=2000)
