"""The outbox relay: rows written with their job, published to Kafka, then marked sent.

Delivery: at-least-once, and exactly once under normal operation. A row is marked published
only after the broker acknowledged it (acks=all, idempotent producer: the producer's own
retries never duplicate). Broker down: the rows stay, the relay backs off and retries;
nothing is lost. A duplicate needs a crash between the broker's ack and our commit; the
deterministic event id makes it harmless downstream.

A row the broker can never take (its topic is missing, not ours to write, or it is too
large) is marked failed with the reason, per row: the rows behind it go out, and its job fails
with that reason (`accessa dlq list` shows the row, `POST /api/v2/jobs/{id}/retry` re-emits it).

Writing: `async with outbox.transaction(db.tx(), settings) as tx:` opens the transaction;
`await tx.enqueue(event)` writes the event's row in it, and once (only once) the transaction has
committed the relays of this process are woken. There is no other way for the API to enqueue, so
no caller can forget the wake-up, nor wake a relay for a row that rolled back.

Latency: a relay claims rows as soon as they commit, not at its next poll. The API wakes the
relays of its own process itself (no round trip, and no dependence on their LISTEN connection);
every INSERT also NOTIFYs channel `outbox` (migration 0016), which each relay LISTENs to on a
connection of its own, so the relays of other processes wake too. The poll stays, for what a
lost connection missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError

from accessa import jobs, kafka_clients, tracing
from accessa.config import Settings
from accessa.db import Listener, create_pool
from accessa.logs import setup_logging
from accessa.topics import topics_for
from producer_api import metrics
from producer_api.outbox_publisher import KafkaPublisher
from schemas.events import Event
from schemas.headers import Headers
from schemas.topics import STAGES

log = logging.getLogger("accessa.outbox")
BATCH = 200
MAX_BACKOFF_S = 5.0
CHANNEL = "outbox"
LISTEN_CHECK_S = 30.0  # how often an idle LISTEN connection is checked to answer
MAX_RELISTEN_S = 30.0
WAKE_MIN_INTERVAL_S = 0.1  # claims a wakeup starts are at least this far apart
# The wakeup events of the relays running in this process, with their event loops.
_LOCAL_RELAYS: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

# Only this deployment's topics: rows written for another topic namespace sharing the
# database (a test run, another environment) are never this relay's to send.
CLAIM = """
SELECT id, topic, key, payload, headers,
       extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_s FROM outbox
WHERE published_at IS NULL AND failed_at IS NULL AND topic = ANY($1::text[])
ORDER BY id LIMIT $2
FOR UPDATE SKIP LOCKED"""


async def _fail_rows(
    conn: asyncpg.Connection,
    settings: Settings,
    rows: Sequence[asyncpg.Record],
    failed: dict[int, str],
) -> None:
    """Mark refused rows failed (never claimed again) and fail their jobs with the reason:
    the user sees why instead of a job stuck at `queued`, and can retry it."""
    await conn.executemany(
        "UPDATE outbox SET failed_at = now(), failure = $2 WHERE id = $1", list(failed.items())
    )
    for row in (r for r in rows if r["id"] in failed):
        reason = failed[row["id"]]
        log.error(
            "outbox relay: row %d to %s is undeliverable: %s", row["id"], row["topic"], reason
        )
        base = row["topic"].removeprefix(settings.topic_prefix).split(".")[0]
        stage = next((s for s in STAGES.values() if s.input == base), None)
        job_id = (row["headers"] or {}).get(Headers.JOB_ID)
        if stage is None or not job_id:
            continue
        error = {
            "stage": stage.name,
            "code": "outbox_undeliverable",
            "message": f"the {base} event could not be published: {reason}",
        }
        await jobs.fail(
            conn, job_id=uuid.UUID(job_id), status=stage.failed_status, actor="outbox", error=error
        )


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
        metrics.OUTBOX_OLDEST.set(max((r["age_s"] for r in rows), default=0.0))
        if not rows:
            return 0
        sent = await publisher.publish(rows)
        if sent.delivered:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                sent.delivered,
            )
        if sent.failed:
            await _fail_rows(conn, settings, rows, sent.failed)
    metrics.OUTBOX_PUBLISHED.inc(len(sent.delivered))
    metrics.OUTBOX_UNDELIVERABLE.inc(len(sent.failed))
    if (left := len(rows) - len(sent.delivered) - len(sent.failed)) > 0:
        raise KafkaError(f"{left} outbox rows were not delivered")
    return len(sent.delivered) + len(sent.failed)


class Enqueuer:
    """The outbox of one open transaction (see `transaction`): `conn` is its connection."""

    def __init__(self, conn: asyncpg.Connection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.rows = 0

    async def enqueue(self, event: Event) -> None:
        """Write `event`'s row in the transaction: it goes out once the transaction commits."""
        await write_row(self.conn, topics_for(self.settings).name(event.topic), event)
        self.rows += 1


@asynccontextmanager
async def transaction(
    opening: AbstractAsyncContextManager[asyncpg.Connection], settings: Settings
) -> AsyncIterator[Enqueuer]:
    """Run the block in the transaction `opening` opens (e.g. `db.tx()`); if it enqueued rows,
    wake this process's relays after the commit. asyncpg has no on-commit hook: leaving
    `opening` without an exception is the commit, so a rollback or a failed commit wakes none."""
    async with opening as conn:
        tx = Enqueuer(conn, settings)
        yield tx
    if tx.rows:
        _wake_local_relays()


