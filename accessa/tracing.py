"""OpenTelemetry tracing, shared by the API, the outbox relay and the stage runtime.

Off unless an OTLP endpoint is configured (`ACCESSA_OTEL_EXPORTER_OTLP_ENDPOINT`, or the
standard `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`): the global tracer provider then stays the
API's no-op one and every helper here returns at its first line.

On, a document's journey is one trace: the API request, the relay's `send <topic>`, each
stage's `process <topic>` with its `send <topic>`, and each retry hop. The context travels as
W3C `traceparent`/`tracestate` Kafka headers beside the correlation id; a record's parent is
the `send` span that produced it, so the gap between the two is the time it waited in its topic
(also on the `process` span as `messaging.kafka.wait_ms`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from accessa.config import Settings
from schemas.headers import Headers

log = logging.getLogger("accessa.tracing")
tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _provider is not None


def endpoint(settings: Settings) -> str | None:
    """The OTLP/HTTP traces URL to export to, or None when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    if traces := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    if base := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return base.rstrip("/") + "/v1/traces"
    return None


def setup(settings: Settings, process: str) -> bool:
    """Install the SDK provider with a batching OTLP/HTTP exporter when an endpoint is set.

    The standard variables apply: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* (batching), OTEL_EXPORTER_OTLP_* (headers, timeout,
    compression, certificate)."""
    url = endpoint(settings)
    if url is None or enabled():
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"accessa-{process}"
    resource = Resource.create({"service.name": name, "service.namespace": "accessa"})
    sampler = ParentBased(root=NoClientRoots(_get_from_env_or_default()))
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    use_provider(provider)
    _instrument_libraries()
    log.info("tracing on: OTLP/HTTP to %s as %s", url, name)
    return True


def use_provider(provider: TracerProvider | None) -> None:
    """Trace into `provider` (tests: one with an in-memory exporter); None turns tracing off."""
    global tracer, _provider
    _provider = provider
    tracer = provider.get_tracer("accessa") if provider else trace.NoOpTracer()


def shutdown() -> None:
    """Export what is still batched: called as a process stops (atexit is the backstop)."""
    if _provider is not None:
        _provider.force_flush(5_000)


def _instrument_libraries() -> None:
    """asyncpg queries and httpx calls made inside a traced operation become its children."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    AsyncPGInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


class NoClientRoots(Sampler):
    """A database query or an HTTP call outside any traced operation (the relay's poll, the
    delivery ledger, a readiness probe) starts no trace of its own; the rest go to `inner`."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoClientRoots{{{self.inner.get_description()}}}"


# --- context in Kafka headers


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current span's context into `headers` (nothing when tracing is off)."""
    if _provider is not None:
        propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(headers)


def current_trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _ids(headers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, header in (
        ("accessa.document_id", Headers.DOCUMENT_ID),
        ("accessa.job_id", Headers.JOB_ID),
        ("messaging.message.conversation_id", Headers.CORRELATION_ID),
        ("messaging.message.id", Headers.EVENT_ID),
    ):
        if value := headers.get(header):
            out[attr] = value
    return out


# --- spans


@contextmanager
def processing(
    record: Any, headers: Mapping[str, str], *, stage: str, group: str
) -> Iterator[Span]:
    """`process <topic>` (CONSUMER) around one record's handling, child of the `send` span
    that produced it; carries how long the record waited in its topic."""
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.consumer.group.name": group,
        "messaging.kafka.offset": record.offset,
        "messaging.message.body.size": len(record.value or b""),
        "messaging.kafka.wait_ms": max(int(time.time() * 1000) - record.timestamp, 0),
        "accessa.stage": stage,
        "accessa.attempt": int(headers.get(Headers.ATTEMPT) or 0),
        **_ids(headers),
    }
    if record.key is not None:
        attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
    if due_at := headers.get(Headers.DUE_AT):  # a retry hop: the backoff it was given
        attributes["accessa.retry.due_at_ms"] = due_at
    with tracer.start_as_current_span(
        f"process {record.topic}",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


def failed(exc: BaseException, *, code: str, kind: str, outcome: str) -> None:
    """Mark the current span failed: the exception's class, our error code and class, and
    what became of the record (`retry` or `dlq`)."""
    if _provider is None:
        return
    span = trace.get_current_span()
    span.set_attributes(
        {
            "error.type": type(exc).__qualname__,
            "accessa.error.code": code,
            "accessa.error.class": kind,
            "accessa.outcome": outcome,
        }
    )
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, code))


def producing(
    topic: str, key: bytes | None, headers: MutableMapping[str, str], *, client_id: str
) -> Span | None:
    """`send <topic>` (PRODUCER), child of the context already in `headers`, which it then
    replaces, so that the record's consumer is its child. None when tracing is off or the
    headers carry no trace (nothing to continue)."""
    if _provider is None or Headers.TRACEPARENT not in headers:
        return None
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.client.id": client_id,
        **_ids(headers),
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode(errors="replace")
    span = tracer.start_span(
        f"send {topic}", context=extract(headers), kind=SpanKind.PRODUCER, attributes=attributes
    )
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return span


def end_when_acked(span: Span | None, future: asyncio.Future[Any]) -> None:
    """End a `send` span when the broker acknowledges (or refuses) its record."""
    if span is None:
        return

    def done(f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
        elif (exc := f.exception()) is not None:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        else:
            meta = f.result()
            span.set_attribute("messaging.destination.partition.id", str(meta.partition))
            span.set_attribute("messaging.kafka.offset", meta.offset)
        span.end()

    future.add_done_callback(done)


def relink(headers: MutableMapping[str, str], *, topic: str, operation: str) -> None:
    """Start a new trace for a redriven or replayed record, linked to the trace it came from
    (its DLQ copy kept that context), and put the new context in `headers`."""
    if _provider is None:
        return
    original = trace.get_current_span(extract(headers)).get_span_context()
    links = [Link(original, {"accessa.link": operation})] if original.is_valid else []
    for name in (Headers.TRACEPARENT, Headers.TRACESTATE):
        headers.pop(name, None)
    with tracer.start_as_current_span(
        f"{operation} {topic}",
        context=otel_context.Context(),
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            **_ids(headers),
        },
    ):
        propagate.inject(headers)


def instrument_api(app: Any) -> None:
    """The API's request spans (FastAPI instrumentation), when tracing is on; probes and the
    progress streams (long-lived by design) are left out."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls="/health,/ready,/metrics,/events",
        exclude_spans=["receive", "send"],  # ASGI message spans: noise in every trace
    )
