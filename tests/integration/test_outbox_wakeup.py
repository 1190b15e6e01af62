# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The outbox relay claims a row as soon as it commits, not at its next poll: woken by the API
of its own process, and by the `outbox` NOTIFY (migration 0016) when another process commits.

Every relay here polls once a minute and every wait gives up well before that, so a row can
only go out in time through a wakeup.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import pytest

from accessa.config import Settings
from accessa.db import create_pool
from producer_api import outbox
from producer_api.main import create_app
from producer_api.outbox import relay
from producer_api.outbox_publisher import KafkaPublisher
from tests.integration.test_api_support import (  # noqa: F401
    api_settings,
    bearer,
    running,
    unique_pdf,
    upload,
    uploaded_records,
)
from tests.utils import uploaded_event, wait_for

pytestmark = pytest.mark.integration

POLL_S = 60.0  # no row may wait for the poll in these tests
IN_TIME_S = 20.0  # well under POLL_S


@pytest.fixture
def slow_poll(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"outbox_poll_s": POLL_S, "outbox_notify": True})


@pytest.fixture
async def api_pool(slow_poll: Settings) -> AsyncIterator[asyncpg.Pool]:
    """Logged in as the relay (`api`): only its own login sees its LISTEN connection's state
    in pg_stat_activity, and may terminate it."""
    pool = await create_pool(slow_poll, "api", min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _commit_row(settings: Settings) -> int:
    """One `uploaded` row committed on a connection of its own, as another process would (its
    commit cannot wake this process's relays)."""
    other = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with other.acquire() as conn, conn.transaction():
            event = uploaded_event()
            await outbox.write_row(conn, f"{settings.topic_prefix}uploaded", event)
            return await conn.fetchval(
                "SELECT id FROM outbox WHERE headers->>'x-job-id' = $1", str(event.job_id)
            )
    finally:
        await other.close()


async def _published(pool: asyncpg.Pool, row: int) -> None:
    async def sent() -> bool:
        return await pool.fetchval("SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", row)

    await wait_for(sent, timeout=IN_TIME_S, what=f"outbox row {row} published")


async def _listener_pid(pool: asyncpg.Pool, since: datetime, other_than: int = 0) -> int:
    """The relay's LISTEN connection (opened after `since`), once it sits idle listening."""

    async def idle() -> int | None:
        return await pool.fetchval(
            """SELECT pid FROM pg_stat_activity
               WHERE application_name = 'accessa listen outbox' AND state = 'idle'
                 AND backend_start >= $1 AND pid <> $2""",
            since,
            other_than,
        )

    return await wait_for(idle, timeout=IN_TIME_S, what="the relay's LISTEN connection")


@asynccontextmanager
async def _relay(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay(settings, pool, KafkaPublisher(settings), stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_row_another_process_commits_wakes_a_relay_through_notify(
    slow_poll: Settings, pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    since = await pool.fetchval("SELECT now()")
    async with _relay(slow_poll, pool):
        await _listener_pid(api_pool, since)
        rows = [await _commit_row(slow_poll) for _ in range(3)]
        for row in rows:
            await _published(pool, row)
    assert len(await uploaded_records(slow_poll, expect=3)) == 3


async def test_an_upload_wakes_the_relay_of_its_own_api_process(
    slow_poll: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def deaf(settings: Settings, wakeup: asyncio.Event, stop: asyncio.Event) -> None:
        await stop.wait()  # no LISTEN: only the API's own commit can wake its relay

    monkeypatch.setattr(outbox, "listen", deaf)
    first = await _commit_row(slow_poll)
    async with running(create_app(slow_poll)) as api:
        # The relay's first claim takes the row that was waiting: it is idle after that.
        await _published(pool, first)
        response = await upload(api, bearer(slow_poll, uuid.uuid4()), unique_pdf())
        assert response.status_code == 202
        row = await pool.fetchval(
            "SELECT id FROM outbox WHERE headers->>'x-job-id' = $1", response.json()["job_id"]
        )
        await _published(pool, row)
    keys = {r.key.decode() for r in await uploaded_records(slow_poll, expect=2)}
    assert response.json()["document_id"] in keys


async def test_a_relay_whose_listen_connection_is_killed_listens_again(
    slow_poll: Settings, pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    since = await pool.fetchval("SELECT now()")
    async with _relay(slow_poll, pool):
        lost = await _listener_pid(api_pool, since)
        assert await api_pool.fetchval("SELECT pg_terminate_backend($1)", lost)
        # Committed around the loss: the reconnection's re-read or its NOTIFY sends it.
        meanwhile = await _commit_row(slow_poll)
        await _published(pool, meanwhile)
        await _listener_pid(api_pool, since, other_than=lost)
        after = await _commit_row(slow_poll)
        await _published(pool, after)


@asynccontextmanager
async def _transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn, conn.transaction():
        yield conn


class _RolledBack(Exception):
    pass


async def test_an_enqueue_wakes_the_relay_once_its_transaction_commits_and_never_if_not(
    slow_poll: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def deaf(settings: Settings, wakeup: asyncio.Event, stop: asyncio.Event) -> None:
        await stop.wait()  # no LISTEN: only a committed `outbox.transaction` can wake it

    monkeypatch.setattr(outbox, "listen", deaf)
    first = await _commit_row(slow_poll)
    wakeup = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(relay(slow_poll, pool, KafkaPublisher(slow_poll), stop, wakeup))
    try:
        # The relay's first claim takes the row that was waiting: it is idle after that.
        await _published(pool, first)
        lost = uploaded_event()
        with pytest.raises(_RolledBack):
            async with outbox.transaction(_transaction(pool), slow_poll) as tx:
                await tx.enqueue(lost)
                assert not wakeup.is_set()  # not before the commit
                raise _RolledBack
        assert not wakeup.is_set()
        assert not await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE headers->>'x-job-id' = $1", str(lost.job_id)
        )
        async with outbox.transaction(_transaction(pool), slow_poll):
            pass  # a transaction that enqueued nothing wakes nothing
        assert not wakeup.is_set()
        sent = uploaded_event()
        async with outbox.transaction(_transaction(pool), slow_poll) as tx:
            await tx.enqueue(sent)
            assert not wakeup.is_set()
        assert wakeup.is_set()  # set by the commit itself, before anything else ran
        row = await pool.fetchval(
            "SELECT id FROM outbox WHERE headers->>'x-job-id' = $1", str(sent.job_id)
        )
        await _published(pool, row)  # in time only because the relay woke (it polls each minute)
    finally:
        stop.set()
        await task
    keys = {r.key.decode() for r in await uploaded_records(slow_poll, expect=2)}
    assert str(sent.document_id) in keys and str(lost.document_id) not in keys
