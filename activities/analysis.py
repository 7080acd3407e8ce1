"""``measure_metric``: one measurement of one analysis metric (a Prometheus instant query, or a web JSON value).

Called by ``workflows.analysis.run_analysis`` once per measurement; registered on the main task queue by
``orchestrator.worker``. Renders ``{{args.x}}`` into the query/URL, asks the provider, reduces the answer to
``result`` as Argo does, and judges it with ``releases.conditions`` (parsed, never ``eval``'d).

Error classification:
- the provider cannot be reached, times out, answers 429/5xx, or the result cannot be judged (a condition
  indexes an empty vector, a type mismatch, not JSON): the activity *returns* a measurement in phase ``Error``.
  It counts toward ``consecutiveErrorLimit``; it is not an activity failure, so no retry storm and the history
  shows what happened.
- Prometheus refuses the query (HTTP 400/422: a PromQL syntax or execution error, 401/403/404): a retry cannot
  fix it, so the activity fails with the non-retryable ``InvalidAnalysis`` (the run ends in Error at once).
- an ``{{args.x}}`` without a value, or no Prometheus address at all: also ``InvalidAnalysis``.

Idempotent: it only reads. Header values and URL query strings are never logged (they may carry tokens).
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contract.analysis import AnalysisPhase, MeasureInput, Measurement, UnresolvedArg, render
from releases import conditions, jsonpath

log = activity.logger
PROMETHEUS_URL_ENV = "ROLLWRIGHT_PROMETHEUS_URL"
MAX_MESSAGE = 500
MAX_BODY = 4 * 1024 * 1024  # a measurement is a handful of numbers; refuse to parse megabytes


class Unjudgeable(Exception):
    """The answer cannot be turned into ``result`` (a measurement Error)."""


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def prometheus_result(payload: Any) -> tuple[Any, str]:
    """(result, value as text) of an ``/api/v1/query`` answer, as Argo reduces it.

    scalar → a number; vector → a list of numbers, one per series (empty when no series matched: a condition
    like ``result[0] < 0.05`` then errors, so write ``len(result) == 0 || result[0] < 0.05`` or end the query
    with ``or vector(0)``); string → the string. A range (matrix) result is refused: use an instant query."""
    if not isinstance(payload, dict) or payload.get("status") != "success" or not isinstance(payload.get("data"), dict):
        raise Unjudgeable(f"unexpected Prometheus answer: {str(payload)[:200]}")
    kind, data = payload["data"].get("resultType"), payload["data"].get("result")
    try:
        if kind == "scalar":
            v = float(data[1])
            return v, _fmt(v)
        if kind == "vector":
            values = [float(s["value"][1]) for s in data]
            return values, "[" + ",".join(_fmt(v) for v in values) + "]"
        if kind == "string":
            return str(data[1]), str(data[1])
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise Unjudgeable(f"cannot read the {kind} result: {e}") from None
    raise Unjudgeable(f"result type {kind!r} is not supported: use an instant query that returns a scalar or vector")


def _redact_url(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}{u.path}"


class AnalysisActivities:
    def __init__(self, prometheus_url: str | None = None) -> None:
        self.prometheus_url = prometheus_url

    def _address(self, inp: MeasureInput) -> str:
        p = inp.metric.provider.prometheus
        assert p is not None
        address = p.address or self.prometheus_url or os.environ.get(PROMETHEUS_URL_ENV)
        if not address:
            raise ApplicationError(f"metric {inp.metric.name!r}: no Prometheus address (set provider.prometheus."
                                   f"address, or {PROMETHEUS_URL_ENV} on the worker)", type="InvalidAnalysis",
                                   non_retryable=True)
        return render(address, inp.args).rstrip("/")

    @activity.defn(name="measure_metric")
    async def measure_metric(self, inp: MeasureInput) -> Measurement:
        started = datetime.now(UTC)
        metric = inp.metric

        def done(phase: AnalysisPhase, value: str | None, message: str) -> Measurement:
            m = Measurement(metric=metric.name, template=inp.attempt_info.template, value=value, phase=phase,
                            started_at=started, finished_at=datetime.now(UTC), message=message[:MAX_MESSAGE])
            log.info("analysis %s/%s #%d: %s value=%s %s", inp.attempt_info.template, metric.name,
                     inp.attempt_info.measurement, phase.value, (value or "")[:100], m.message[:200])
            return m

        try:
            if metric.provider.prometheus:
                result, value = await self._prometheus(inp)
            else:
                result, value = await self._web(inp)
        except UnresolvedArg as e:
            raise ApplicationError(f"metric {metric.name!r}: {e}", type="InvalidAnalysis", non_retryable=True) from None
        except Unjudgeable as e:
            return done(AnalysisPhase.ERROR, None, str(e))
        try:
            phase = conditions.phase_of(metric.success_condition, metric.failure_condition, result)
        except conditions.ConditionError as e:
            return done(AnalysisPhase.ERROR, value, f"cannot evaluate the condition on {value}: {e}")
        return done(AnalysisPhase(phase), value, "")

    async def _prometheus(self, inp: MeasureInput) -> tuple[Any, str]:
        p = inp.metric.provider.prometheus
        assert p is not None
        address, query = self._address(inp), render(p.query, inp.args)
        where = _redact_url(address)
        try:
            async with httpx.AsyncClient(timeout=p.timeout) as http:
                r = await http.get(f"{address}/api/v1/query", params={"query": query})
        except httpx.HTTPError as e:
            raise Unjudgeable(f"Prometheus {where} unreachable: {type(e).__name__}: {e}") from None
        body = _json(r)
        if r.status_code == 429 or r.status_code >= 500:
            raise Unjudgeable(f"Prometheus {where} answered HTTP {r.status_code}: {_prom_error(body, r)}")
        if r.status_code >= 400:
            raise ApplicationError(f"metric {inp.metric.name!r}: Prometheus refused the query (HTTP {r.status_code}):"
                                   f" {_prom_error(body, r)}", type="InvalidAnalysis", non_retryable=True)
        if body is None:
            raise Unjudgeable(f"Prometheus {where} answered HTTP {r.status_code} with something that is not JSON")
        return prometheus_result(body)

    async def _web(self, inp: MeasureInput) -> tuple[Any, str]:
        w = inp.metric.provider.web
        assert w is not None
        url = render(w.url, inp.args)
        headers = {h["key"]: render(h["value"], inp.args) for h in w.headers}
        where = _redact_url(url)
        try:
            async with httpx.AsyncClient(timeout=w.timeout_seconds) as http:
                r = await http.get(url, headers=headers)
        except httpx.HTTPError as e:
            raise Unjudgeable(f"GET {where} failed: {type(e).__name__}: {e}") from None
        if not 200 <= r.status_code < 300:
            # Argo: a non-2xx answer is an Error measurement (it counts toward consecutiveErrorLimit).
            raise Unjudgeable(f"GET {where} answered HTTP {r.status_code}")
        body = _json(r)
        if body is None:
            raise Unjudgeable(f"GET {where}: the answer is not JSON")
        try:
            result = jsonpath.select(w.json_path, body)
        except jsonpath.JsonPathError as e:
            raise Unjudgeable(str(e)) from None
        return result, json.dumps(result)[:1000] if not isinstance(result, str) else result[:1000]


def _json(r: httpx.Response) -> Any:
    if len(r.content) > MAX_BODY:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def _prom_error(body: Any, r: httpx.Response) -> str:
    if isinstance(body, dict) and body.get("error"):
        return f"{body.get('errorType', 'error')}: {body['error']}"[:300]
    return r.text[:200]
