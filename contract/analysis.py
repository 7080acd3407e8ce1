"""Metric analysis: the templates an operator writes and the measurements the workflow records (issue 11).

Shapes and semantics follow Argo Rollouts' ``AnalysisTemplate``/``AnalysisRun`` (field names in camelCase as in
Argo; snake_case attribute names work too). Imported by ``contract.spec`` users (the canary / blue-green steps
reference templates with ``AnalysisRef``), ``releases.conditions`` (validates conditions and queries),
``activities.analysis`` (``measure_metric``: one measurement), ``workflows.analysis`` (the measurement loop) and
the CLI (status). Pure data, no I/O: safe inside the workflow sandbox.

Query templating is Argo's: ``{{args.<name>}}`` is replaced by plain string substitution (no Jinja, no
expressions) with the template's declared args, the reference's args and the built-in args of ``AnalysisArgs``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

# Go-style durations as Argo writes them: "30s", "1m", "1m30s", "500ms", "2h".
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
ARG_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
# {{args.name}}, spaces inside the braces tolerated ({{ args.name }}).
ARG_REF = re.compile(r"\{\{\s*args\.(" + ARG_NAME + r")\s*\}\}")
MAX_DURATION_SECONDS = 7 * 86400
T = TypeVar("T")


def duration_seconds(text: str) -> float:
    """Seconds of a Go-style duration ("1m30s" → 90.0). Raises ValueError on anything else."""
    if not isinstance(text, str) or not _DURATION.match(text.strip()):
        raise ValueError(f"{text!r} is not a duration like 30s, 1m, 1m30s or 500ms")
    return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text.strip()))


def _check_duration(v: str | None, *, minimum: float = 0.0) -> str | None:
    if v is None:
        return v
    s = duration_seconds(v)
    if s < minimum or s > MAX_DURATION_SECONDS:
        raise ValueError(f"{v!r} must be between {minimum:g}s and {MAX_DURATION_SECONDS // 86400} days")
    return v


class _Model(BaseModel):
    # Argo's camelCase is the spelling in files; snake_case is accepted too (and is what Temporal's pydantic
    # converter writes in histories), so both the spec and the workflow input decode.
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class PrometheusProvider(_Model):
    """An instant query (``/api/v1/query``). ``address`` defaults to the worker's ``ROLLWRIGHT_PROMETHEUS_URL``."""

    address: str | None = Field(None, pattern=r"^https?://", description="e.g. http://prometheus.monitoring:9090")
    query: str = Field(min_length=1, max_length=10000)
    timeout: int = Field(10, ge=1, le=300, description="seconds per query (Argo: timeout)")


class WebProvider(_Model):
    """An HTTP GET whose JSON answer is reduced by ``jsonPath`` (``{$.data.ok}`` or ``$.data.ok``)."""

    url: str = Field(pattern=r"^https?://", max_length=4000)
    json_path: str = Field("{$}", max_length=500)
    headers: list[dict[str, str]] = Field(default_factory=list,
                                          description="[{key, value}] as in Argo; values land in workflow history")
    timeout_seconds: int = Field(10, ge=1, le=300)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: list[dict[str, str]]) -> list[dict[str, str]]:
        for h in v:
            if set(h) != {"key", "value"}:
                raise ValueError("each header is {key: ..., value: ...}")
        return v


class MetricProvider(_Model):
    prometheus: PrometheusProvider | None = None
    web: WebProvider | None = None

    @model_validator(mode="after")
    def _one(self) -> MetricProvider:
        if (self.prometheus is None) == (self.web is None):
            raise ValueError("exactly one provider is required: prometheus or web")
        return self


