"""Builds the Temporal client every Rollwright process uses: same data converter, encryption, TLS/API key, tracing.

Called by ``orchestrator.client`` (CLI, Python API), ``orchestrator.setup`` and ``orchestrator.worker``. Keeping
this in one place is what guarantees the pydantic converter and the payload codec are used on both ends (a
mismatch would fail at decode time, in the worker).
"""

from __future__ import annotations

import dataclasses
import os
import re

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from orchestrator.config import Settings


def tracing_interceptors() -> list[Interceptor]:
    """OpenTelemetry tracing, on only when an exporter is configured through the standard OTEL_* variables."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").lower()
    if exporter in ("", "none"):
        return []
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                         "rollwright-worker")}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as e:  # the exporter package is optional
            raise RuntimeError("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http") from e
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return [TracingInterceptor()]


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic converter, plus AES-256-GCM payload encryption when codec keys are configured.

    With encryption on, failure messages and stack traces are moved into an encoded payload too: a rollback's
    cause or an abort reason would otherwise sit in clear in the failure event."""
    ring = settings.key_ring()
    if ring is None:
        return pydantic_data_converter
    from orchestrator.codec import EncryptionCodec

    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(ring),
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


def tls_config(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_cert or settings.temporal_tls_ca or settings.temporal_tls_server_name:
        return TLSConfig(
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
            domain=settings.temporal_tls_server_name,
            client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
            client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None)
    return bool(settings.temporal_api_key)


def explain_connect_error(msg: str, settings: Settings | None = None) -> tuple[str, str]:
    """(reason, hint) for an SDK "Failed client connect" message, whose Rust error chain is unreadable as is.

    Used by the CLI (one error line) and the worker (``/readyz`` body)."""
    ca = str(settings.temporal_tls_ca) if settings and settings.temporal_tls_ca else "the system CA bundle"
    cert = re.search(r"InvalidCertificate\((\w+)", msg)
    if cert:
        kind = cert.group(1)
        if kind == "UnknownIssuer":
            return (f"TLS: the server's certificate is not signed by a CA in {ca} (InvalidCertificate UnknownIssuer)",
                    "point ROLLWRIGHT_TEMPORAL_TLS_CA at the CA that issued the server's certificate")
        if kind.startswith("NotValidForName"):
            return ("TLS: the server's certificate is not valid for this address (InvalidCertificate NotValidForName)",
                    "set ROLLWRIGHT_TEMPORAL_TLS_SERVER_NAME to a name in the certificate")
        return f"TLS: the server's certificate was rejected ({kind})", "check the ROLLWRIGHT_TEMPORAL_TLS_* settings"
    if "InvalidContentType" in msg or "CorruptMessage" in msg:
        return ("TLS handshake failed: the server does not speak TLS on this port",
                "unset ROLLWRIGHT_TEMPORAL_TLS_CA/CERT, or use the server's TLS port")
    reason = re.search(r'message: "([^"]+)"', msg)
    return (reason.group(1) if reason else msg,
            "is the server running? set --address or ROLLWRIGHT_TEMPORAL_ADDRESS")


async def connect(settings: Settings, *, runtime: Runtime | None = None, tracing: bool = True) -> Client:
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=data_converter(settings),
        tls=tls_config(settings), api_key=settings.temporal_api_key, runtime=runtime,
        interceptors=tracing_interceptors() if tracing else [])
