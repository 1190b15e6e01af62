"""Operator actions on topics: DLQ list/show/redrive, replay, consumer-group offset reset.

The CLI (`accessa dlq|replay|consumers`) renders what these return.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from accessa import jobs, kafka_clients, tracing
from accessa.config import Settings
from accessa.topic_scan import Record, group_members, partitions, scan
from accessa.topics import topics_for
from schemas.headers import Headers
from schemas.topics import STAGES

_ERROR_HEADERS = {
    Headers.ATTEMPT,
    Headers.DUE_AT,
    Headers.ERROR_CLASS,
    Headers.ERROR_CODE,
    Headers.ERROR_MESSAGE,
    Headers.ERROR_STACK,
    Headers.FAILED_AT,
}


def dlq_topics(settings: Settings, topic: str | None = None) -> list[str]:
    names = topics_for(settings)
    stages = [s for s in STAGES.values() if topic in (None, s.input, names.name(s.input))]
    return [names.dlq(s.input) for s in stages]


def stage_of(settings: Settings, topic: str) -> str:
    """The stage that consumes `topic` (a main, retry or DLQ topic name)."""
    base = topic.removeprefix(settings.topic_prefix).split(".")[0]
    return next(s.name for s in STAGES.values() if s.input == base)


def summarize(record: Record) -> dict[str, Any]:
    h = record.headers
    return {
        "id": record.id,
        "failed_at": datetime.fromtimestamp(record.timestamp_ms / 1000).isoformat(),
        "original_topic": h.get(Headers.ORIGINAL_TOPIC, ""),
        "error_class": h.get(Headers.ERROR_CLASS, ""),
        "error_code": h.get(Headers.ERROR_CODE, ""),
        "error_message": h.get(Headers.ERROR_MESSAGE, ""),
        "document_id": (record.key or b"").decode(errors="replace"),
        "job_id": h.get(Headers.JOB_ID, ""),
        "correlation_id": h.get(Headers.CORRELATION_ID, ""),
    }


async def dlq_records(
    settings: Settings,
    *,
    topic: str | None = None,
    document: str | None = None,
    since: datetime | None = None,
) -> list[Record]:
    found = []
    for name in dlq_topics(settings, topic):
        async for record in scan(settings, name, since=since):
            if document is None or (record.key or b"").decode() == document:
                found.append(record)
    return found


async def outbox_failures(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    topic: str | None = None,
    document: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Outbox rows the relay could never publish, in `summarize`'s shape (id `outbox:<id>`)."""
    names = topics_for(settings)
    rows = await pool.fetch(
        """SELECT id, topic, key, headers, failed_at, failure FROM outbox
           WHERE failed_at IS NOT NULL AND published_at IS NULL
             AND starts_with(topic, $1) AND ($2::text IS NULL OR topic = $2)
             AND ($3::timestamptz IS NULL OR failed_at >= $3) ORDER BY id""",
        settings.topic_prefix,
        names.name(topic) if topic else None,
        since,
    )
    found = []
    for row in rows:
        key, h = bytes(row["key"] or b"").decode(errors="replace"), row["headers"] or {}
        if document is not None and key != document:
            continue
        found.append(
            {
                "id": f"outbox:{row['id']}",
                "failed_at": row["failed_at"].isoformat(),
                "original_topic": row["topic"],
                "error_class": "permanent",
                "error_code": "outbox_undeliverable",
                "error_message": row["failure"],
                "document_id": key,
                "job_id": h.get(Headers.JOB_ID, ""),
                "correlation_id": h.get(Headers.CORRELATION_ID, ""),
            }
        )
    return found


async def dlq_record(settings: Settings, dlq_id: str) -> Record | None:
    topic, partition, offset = dlq_id.rsplit(":", 2)
    async for record in scan(settings, topic, partition=int(partition), offset=int(offset)):
        return record
    return None


@dataclass
class Redrive:
    id: str
    target: str
    status: str  # redriven | already_redriven | dry_run | value_unavailable


async def original_value(settings: Settings, record: Record) -> bytes | None:
    """The bytes a DLQ record stands for: its own value, or, where the copy had to omit it
    (`x-value-omitted`), the original record's, read back from where it failed."""
    if Headers.VALUE_OMITTED not in record.headers:
        return record.value
    h = record.headers
    try:
        where = (
            h[Headers.ORIGINAL_TOPIC],
            int(h[Headers.ORIGINAL_PARTITION]),
            int(h[Headers.ORIGINAL_OFFSET]),
        )
    except (KeyError, ValueError):
        return None
    async for original in scan(settings, where[0], partition=where[1], offset=where[2]):
        return original.value if original.offset == where[2] else None
    return None  # deleted by retention