class Metric(_Model):
    """One metric of a template; measured every ``interval`` (Argo semantics, see README "Analysis templates")."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
    provider: MetricProvider
    interval: str | None = Field(None, description="time between measurements; without it and count: measure once")
    count: int | None = Field(None, ge=1, le=100000, description="measurements to take; none: until stopped")
    initial_delay: str | None = Field(None, description="wait before the first measurement")
    success_condition: str | None = Field(None, max_length=1000)
    failure_condition: str | None = Field(None, max_length=1000)
    # Argo: the metric fails when Failed measurements exceed failureLimit; -1 = never fails on count.
    failure_limit: int = Field(0, ge=-1, le=100000)
    inconclusive_limit: int = Field(0, ge=0, le=100000)
    consecutive_error_limit: int = Field(4, ge=0, le=100000)

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        return _check_duration(v, minimum=0.1)

    @field_validator("initial_delay")
    @classmethod
    def _delay(cls, v: str | None) -> str | None:
        return _check_duration(v)

    @model_validator(mode="after")
    def _count_needs_interval(self) -> Metric:
        if self.count is not None and self.count > 1 and self.interval is None:
            raise ValueError("interval is required when count is greater than 1")
        return self

    @property
    def interval_seconds(self) -> float | None:
        return duration_seconds(self.interval) if self.interval else None

    @property
    def initial_delay_seconds(self) -> float:
        return duration_seconds(self.initial_delay) if self.initial_delay else 0.0

    @property
    def effective_count(self) -> int | None:
        """Argo's EffectiveCount: no interval and no count means one measurement; no count otherwise: unbounded."""
        if self.count is None and self.interval is None:
            return 1
        return self.count


class Argument(_Model):
    """A declared template argument; ``value`` is its default (a reference's args override it)."""

    name: str = Field(pattern=r"^" + ARG_NAME + r"$", max_length=100)
    value: str | None = Field(None, max_length=10000)


class AnalysisTemplate(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    args: list[Argument] = Field(default_factory=list)
    metrics: list[Metric] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> AnalysisTemplate:
        names = [m.name for m in self.metrics]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(dup)}")
        return self


class TemplateRef(_Model):
    template_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)


class AnalysisRef(_Model):
    """Where a step runs analysis: ``{templates: [{templateName: t}], args: [{name, value}]}``."""

    templates: list[TemplateRef] = Field(min_length=1, max_length=20)
    args: list[Argument] = Field(default_factory=list)


# ---- runtime ----------------------------------------------------------------------------------------------------


BUILTIN_ARGS = ("namespace", "app", "canary-hash", "stable-hash", "canary-selector", "stable-selector")


