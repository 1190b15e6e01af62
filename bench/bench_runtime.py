"""No-op stage throughput: the stage runtime vs a raw aiokafka consume → produce → commit loop.

Both read the same pre-filled topic on the same broker, decode each record into its event,
build the same output event, produce it with the same key and headers, and commit offsets
only after the outputs are acknowledged (at-least-once). The ratio runtime ÷ raw is the price
of the runtime's plumbing (FastStream dispatch, delivery counting, dedup, retries/DLQ routing,
metrics, drain).

The no-op stage is stateful like every production stage: each record is looked up in, and
committed to, `processed_events` with the rest of its poll (the batched commit), and its
delivery is counted in `delivery_attempts`. The old stateless variant (no dedup at all, which
no production stage is) is measured too, for comparison with earlier figures, and so is the
stateful stage on the loop before settling behind (`inline`: each batch's acks and offsets
awaited before the next poll), for what `accessa/runtime/settling.py` buys. Rounds are
interleaved (raw, stateful, stateless, inline, raw, ...) so that a noisy neighbour does not
land on one side only; the best round of each side is compared, and every round is reported.

`python -m bench.bench_runtime --side runtime --messages 100000` runs one side alone against
running infrastructure (`accessa infra up`), e.g. under `py-spy record`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import TopicPartition

from accessa import kafka_clients
from accessa.config import Settings
from accessa.runtime import StageApp, StageContext, StageResources, Work, collector
from accessa.runtime.faults import FaultInjector
from accessa.runtime.producing import PRODUCER_CONFIG
from accessa.runtime.settling import Settler
from accessa.runtime.stage import StageRuntime
from accessa.storage import make_storage
from accessa.topics import ensure_topics
from bench.poll import until
from schemas.events import DocumentParsed, DocumentUploaded, decode_event
from schemas.headers import Headers
from schemas.topics import Stage


def to_parsed(event: DocumentUploaded) -> DocumentParsed:
    return DocumentParsed(
        event_id=DocumentParsed.make_id(event.job_id),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        parsed_path="p",
        parsed_sha256="0" * 64,
        pages=1,
        parser="noop",
    )


NOOP_STAGE = Stage("parser", "uploaded", "parsed", "failed_parse")
# Production-like: dedup lookup, the dedup row committed with the poll's others (the batched
# commit), and delivery counting, as every production stage has.
noop: StageApp[None] = StageApp("noop", DocumentUploaded, stage=NOOP_STAGE)
# The old, unfair variant: no dedup row, no lookup (no production stage is stateless).
noop_stateless: StageApp[None] = StageApp(
    "noop", DocumentUploaded, stage=NOOP_STAGE, stateless=True
)


@noop.handle
async def on_uploaded(event: DocumentUploaded, ctx: StageContext) -> Work:
    return ctx.work(to_parsed(event))  # a real stage adds its writes to the work


@noop_stateless.handle
async def on_uploaded_stateless(event: DocumentUploaded, ctx: StageContext) -> Work:
    return ctx.work(to_parsed(event))


def _uploads(n: int) -> list[DocumentUploaded]:
    uploads = []
    for _ in range(n):
        job = uuid.uuid4()
        uploads.append(
            DocumentUploaded(
                event_id=DocumentUploaded.make_id(job),
                job_id=job,
                document_id=uuid.uuid4(),
                user_id=uuid.uuid4(),
                correlation_id=str(uuid.uuid4()),
                storage_path="raw/x.pdf",
                sha256="a" * 64,
                size=1,
                filename="x.pdf",
            )
        )
    return uploads


async def fill(settings: Settings, topic: str, n: int) -> None:
    producer = kafka_clients.producer(settings, linger_ms=20)
    await producer.start()
    futures = []
    for event in _uploads(n):
        headers = [
            (Headers.CORRELATION_ID, event.correlation_id.encode()),
            (Headers.JOB_ID, str(event.job_id).encode()),
            (Headers.DOCUMENT_ID, str(event.document_id).encode()),
            (Headers.USER_ID, str(event.user_id).encode()),
        ]
        futures.append(
            await producer.send(topic, event.to_bytes(), key=event.key(), headers=headers)
        )
    await asyncio.gather(*futures)
    await producer.stop()


async def raw_loop(settings: Settings, src: str, dst: str, n: int) -> None:
    """The baseline: aiokafka only, same work per record, commit after acks."""
    consumer = kafka_clients.consumer(
        settings,
        src,
        group_id=f"raw-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=256,
    )
    producer = kafka_clients.producer(settings, **PRODUCER_CONFIG)
    await consumer.start()
    await producer.start()
    seen = 0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=256)
            if not batch:
                continue
            futures = []
            for records in batch.values():
                for record in records:
                    event = decode_event(DocumentUploaded, record.value)
                    out = to_parsed(event)
                    futures.append(
                        await producer.send(
                            dst, out.to_bytes(), key=out.key(), headers=list(record.headers)
                        )
                    )
                    seen += 1
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def output_rate(settings: Settings, topic: str, n: int) -> float:
    """Wait for n records in `topic`; rate = n / (last - first record timestamp)."""
    consumer = kafka_clients.consumer(
        settings,
        topic,
        auto_offset_reset="earliest",
        group_id=f"count-{uuid.uuid4().hex}",
    )
    await consumer.start()
    stamps: list[int] = []
    try:
        while len(stamps) < n:
            batch = await consumer.getmany(timeout_ms=200)
            stamps += [r.timestamp for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return n / ((max(stamps) - min(stamps)) / 1000)


async def wait_produced(settings: Settings, topic: str, n: int) -> None:
    """Until `topic` holds n records: end offsets only, so the stage keeps the CPU to itself
    (the raw loop, too, is measured with nothing else running in its event loop)."""
    consumer = kafka_clients.consumer(settings)
    partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]

    async def produced() -> bool:
        return sum((await consumer.end_offsets(partitions)).values()) >= n

    await consumer.start()
    try:
        await until(produced, timeout=600, interval=0.5, what=f"{n} records in {topic}")
    finally:
        await consumer.stop()


class InlineSettler(Settler):
    """The loop before settling behind (`fe215a9`): each batch's acks and offset commit
    awaited before the next poll, for the `inline` side."""

    async def settle(self, records: Any, consumer: Any, acks: Any, *, behind: bool) -> None:
        await super().settle(records, consumer, acks, behind=False)


async def runtime_loop(
    settings: Settings, pool: Any, n: int, app: StageApp = noop, *, inline: bool = False
) -> float:
    """The same work through StageRuntime; its output rate counted afterwards, as for raw."""
    res = StageResources(settings, pool, make_storage(settings), FaultInjector(settings, "noop"))
    runtime = StageRuntime(app, settings, res)
    if inline:
        runtime.settler = InlineSettler()
    topic = f"{settings.topic_prefix}parsed"
    await runtime.start()
    try:
        await wait_produced(settings, topic, n)
    finally:
        await runtime.stop()
        # Keep processed_events as small for every round (the rows are this run's alone).
        await pool.execute("DELETE FROM processed_events WHERE consumer = $1", runtime.group)
    return await output_rate(settings, topic, n)


async def commit_strategies(
    settings: Settings, pool: Any, n: int = 4096, poll: int = 256
) -> dict[str, float]:
    """Dedup rows committed per second, Postgres only, three ways: a transaction per record
    (as the stages committed before the batched commit, `stage_concurrency` at once); one
    transaction per poll with a savepoint per record (a handler's failure undone alone), on
    its one connection; one multi-row INSERT per poll (the runtime's way now)."""
    events = [to_parsed(e) for e in _uploads(n)]
    insert = """INSERT INTO processed_events
      (consumer, event_id, output_topic, output_key, output_value) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT DO NOTHING"""
    rates: dict[str, float] = {}

    async def per_record(group: str) -> None:
        gate = asyncio.Semaphore(settings.stage_concurrency)

        async def one(event: DocumentParsed) -> None:
            async with gate, pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    insert, group, event.event_id, "t", event.key(), event.to_bytes()
                )

        await asyncio.gather(*map(one, events))

    async def savepoints(group: str) -> None:
        async with pool.acquire() as conn:
            for i in range(0, n, poll):
                async with conn.transaction():
                    for e in events[i : i + poll]:
                        async with conn.transaction():
                            await conn.execute(
                                insert, group, e.event_id, "t", e.key(), e.to_bytes()
                            )

    async def multi_row(group: str) -> None:
        async with pool.acquire() as conn:
            for i in range(0, n, poll):
                part = events[i : i + poll]
                await conn.execute(
                    """INSERT INTO processed_events
                         (consumer, event_id, output_topic, output_key, output_value)
                       SELECT $1, e, 't', k, v FROM unnest($2::uuid[], $3::bytea[], $4::bytea[])
                         AS u(e, k, v) ON CONFLICT DO NOTHING""",
                    group,
                    [e.event_id for e in part],
                    [e.key() for e in part],
                    [e.to_bytes() for e in part],
                )

    for name, way in (
        ("per_record_tx", per_record),
        ("savepoint_per_record_in_poll_tx", savepoints),
        ("multi_row_insert_per_poll", multi_row),
    ):
        group = f"bench-commit-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        await way(group)
        rates[name] = round(n / (time.perf_counter() - started), 1)
        await pool.execute("DELETE FROM processed_events WHERE consumer = $1", group)
    return rates


async def one_round(settings: Settings, pool: Any, side: str, n: int) -> float:
    """Fill fresh topics with n records and measure one side on them; msgs/s."""
    settings = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}-"})
    await ensure_topics(settings)
    src, dst = f"{settings.topic_prefix}uploaded", f"{settings.topic_prefix}parsed"
    await fill(settings, src, n)
    if side == "raw":
        await raw_loop(settings, src, dst, n)
        return await output_rate(settings, dst, n)
    if side == "inline":
        return await runtime_loop(settings, pool, n, inline=True)
    return await runtime_loop(settings, pool, n, noop if side == "runtime" else noop_stateless)


