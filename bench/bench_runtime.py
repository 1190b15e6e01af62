"""No-op stage throughput: the stage runtime vs a raw aiokafka consume → produce loop.

Both read the same pre-filled topic on the same broker, decode each record into its event,
build the same output event, produce it with the same key and headers, and commit offsets
only after the outputs are acknowledged (at-least-once). The ratio runtime ÷ raw is the price
of the runtime's plumbing (FastStream dispatch, retries/DLQ routing, metrics, drain).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import TopicPartition

from accessa import kafka_clients
from accessa.config import Settings
from accessa.infra.topics import ensure_topics
from accessa.runtime.context import StageContext, StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.stage import PRODUCER_CONFIG, StageApp, StageRuntime
from accessa.storage import make_storage
from bench.poll import until
from schemas.events import DocumentParsed, DocumentUploaded, decode_event
from schemas.headers import Headers
from schemas.topics import Stage


def to_parsed(event: DocumentUploaded) -> DocumentParsed:
    return DocumentParsed(
        event_id=DocumentParsed.make_id(event.job_id), job_id=event.job_id,
        document_id=event.document_id, user_id=event.user_id,
        correlation_id=event.correlation_id, parsed_path="p", parsed_sha256="0" * 64,
        pages=1, parser="noop",
    )  # fmt: skip


noop = StageApp(
    "noop", DocumentUploaded, stage=Stage("parser", "uploaded", "parsed", "failed_parse"),
    stateless=True,
)  # fmt: skip


@noop.handle
async def on_uploaded(event: DocumentUploaded, ctx: StageContext) -> DocumentParsed:
    return to_parsed(event)


async def fill(settings: Settings, topic: str, n: int) -> None:
    producer = kafka_clients.producer(settings, linger_ms=20)
    await producer.start()
    futures = []
    for _ in range(n):
        job = uuid.uuid4()
        event = DocumentUploaded(
            event_id=DocumentUploaded.make_id(job), job_id=job, document_id=uuid.uuid4(),
            user_id=uuid.uuid4(), correlation_id=str(uuid.uuid4()), storage_path="raw/x.pdf",
            sha256="a" * 64, size=1, filename="x.pdf",
        )  # fmt: skip
        headers = [
            (Headers.CORRELATION_ID, event.correlation_id.encode()),
            (Headers.JOB_ID, str(event.job_id).encode()),
            (Headers.DOCUMENT_ID, str(event.document_id).encode()),
            (Headers.USER_ID, str(event.user_id).encode()),
        ]
        futures.append(await producer.send(topic, event.to_bytes(), key=event.key(),
                                           headers=headers))  # fmt: skip
    await asyncio.gather(*futures)
    await producer.stop()


async def raw_loop(settings: Settings, src: str, dst: str, n: int) -> None:
    """The baseline: aiokafka only, same work per record, commit after acks."""
    consumer = kafka_clients.consumer(settings, src, group_id=f"raw-{uuid.uuid4().hex}",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=256,
    )  # fmt: skip
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
                    futures.append(await producer.send(dst, out.to_bytes(), key=out.key(),
                                                       headers=list(record.headers)))  # fmt: skip
                    seen += 1
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def output_rate(settings: Settings, topic: str, n: int) -> float:
    """Wait for n records in `topic`; rate = n / (last - first record timestamp)."""
    consumer = kafka_clients.consumer(settings, topic, auto_offset_reset="earliest",
        group_id=f"count-{uuid.uuid4().hex}",
    )  # fmt: skip
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


async def runtime_loop(settings: Settings, pool: Any, n: int) -> float:
    """The same work through StageRuntime; its output rate counted afterwards, as for raw."""
    res = StageResources(settings, pool, make_storage(settings), FaultInjector(settings, "noop"))
    runtime = StageRuntime(noop, settings, res)
    topic = f"{settings.topic_prefix}parsed"
    await runtime.start()
    try:
        await wait_produced(settings, topic, n)
    finally:
        await runtime.stop()
    return await output_rate(settings, topic, n)


async def run(settings: Settings, pool: Any, n: int = 20000) -> dict[str, Any]:
    raw_settings = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}-"})
    rt_settings = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}-"})
    for s in (raw_settings, rt_settings):
        await ensure_topics(s)
        await fill(s, f"{s.topic_prefix}uploaded", n)
    await raw_loop(raw_settings, f"{raw_settings.topic_prefix}uploaded",
                   f"{raw_settings.topic_prefix}parsed", n)  # fmt: skip
    raw = await output_rate(raw_settings, f"{raw_settings.topic_prefix}parsed", n)
    runtime = await runtime_loop(rt_settings, pool, n)
    return {
        "messages": n,
        "raw_aiokafka_msgs_per_s": round(raw, 1),
        "runtime_msgs_per_s": round(runtime, 1),
        "runtime_over_raw": round(runtime / raw, 3),
        "goal": ">= 0.8",
    }
