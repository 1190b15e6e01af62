"""Read a bounded range of a topic (every partition, from an offset or a time to the current
end). Used by the DLQ tools, replay and status; never joins a consumer group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from accessa import kafka_clients
from accessa.config import Settings


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def of(cls, r: ConsumerRecord) -> Record:
        headers = {k: v.decode(errors="replace") if v else "" for k, v in r.headers or ()}
        return cls(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, headers)


async def partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for p in described.get("partitions", [])]


async def group_members(admin: AIOKafkaAdminClient, group: str) -> tuple[str, list[str]]:
    """(state, member ids) of a consumer group, from the raw DescribeGroups response."""
    (response,) = await admin.describe_consumer_groups([group])
    _error, _name, state, _ptype, _protocol, members = response.groups[0][:6]
    return state, [m[0] for m in members]


async def scan(
    settings: Settings,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> AsyncIterator[Record]:
    """Records of `topic` from `since` (or the beginning) up to `until` or the current end."""
    parts = await partitions(settings, topic)
    if partition is not None:
        parts = [tp for tp in parts if tp.partition == partition]
    if not parts:
        return
    consumer = kafka_clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        if since is not None:
            found = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in parts}
            )
            starts = {tp: found[tp].offset if found[tp] else ends[tp] for tp in parts}
        if until is not None:
            found = await consumer.offsets_for_times(
                {tp: int(until.timestamp() * 1000) for tp in parts}
            )
            ends = {tp: found[tp].offset if found[tp] else ends[tp] for tp in parts}
        if offset is not None:
            starts = {tp: offset for tp in parts}
            ends = {tp: min(ends[tp], offset + 1) for tp in parts}
        todo = {tp for tp in parts if starts[tp] < ends[tp]}
        for tp in parts:
            consumer.seek(tp, starts[tp])
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        yield Record.of(r)
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
