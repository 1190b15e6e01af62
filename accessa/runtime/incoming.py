"""A polled record, decoded once: its headers, attempt, correlation id and typed event.

Everything after the poll (the retry topics' due check, the dedup lookup, the handler, failure
routing, tracing) reads this object; nothing decodes the record's bytes or headers again.
A record that cannot be decoded still becomes an `Incoming`, with the `problem` that the
runtime dead-letters it for.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from accessa.errors import PoisonMessage
from schemas.events import Event, decode_event
from schemas.headers import Headers

Key = tuple[str, int, int]  # topic, partition, offset
Stored = tuple[bytes | None, bytes]  # a committed output: key and value (b"": none)


@dataclass
class Incoming:
    record: ConsumerRecord
    headers: dict[str, str]  # readable ones only; the correlation id always set
    attempt: int
    event: Event | None  # None when the record does not decode: see `problem`
    problem: Exception | None = None
    stored: Stored | None = None  # this consumer's committed output, when a redelivery
    job: Any = None  # its job as read with its wave (`StageApp.reads_job`), None if not found

    @functools.cached_property
    def key(self) -> Key:
        return (self.record.topic, self.record.partition, self.record.offset)

    @functools.cached_property
    def document(self) -> tuple[str, int, bytes | None]:
        """What orders records: one document's records (the message key) run in offset order."""
        return (self.record.topic, self.record.partition, self.record.key)

    @property
    def correlation_id(self) -> str:
        return self.headers[Headers.CORRELATION_ID]

    @property
    def job_id(self) -> uuid.UUID | None:
        return self.event.job_id if self.event else _uuid(self.headers.get(Headers.JOB_ID))


def decode(
    record: ConsumerRecord, model: type[Event], max_bytes: int, headers: dict[str, str]
) -> Incoming:
    """The record as the runtime reads it, with its headers as the batch parser decoded them
    (`parse_readable`); never raises."""
    headers = dict(headers)  # ours to complete; the parser's copy stays as it was
    event: Event | None = None
    problem: Exception | None = None
    try:
        if len(record.value or b"") > max_bytes:
            raise PoisonMessage(
                f"message of {len(record.value)} bytes exceeds the limit", code="oversized"
            )
        event = decode_event(model, record.value)
    except Exception as exc:
        problem = exc
    # A producer's missing correlation id: the event's own, else one made up here.
    if not headers.get(Headers.CORRELATION_ID):
        headers[Headers.CORRELATION_ID] = event.correlation_id if event else str(uuid.uuid4())
    return Incoming(record, headers, as_int(headers.get(Headers.ATTEMPT)), event, problem)


def readable_headers(record: ConsumerRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in record.headers or ():
        try:
            out[key] = value.decode() if value is not None else ""
        except UnicodeDecodeError:
            continue  # a garbled header is dropped, never fatal
    return out


async def parse_readable(
    records: tuple[ConsumerRecord, ...], parse: Callable[..., Awaitable[Any]]
) -> Any:
    """FastStream's batch parser decodes every header as UTF-8 and fails the whole batch on
    one that is not (the partition would stop there): it gets the records with only the
    headers that decode."""
    try:  # the common case costs one decode of each header, FastStream's own
        return await parse(records)
    except (UnicodeDecodeError, AttributeError):  # bytes not UTF-8, or a null value
        return await parse(tuple(map(_readable, records)))


def _readable(record: ConsumerRecord) -> ConsumerRecord:
    headers = [(k, v.encode()) for k, v in readable_headers(record).items()]
    if headers == list(record.headers or ()):
        return record
    return dataclasses.replace(record, headers=headers)


def as_int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