def _promql_label(name: str) -> str:
    # Prometheus' kubernetes_sd labelmap turns pod label names into label names this way (invalid chars → _).
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class AnalysisArgs(BaseModel):
    """What the workflow knows when analysis starts; rendered into queries as ``{{args.<name>}}``.

    Built-in names: ``namespace``, ``app``, ``canary-hash``/``stable-hash`` (pod-template-hash or
    controller-revision-hash of each track), ``canary-selector``/``stable-selector`` (the track's pod labels as
    PromQL matchers, ``app="demo",pod_template_hash="5d9c…"``). ``extra`` holds the template's and the reference's
    args; a name there overrides a built-in one."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = ""
    app: str = ""
    canary_hash: str = ""
    stable_hash: str = ""
    canary_labels: dict[str, str] = Field(default_factory=dict)
    stable_labels: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, str] = Field(default_factory=dict)

    def values(self) -> dict[str, str]:
        def sel(labels: dict[str, str]) -> str:
            return ",".join(f'{_promql_label(k)}="{v}"' for k, v in sorted(labels.items()))

        out = {"namespace": self.namespace, "app": self.app, "canary-hash": self.canary_hash,
               "stable-hash": self.stable_hash, "canary-selector": sel(self.canary_labels),
               "stable-selector": sel(self.stable_labels)}
        out.update(self.extra)
        return out

    def for_template(self, template: AnalysisTemplate, ref_args: list[Argument] | None = None) -> AnalysisArgs:
        """These args plus the template's defaults and the reference's values (reference wins, as in Argo)."""
        extra = dict(self.extra)
        for a in template.args:
            if a.value is not None and a.name not in extra:
                extra[a.name] = a.value
        for a in ref_args or []:
            if a.value is not None:
                extra[a.name] = a.value
        return self.model_copy(update={"extra": extra})


class UnresolvedArg(ValueError):
    pass


def render(text: str, args: AnalysisArgs | dict[str, str]) -> str:
    """Replaces every ``{{args.x}}``; an arg with no value is an error (Argo refuses the run the same way)."""
    values = args.values() if isinstance(args, AnalysisArgs) else args

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise UnresolvedArg(f"args.{name} has no value")
        return values[name]

    return ARG_REF.sub(sub, text)


def referenced_args(text: str) -> list[str]:
    return ARG_REF.findall(text)


def resolve_templates(ref: AnalysisRef, templates: list[AnalysisTemplate]) -> list[AnalysisTemplate]:
    """The templates a reference names, in its order; KeyError naming the first missing one."""
    by_name = {t.name: t for t in templates}
    out = []
    for r in ref.templates:
        if r.template_name not in by_name:
            raise KeyError(r.template_name)
        out.append(by_name[r.template_name])
    return out


class AnalysisPhase(str, Enum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AttemptInfo(_Msg):
    """Which measurement this is (for logs and idempotency: the same input measures the same thing)."""

    template: str = ""
    measurement: int = Field(0, ge=0, description="0-based index of the measurement within its metric")


class MeasureInput(_Msg):
    metric: Metric
    args: AnalysisArgs
    attempt_info: AttemptInfo = Field(default_factory=AttemptInfo)


class Measurement(_Msg):
    metric: str
    template: str = ""
    value: str | None = None
    phase: AnalysisPhase
    started_at: datetime
    finished_at: datetime
    message: str = ""


class MetricSummary(_Msg):
    """Counters of one metric, as Argo's MetricResult."""

    metric: str
    template: str = ""
    phase: AnalysisPhase | None = None  # None while it is still running
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    # When its next measurement is due (a stopped background analysis carries it over a continue-as-new, so the
    # new run measures on time: no interval is restarted, no measurement slot is lost). None: not tracked.
    next_at: datetime | None = None


class AnalysisResult(_Msg):
    phase: AnalysisPhase
    measurements: list[Measurement] = Field(default_factory=list)
    metrics: list[MetricSummary] = Field(default_factory=list)
    message: str = ""
    cancelled: bool = False


def _first_alias(alias: Any) -> str | None:
    if isinstance(alias, str):
        return alias
    choices = getattr(alias, "choices", None)  # AliasChoices: the first spelling is the documented one
    return choices[0] if choices and isinstance(choices[0], str) else None


def iter_models(obj: Any, cls: type[T], path: str = "") -> list[tuple[str, T]]:
    """Every ``cls`` instance inside a (spec) model, with its field path (camelCase, as written in files): lets
    release validation check every template, condition and query wherever the spec keeps them, without knowing
    its layout."""
    if isinstance(obj, cls):
        return [(path, obj)]
    out: list[tuple[str, T]] = []
    if isinstance(obj, BaseModel):
        for name, field in type(obj).model_fields.items():
            key = field.alias or _first_alias(field.validation_alias) or name
            out += iter_models(getattr(obj, name), cls, f"{path}.{key}" if path else key)
    elif isinstance(obj, list | tuple):
        for i, x in enumerate(obj):
            out += iter_models(x, cls, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, x in obj.items():
            out += iter_models(x, cls, f"{path}.{k}" if path else str(k))
    return out


__all__ = [
    "AnalysisArgs", "AnalysisPhase", "AnalysisRef", "AnalysisResult", "AnalysisTemplate", "Argument",
    "AttemptInfo", "MeasureInput", "Measurement", "Metric", "MetricProvider", "MetricSummary", "PrometheusProvider",
    "TemplateRef", "WebProvider", "duration_seconds", "iter_models", "referenced_args", "render",
    "resolve_templates",
]
