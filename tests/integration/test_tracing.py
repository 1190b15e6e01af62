"""Tracing through the stage runtime, in this process, with an in-memory span exporter: the
hops of a document (and of its retry) are one trace, linked parent to child by the
`traceparent` Kafka header."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from accessa import tracing
from accessa.config import Settings
from schemas.events import DocumentUploaded
from schemas.headers import Headers
from tests.integration.conftest import StartStage
from tests.integration.stages import echo, sink
from tests.utils import header_map, produce, read_topic, uploaded_event, wait_for

pytestmark = pytest.mark.integration


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    """A finished span's attributes, typed loosely for the assertions (None is none)."""
    return dict(span.attributes or {})


async def upload(settings: Settings, event: DocumentUploaded) -> int:
    """Publish `uploaded` from inside a root span, as the outbox relay does; its trace id."""
    headers = {
        Headers.CORRELATION_ID: event.correlation_id,
        Headers.JOB_ID: str(event.job_id),
        Headers.DOCUMENT_ID: str(event.document_id),
    }
    with tracing.tracer.start_as_current_span("POST /api/v2/documents") as root:
        tracing.inject(headers)
    await produce(
        settings,
        f"{settings.topic_prefix}uploaded",
        [event.to_bytes()],
        keys=[event.key()],
        headers=[headers],
    )
    return root.get_span_context().trace_id


def chain(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    """The trace's spans from the root down, each the parent of the next (a linear trace)."""
    mine = [s for s in spans if s.context.trace_id == trace_id]
    by_parent = {s.parent.span_id if s.parent else None: s for s in mine}
    assert len(by_parent) == len(mine), "the trace branches"
    out, parent = [], None
    while parent in by_parent or (parent is None and None in by_parent):
        span = by_parent[parent]
        out.append(span)
        parent = span.context.span_id
    assert len(out) == len(mine), "spans outside the chain"
    return out


def names(spans: list[ReadableSpan], prefix: str) -> list[str]:
    return [s.name.replace(prefix, "") for s in spans]


async def test_one_document_through_two_stages_is_one_trace_with_its_waits(
    exporter: InMemorySpanExporter, start_stage: StartStage, topics: Settings
) -> None:
    await start_stage(echo)
    await start_stage(sink)
    event = uploaded_event("ok.pdf")
    trace_id = await upload(topics, event)

    async def complete() -> list[ReadableSpan] | None:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        return spans if len(spans) == 4 else None

    await wait_for(complete, what="4 spans (the sink emits nothing)")
    spans = chain(exporter.get_finished_spans(), trace_id)
    assert names(spans, topics.topic_prefix) == [
        "POST /api/v2/documents",
        "process uploaded",
        "send parsed",
        "process parsed",
    ]
    _, process_up, send_parsed, process_parsed = spans
    assert [s.kind for s in spans[1:4]] == [SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.CONSUMER]
    for span, stage in ((process_up, "echo"), (process_parsed, "sink")):
        attrs = _attrs(span)
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["accessa.stage"] == stage
        assert attrs["accessa.job_id"] == str(event.job_id)
        assert attrs["accessa.document_id"] == str(event.document_id)
        assert attrs["messaging.message.conversation_id"] == event.correlation_id
        assert attrs["messaging.kafka.wait_ms"] >= 0
    # The record waited in `parsed` from its send (the record's timestamp) to its process.
    waited_ms = (process_parsed.start_time - send_parsed.start_time) / 1e6  # type: ignore[operator]
    assert abs(_attrs(process_parsed)["messaging.kafka.wait_ms"] - waited_ms) < 250
    assert _attrs(send_parsed)["messaging.destination.name"] == f"{topics.topic_prefix}parsed"
    assert "messaging.kafka.offset" in _attrs(send_parsed)  # ended on the broker's ack


async def test_a_retried_document_shows_its_retry_hop(
    exporter: InMemorySpanExporter, start_stage: StartStage, topics: Settings
) -> None:
    await start_stage(echo, retry_base_delay_s=0.5)
    event = uploaded_event("transient.pdf")
    started = time.time()
    trace_id = await upload(topics, event)

    async def parsed_sent() -> bool:
        return any(
            s.name.endswith("send " + f"{topics.topic_prefix}parsed")
            for s in exporter.get_finished_spans()
            if s.context.trace_id == trace_id
        )

    await wait_for(parsed_sent, what="the retried record's output")
    spans = chain(exporter.get_finished_spans(), trace_id)
    assert names(spans, topics.topic_prefix) == [
        "POST /api/v2/documents",
        "process uploaded",
        "send uploaded.retry.1",
        "process uploaded.retry.1",
        "send parsed",
    ]
    failed, hop = spans[1], spans[3]
    assert failed.status.status_code == StatusCode.ERROR
    assert _attrs(failed)["error.type"] == "TransientError"
    assert _attrs(failed)["accessa.error.code"] == "test_busy"
    assert _attrs(failed)["accessa.error.class"] == "transient"
    assert _attrs(failed)["accessa.outcome"] == "retry"
    assert _attrs(hop)["accessa.attempt"] == 1
    assert _attrs(hop)["messaging.kafka.wait_ms"] >= 500 - 50  # its backoff, in the topic
    assert hop.status.status_code != StatusCode.ERROR
    assert time.time() - started < 30


async def test_a_dead_lettered_record_keeps_its_trace_context(
    exporter: InMemorySpanExporter, start_stage: StartStage, topics: Settings
) -> None:
    await start_stage(echo)
    event = uploaded_event("permanent.pdf")
    trace_id = await upload(topics, event)
    dlq = f"{topics.topic_prefix}uploaded.dlq"

    async def dead() -> list[Any]:
        return await read_topic(topics, dlq)

    [record] = await wait_for(dead, what="the DLQ copy")
    traceparent = header_map(record)[Headers.TRACEPARENT]
    _, trace_hex, parent_hex, _ = traceparent.split("-")
    assert int(trace_hex, 16) == trace_id

    async def sent() -> list[ReadableSpan]:
        return [s for s in exporter.get_finished_spans() if s.name == f"send {dlq}"]

    [send] = await wait_for(sent, what="the DLQ send span")
    assert int(parent_hex, 16) == send.context.span_id
    assert send.parent is not None
    [process] = [
        s for s in exporter.get_finished_spans() if s.context.span_id == send.parent.span_id
    ]
    assert _attrs(process)["accessa.outcome"] == "dlq"
    assert _attrs(process)["accessa.error.class"] == "permanent"
    assert _attrs(process)["accessa.error.code"] == "test_permanent"
