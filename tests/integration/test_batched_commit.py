"""The batched commit (`accessa.runtime.work.Committer`): a wave's dedup rows and writes commit
in one transaction or not at all, a record committed already is a duplicate whose writes are
dropped, and a record whose writes fail is isolated while the rest of its wave commits."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from accessa.config import Settings
from accessa.db import create_pool
from accessa.runtime import Batched, Work
from accessa.runtime.faults import FaultInjector
from accessa.runtime.work import Committer, Pending
from schemas.events import DocumentUploaded

pytestmark = pytest.mark.asyncio

# A write the tests can see: rows of processed_events under another consumer name (so no
# table of its own is needed); a NULL consumer violates NOT NULL, for the failing record.
WRITE = Batched(
    """INSERT INTO processed_events (consumer, event_id)
       SELECT * FROM unnest($1::text[], $2::uuid[])"""
)


def _event(filename: str = "a.pdf") -> DocumentUploaded:
    job = uuid.uuid4()
    return DocumentUploaded(
        event_id=DocumentUploaded.make_id(job),
        job_id=job,
        document_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        correlation_id="c",
        storage_path="raw/x.pdf",
        sha256="a" * 64,
        size=1,
        filename=filename,
    )


def _pending(event: DocumentUploaded, n: int, *writes: str | None) -> Pending:
    work = Work(event)
    for consumer in writes:
        work.add(WRITE, consumer, event.event_id)
    return Pending(("t", 0, n), event.event_id, work)


def _committer(infra: Settings, pool: asyncpg.Pool, consumer: str) -> Committer:
    return Committer(pool, consumer, "out'\\topic", FaultInjector(infra, "t"))


async def _stored(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM processed_events WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )


async def test_quotes_backslashes_and_any_text_are_stored_exactly(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer = f"group 'o''\\\\x{uuid.uuid4()}'; DROP TABLE processed_events; --"
    output = _event("pól'icy\\\\x00\"; --\u2028\U0001f600.pdf")
    done = await _committer(infra, pool, consumer).commit([_pending(output, 0)], [])
    row = await _stored(pool, consumer, output.event_id)
    assert done.now == {output.event_id} and row is not None
    assert (row["output_topic"], row["output_key"]) == ("out'\\topic", output.key())
    assert DocumentUploaded.model_validate_json(row["output_value"]) == output


async def test_a_wave_commits_every_records_dedup_row_and_writes_together(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer = f"c-{uuid.uuid4()}"
    events = [_event() for _ in range(5)]
    wave = [_pending(e, n, consumer + "-w1", consumer + "-w2") for n, e in enumerate(events)]
    done = await _committer(infra, pool, consumer).commit(wave, [])
    assert done.now == {e.event_id for e in events} and done.failed == {}
    for event in events:
        assert await _stored(pool, consumer, event.event_id) is not None
        assert await _stored(pool, consumer + "-w1", event.event_id) is not None
        assert await _stored(pool, consumer + "-w2", event.event_id) is not None


async def test_an_event_committed_already_is_a_duplicate_and_its_writes_are_dropped(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer, old, new = f"c-{uuid.uuid4()}", _event(), _event()
    committer = _committer(infra, pool, consumer)
    await committer.commit([_pending(old, 0)], [])
    done = await committer.commit([_pending(old, 1, consumer + "-leak"), _pending(new, 2)], [])
    assert done.now == {new.event_id}
    assert await _stored(pool, consumer + "-leak", old.event_id) is None
    stored = await _stored(pool, consumer, old.event_id)
    assert stored is not None and stored["output_value"] == old.to_bytes()


async def test_a_record_whose_writes_fail_is_isolated_and_the_rest_of_its_wave_commits(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer = f"c-{uuid.uuid4()}"
    events = [_event() for _ in range(7)]
    wave = [
        _pending(e, n, None if n == 4 else consumer + "-w")  # NOT NULL violated by record 4
        for n, e in enumerate(events)
    ]
    done = await _committer(infra, pool, consumer).commit(wave, [])
    assert set(done.failed) == {("t", 0, 4)}
    assert isinstance(done.failed[("t", 0, 4)], asyncpg.NotNullViolationError)
    assert done.now == {e.event_id for n, e in enumerate(events) if n != 4}
    for n, event in enumerate(events):
        committed = await _stored(pool, consumer, event.event_id) is not None
        assert committed == (n != 4)
        assert (await _stored(pool, consumer + "-w", event.event_id) is not None) == (n != 4)


async def test_two_deliveries_committing_the_same_event_at_once_commit_it_once(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer, event = f"c-{uuid.uuid4()}", _event()
    first, second = await asyncio.gather(
        _committer(infra, pool, consumer).commit([_pending(event, 0, consumer + "-a")], []),
        _committer(infra, pool, consumer).commit([_pending(event, 1, consumer + "-b")], []),
    )
    assert [bool(first.now), bool(second.now)].count(True) == 1
    effects = await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = ANY($1) AND event_id = $2",
        [consumer + "-a", consumer + "-b"],
        event.event_id,
    )
    assert effects == 1


async def test_a_failed_commit_leaves_no_open_transaction_on_the_pooled_connection(
    infra: Settings,
) -> None:
    one = await create_pool(infra, min_size=1, max_size=1)  # so the next checkout is the same
    try:
        event = _event()
        done = await _committer(infra, one, f"c-{uuid.uuid4()}").commit(
            [_pending(event, 0, None)], []
        )
        assert set(done.failed) == {("t", 0, 0)}
        async with one.acquire() as conn:
            assert not conn.is_in_transaction()
            found = await conn.fetchval(
                "SELECT count(*) FROM processed_events WHERE event_id = $1", event.event_id
            )
            assert found == 0
    finally:
        await one.close()
