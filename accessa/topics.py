"""Create the pipeline topics (main, retry, DLQ) with the configured partition count."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from accessa import kafka_clients
from accessa.config import Settings
from schemas.topics import Topics

DLQ_RETENTION_HOURS = 30 * 24  # dead letters wait for an operator longer than work does


def topics_for(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix, settings.retry_max_attempts)


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics, grow partitions up to the setting; return name -> partitions."""
    names = topics_for(settings).all()
    want = settings.topic_partitions
    rf, min_isr = settings.topic_replication
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        existing = await partition_counts(admin, names)
        missing = [
            # rf -1 = the broker's default; aiokafka then wants an (empty) assignment map.
            NewTopic(
                name,
                num_partitions=want,
                replication_factor=rf,
                replica_assignments={} if rf == -1 else None,
                topic_configs=topic_configs(settings, name, min_isr),
            )
            for name in names
            if name not in existing
        ]
        if missing:
            # Another process may create them in between: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        grow = {n: NewPartitions(want) for n, count in existing.items() if count < want}
        if grow:
            await admin.create_partitions(grow)
        return await _settled(admin, names, want)
    finally:
        await admin.close()


def retention_hours(settings: Settings, name: str) -> float:
    """How long topic `name` keeps records: ACCESSA_TOPIC_RETENTION_HOURS, and for a DLQ at
    least 30 days."""
    if name.endswith(".dlq"):
        return max(settings.topic_retention_hours, DLQ_RETENTION_HOURS)
    return settings.topic_retention_hours


def topic_configs(settings: Settings, name: str, min_isr: int | None) -> dict[str, str]:
    """Every pipeline topic states its retention: the broker's default would decide how far
    back `accessa replay` and the dedup retention (`accessa gc`) can safely reach."""
    configs = {"retention.ms": str(int(retention_hours(settings, name) * 3_600_000))}
    if min_isr:
        configs["min.insync.replicas"] = str(min_isr)
    return configs


async def _settled(admin: AIOKafkaAdminClient, names: list[str], want: int) -> dict[str, int]:
    """Wait until the metadata shows every topic with its partitions (creation is async)."""
    deadline = time.monotonic() + 30
    while True:
        counts = await partition_counts(admin, names)
        if len(counts) == len(names) and all(c >= want for c in counts.values()):
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not ready: {sorted(set(names) - set(counts))}")
        await asyncio.sleep(0.1)  # metadata poll interval


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(await admin.list_topics()) & set(names)
    if not present:
        return {}
    described = await admin.describe_topics(sorted(present))
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
