"""The outbox's Kafka side: an idempotent producer sending claimed rows, and refusals for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from accessa import kafka_clients, tracing
from accessa.config import Settings

log = logging.getLogger("accessa.outbox")

# Errors no retry can cure for that row (UnknownTopicOrPartition only once a metadata refresh
# that reached the cluster confirms the topic is missing: a broker that is down says it too).
PERMANENT = (
    UnknownTopicOrPartitionError,
    TopicAuthorizationFailedError,
    InvalidTopicError,
    RecordTooLargeError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
_PER_TOPIC = (UnknownTopicOrPartitionError, TopicAuthorizationFailedError, InvalidTopicError)


@dataclass
class Sent:
    """What became of a claimed batch: ids acknowledged, and ids refused for good (reason)."""

    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


class KafkaPublisher:
    """An idempotent producer, recreated after any failed delivery (a fresh producer id, so
    an expired batch can never leave a sequence gap behind)."""

    def __init__(self, settings: Settings, *, request_timeout_ms: int = 10_000) -> None:
        self.settings = settings
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = kafka_clients.producer(
                self.settings,
                "api",
                client_id="accessa-outbox",
                enable_idempotence=True,
                acks="all",
                linger_ms=0,  # as the stages' (runtime/producing.py): no ms added per upload
                request_timeout_ms=self.request_timeout_ms,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish(self, rows: Sequence[asyncpg.Record]) -> Sent:
        """Send the rows in order; the ids the broker acknowledged and those it never will.

        Every record handed to the producer is awaited to its outcome (delivered, or its
        batch expired) before returning, so none can still go out after we gave up on it.
        A retryable error stops the batch; a permanent one fails only its row (and, for a
        missing or forbidden topic, the rows for the same topic without trying each again).
        """
        producer = await self._ready()
        sent = Sent()
        pending: list[tuple[asyncpg.Record, asyncio.Future[object]]] = []
        refused_topics: dict[str, str] = {}
        try:
            for row in rows:
                if (reason := refused_topics.get(row["topic"])) is not None:
                    sent.failed[row["id"]] = reason
                    continue
                fields = {k: str(v) for k, v in (row["headers"] or {}).items()}
                # The API request's trace continues here, and this send's in the stages.
                span = tracing.producing(
                    row["topic"], row["key"], fields, client_id="accessa-outbox"
                )
                headers = [(k, v.encode()) for k, v in fields.items()]
                try:
                    future = await producer.send(
                        row["topic"], row["payload"], key=row["key"], headers=headers
                    )
                except PERMANENT as exc:
                    _end_refused(span, exc)
                    if (reason := await _permanent(producer, row["topic"], exc)) is None:
                        raise
                    sent.failed[row["id"]] = reason
                    if isinstance(exc, _PER_TOPIC):
                        refused_topics[row["topic"]] = reason
                    continue
                pending.append((row, future))
                tracing.end_when_acked(span, future)
        except KafkaError as exc:
            log.warning(
                "outbox relay: send failed after %d of %d: %s",
                len(pending) + len(sent.failed),
                len(rows),
                exc,
            )
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (row, _), result in zip(pending, results, strict=True):
            if not isinstance(result, BaseException):
                sent.delivered.append(row["id"])
            elif isinstance(result, PERMANENT):
                reason = refused_topics.get(row["topic"])
                if reason is None:
                    reason = await _permanent(producer, row["topic"], result)
                if reason is not None:
                    sent.failed[row["id"]] = reason
                    if isinstance(result, _PER_TOPIC):
                        refused_topics[row["topic"]] = reason
        if len(sent.delivered) < len(rows):
            await self.close()
        return sent

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


def _end_refused(span: Any, exc: BaseException) -> None:
    """End the `send` span of a record the producer refused before queueing it."""
    refused: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    refused.set_exception(exc)
    tracing.end_when_acked(span, refused)
    if span is None:
        refused.exception()  # retrieved: no "never retrieved" warning


async def _permanent(producer: AIOKafkaProducer, topic: str, exc: BaseException) -> str | None:
    """Why `exc` will never let this row through, or None when it may be transient."""
    if isinstance(exc, UnknownTopicOrPartitionError):
        try:
            cluster = await producer.client.fetch_all_metadata()
        except Exception:
            return None  # the cluster is unreachable: not a verdict on the topic
        return None if topic in cluster.topics() else f"topic {topic} does not exist"
    if isinstance(exc, TopicAuthorizationFailedError):
        return f"not authorized to write to topic {topic}"
    if isinstance(exc, InvalidTopicError):
        return f"invalid topic name {topic!r}"
    return f"the broker refuses the record: {type(exc).__name__}: {exc}"
