"""The stage runtime: the one place that knows consume, commit, retry, DLQ, metrics, shutdown.

A stage is a handler `async (event, ctx) -> Work` (`StageApp`): it does its work and returns
its output with its writes, without committing. Per polled batch the runtime runs

    decode → count deliveries + look up committed events → in waves (at most one record per
    document): run handlers → commit the wave in one transaction → produce its outputs
    → settle: every ack, then the batch's offsets, while the next batch runs

Records of one document (the message key) run in offset order, one per wave; different
documents run concurrently up to `stage_concurrency`. Outputs are produced only after their
commit. The parts live beside this file, one policy each: `incoming` (decode once), `work`
(the unit of work and the batched commit), `routing` (retry and DLQ), `deliveries` (crash
counting), `producing`, `infra` (retry in place while the database or broker is down),
`access` (ACLs checked at start-up), `polling` (the batch poll and retry-partition pauses
below FastStream), `settling` (acks and offsets, one batch behind), `collector` (the GC tuned
per batch).

A record whose handling kills the process (OOM kill, segfault, SIGKILL) is counted in Postgres
before it runs: a record delivered again without finishing is a suspect and runs alone, and
after `max_delivery_attempts` starts it goes to the DLQ as `crashed_consumer`, unstarted.

FastStream owns the consumer loop, batching and the graceful drain. We drop to aiokafka in
three places: its consumer to pause/seek/resume retry partitions and to commit a batch's own
offsets while the next one runs (FastStream has no API for either), and a producer for outputs
(`producing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from accessa import jobs, kafka_clients, tracing
from accessa.config import Settings
from accessa.logs import correlation_id
from accessa.runtime import deliveries, metrics, polling
from accessa.runtime.access import access_problem
from accessa.runtime.app import StageApp
from accessa.runtime.context import JOBS, DocumentDeleted, StageContext, StageResources
from accessa.runtime.incoming import Incoming, Key, Stored, decode, parse_readable
from accessa.runtime.infra import INFRA_WAITS, is_infra, retry_infra
from accessa.runtime.producing import Produce, Producer
from accessa.runtime.routing import Router
from accessa.runtime.settling import Settler
from accessa.runtime.work import Committer, Pending
from accessa.topics import topics_for
from schemas.events import Event
from schemas.headers import Headers

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("accessa.runtime")

_STORED = """SELECT event_id, output_key, output_value FROM processed_events
WHERE consumer = $1 AND event_id = ANY($2::uuid[])"""


@dataclass
class Handled:
    """One record's result before its wave commits: what to produce now, or work to commit."""

    item: Incoming
    produce: list[Produce] = field(default_factory=list)
    pending: Pending | None = None
    trace: dict[str, str] = field(default_factory=dict)  # the `process` span, for outputs


