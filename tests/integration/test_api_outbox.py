# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The outbox relay: nothing lost and nothing twice, with the broker stopped and restarted,
with several relays at once, and as a process of its own."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from accessa.devstack.kafka import LocalKafka
from producer_api import outbox
from producer_api.outbox import relay
from producer_api.outbox_publisher import KafkaPublisher
from schemas.events import DocumentUploaded
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    no_more_than,
    unique_pdf,
    upload,
    uploaded_records,
    user,
)
from tests.utils import start_process, uploaded_event, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _unpublished(pool: asyncpg.Pool, settings: Settings) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND starts_with(topic, $1)",
        settings.topic_prefix,
    )


async def test_uploads_accepted_while_the_broker_is_down_are_published_once_when_it_is_back(
    infra: Settings,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    kafka = LocalKafka(infra)
    await asyncio.to_thread(kafka.down)
    try:
        responses = [await upload(api, auth, unique_pdf()) for _ in range(3)]
        assert [r.status_code for r in responses] == [202, 202, 202]
        assert await _unpublished(pool, api_settings) == 3
        ready = await api.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"postgres": True, "kafka": False}
    finally:
        await asyncio.to_thread(kafka.up)

    # A restarted broker can take a while to elect its partition leaders again.
    records = await uploaded_records(api_settings, expect=3, timeout=120)
    assert sorted(r.key.decode() for r in records) == sorted(
        r.json()["document_id"] for r in responses
    )
    assert len(await no_more_than(api_settings, 3)) == 3
    assert (await api.get("/ready")).json() == {
        "ready": True,
        "checks": {"postgres": True, "kafka": True},
    }


async def _none_left(pool: asyncpg.Pool, settings: Settings) -> bool:
    return await _unpublished(pool, settings) == 0


async def _fill_outbox(pool: asyncpg.Pool, settings: Settings, n: int) -> list[DocumentUploaded]:
    events = [uploaded_event() for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await outbox.write_row(conn, f"{settings.topic_prefix}uploaded", event)
    return events


async def test_several_relays_share_the_outbox_without_publishing_a_row_twice(
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    events = await _fill_outbox(pool, api_settings, 600)
    stop = asyncio.Event()
    relays = [
        asyncio.create_task(relay(api_settings, pool, KafkaPublisher(api_settings), stop))
        for _ in range(3)
    ]
    try:
        await wait_for(lambda: _none_left(pool, api_settings), timeout=60, what="outbox drained")
    finally:
        stop.set()
        await asyncio.gather(*relays)
    records = await uploaded_records(api_settings, expect=600)
    ids = [DocumentUploaded.model_validate_json(r.value).event_id for r in records]
    assert len(ids) == 600 and set(ids) == {e.event_id for e in events}


async def test_relay_runs_as_a_process_of_its_own_and_stops_on_sigterm(
    api_settings: Settings,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    await _fill_outbox(pool, api_settings, 5)
    env = {"ACCESSA_TOPIC_PREFIX": api_settings.topic_prefix, "ACCESSA_LOG_JSON": "true"}
    proc = start_process(["producer_api.outbox"], env, tmp_path / "relay.log")
    try:
        await uploaded_records(api_settings, expect=5)
        await wait_for(lambda: _none_left(pool, api_settings), timeout=30, what="outbox drained")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, (tmp_path / "relay.log").read_text()
