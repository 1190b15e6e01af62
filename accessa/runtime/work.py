"""The unit of work: what a handler writes, committed by the runtime with its poll's others.

A handler returns `Work`: its output event and its writes, as rows of `Batched` statements.
The runtime commits a wave of records (at most one per document) in one transaction:

1. the dedup rows, one statement: a record whose row exists already lost a race with another
   delivery of its event, and its writes are dropped (its stored output is re-emitted);
2. each statement once, with every remaining record's rows, in the order handlers wrote them;
3. the deliveries the wave finished (`deliveries`), so a clean poll pays no extra commit.

If that transaction fails for a reason other than the infrastructure, the wave is bisected:
the halves commit on their own, down to the record at fault, which alone takes its retry or
DLQ path. One transaction per poll is what makes durability cheap: 65k dedup rows/s this way
against 4.7k with a transaction per record (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from accessa import jobs
from accessa.runtime.deliveries import DeliveryLedger
from accessa.runtime.faults import FaultInjector
from accessa.runtime.incoming import Key, Stored
from accessa.runtime.infra import is_infra
from schemas.events import Event

# Two waves (the main and the retry subscriber, or two replicas in a rebalance) may lock the
# same rows in another order: Postgres aborts one, and it is simply run again.
CONFLICTS = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
CONFLICT_RETRIES = 5

DEDUP = """
INSERT INTO processed_events (consumer, event_id, output_topic, output_key, output_value)
SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[])
ON CONFLICT DO NOTHING
RETURNING event_id"""


@dataclass(frozen=True)
class Batched:
    """A statement over arrays, one parameter per column (read them with `unnest`): the rows
    of every record in a wave are concatenated and it runs once."""

    sql: str

    async def execute(self, conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run it once for `rows` (the runtime does, per wave; so may a tool seeding rows)."""
        if rows:
            await conn.execute(self.sql, *map(list, zip(*rows, strict=True)))


@dataclass
class Work:
    """A record's output and writes. `job` (job, document, user ids) and `actor` are what
    `advance` records transitions with; `StageContext.work()` fills them."""

    output: Event | None
    job: tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None = None
    actor: str = ""
    writes: list[tuple[Batched, tuple[Any, ...]]] = field(default_factory=list)
    committed: list[Callable[[], None]] = field(default_factory=list)  # run after the commit

    def add(self, statement: Batched, *row: Any) -> Work:
        self.writes.append((statement, row))
        return self

    def extend(self, statement: Batched, rows: Iterable[tuple[Any, ...]]) -> Work:
        self.writes.extend((statement, row) for row in rows)
        return self

    def then(self, fn: Callable[[], None]) -> Work:
        """Call `fn` once this work has committed (metrics that must not count a rollback)."""
        self.committed.append(fn)
        return self

    def advance(self, status: str, **fields: Any) -> Work:
        """Move the job forward to `status` (`jobs.advance`, batched), with its audit row."""
        assert self.job is not None, "Work.advance needs the job: make it with ctx.work()"
        names = tuple(fields)
        statement = _advance_statement(status, names)
        return self.add(statement, *self.job[:1], self.actor, *self.job[1:], *fields.values())


@functools.cache
def _advance_statement(status: str, names: tuple[str, ...]) -> Batched:
    return Batched(jobs.advance_sql(status, names))


@dataclass
class Pending:
    """A record handled and waiting for its wave's commit."""

    key: Key
    event_id: uuid.UUID
    work: Work

    @functools.cached_property
    def encoded(self) -> Stored | None:
        """The output's key and bytes, encoded once: its dedup row and its produce share them."""
        output = self.work.output
        return (output.key(), output.to_bytes()) if output else None


@dataclass
class Committed:
    """What a wave's commit did: the events it committed now (the others' dedup rows were
    there already: duplicates), and the records whose writes failed, with why."""

    now: set[uuid.UUID] = field(default_factory=set)
    failed: dict[Key, Exception] = field(default_factory=dict)


class Committer:
    """Commits waves for one consumer group (`stateless`: no dedup rows and no writes)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        consumer: str,
        output_topic: str,
        faults: FaultInjector,
        *,
        stateless: bool = False,
    ) -> None:
        self.pool = pool
        self.consumer = consumer
        self.output_topic = output_topic
        self.faults = faults
        self.stateless = stateless
        self.ledger = DeliveryLedger(pool, consumer)  # the group's delivery counts

    async def commit(self, pending: Sequence[Pending], forget: Sequence[Key]) -> Committed:
        """Commit `pending`, and forget the deliveries `forget`, bisecting on failure."""
        try:
            return await self._retrying_conflicts(pending, forget)
        except Exception as exc:
            if is_infra(exc):
                raise
            if len(pending) <= 1:
                await self._forget(forget)
                return Committed(failed={p.key: exc for p in pending})
            half = len(pending) // 2
            left = await self.commit(pending[:half], ())
            right = await self.commit(pending[half:], ())
            await self._forget(forget)
            return Committed(left.now | right.now, left.failed | right.failed)

    async def _retrying_conflicts(
        self, pending: Sequence[Pending], forget: Sequence[Key]
    ) -> Committed:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return await self._transaction(pending, forget)
            except CONFLICTS:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)  # backoff: let the other wave finish
        raise AssertionError("unreachable")

    async def _transaction(self, pending: Sequence[Pending], forget: Sequence[Key]) -> Committed:
        async with self.pool.acquire() as conn, conn.transaction():
            now = {p.event_id for p in pending}
            if not self.stateless and pending:
                rows = await conn.fetch(DEDUP, self.consumer, *self._dedup_columns(pending))
                now = {r["event_id"] for r in rows}
            for statement, rows in _grouped(p for p in pending if p.event_id in now):
                await statement.execute(conn, rows)
            if forget:
                await self.ledger.finished(forget, conn)
            for _ in pending:  # per record, so a test can kill the process mid-batch
                self.faults.point("before_db_commit")
        for _ in pending:
            self.faults.point("after_db_commit")
        return Committed(now)

    async def _forget(self, keys: Sequence[Key]) -> None:
        if keys:
            await self.ledger.finished(keys)

    def _dedup_columns(self, pending: Sequence[Pending]) -> tuple[list[Any], ...]:
        outputs = [p.encoded for p in pending]
        return (
            [p.event_id for p in pending],
            [self.output_topic if o else None for o in outputs],
            [o[0] if o else None for o in outputs],
            [o[1] if o else None for o in outputs],
        )


def _grouped(
    pending: Iterable[Pending],
) -> list[tuple[Batched, list[tuple[Any, ...]]]]:
    """Each statement with all its rows, in the order statements were first written."""
    groups: dict[Batched, list[tuple[Any, ...]]] = {}
    for p in pending:
        for statement, row in p.work.writes:
            groups.setdefault(statement, []).append(row)
    return list(groups.items())