async def write_row(conn: asyncpg.Connection, topic: str, event: Event) -> None:
    """The row alone (key = document id), in the caller's transaction, waking nothing in this
    process (its NOTIFY still wakes every relay at commit): the API enqueues with `transaction`.
    """
    headers = {
        Headers.CORRELATION_ID: event.correlation_id,
        Headers.JOB_ID: str(event.job_id),
        Headers.USER_ID: str(event.user_id),
        Headers.DOCUMENT_ID: str(event.document_id),
        Headers.EVENT_ID: str(event.event_id),
    }
    tracing.inject(headers)  # the relay's send continues this request's trace
    await conn.execute(
        "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4)",
        topic,
        event.key(),
        event.to_bytes(),
        headers,
    )
    if trace_id := tracing.current_trace_id():
        await conn.execute(
            "UPDATE upload_jobs SET trace_id = $2 WHERE job_id = $1", event.job_id, trace_id
        )


def _wake_local_relays() -> None:
    """Outbox rows were just committed by this process: wake its relays now. (A relay on
    another event loop of the process, e.g. a server thread in a test, is woken through it.)"""
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    for wakeup, loop in list(_LOCAL_RELAYS.items()):
        if loop is here:
            wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(wakeup.set)


async def listen(
    settings: Settings, wakeup: asyncio.Event, stop: asyncio.Event, check_s: float = LISTEN_CHECK_S
) -> None:
    """Until `stop`: LISTEN on `outbox` and set `wakeup` on every notification, and on every
    (re)connection (rows may have committed unheard). A lost or silent connection is opened
    again, with a backoff while Postgres refuses; meanwhile the relay's poll carries on."""
    listener = Listener(settings.dsn_for("api"), CHANNEL, lambda _payload: wakeup.set(), wakeup.set)
    failures = 0
    try:
        while not stop.is_set():
            try:
                await listener.ensure()
                await listener.check()
                failures, delay = 0, check_s
            except Exception as exc:  # the relay polls on without it
                failures += 1
                delay = min(settings.outbox_poll_s * 2**failures, MAX_RELISTEN_S)
                if failures == 1:
                    log.warning(
                        "outbox relay: cannot LISTEN (%r); polling every %.1fs until it can",
                        exc,
                        settings.outbox_poll_s,
                    )
            await _wait(stop, listener.lost, delay)
    finally:
        await listener.close()


async def relay(
    settings: Settings,
    pool: asyncpg.Pool,
    publisher: KafkaPublisher,
    stop: asyncio.Event,
    wakeup: asyncio.Event | None = None,
) -> None:
    """Publish outbox rows until `stop` is set; back off while Kafka or Postgres is down.

    Between batches it waits `outbox_poll_s`, or less when `wakeup` is set: by a committed
    `transaction` that enqueued, and by the `outbox` NOTIFY (both only with `outbox_notify`)."""
    wakeup = wakeup or asyncio.Event()
    listening = None
    if settings.outbox_notify:
        _LOCAL_RELAYS[wakeup] = asyncio.get_running_loop()
        listening = asyncio.create_task(listen(settings, wakeup, stop))
    try:
        await _publish_until(settings, pool, publisher, stop, wakeup)
    finally:
        _LOCAL_RELAYS.pop(wakeup, None)
        if listening is not None:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        await publisher.close()


async def _publish_until(
    settings: Settings,
    pool: asyncpg.Pool,
    publisher: KafkaPublisher,
    stop: asyncio.Event,
    wakeup: asyncio.Event,
) -> None:
    failures = 0
    said: tuple[str, float] = ("", 0.0)  # the last reason logged, and when
    claimed = 0.0  # when the last claim started
    while not stop.is_set():
        try:
            claimed = time.monotonic()
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
                log.warning(
                    "outbox relay: %s; retrying in %.1fs",
                    reason,
                    delay,
                    exc_info=not isinstance(exc, expected),
                )
                said = (reason, time.monotonic())
            await _wait(stop, None, delay)
            continue
        if published < BATCH:
            await _wait(stop, wakeup, settings.outbox_poll_s)
            if (rest := pause_before_claim(published, time.monotonic() - claimed)) > 0:
                await _wait(stop, None, rest)


def pause_before_claim(published: int, since_last_claim_s: float) -> float:
    """How long a woken relay waits before it claims. Busy (its last claim took several rows),
    it lets rows committing soon after that claim gather for the next, so that a busy API does
    not pay a claim (and a broker round trip) per upload. Idle (a row at a time), it claims at
    once: the pause was up to 100 ms on an upload that came soon after the one before."""
    if published <= 1:
        return 0.0
    return max(WAKE_MIN_INTERVAL_S - since_last_claim_s, 0.0)


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
        pool = await create_pool(settings, "api")  # the relay is the API's
        try:
            await relay(settings, pool, KafkaPublisher(settings), stop)
        finally:
            await pool.close()
            tracing.shutdown()

    asyncio.run(main())


if __name__ == "__main__":
    from accessa.config import get_settings

    run_relay(get_settings())
