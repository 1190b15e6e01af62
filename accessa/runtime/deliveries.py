"""Crash-proof delivery counting: a record that kills its process is not redelivered forever.

No `except` catches an OOM kill, a segfault in a native library or a SIGKILL: the record goes
back to the next consumer, which dies of it too. So the runtime writes each delivery to
Postgres (`delivery_attempts`) before any handler starts, and deletes the row once the record
has finished (processed, duplicate, retried or dead-lettered). A row that outlives its process
marks a record that was in the batch when the process died.

- One statement per polled batch records every delivery; one deletes the finished records.
  A first delivery counts as one handler start: records of a batch run concurrently, any of
  them may have started when the process died.
- A record polled again while its row is still there is a suspect. Suspects run one at a time,
  each start counted durably first (one round trip each, paid only after a crash or a
  rewound batch), so the next crash is blamed on the record that was running, not on the
  batch around it. That is why `max_delivery_attempts` is at least 2.
- A suspect that has started `max_delivery_attempts` times is not started again: the runtime
  dead-letters it (`crashed_consumer`) and its partition moves on.
- Two consumers of a partition during a rebalance both count: counts only go up.
- Rows left behind (a topic deleted while a record was suspect) are deleted once they are
  `GC_AFTER_S` old, on the fly, at most once an hour per process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord

from accessa.runtime.incoming import Key

GC_AFTER_S = 7 * 24 * 3600
GC_EVERY_S = 3600.0

# Only the suspects come back: a clean poll's rows are not sent, decoded or looked at.
_DELIVERED = """
WITH counted AS (
  INSERT INTO delivery_attempts AS d (consumer_group, topic, partition, "offset")
  SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
  ON CONFLICT (consumer_group, topic, partition, "offset")
  DO UPDATE SET deliveries = d.deliveries + 1, last_at = now()
  RETURNING topic, partition, "offset", attempts, deliveries)
SELECT topic, partition, "offset", attempts FROM counted WHERE deliveries > 1"""
_STARTING = """
INSERT INTO delivery_attempts AS d (consumer_group, topic, partition, "offset")
VALUES ($1, $2, $3, $4)
ON CONFLICT (consumer_group, topic, partition, "offset")
DO UPDATE SET attempts = d.attempts + 1, last_at = now()
RETURNING attempts"""
FINISHED = """
DELETE FROM delivery_attempts AS d
USING unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
WHERE d.consumer_group = $1 AND d.topic = u.t AND d.partition = u.p AND d."offset" = u.o"""
_GC = "DELETE FROM delivery_attempts WHERE last_at < now() - make_interval(secs => $1)"


def key(record: ConsumerRecord) -> Key:
    return (record.topic, record.partition, record.offset)


@dataclass(frozen=True)
class Delivery:
    """A suspect's count: delivered before without finishing, so it runs alone, each start
    counted."""

    attempts: int  # handler starts counted so far


def columns(keys: Iterable[Key]) -> tuple[list[str], list[int], list[int]]:
    topics, partitions, offsets = [], [], []
    for topic, partition, offset in dict.fromkeys(keys):  # one row may not be hit twice
        topics.append(topic)
        partitions.append(partition)
        offsets.append(offset)
    return topics, partitions, offsets


class DeliveryLedger:
    """The `delivery_attempts` rows of one consumer group."""

    def __init__(self, pool: asyncpg.Pool, group: str) -> None:
        self.pool = pool
        self.group = group
        self._next_gc = 0.0

    async def delivered(self, records: Sequence[ConsumerRecord]) -> dict[Key, Delivery]:
        """Count a delivery of each record, in one statement, before any of them starts;
        returns the suspects (a record not in it is on its first delivery)."""
        if not records:
            return {}
        rows = await self.pool.fetch(_DELIVERED, self.group, *columns(map(key, records)))
        return {(r["topic"], r["partition"], r["offset"]): Delivery(r["attempts"]) for r in rows}

    async def starting(self, record: ConsumerRecord) -> int:
        """Count one start of a suspect, durably, before its handler runs; returns the count."""
        return int(await self.pool.fetchval(_STARTING, self.group, *key(record)))

    async def finished(self, keys: Sequence[Key], conn: asyncpg.Connection | None = None) -> None:
        """Forget finished records, in one statement (and, once an hour, stale rows); on
        `conn` when given, inside the caller's transaction (a wave's commit)."""
        db = conn or self.pool
        if keys:
            await db.execute(FINISHED, self.group, *columns(keys))
        if time.monotonic() >= self._next_gc:
            self._next_gc = time.monotonic() + GC_EVERY_S
            await db.execute(_GC, float(GC_AFTER_S))
