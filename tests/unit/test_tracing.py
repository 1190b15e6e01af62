"""Tracing switches, header propagation and the JSON log's trace id, without infrastructure."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind

from accessa import tracing
from accessa.config import Settings
from accessa.logs import JsonFormatter
from schemas.headers import Headers


def test_off_by_default_and_on_with_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    assert tracing.endpoint(Settings(_env_file=None)) is None
    assert not tracing.enabled()
    on = Settings(otel_exporter_otlp_endpoint="http://collector:4318/")
    assert tracing.endpoint(on) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")
    assert tracing.endpoint(Settings(_env_file=None)) == "http://otel:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://otel:4318/custom")
    assert tracing.endpoint(Settings(_env_file=None)) == "http://otel:4318/custom"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.endpoint(on) is None


def test_off_nothing_is_injected_and_no_span_is_made() -> None:
    upstream = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    headers = {Headers.CORRELATION_ID: "c", Headers.TRACEPARENT: upstream}
    tracing.inject(headers)
    assert tracing.producing("t", None, headers, client_id="x") is None
    assert headers[Headers.TRACEPARENT] == upstream


def test_send_span_continues_the_trace_in_the_headers(exporter: InMemorySpanExporter) -> None:
    with tracing.tracer.start_as_current_span("process uploaded") as parent:
        headers = {Headers.JOB_ID: "j1", Headers.DOCUMENT_ID: "d1"}
        tracing.inject(headers)
    span = tracing.producing("parsed", b"d1", headers, client_id="accessa-parser")
    assert span is not None
    span.end()
    [_, send] = exporter.get_finished_spans()
    assert send.parent is not None
    assert send.parent.span_id == parent.get_span_context().span_id
    assert send.attributes is not None
    assert send.kind == SpanKind.PRODUCER
    assert send.attributes["accessa.job_id"] == "j1"
    assert send.attributes["messaging.kafka.message.key"] == "d1"
    # The record's consumer is a child of the send span.
    assert headers[Headers.TRACEPARENT].split("-")[2] == f"{send.context.span_id:016x}"


def test_a_replay_starts_a_new_trace_linked_to_the_original(
    exporter: InMemorySpanExporter,
) -> None:
    original = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    headers = {Headers.TRACEPARENT: original, Headers.JOB_ID: "j"}
    tracing.relink(headers, topic="parsed", operation="replay")
    [span] = exporter.get_finished_spans()
    assert span.parent is None and span.context.trace_id != int("a" * 32, 16)
    assert [link.context.trace_id for link in span.links] == [int("a" * 32, 16)]
    assert headers[Headers.TRACEPARENT].split("-")[1] == f"{span.context.trace_id:032x}"


def test_db_and_http_calls_outside_a_trace_start_none() -> None:
    sampler = tracing.NoClientRoots(ALWAYS_ON)
    assert sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT).decision == Decision.DROP
    kept = sampler.should_sample(None, 1, "POST /x", SpanKind.SERVER).decision
    assert kept == Decision.RECORD_AND_SAMPLE


def test_json_log_lines_carry_the_trace_id(exporter: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("parser")
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO"})
    assert "trace_id" not in json.loads(formatter.format(record))
    with tracing.tracer.start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
