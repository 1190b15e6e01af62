"""Kafka header names. Values are UTF-8 strings."""

from __future__ import annotations


class Headers:
    CORRELATION_ID = "x-correlation-id"
    EVENT_ID = "x-event-id"
    JOB_ID = "x-job-id"
    DOCUMENT_ID = "x-document-id"
    USER_ID = "x-user-id"
    ATTEMPT = "x-attempt"
    DUE_AT = "x-due-at"  # epoch milliseconds when a retry record may run
    ERROR_CLASS = "x-error-class"
    ERROR_CODE = "x-error-code"
    ERROR_MESSAGE = "x-error-message"
    ERROR_STACK = "x-error-stack"
    ORIGINAL_TOPIC = "x-original-topic"
    ORIGINAL_PARTITION = "x-original-partition"
    ORIGINAL_OFFSET = "x-original-offset"
    FAILED_AT = "x-failed-at"
    REDRIVEN = "x-redriven"
    REPLAYED = "x-replayed"
    VALUE_OMITTED = "x-value-omitted"  # a DLQ copy too big to keep its value: the bytes it had
    # W3C trace context (accessa/tracing.py): the span that produced the record.
    TRACEPARENT = "traceparent"
    TRACESTATE = "tracestate"

    # Propagated from the input record to every record a stage emits.
    PROPAGATED = (CORRELATION_ID, JOB_ID, DOCUMENT_ID, USER_ID)