async def redrive(
    settings: Settings,
    pool: asyncpg.Pool,
    records: list[Record],
    *,
    dry_run: bool = False,
    actor: str = "operator",
) -> list[Redrive]:
    """Send each DLQ record back to its stage's input topic with fresh attempts; a record is
    redriven once, and its job is reopened in front of that stage (by `actor`, for the audit)."""
    names = topics_for(settings)
    results: list[Redrive] = []
    tracing.setup(settings, "ops")
    producer = kafka_clients.producer(settings, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for record in records:
            stage = stage_of(settings, record.topic)
            target = names.name(STAGES[stage].input)
            if dry_run:
                results.append(Redrive(record.id, target, "dry_run"))
                continue
            value = await original_value(settings, record)
            if value is None:
                results.append(Redrive(record.id, target, "value_unavailable"))
                continue
            job_id = _uuid(record.headers.get(Headers.JOB_ID))
            async with pool.acquire() as conn, conn.transaction():
                first = await conn.fetchval(
                    """INSERT INTO dlq_redrives (dlq_id, document_id, job_id, target)
                       VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
                    record.id,
                    _uuid((record.key or b"").decode()),
                    job_id,
                    target,
                )
                if not first:
                    results.append(Redrive(record.id, target, "already_redriven"))
                    continue
                if job_id:
                    await jobs.reopen(conn, job_id=job_id, stage=stage, actor=actor)
                headers = {
                    k: v
                    for k, v in record.headers.items()
                    if k not in _ERROR_HEADERS and k != Headers.VALUE_OMITTED
                }
                headers[Headers.REDRIVEN] = record.id
                tracing.relink(headers, topic=target, operation="redrive")
                await producer.send_and_wait(
                    target,
                    value,
                    key=record.key,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            results.append(Redrive(record.id, target, "redriven"))
    finally:
        await producer.stop()
        tracing.shutdown()
    return results


class WindowExpired(Exception):
    """A replay window starts before the oldest record the topic's retention has left."""


async def check_window(settings: Settings, topic: str, since: datetime) -> None:
    """Raise WindowExpired if records of `topic` from `since` on have been deleted already
    (a partition's log starts past offset 0 and its first record is newer than `since`):
    replaying would silently replay less than asked."""
    parts = await partitions(settings, topic)
    consumer = kafka_clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(parts) if parts else {}
        trimmed = [tp for tp in parts if starts[tp] > 0]
        first = await consumer.offsets_for_times({tp: 0 for tp in trimmed}) if trimmed else {}
    finally:
        await consumer.stop()
    now_ms = datetime.now(UTC).timestamp() * 1000
    retention_ms = settings.topic_retention_hours * 3_600_000
    # A partition emptied by retention lost records up to its retention ago, at least.
    oldest = max((f.timestamp if f else now_ms - retention_ms for f in first.values()), default=0)
    if since.timestamp() * 1000 < oldest:
        kept = datetime.fromtimestamp(oldest / 1000, UTC).isoformat(timespec="seconds")
        raise WindowExpired(
            f"{topic} no longer holds records before {kept} (deleted by its retention, "
            f"ACCESSA_TOPIC_RETENTION_HOURS={settings.topic_retention_hours:g}): a replay "
            f"from {since.isoformat()} would replay less than asked; use --from {kept} or later"
        )


async def replay(
    settings: Settings,
    topic: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    document: str | None = None,
    user: str | None = None,
    dry_run: bool = False,
) -> list[Record]:
    """Re-publish the matching events of `topic` to it, for its consumer to process again.
    Events keep their ids, so stages that already processed them change nothing. Raises
    WindowExpired when `since` reaches before what retention has left of the topic."""
    name = topic if topic.startswith(settings.topic_prefix) else f"{settings.topic_prefix}{topic}"
    if since is not None:
        await check_window(settings, name, since)
    matches = []
    async for record in scan(settings, name, since=since, until=until):
        if document and (record.key or b"").decode() != document:
            continue
        if user and record.headers.get(Headers.USER_ID) != user:
            continue
        matches.append(record)
    if dry_run or not matches:
        return matches
    tracing.setup(settings, "ops")
    producer = kafka_clients.producer(settings, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for record in matches:
            headers = {**record.headers, Headers.REPLAYED: record.id}
            tracing.relink(headers, topic=name, operation="replay")
            await producer.send(
                name,
                record.value,
                key=record.key,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        await producer.flush()
    finally:
        await producer.stop()
        tracing.shutdown()
    return matches


class GroupActive(Exception):
    """The consumer group has live members: offsets can only be reset while it is stopped."""


async def reset_offsets(
    settings: Settings,
    stage: str,
    *,
    to_datetime: datetime | None = None,
    shift_by: int | None = None,
    to_earliest: bool = False,
    dry_run: bool = False,
) -> dict[str, dict[str, int]]:
    """Move the stage group's committed offsets on its input topic; returns the plan."""
    group = f"{settings.topic_prefix}{settings.group_prefix}{stage}"
    topic = topics_for(settings).name(STAGES[stage].input)
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        _state, members = await group_members(admin, group)
        if members:
            raise GroupActive(f"{len(members)} consumer(s) of {group} are running")
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    parts = await partitions(settings, topic)
    consumer = kafka_clients.consumer(settings, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)  # manual assignment: commits without joining the group
        starts = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
        targets: dict[TopicPartition, int] = {}
        for tp in parts:
            current = committed[tp].offset if tp in committed else starts[tp]
            if to_earliest:
                targets[tp] = starts[tp]
            elif shift_by is not None:
                targets[tp] = min(max(current + shift_by, starts[tp]), ends[tp])
            elif to_datetime is not None:
                found = await consumer.offsets_for_times({tp: int(to_datetime.timestamp() * 1000)})
                targets[tp] = found[tp].offset if found[tp] else ends[tp]
        plan = {
            f"{tp.topic}:{tp.partition}": {
                "current": committed[tp].offset if tp in committed else -1,
                "target": targets[tp],
            }
            for tp in parts
        }
        if not dry_run:
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in targets.items()})
        return plan
    finally:
        await consumer.stop()


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