SIDES = ("raw", "runtime", "stateless", "inline")


async def run(settings: Settings, pool: Any, n: int = 20000, rounds: int = 3) -> dict[str, Any]:
    collector.tune()  # as in a stage process (`run_stage`); every side runs under it
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(rounds):
        for side in SIDES:
            rates[side].append(round(await one_round(settings, pool, side, n), 1))
    best = {side: max(r) for side, r in rates.items()}
    commits = await commit_strategies(settings, pool)
    return {
        "messages": n,
        "rounds": rounds,
        "raw_aiokafka_msgs_per_s": best["raw"],
        "runtime_msgs_per_s": best["runtime"],
        "runtime_over_raw": round(best["runtime"] / best["raw"], 3),
        "runtime_over_raw_per_round": [
            round(r / w, 3) for r, w in zip(rates["runtime"], rates["raw"], strict=True)
        ],
        "stateless_runtime_msgs_per_s": best["stateless"],
        "stateless_over_raw": round(best["stateless"] / best["raw"], 3),
        "inline_runtime_msgs_per_s": best["inline"],
        "settling_behind_over_inline": round(best["runtime"] / best["inline"], 3),
        "settling_behind_over_inline_per_round": [
            round(r / i, 3) for r, i in zip(rates["runtime"], rates["inline"], strict=True)
        ],
        "msgs_per_s_rounds": rates,
        "stage": "stateful no-op: dedup lookup, batched dedup-row commit, delivery counting",
        "inline": "the stateful stage with each batch settled before the next poll (old loop)",
        "gc_thresholds": list(collector.THRESHOLDS),
        "dedup_rows_per_s_by_commit": commits,
        "dedup_rows_multi_row_over_per_record_tx": round(
            commits["multi_row_insert_per_poll"] / commits["per_record_tx"], 1
        ),
        "goal": ">= 0.9",
    }


async def _one_side(side: str, n: int) -> None:
    from accessa.config import get_settings
    from accessa.db import create_pool
    from accessa.migrate import migrate

    settings = get_settings()
    collector.tune()
    await migrate(settings)
    pool = await create_pool(settings, max_size=8)
    try:
        if side == "commits":
            print(await commit_strategies(settings, pool))
            return
        print(f"{side}: {await one_round(settings, pool, side, n):.1f} msgs/s")
    finally:
        await pool.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=(*SIDES, "commits"), default="runtime")
    parser.add_argument("--messages", type=int, default=100000)
    args = parser.parse_args()
    asyncio.run(_one_side(args.side, args.messages))
