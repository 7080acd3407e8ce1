"""Release validation of analysis templates: conditions, query arguments, JSONPaths and template references.

Called by ``releases.loader.parse_spec`` (so the CLI, the Python client and the workflow's validate step all refuse
a bad template with exit 2, naming the field, before anything is built or applied). Finds templates, metrics and
references wherever the spec keeps them (``contract.analysis.iter_models``), so the spec's layout can grow freely.
"""

from __future__ import annotations

from typing import Any

from contract.analysis import (
    BUILTIN_ARGS,
    AnalysisRef,
    AnalysisTemplate,
    Metric,
    iter_models,
    referenced_args,
)
from releases import conditions, jsonpath


def _metric_texts(m: Metric) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if m.provider.prometheus:
        out.append(("provider.prometheus.query", m.provider.prometheus.query))
        if m.provider.prometheus.address:
            out.append(("provider.prometheus.address", m.provider.prometheus.address))
    if m.provider.web:
        out.append(("provider.web.url", m.provider.web.url))
        out += [(f"provider.web.headers[{i}].value", h["value"]) for i, h in enumerate(m.provider.web.headers)]
    return out


def problems(spec: Any) -> list[tuple[str, str]]:
    """(field path, reason) for every invalid analysis setting in ``spec`` (empty when all is well)."""
    out: list[tuple[str, str]] = []
    templates = iter_models(spec, AnalysisTemplate)
    for tpath, t in templates:
        declared = set(BUILTIN_ARGS) | {a.name for a in t.args}
        for i, m in enumerate(t.metrics):
            mpath = f"{tpath}.metrics[{i}]"
            for field, expr in (("successCondition", m.success_condition), ("failureCondition", m.failure_condition)):
                if expr is not None:
                    try:
                        conditions.check(expr)
                    except conditions.ConditionError as e:
                        out.append((f"{mpath}.{field}", f"invalid condition {expr!r}: {e}"))
            for field, text in _metric_texts(m):
                for name in referenced_args(text):
                    if name not in declared:
                        out.append((f"{mpath}.{field}", f"{{{{args.{name}}}}} is not a declared arg of template "
                                    f"{t.name!r} nor a built-in one ({', '.join(BUILTIN_ARGS)})"))
            if m.provider.web:
                try:
                    jsonpath.parse(m.provider.web.json_path)
                except jsonpath.JsonPathError as e:
                    out.append((f"{mpath}.provider.web.jsonPath", str(e)))
    by_name = {t.name: t for _, t in templates}
    if len(by_name) < len(templates):
        names = [t.name for _, t in templates]
        out.append((templates[0][0], f"template names must be unique: {sorted({n for n in names if names.count(n) > 1})}"))
    for rpath, ref in iter_models(spec, AnalysisRef):
        given = {a.name for a in ref.args if a.value is not None}
        for i, r in enumerate(ref.templates):
            rt = by_name.get(r.template_name)
            if rt is None:
                out.append((f"{rpath}.templates[{i}].templateName",
                            f"no analysis template named {r.template_name!r} in the release"
                            + (f" (templates: {', '.join(sorted(by_name))})" if by_name else "")))
                continue
            missing = [a.name for a in rt.args if a.value is None and a.name not in given and a.name not in BUILTIN_ARGS]
            if missing:
                out.append((f"{rpath}.args", f"template {rt.name!r} needs a value for arg(s) {', '.join(missing)}"))
    return out
