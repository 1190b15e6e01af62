"""The outbox relay: rows written with their job, published to Kafka, then marked sent.

Delivery: at-least-once, and exactly once under normal operation. A row is marked published
only after the broker acknowledged it (acks=all, idempotent producer: the producer's own
retries never duplicate). Broker down: the rows stay, the relay backs off and retries;
nothing is lost. A duplicate needs a crash between the broker's ack and our commit; the
deterministic event id makes it harmless downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from accessa import kafka_clients, tracing
from accessa.config import Settings
from accessa.db import create_pool
from accessa.infra.topics import topics_for
from accessa.logs import setup_logging
from producer_api import metrics

log = logging.getLogger("accessa.outbox")
BATCH = 200
MAX_BACKOFF_S = 5.0

# Only this deployment's topics: rows written for another topic namespace sharing the
# database (a test run, another environment) are never this relay's to send.
CLAIM = """
SELECT id, topic, key, payload, headers FROM outbox
WHERE published_at IS NULL AND topic = ANY($1::text[])
ORDER BY id LIMIT $2
FOR UPDATE SKIP LOCKED"""


class KafkaPublisher:
    """An idempotent producer, recreated after any failed delivery (a fresh producer id, so
    an expired batch can never leave a sequence gap behind)."""

    def __init__(self, settings: Settings, *, request_timeout_ms: int = 10_000) -> None:
        self.settings = settings
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = kafka_clients.producer(self.settings, "api", client_id="accessa-outbox",
                enable_idempotence=True, acks="all", linger_ms=2,
                request_timeout_ms=self.request_timeout_ms,
            )  # fmt: skip
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish(self, rows: Sequence[asyncpg.Record]) -> list[int]:
        """Send the rows in order; return the ids the broker acknowledged.

        Every record handed to the producer is awaited to its outcome (delivered, or its
        batch expired) before returning, so none can still go out after we gave up on it.
        """
        producer = await self._ready()
        futures: list[asyncio.Future[object]] = []
        try:
            for row in rows:
                fields = {k: str(v) for k, v in (row["headers"] or {}).items()}
                # The API request's trace continues here, and this send's in the stages.
                span = tracing.producing(row["topic"], row["key"], fields,
                                         client_id="accessa-outbox")  # fmt: skip
                headers = [(k, v.encode()) for k, v in fields.items()]
                futures.append(await producer.send(
                    row["topic"], row["payload"], key=row["key"], headers=headers
                ))  # fmt: skip
                tracing.end_when_acked(span, futures[-1])
        except KafkaError as exc:
            log.warning(
                "outbox relay: send failed after %d of %d: %s", len(futures), len(rows), exc
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        delivered = [row["id"] for row, r in zip(rows, results, strict=False)
                     if not isinstance(r, BaseException)]  # fmt: skip
        if len(delivered) < len(rows):
            await self.close()
        return delivered

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


async def relay_once(settings: Settings, pool: asyncpg.Pool, publisher: KafkaPublisher) -> int:
    """Publish one batch of this topic namespace's unpublished rows, in id order.

    Safe with several relays (API replicas and `accessa run relay`): `FOR UPDATE SKIP
    LOCKED` gives each row to the one relay whose transaction locked it, until that
    transaction marks it published and commits; the others skip it instead of waiting or
    sending it too. A relay that dies mid-batch rolls back and the rows are claimable again.
    Returns the number published; raises if some rows could not be delivered.
    """
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(CLAIM, topics_for(settings).all(), BATCH)
        if not rows:
            return 0
        delivered = await publisher.publish(rows)
        if delivered:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", delivered
            )
    metrics.OUTBOX_PUBLISHED.inc(len(delivered))
    if len(delivered) < len(rows):
        raise KafkaError(f"{len(rows) - len(delivered)} outbox rows were not delivered")
    return len(delivered)


async def relay(
    settings: Settings,
    pool: asyncpg.Pool,
    publisher: KafkaPublisher,
    stop: asyncio.Event,
    wakeup: asyncio.Event | None = None,
) -> None:
    """Publish outbox rows until `stop` is set; back off while Kafka or Postgres is down."""
    wakeup = wakeup or asyncio.Event()
    failures = 0
    said: tuple[str, float] = ("", 0.0)  # the last reason logged, and when
    while not stop.is_set():
        try:
            published = await relay_once(settings, pool, publisher)
            failures = 0
        except Exception as exc:  # the relay must outlive any one failure
            failures += 1
            metrics.OUTBOX_FAILURES.inc()
            delay = min(settings.outbox_poll_s * 2 ** min(failures, 8), MAX_BACKOFF_S)
            expected = (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
            reason = repr(exc)
            if isinstance(exc, KafkaConnectionError):  # "Unable to bootstrap" says not why
                reason = await kafka_clients.diagnose(settings, "api") or reason
            # The same reason is logged once a minute, not on every backoff step.
            if reason != said[0] or time.monotonic() - said[1] > 60:
                log.warning("outbox relay: %s; retrying in %.1fs", reason, delay,
                            exc_info=not isinstance(exc, expected))  # fmt: skip
                said = (reason, time.monotonic())
            await _wait(stop, None, delay)
            continue
        if published < BATCH:
            await _wait(stop, wakeup, settings.outbox_poll_s)
    await publisher.close()


async def _wait(stop: asyncio.Event, wakeup: asyncio.Event | None, delay_s: float) -> None:
    """Sleep `delay_s`, or until `stop` or `wakeup` is set."""
    events = [stop] if wakeup is None else [stop, wakeup]
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        if wakeup is not None:
            wakeup.clear()


def run_relay(settings: Settings) -> None:
    """`accessa run relay`: the relay alone, until SIGTERM/SIGINT."""
    setup_logging("relay", settings.log_level, settings.log_json)
    tracing.setup(settings, "relay")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        pool = await create_pool(settings)
        try:
            await relay(settings, pool, KafkaPublisher(settings), stop)
        finally:
            await pool.close()
            tracing.shutdown()

    asyncio.run(main())


if __name__ == "__main__":
    from accessa.config import get_settings

    run_relay(get_settings())
