"""The stage runtime: the one place that knows consume, commit, retry, DLQ, metrics, shutdown.

A stage is a typed handler `async (event, ctx) -> output event | None` that does its work and
commits through `ctx.commit(output)`. Per record the runtime runs

    decode → (already committed? re-emit the stored output) → handler → produce → ...

and, once every record of the polled batch has produced its output (or its retry / DLQ record),
commits the offsets. Database round trips per poll, not per record, where the guarantees allow:
one statement counts the batch's deliveries, one (at the same time) looks up which of its events
are committed already, one forgets the finished records; what remains per record is the
handler's own `ctx.commit()` transaction. Records of one document (the message key) run in
order; different documents run concurrently up to `stage_concurrency`.

Failures, by type (accessa.errors):
- TransientError: to `<topic>.retry.<n>` due in `retry_base_delay_s * 2^(n-1)`; after the last
  attempt, the DLQ. RecoverableError never exhausts attempts.
- PermanentError (PoisonMessage included): to `<topic>.dlq` now, job -> `failed_<stage>`.
- Database or broker unreachable (`context.is_infra`): the record is retried in place (no
  attempt is spent) until the infrastructure is back or the process shuts down; the gauge
  `accessa_infra_retry_seconds` says for how long.
- A record whose handling kills the process (OOM kill, segfault, SIGKILL) is counted in
  Postgres before it runs (`deliveries`): after `max_delivery_attempts` starts it goes to the
  DLQ as `crashed_consumer`, unstarted.

FastStream owns the consumer loop, batching, acks and the graceful drain. We drop to aiokafka
in two places: its consumer to pause/seek/resume retry partitions (FastStream has no API for
it), and a producer for outputs (see `StageRuntime.__init__`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import itertools
import logging
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError, for_code
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from accessa import jobs, kafka_clients, tracing
from accessa.config import Settings
from accessa.errors import PermanentError, PipelineError, PoisonMessage, RecoverableError
from accessa.logs import correlation_id
from accessa.runtime import deliveries, metrics
from accessa.runtime.context import (
    INFRA_WAITS,
    AlreadyCommitted,
    DocumentDeleted,
    StageContext,
    StageResources,
    is_infra,
    retry_infra,
)
from accessa.topics import topics_for
from schemas.events import Event, decode_event
from schemas.headers import Headers
from schemas.topics import STAGES, Stage

T = TypeVar("T")
R = TypeVar("R")  # the stage's own resources (`StageApp.setup`), None without a setup

log = logging.getLogger("accessa.runtime")

Handler = Callable[[Any, StageContext[R]], Awaitable[Event | None]]
Setup = Callable[[StageResources], Awaitable[R]]
# Idempotent, fully acknowledged; batches big enough that producers rarely wait to drain.
# A short linger: each ms is added to every hop of an idle document, and under load records
# batch up anyway while the previous request to the broker is in flight.
PRODUCER_CONFIG: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 1,
    "max_batch_size": 256 * 1024,
}


@dataclass
class Outcome:
    """What to produce for one record: (topic, key, value, headers) or nothing."""

    produce: list[tuple[str, bytes | None, bytes, dict[str, str]]] = field(default_factory=list)


@dataclass(frozen=True)
class Prefetched:
    """A record decoded before the batch runs, with its stored output when it is committed
    already (the dedup lookup, done for the whole batch in one statement)."""

    event: Event
    stored: tuple[bytes | None, bytes] | None


_STORED = """SELECT event_id, output_key, output_value FROM processed_events
WHERE consumer = $1 AND event_id = ANY($2::uuid[])"""


@dataclass
class StageApp(Generic[R]):
    """A stage: its name, input event model and handler, and the setup that makes its own
    resources once per process (the handler reads them as `ctx.own`).
    `consumers/<stage>/app.py` makes one."""

    name: str
    input_model: type[Event]
    stage: Stage | None = None  # defaults to STAGES[name]
    handler: Handler[R] | None = None
    max_records: int | None = None
    # A pure transform (no database writes): no dedup row and no ctx.commit() needed, since
    # its output is a function of the input with a deterministic id the next stage dedups.
    stateless: bool = False
    # The longest one record's handling may take (a stage that bounds its own work, e.g. the
    # parser's document timeout): the consumer's max.poll.interval is sized to a batch of them.
    record_time_limit_s: Callable[[Settings], float] | None = None
    setup: Setup[R] | None = None

    def __post_init__(self) -> None:
        self.stage = self.stage or STAGES[self.name]

    def handle(self, fn: Handler[R]) -> Handler[R]:
        self.handler = fn
        return fn

    def on_setup(self, fn: Setup[R]) -> Setup[R]:
        self.setup = fn
        return fn


async def _skip_decoding(_: Any) -> None:
    return None


async def _parse_readable(
    records: tuple[ConsumerRecord, ...], parse: Callable[..., Awaitable[Any]]
) -> Any:
    """FastStream's batch parser decodes every header as UTF-8 and fails the whole batch on
    one that is not (the partition would stop there): it gets the records with only the
    headers that decode, as `_headers` reads them anyway."""
    return await parse(tuple(map(_readable, records)))


def _readable(record: ConsumerRecord) -> ConsumerRecord:
    headers = [(k, v.encode()) for k, v in _headers(record).items()]
    if headers == list(record.headers or ()):
        return record
    return dataclasses.replace(record, headers=headers)


def _headers(record: ConsumerRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in record.headers or ():
        try:
            out[key] = value.decode() if value is not None else ""
        except UnicodeDecodeError:
            continue  # a garbled header is dropped, never fatal
    return out


async def _poll_batch(subscriber: Any, consumer: Any) -> tuple[ConsumerRecord, ...]:
    """FastStream's batch poll without its pause after an empty poll: `getmany` has waited
    `batch_timeout_ms` for records already, and the pause (as long again) held back a record
    that arrived during it, on every hop of an idle pipeline."""
    batches = await consumer.getmany(
        timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records
    )
    return tuple(itertools.chain.from_iterable(batches.values()))


def _record_size(key: bytes | None, value: bytes, headers: dict[str, str]) -> int:
    """Bytes the producer counts against `max_request_size` for this record."""
    encoded = [(k, v.encode()) for k, v in headers.items()]
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, encoded))


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class StageRuntime(Generic[R]):
    """Runs one StageApp on a FastStream KafkaBroker."""

    own: R  # the stage's setup result, made in start() before any record is consumed

    def __init__(self, app: StageApp[R], settings: Settings, resources: StageResources) -> None:
        self.app = app
        self.settings = settings
        self.res = resources
        assert app.stage is not None
        self.stage = app.stage
        self.topics = topics_for(settings)
        self.group = f"{settings.topic_prefix}{settings.group_prefix}{app.name}"
        self.input_topic = self.topics.name(self.stage.input)
        self.output_topic = self.topics.name(self.stage.output)
        self.m_in_flight = metrics.IN_FLIGHT.labels(app.name)
        INFRA_WAITS.watch(app.name)
        self.m_duration = metrics.DURATION.labels(app.name)
        self.m_outcome = {
            o: metrics.MESSAGES.labels(app.name, o)
            for o in ("processed", "duplicate", "deleted", "retried", "dead_lettered")
        }
        self.broker = KafkaBroker(
            **kafka_clients.broker_kwargs(settings, app.name),
            client_id=f"accessa-{app.name}",
            graceful_timeout=settings.shutdown_grace_s,
            logger=logging.getLogger("accessa.faststream"),
            log_level=logging.DEBUG,  # per-batch access lines only when debugging
        )
        # The longest a retry record waits: the last backoff step, or a budget recheck if that
        # is longer. A due time further after the record's own timestamp is not trusted.
        last_step = settings.retry_base_delay_s * 2 ** max(settings.retry_max_attempts - 1, 0)
        self.max_delay_s = max(last_step, settings.budget_recheck_s)
        self.deliveries = deliveries.DeliveryLedger(resources.pool, self.group)
        self.producer = self._make_producer()
        self._register()

    # --- wiring

    def _make_producer(self) -> AIOKafkaProducer:
        # Outputs go through aiokafka's producer directly: records are already encoded with
        # explicit headers, and FastStream's per-record publish command measured ~2x slower.
        return kafka_clients.producer(
            self.settings,
            self.app.name,
            client_id=f"accessa-{self.app.name}",
            max_request_size=self.settings.max_message_bytes,  # what DLQ copies are sized to
            **PRODUCER_CONFIG,
        )

    async def _renew_producer(self) -> None:
        """Replace the producer: after a broker restart an idempotent producer can be stuck
        on OutOfOrderSequenceNumber for good; only a new producer id starts clean."""
        old, self.producer = self.producer, self._make_producer()
        await self.producer.start()
        with contextlib.suppress(Exception):
            await old.stop()

    def max_poll_interval_ms(self) -> int:
        """10 minutes, or longer for a stage whose records may each take long: a whole batch
        of them, run one after the other, plus a minute, so the consumer never leaves its
        group (and has the batch redone by another) while it works within its limits."""
        limit = self.app.record_time_limit_s
        max_records = self.app.max_records or self.settings.batch_max_records
        if limit is None:
            return 600_000
        return max(600_000, int((max_records * limit(self.settings) + 60) * 1000))

    def _register(self) -> None:
        common: dict[str, Any] = {
            "batch": True,
            "ack_policy": AckPolicy.MANUAL,
            "auto_offset_reset": "earliest",
            "max_records": self.app.max_records or self.settings.batch_max_records,
            "batch_timeout_ms": 100,
            "max_poll_interval_ms": self.max_poll_interval_ms(),
            "max_partition_fetch_bytes": self.settings.max_message_bytes * 2,
            # The runtime decodes each record itself, into its typed event: skip FastStream's
            # JSON decoding of the whole batch.
            "decoder": _skip_decoding,
            "parser": _parse_readable,
        }
        main = self.broker.subscriber(self.input_topic, group_id=self.group, **common)
        main.get_msg = functools.partial(_poll_batch, main)
        main(self._on_main_batch)
        if self.settings.retry_max_attempts:
            retry_topics = [
                self.topics.retry(self.stage.input, n)
                for n in range(1, self.settings.retry_max_attempts + 1)
            ]
            retry = self.broker.subscriber(*retry_topics, group_id=f"{self.group}-retry", **common)
            retry.get_msg = functools.partial(_poll_batch, retry)
            retry(self._on_retry_batch)

    async def access_problem(self) -> str | None:
        """Why this process's Kafka principal cannot run the stage (None when it can): checked
        before consuming, so a wrong credential or a missing ACL shows as one readable reason
        instead of a consumer that fails on every fetch."""
        retries = [
            self.topics.retry(self.stage.input, n)
            for n in range(1, self.settings.retry_max_attempts + 1)
        ]
        topics = [self.input_topic, *retries, self.output_topic, self.topics.dlq(self.stage.input)]
        admin = kafka_clients.admin(self.settings, self.app.name, request_timeout_ms=10_000)
        try:
            await admin.start()
            # The broker answers in its own order: report the first problem in ours (input first).
            described = {t["topic"]: t for t in await admin.describe_topics(topics)}
            for topic in (described[name] for name in topics if name in described):
                if topic["error_code"] == TopicAuthorizationFailedError.errno:
                    return f"Kafka denied topic {topic['topic']} (TopicAuthorizationFailed)"
                if topic["error_code"]:  # e.g. not created yet: `accessa infra topics`
                    return f"topic {topic['topic']}: {for_code(topic['error_code']).__name__}"
            for response in await admin.describe_consumer_groups([self.group]):
                for group in response.groups:
                    if group[0]:
                        return f"Kafka denied group {self.group} ({for_code(group[0]).__name__})"
        except Exception as exc:
            return await kafka_clients.diagnose(self.settings, self.app.name) or (
                kafka_clients.explain(exc)
            )
        finally:
            await admin.close()
        return None

    async def start(self) -> None:
        # A stage without a setup is a StageApp[None]: its handlers get `ctx.own` None.
        self.own = await self.app.setup(self.res) if self.app.setup else cast(R, None)
        await self.producer.start()
        await self.broker.start()

    async def stop(self) -> None:
        """Stop fetching, drain in-flight batches (graceful_timeout), leave the group."""
        await self.broker.stop()
        await self.producer.stop()

    # --- batches

    async def _on_main_batch(self, msg: KafkaMessage) -> None:
        await self._run_batch(msg, list(msg.raw_message))

    async def _on_retry_batch(self, msg: KafkaMessage) -> None:
        """Run the records that are due; pause each partition at its first not-due record."""
        due: list[ConsumerRecord] = []
        held: set[TopicPartition] = set()
        now_ms = time.time() * 1000
        for record in msg.raw_message:
            tp = TopicPartition(record.topic, record.partition)
            if tp in held:
                continue
            due_at = _int(_headers(record).get(Headers.DUE_AT))  # garbage: 0, due now
            due_at = min(due_at, record.timestamp + self.max_delay_s * 1000)
            if due_at > now_ms:
                held.add(tp)
                self._hold(msg, tp, record.offset, (due_at - now_ms) / 1000)
            else:
                due.append(record)
        await self._run_batch(msg, due)

    def _hold(self, msg: KafkaMessage, tp: TopicPartition, offset: int, delay_s: float) -> None:
        # faststream's ConsumerProtocol has no pause/resume: the aiokafka consumer underneath.
        consumer = cast(AIOKafkaConsumer, msg.consumer)
        consumer.seek(tp, offset)
        consumer.pause(tp)

        def resume() -> None:
            if tp in consumer.assignment():
                consumer.resume(tp)

        asyncio.get_running_loop().call_later(max(delay_s, 0.0), resume)

    async def _run_batch(self, msg: KafkaMessage, records: Sequence[ConsumerRecord]) -> None:
        by_document: dict[tuple[str, int, bytes | None], list[ConsumerRecord]] = defaultdict(list)
        for record in records:
            by_document[(record.topic, record.partition, record.key)].append(record)
        futures: list[asyncio.Future[Any]] = []
        try:
            # Both before any handler starts; on two connections, so one round trip's wait.
            counted, known = await asyncio.gather(
                self._infra(lambda: self.deliveries.delivered(records), "count"),
                self._infra(lambda: self._prefetch(records), "dedup lookup"),
            )
            groups: list[list[ConsumerRecord]] = []
            suspects: list[list[ConsumerRecord]] = []  # documents with a record seen before
            for group in by_document.values():
                suspect = any(counted[deliveries.key(r)].suspect for r in group)
                (suspects if suspect else groups).append(group)
            finished = [deliveries.key(r) for group in groups for r in group]
            workers = min(self.settings.stage_concurrency, len(groups))
            # A fixed pool of workers over the groups: bounded concurrency without a task
            # per document, which costs more than a fast handler does.
            await asyncio.gather(*(self._worker(groups, futures, known) for _ in range(workers)))
            forget = asyncio.ensure_future(
                self._infra(lambda: self.deliveries.finished(finished), "forget deliveries")
            )  # while the producer waits for acks
            if suspects:  # before any of them may crash: these are not to blame
                await forget
            crashed: list[deliveries.Key] = []
            for group in suspects:
                for record in group:
                    futures += await self._run_alone(
                        record, counted[deliveries.key(record)], crashed, known
                    )
            await self._confirm(futures)
            await forget
            # Forgotten only once its DLQ copy is acknowledged: never started again meanwhile.
            await self._infra(lambda: self.deliveries.finished(crashed), "forget deliveries")
            self.res.faults.point("after_produce")
            await msg.ack()
        except BaseException:
            await msg.nack()  # rewind every partition of the batch: nothing is skipped
            raise

    async def _prefetch(
        self, records: Sequence[ConsumerRecord]
    ) -> dict[deliveries.Key, Prefetched]:
        """Decode the batch's records and look up, in one statement, which of their events
        this consumer has committed already. A record that does not decode is left out: `_handle`
        decodes it again and dead-letters it with the reason."""
        events: dict[deliveries.Key, Event] = {}
        for record in records:
            if len(record.value or b"") > self.settings.max_message_bytes:
                continue
            with contextlib.suppress(Exception):
                events[deliveries.key(record)] = decode_event(self.app.input_model, record.value)
        stored: dict[uuid.UUID, tuple[bytes | None, bytes]] = {}
        if events and not self.app.stateless:
            stored = await self._stored_outputs({e.event_id for e in events.values()})
        return {k: Prefetched(e, stored.get(e.event_id)) for k, e in events.items()}

    async def _worker(
        self,
        groups: list[list[ConsumerRecord]],
        futures: list[Any],
        known: dict[deliveries.Key, Prefetched],
    ) -> None:
        while groups:
            for record in groups.pop():  # one document's records, in offset order
                outcome = await self._handle_with_infra_retry(
                    record, known.get(deliveries.key(record))
                )
                for topic, key, value, headers in outcome.produce:
                    futures.append(await self._send(topic, key, value, headers))

    async def _run_alone(
        self,
        record: ConsumerRecord,
        delivery: deliveries.Delivery,
        crashed: list[Any],
        known: dict[deliveries.Key, Prefetched],
    ) -> list[Any]:
        """A record of a document delivered before without finishing: its start is counted
        durably, and it runs alone, so that a crash now is blamed on it. One that has started
        `max_delivery_attempts` times is dead-lettered unstarted."""
        key = deliveries.key(record)
        if delivery.suspect and delivery.attempts >= self.settings.max_delivery_attempts:
            outcome = await self._infra(lambda: self._crashed(record, delivery.attempts), "DLQ")
            crashed.append(key)
        else:
            if delivery.suspect:  # a first delivery's start is counted already
                await self._infra(lambda: self.deliveries.starting(record), "count start")
            outcome = await self._handle_with_infra_retry(record, known.get(key))
            await self._infra(lambda: self.deliveries.finished([key]), "forget delivery")
        return [await self._send(*produce) for produce in outcome.produce]

    async def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]
    ) -> Any:
        span = tracing.producing(topic, key, headers, client_id=f"accessa-{self.app.name}")
        encoded = [(k, v.encode()) for k, v in headers.items()]
        try:
            future = await self.producer.send(topic, value, key=key, headers=encoded)
        except BaseException:
            if span is not None:
                span.end()
            raise
        tracing.end_when_acked(span, future)
        return future

    async def _confirm(self, futures: list[Any]) -> None:
        """Wait for every produce; if the broker is down, keep trying until it is back."""
        delay = 0.5
        while True:
            try:
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                log.warning("produce failed, will re-check: %s", exc)
                await asyncio.sleep(delay)  # backoff while the broker is unreachable
                delay = min(delay * 2, 10)
                futures = [f for f in futures if not f.done() or f.exception() is None]
                if all(f.done() for f in futures):
                    await self._renew_producer()
                    raise  # delivery of some record failed for good: rewind the batch

    # --- one record

    async def _handle_with_infra_retry(
        self, record: ConsumerRecord, prefetched: Prefetched | None = None
    ) -> Outcome:
        first = [prefetched]

        def attempt() -> Awaitable[Outcome]:
            # Only the first attempt trusts the batch's lookup: after an infrastructure error
            # the record's own transaction may have committed (its reply lost).
            pre, first[0] = first[0], None
            return self._traced(record, pre)

        return await self._infra(attempt, "record")

    async def _infra(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await retry_infra(op, what, stage=self.app.name)

    async def _traced(self, record: ConsumerRecord, prefetched: Prefetched | None) -> Outcome:
        """`_handle` in a `process <topic>` span; what it produces continues the trace."""
        if not tracing.enabled():
            return await self._handle(record, prefetched)
        with tracing.processing(record, _headers(record), stage=self.app.name, group=self.group):
            outcome = await self._handle(record, prefetched)
            for *_, headers in outcome.produce:  # retry and DLQ copies included
                tracing.inject(headers)
            return outcome

    async def _handle(
        self, record: ConsumerRecord, prefetched: Prefetched | None = None
    ) -> Outcome:
        """One record; `prefetched` is its decoded event and dedup lookup, when the batch's."""
        headers = _headers(record)
        cid_missing = not headers.get(Headers.CORRELATION_ID)
        cid = headers.get(Headers.CORRELATION_ID) or str(uuid.uuid4())
        headers[Headers.CORRELATION_ID] = cid
        token = correlation_id.set(cid)
        attempt = _int(headers.get(Headers.ATTEMPT))
        self.m_in_flight.inc()
        started = time.perf_counter()
        event: Event | None = None
        try:
            if len(record.value or b"") > self.settings.max_message_bytes:
                raise PoisonMessage(
                    f"message of {len(record.value)} bytes exceeds the limit", code="oversized"
                )
            event = (
                prefetched.event if prefetched else decode_event(self.app.input_model, record.value)
            )
            if cid_missing:  # the event carries its own: better than the one made up above
                headers[Headers.CORRELATION_ID] = event.correlation_id
                correlation_id.set(event.correlation_id)
            if prefetched is not None or self.app.stateless:
                stored = prefetched.stored if prefetched else None
            else:
                stored = await self._stored_output(event.event_id)
            if stored is not None:
                self.m_outcome["duplicate"].inc()
                return self._emit(stored, headers, event)
            ctx = StageContext(
                stage=self.app.name,
                consumer=self.group,
                event=event,
                attempt=attempt,
                res=self.res,
                output_topic=self.output_topic,
                own=self.own,
            )
            assert self.app.handler is not None
            self.res.faults.handling(event.document_id)
            output = await self.app.handler(event, ctx)
            if not ctx.committed and not self.app.stateless:
                raise RuntimeError(f"{self.app.name} handler returned without ctx.commit()")
            self.res.faults.point("after_db_commit")
            self.m_outcome["processed"].inc()
            stored_out = (output.key(), output.to_bytes()) if output else None
            return self._emit(stored_out, headers, event)
        except AlreadyCommitted:
            assert event is not None
            self.m_outcome["duplicate"].inc()
            return self._emit(await self._stored_output(event.event_id), headers, event)
        except DocumentDeleted as exc:
            self.m_outcome["deleted"].inc()
            log.info("skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            return Outcome()
        except Exception as exc:
            if is_infra(exc):
                raise
            return await self._failed(record, headers, attempt, event, exc)
        finally:
            self.m_in_flight.dec()
            self.m_duration.observe(time.perf_counter() - started)
            correlation_id.reset(token)

    async def _stored_outputs(
        self, event_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[bytes | None, bytes]]:
        """The outputs this consumer committed for those of `event_ids` it has committed."""
        rows = await self.res.pool.fetch(_STORED, self.group, list(event_ids))
        return {
            r["event_id"]: (r["output_key"], r["output_value"])
            if r["output_value"]
            else (None, b"")
            for r in rows
        }

    async def _stored_output(self, event_id: uuid.UUID) -> tuple[bytes | None, bytes] | None:
        return (await self._stored_outputs([event_id])).get(event_id)

    def _emit(
        self, stored: tuple[bytes | None, bytes] | None, headers: dict[str, str], event: Event
    ) -> Outcome:
        if not stored or not stored[1]:
            return Outcome()
        # Ids come from the event: a producer's missing or wrong headers are not passed on.
        out = {
            Headers.CORRELATION_ID: headers[Headers.CORRELATION_ID],
            Headers.JOB_ID: str(event.job_id),
            Headers.DOCUMENT_ID: str(event.document_id),
            Headers.USER_ID: str(event.user_id),
        }
        return Outcome([(self.output_topic, stored[0], stored[1], out)])

    # --- failures

    async def _crashed(self, record: ConsumerRecord, starts: int) -> Outcome:
        """Dead-letter a record whose handler started `starts` times and never finished."""
        headers = _headers(record)
        event: Event | None = None
        with contextlib.suppress(Exception):  # for its job id; the headers carry one too
            event = decode_event(self.app.input_model, record.value)
        cid = headers.get(Headers.CORRELATION_ID) or (event.correlation_id if event else "")
        headers[Headers.CORRELATION_ID] = cid or str(uuid.uuid4())
        token = correlation_id.set(headers[Headers.CORRELATION_ID])
        try:
            exc = PermanentError(
                f"the {self.app.name} process died {starts} times handling this record "
                "(killed: out of memory, a crash in native code, or SIGKILL)",
                code="crashed_consumer",
            )
            return await self._failed(
                record, headers, _int(headers.get(Headers.ATTEMPT)), event, exc
            )
        finally:
            correlation_id.reset(token)

    async def _failed(
        self,
        record: ConsumerRecord,
        headers: dict[str, str],
        attempt: int,
        event: Event | None,
        exc: Exception,
    ) -> Outcome:
        error = exc if isinstance(exc, PipelineError) else None
        code = error.code if error else f"unexpected_{type(exc).__name__}"
        if (
            isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode
        ):  # a full disk, EACCES...
            code = f"os_{errno.errorcode[exc.errno]}"
        message = error.message if error else str(exc) or type(exc).__name__
        kind = "permanent" if isinstance(exc, PermanentError) else "transient"
        metrics.FAILURES.labels(self.app.name, kind, code).inc()
        reason = {
            "stage": self.app.name,
            "code": code,
            "message": message[:2000],
            "class": kind,
            "attempt": attempt,
        }
        job_id = event.job_id if event else _uuid(headers.get(Headers.JOB_ID))
        original = headers.get(Headers.ORIGINAL_TOPIC, record.topic)
        recoverable = isinstance(exc, RecoverableError)
        if kind == "transient" and (recoverable or attempt < self.settings.retry_max_attempts):
            n = min(attempt + 1, max(self.settings.retry_max_attempts, 1))
            delay = self.settings.retry_base_delay_s * 2 ** (n - 1)
            delay = min(max(delay, getattr(exc, "defer_s", None) or 0.0), self.max_delay_s)
            log.warning("transient failure, retry %d in %.1fs: %s: %s", n, delay, code, message)
            tracing.failed(exc, code=code, kind=kind, outcome="retry")
            if job_id:
                async with self.res.pool.acquire() as conn, conn.transaction():
                    await jobs.retrying(
                        conn,
                        job_id=job_id,
                        actor=self.app.name,
                        error=reason,
                        count_attempt=not recoverable,
                    )
            retry_headers = {
                **headers,
                Headers.ATTEMPT: str(attempt if recoverable else n),
                Headers.DUE_AT: str(int(time.time() * 1000 + delay * 1000)),
                Headers.ORIGINAL_TOPIC: original,
                Headers.ORIGINAL_PARTITION: headers.get(
                    Headers.ORIGINAL_PARTITION, str(record.partition)
                ),
                Headers.ORIGINAL_OFFSET: headers.get(Headers.ORIGINAL_OFFSET, str(record.offset)),
                Headers.ERROR_CODE: code,
            }
            self.m_outcome["retried"].inc()
            return Outcome(
                [
                    (
                        self.topics.retry(self.stage.input, n),
                        record.key,
                        record.value or b"",
                        retry_headers,
                    )
                ]
            )
        log.error("dead-lettering record: %s: %s", code, message)
        tracing.failed(exc, code=code, kind=kind, outcome="dlq")
        if job_id:
            async with self.res.pool.acquire() as conn, conn.transaction():
                await jobs.fail(
                    conn,
                    job_id=job_id,
                    status=self.stage.failed_status,
                    actor=self.app.name,
                    error=reason,
                )
        stack = "".join(traceback.format_exception(exc, limit=-3))[-1500:]
        dlq_headers = {
            **headers,
            Headers.ERROR_CLASS: kind,
            Headers.ERROR_CODE: code,
            Headers.ERROR_MESSAGE: message[:1000],
            Headers.ERROR_STACK: stack,
            Headers.ORIGINAL_TOPIC: original,
            Headers.ORIGINAL_PARTITION: headers.get(
                Headers.ORIGINAL_PARTITION, str(record.partition)
            ),
            Headers.ORIGINAL_OFFSET: headers.get(Headers.ORIGINAL_OFFSET, str(record.offset)),
            Headers.FAILED_AT: str(int(time.time() * 1000)),
        }
        value = record.value or b""
        if _record_size(record.key, value, dlq_headers) > self.settings.max_message_bytes:
            # Too big to copy with its error headers (the producer would refuse it and stop
            # the partition here): keep the reason and where the bytes are, not the bytes.
            dlq_headers[Headers.VALUE_OMITTED] = str(len(value))
            value = b""
        self.m_outcome["dead_lettered"].inc()
        return Outcome([(self.topics.dlq(self.stage.input), record.key, value, dlq_headers)])


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