class StageRuntime(Generic[R]):
    """Runs one StageApp on a FastStream KafkaBroker."""

    own: R  # the stage's setup result, made in start() before any record is consumed

    def __init__(self, app: StageApp[R], settings: Settings, resources: StageResources) -> None:
        assert app.stage is not None
        self.app, self.settings, self.res, self.stage = app, settings, resources, app.stage
        self.topics = topics_for(settings)
        self.group = f"{settings.topic_prefix}{settings.group_prefix}{app.name}"
        self.input_topic = self.topics.name(self.stage.input)
        self.output_topic = self.topics.name(self.stage.output)
        self.retry_topics = [
            self.topics.retry(self.stage.input, n)
            for n in range(1, settings.retry_max_attempts + 1)
        ]
        INFRA_WAITS.watch(app.name)
        self.m_in_flight = metrics.IN_FLIGHT.labels(app.name)
        self.running = 0  # records whose handlers are running; the gauge shows it
        self.m_duration = metrics.DURATION.labels(app.name)
        self.m_outcome = {
            o: metrics.MESSAGES.labels(app.name, o) for o in ("processed", "duplicate", "deleted")
        }
        self.broker = KafkaBroker(
            **kafka_clients.broker_kwargs(settings, app.name),
            client_id=f"accessa-{app.name}",
            graceful_timeout=settings.shutdown_grace_s,
            logger=logging.getLogger("accessa.faststream"),
            log_level=logging.DEBUG,  # per-batch access lines only when debugging
        )
        self.deliveries = deliveries.DeliveryLedger(resources.pool, self.group)
        self.committer = Committer(
            resources.pool, self.group, self.output_topic, resources.faults, stateless=app.stateless
        )
        self.router = Router(app.name, self.stage, settings, self.topics, resources.pool)
        self.producer = Producer(settings, app.name)
        self.settler = Settler()
        self._subscribe(self.input_topic, group=self.group, on_batch=self._on_main_batch)
        if self.retry_topics:
            self._subscribe(
                *self.retry_topics, group=f"{self.group}-retry", on_batch=self._on_retry_batch
            )

    # --- wiring

    def max_poll_interval_ms(self) -> int:
        """10 minutes, or longer for a stage whose records may each take long: a whole batch
        of them, run one after the other, plus a minute, so the consumer never leaves its
        group (and has the batch redone by another) while it works within its limits."""
        limit = self.app.record_time_limit_s
        max_records = self.app.max_records or self.settings.batch_max_records
        if limit is None:
            return 600_000
        return max(600_000, int((max_records * limit(self.settings) + 60) * 1000))

    def _subscribe(
        self, *topics: str, group: str, on_batch: Callable[[KafkaMessage], Awaitable[None]]
    ) -> None:
        subscriber = self.broker.subscriber(
            *topics,
            group_id=group,
            batch=True,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            max_records=self.app.max_records or self.settings.batch_max_records,
            batch_timeout_ms=100,
            max_poll_interval_ms=self.max_poll_interval_ms(),
            max_partition_fetch_bytes=self.settings.max_message_bytes * 2,
            decoder=polling.skip_decoding,  # the runtime decodes each record itself, once
            parser=parse_readable,
        )
        subscriber.get_msg = functools.partial(polling.poll_batch, subscriber)  # type: ignore[method-assign]
        subscriber(on_batch)

    async def access_problem(self) -> str | None:
        """Why this process's Kafka principal cannot run the stage (None when it can)."""
        topics = [
            self.input_topic,
            *self.retry_topics,
            self.output_topic,
            self.topics.dlq(self.stage.input),
        ]
        return await access_problem(self.settings, self.app.name, topics, self.group)

    async def start(self) -> None:
        # A stage without a setup is a StageApp[None]: its handlers get `ctx.own` None.
        self.own = await self.app.setup(self.res) if self.app.setup else cast(R, None)
        await self.producer.start()
        await self.broker.start()

    async def stop(self) -> None:
        """Settle the last batch, stop fetching, drain in-flight batches (graceful_timeout,
        each settling inline now), leave the group."""
        await self.settler.close(self.settings.shutdown_grace_s)
        await self.broker.stop()
        await self.producer.stop()

    # --- the loop

    async def _on_main_batch(self, msg: KafkaMessage) -> None:
        await self._run_batch(msg, self._decode_all(msg), behind=True)

    async def _on_retry_batch(self, msg: KafkaMessage) -> None:
        """Run the records that are due; pause each partition at its first not-due record."""
        due: list[Incoming] = []
        held: set[TopicPartition] = set()
        now_ms = time.time() * 1000
        for item in self._decode_all(msg):
            tp = TopicPartition(item.record.topic, item.record.partition)
            if tp in held:
                continue
            if (due_at := self.router.due_at_ms(item)) > now_ms:
                held.add(tp)
                polling.hold(msg, tp, item.record.offset, (due_at - now_ms) / 1000)
            else:
                due.append(item)
        await self._run_batch(msg, due, behind=False)

    def _decode_all(self, msg: KafkaMessage) -> list[Incoming]:
        """Each record, decoded once; its headers as FastStream's parser decoded them."""
        model, limit = self.app.input_model, self.settings.max_message_bytes
        return [
            decode(record, model, limit, headers)
            for record, headers in zip(msg.raw_message, msg.batch_headers, strict=True)
        ]

    async def _run_batch(self, msg: KafkaMessage, items: list[Incoming], *, behind: bool) -> None:
        """poll → count → waves of (run → commit → produce) → suspects alone → settle: acks
        and offsets, `behind` the next batch (see `settling`)."""
        sends: list[asyncio.Future[Any]] = []
        records, consumer = polling.records(msg), polling.consumer(msg)
        try:
            # All before any handler starts; on three connections, so one round trip's wait.
            suspect, _, _ = await asyncio.gather(
                self._infra(lambda: self.deliveries.delivered([i.record for i in items]), "count"),
                self._infra(lambda: self._look_up_committed(items), "dedup lookup"),
                self._infra(lambda: self._read_jobs(items), "jobs"),
            )
            documents: dict[tuple[str, int, bytes | None], list[Incoming]] = {}
            for item in items:
                documents.setdefault(item.document, []).append(item)
            fresh = [d for d in documents.values() if not any(i.key in suspect for i in d)]
            blamed = [d for d in documents.values() if any(i.key in suspect for i in d)]
            for n, wave in enumerate(itertools.zip_longest(*fresh)):  # each document's n-th
                for out in await self._run_wave([i for i in wave if i], jobs_read=n == 0):
                    sends.append(await self.producer.send(out))
            crashed: list[Key] = []
            for item in itertools.chain.from_iterable(blamed):  # one at a time: to blame
                delivery = suspect.get(item.key)
                if delivery and delivery.attempts >= self.settings.max_delivery_attempts:
                    crash = functools.partial(self.router.crashed, item, delivery.attempts)
                    outs = await self._infra(crash, "DLQ")
                    crashed.append(item.key)
                else:
                    if delivery:  # a first delivery's start is counted already
                        start = functools.partial(self.deliveries.starting, item.record)
                        await self._infra(start, "count start")
                    outs = await self._run_wave([item])
                sends += [await self.producer.send(out) for out in outs]
            acks = functools.partial(self._acks, sends, crashed)
            await self.settler.settle(records, consumer, acks, behind=behind)
        except BaseException:
            # Every partition of the batch (and of one settling behind): nothing is skipped.
            await self.settler.rewind(records, consumer)
            raise

    async def _acks(self, sends: list[asyncio.Future[Any]], crashed: list[Key]) -> None:
        """Every output acknowledged; then the records sent to the DLQ unstarted forgotten."""
        await self.producer.confirm(sends)
        # Forgotten only once its DLQ copy is acknowledged: never started again meanwhile.
        await self._infra(lambda: self.deliveries.finished(crashed), "forget deliveries")
        # A batch settles while the next one runs: the test kill here waits for a moment
        # when no handler is running, so what it leaves behind is this point's alone.
        self.res.faults.point("after_produce", quiet=self.running == 0)

    async def _run_wave(
        self, wave: Sequence[Incoming], *, jobs_read: bool = False
    ) -> list[Produce]:
        """Handle the wave's records concurrently, commit their work in one transaction,
        and return what to produce, in the wave's order. Its jobs are read first unless
        `jobs_read` (the batch's first wave: with the count), after any earlier wave's commit."""
        if not jobs_read:
            await self._infra(lambda: self._read_jobs(wave), "jobs")
        handled: list[Handled] = [Handled(item) for item in wave]
        todo = list(reversed(handled))
        # A fixed pool of workers: bounded concurrency without a task per document.
        workers = [
            self._work_through(todo) for _ in range(min(self.settings.stage_concurrency, len(todo)))
        ]
        if self.app.working_status:
            # Beside the handlers, not before them: a round trip and a commit off every hop.
            # It lands before the wave's commit, and a job never moves back if it lands late.
            workers.append(self._infra(lambda: self._mark_working(wave), "working status"))
        self.running += len(wave)  # while its handlers run; once a wave, not per record
        self.m_in_flight.set(self.running)
        try:
            await asyncio.gather(*workers)
        finally:
            self.running -= len(wave)
            self.m_in_flight.set(self.running)
        pending = [h.pending for h in handled if h.pending]
        forget = [i.key for i in wave]
        committed = await self._infra(lambda: self.committer.commit(pending, forget), "commit")
        duplicates = {p.event_id for p in pending} - committed.now
        stored = await self._infra(lambda: self._stored_outputs(duplicates), "lookup")
        out: list[Produce] = []
        processed = 0
        for h in handled:
            if h.pending and (exc := committed.failed.get(h.item.key)) is not None:
                out += await self._infra(functools.partial(self.router.failed, h.item, exc), "DLQ")
            elif h.pending and h.pending.event_id in committed.now:
                processed += 1
                for fn in h.pending.work.committed:
                    fn()
                out += self._emit(h, h.pending.encoded)
            elif h.pending:
                self.m_outcome["duplicate"].inc()  # another delivery committed it first
                out += self._emit(h, stored.get(h.pending.event_id))
            else:
                out += h.produce
        self.m_outcome["processed"].inc(processed)  # once a wave: each inc takes a lock
        return out

    async def _work_through(self, todo: list[Handled]) -> None:
        while todo:
            handled = todo.pop()
            await self._infra(functools.partial(self._handle, handled), "record")

    # --- one record

    async def _handle(self, h: Handled) -> None:
        """Run the handler on one record; a failure is routed now, a success waits to commit."""
        item = h.item
        token = correlation_id.set(item.correlation_id)
        started = time.perf_counter()
        span = (
            tracing.processing(item.record, item.headers, stage=self.app.name, group=self.group)
            if tracing.enabled()
            else contextlib.nullcontext()
        )
        try:
            with span:
                tracing.inject(h.trace)
                result = await self._run_handler(item)
        finally:
            self.m_duration.observe(time.perf_counter() - started)
            correlation_id.reset(token)
        if isinstance(result, Pending):
            h.pending = result
        else:
            h.produce = result
            for out in result:  # retry and DLQ copies continue the trace
                out.headers.update(h.trace)

    async def _run_handler(self, item: Incoming) -> list[Produce] | Pending:
        if item.event is None:
            assert item.problem is not None
            return await self.router.failed(item, item.problem)
        if item.stored is not None:
            self.m_outcome["duplicate"].inc()
            return self._outputs(item, item.stored)
        ctx = StageContext(
            stage=self.app.name,
            consumer=self.group,
            event=item.event,
            attempt=item.attempt,
            res=self.res,
            output_topic=self.output_topic,
            own=self.own,
            read_job=item.job,
        )
        assert self.app.handler is not None
        self.res.faults.handling(item.event.document_id)
        try:
            work = await self.app.handler(item.event, ctx)
        except DocumentDeleted as exc:
            self.m_outcome["deleted"].inc()
            log.info("skipped %s: %s", item.key, exc)
            return []
        except Exception as exc:
            if is_infra(exc):
                raise
            return await self.router.failed(item, exc)
        if self.app.stateless and work.writes:
            raise RuntimeError(f"{self.app.name} is stateless but its handler wrote rows")
        return Pending(item.key, item.event.event_id, work)

    def _emit(self, h: Handled, stored: Stored | None) -> list[Produce]:
        out = self._outputs(h.item, stored)
        for o in out:
            o.headers.update(h.trace)
        return out

    def _outputs(self, item: Incoming, stored: Stored | None) -> list[Produce]:
        if not stored or not stored[1]:
            return []
        event = item.event
        assert event is not None
        # Ids come from the event: a producer's missing or wrong headers are not passed on.
        headers = {
            Headers.CORRELATION_ID: item.correlation_id,
            Headers.JOB_ID: str(event.job_id),
            Headers.DOCUMENT_ID: str(event.document_id),
            Headers.USER_ID: str(event.user_id),
        }
        return [Produce(self.output_topic, stored[0], stored[1], headers)]

    # --- the database, per wave

    async def _look_up_committed(self, items: Sequence[Incoming]) -> None:
        """Which of the batch's events this consumer committed already, in one statement."""
        ids = {i.event.event_id for i in items if i.event is not None}
        if ids and not self.app.stateless:
            stored = await self._stored_outputs(ids)
            for item in items:
                if item.event is not None:
                    item.stored = stored.get(item.event.event_id)

    async def _stored_outputs(self, event_ids: set[uuid.UUID]) -> dict[uuid.UUID, Stored]:
        """The outputs this consumer committed for those of `event_ids` it has committed."""
        if not event_ids:
            return {}
        rows = await self.res.pool.fetch(_STORED, self.group, list(event_ids))
        return {
            r["event_id"]: (r["output_key"], r["output_value"])
            if r["output_value"]
            else (None, b"")
            for r in rows
        }

    async def _read_jobs(self, items: Sequence[Incoming]) -> None:
        """Each record's job with its document, in one statement, for `ctx.job()`."""
        if not self.app.reads_job or not (events := _to_run(items)):
            return
        rows = await self.res.pool.fetch(JOBS, list({e.job_id for e in events}))
        found = {r["job_id"]: r for r in rows}
        for item in items:
            item.job = found.get(item.event.job_id) if item.event is not None else None

    async def _mark_working(self, wave: Sequence[Incoming]) -> None:
        if events := _to_run(wave):
            await self.res.pool.execute(
                jobs.advance_sql(cast(str, self.app.working_status), ()),
                [e.job_id for e in events],
                [self.app.name] * len(events),
                [e.document_id for e in events],
                [e.user_id for e in events],
            )

    async def _infra(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await retry_infra(op, what, stage=self.app.name)


def _to_run(items: Sequence[Incoming]) -> list[Event]:
    """The events of `items` a handler will run on: decoded, and not committed before."""
    return [i.event for i in items if i.event is not None and i.stored is None]
