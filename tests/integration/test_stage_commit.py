"""`StageContext.commit`: the dedup row and the handler's writes commit together or not at all,
whatever the bytes and names it carries (its BEGIN and dedup row are one quoted literal query)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from accessa.config import Settings
from accessa.runtime.context import AlreadyCommitted, StageContext, StageResources
from accessa.runtime.faults import FaultInjector
from accessa.storage import make_storage
from schemas.events import DocumentUploaded

pytestmark = pytest.mark.asyncio


def _event(filename: str) -> DocumentUploaded:
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


def _ctx(
    infra: Settings, pool: asyncpg.Pool, event: DocumentUploaded, consumer: str
) -> StageContext:
    res = StageResources(infra, pool, make_storage(infra), FaultInjector(infra, "t"))
    return StageContext(
        stage="t",
        consumer=consumer,
        event=event,
        attempt=0,
        res=res,
        output_topic="out'\\topic",
        own=None,
    )


async def _stored(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM processed_events WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )


async def test_quotes_backslashes_and_any_text_are_stored_exactly(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer = f"group 'o''\\\\x{uuid.uuid4()}'; DROP TABLE processed_events; --"
    output = _event("pól'icy\\\\x00\"; --\u2028\U0001f600.pdf")
    ctx = _ctx(infra, pool, output, consumer)
    async with ctx.commit(output):
        pass
    row = await _stored(pool, consumer, output.event_id)
    assert ctx.committed and row is not None
    assert (row["output_topic"], row["output_key"]) == ("out'\\topic", output.key())
    assert row["output_value"] == output.to_bytes()
    assert DocumentUploaded.model_validate_json(row["output_value"]) == output


async def test_a_second_delivery_raises_already_committed_and_writes_nothing(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer, event = f"c-{uuid.uuid4()}", _event("a.pdf")
    async with _ctx(infra, pool, event, consumer).commit(event):
        pass
    second = _ctx(infra, pool, event, consumer)
    with pytest.raises(AlreadyCommitted):
        async with second.commit(None) as conn:
            await conn.execute(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)",
                consumer + "-leak",
                event.event_id,
            )
    assert not second.committed
    assert await _stored(pool, consumer + "-leak", event.event_id) is None
    stored = await _stored(pool, consumer, event.event_id)
    assert stored is not None
    assert stored["output_value"] == event.to_bytes()


async def test_a_failing_handler_rolls_back_its_writes_and_the_dedup_row(
    infra: Settings, pool: asyncpg.Pool
) -> None:
    consumer, event = f"c-{uuid.uuid4()}", _event("a.pdf")
    ctx = _ctx(infra, pool, event, consumer)
    with pytest.raises(ZeroDivisionError):
        async with ctx.commit(event) as conn:
            await conn.execute(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)",
                consumer + "-write",
                event.event_id,
            )
            _ = 1 / 0
    assert not ctx.committed
    assert await _stored(pool, consumer, event.event_id) is None
    assert await _stored(pool, consumer + "-write", event.event_id) is None
    # The connection went back to the pool clean: the next commit of the event succeeds.
    async with ctx.commit(None):
        pass
    assert ctx.committed and (await _stored(pool, consumer, event.event_id))["output_value"] is None


async def test_a_failing_statement_leaves_no_open_transaction_on_the_pooled_connection(
    infra: Settings,
) -> None:
    from accessa.db import create_pool

    one = await create_pool(infra, min_size=1, max_size=1)  # so the next checkout is the same
    try:
        event = _event("a.pdf")
        with pytest.raises(asyncpg.UndefinedTableError):
            async with _ctx(infra, one, event, f"c-{uuid.uuid4()}").commit(None) as conn:
                await conn.execute("INSERT INTO no_such_table VALUES (1)")
        async with one.acquire() as conn:
            assert not conn.is_in_transaction()
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM processed_events WHERE event_id = $1", event.event_id
                )
                == 0
            )
    finally:
        await one.close()
