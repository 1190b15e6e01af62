# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""GET /api/v2/jobs/{id}/events: live job progress as Server-Sent Events, on real uvicorn,
Postgres (LISTEN/NOTIFY) and Kafka."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from accessa import jobs
from accessa.config import Settings
from producer_api.main import create_app
from tests.integration.test_api_support import (  # noqa: F401
    LiveServer,
    api_settings,
    bearer,
    unique_pdf,
    upload,
)
from tests.utils import wait_for

pytestmark = pytest.mark.integration
PIPELINE = [
    "parse_queued",
    "parsed",
    "parse_validated",
    "chunking",
    "chunks_stored",
    "embedding_queued",
    "embeddings_stored",
    "complete",
]


@dataclass
class Stream:
    """One SSE stream read in the background: its events as they arrive, with arrival times."""

    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    status: int | None = None
    task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.task is not None and self.task.done()

    def statuses(self) -> list[str]:
        return [e["data"]["status"] for e in self.events if e["event"] != "end"]

    def ids(self) -> list[int]:
        return [int(e["id"]) for e in self.events if "id" in e]


async def _read(client: httpx.AsyncClient, path: str, headers: dict[str, str], s: Stream) -> None:
    async with client.stream("GET", path, headers=headers) as response:
        s.status = response.status_code
        if response.status_code != 200:
            await response.aread()
            s.events.append({"event": "error", "data": response.json()})
            return
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line:
                if "event" in event:
                    event["data"] = json.loads(event["data"])
                    s.events.append(event)
                    s.arrived.append(time.monotonic())
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value


def follow(
    client: httpx.AsyncClient, job_id: str, auth: dict[str, str], last_event_id: int | None = None
) -> Stream:
    headers = {**auth, **({"Last-Event-ID": str(last_event_id)} if last_event_id else {})}
    s = Stream()
    s.task = asyncio.create_task(_read(client, f"/api/v2/jobs/{job_id}/events", headers, s))
    return s


async def has_events(s: Stream, n: int, timeout: float = 20) -> Stream:
    async def enough() -> bool:
        if s.task is not None and s.task.done():
            s.task.result()  # raise what broke it
        return len(s.events) >= n

    await wait_for(enough, timeout=timeout, interval=0.01, what=f"{n} events")
    return s


async def ended(s: Stream, timeout: float = 30) -> Stream:
    assert s.task is not None
    await asyncio.wait_for(s.task, timeout)
    return s


@pytest.fixture
def small_pool_settings(api_settings: Settings) -> Settings:
    # One user follows 50 streams here: the per-user stream cap is not what is under test.
    return api_settings.model_copy(
        update={"db_pool_min": 1, "db_pool_max": 4, "api_sse_streams_per_user": 50}
    )


@pytest.fixture
def app(small_pool_settings: Settings) -> FastAPI:
    return create_app(small_pool_settings)


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as c:
        yield c


async def _new_job(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await upload(client, auth, unique_pdf())
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


async def _advance(pool: asyncpg.Pool, job_id: str, status: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        assert await jobs.advance(conn, job_id=uuid.UUID(job_id), status=status, actor="test")


async def test_events_arrive_in_order_as_they_happen_and_the_stream_ends_when_the_job_does(
    client: httpx.AsyncClient, small_pool_settings: Settings, pool: asyncpg.Pool
) -> None:
    auth = bearer(small_pool_settings, uuid.uuid4())
    job_id = await _new_job(client, auth)
    s = await has_events(follow(client, job_id, auth), 1)  # the backlog: `created`
    assert s.status == 200 and s.events[0]["event"] == "created"
    assert s.events[0]["data"]["stage"] == "validated" and s.events[0]["data"]["progress"] == 10
    lags = []
    for n, status in enumerate(PIPELINE, start=2):
        committed = time.monotonic()
        await _advance(pool, job_id, status)
        await has_events(s, n)
        lags.append(s.arrived[n - 1] - committed)
    await ended(s)
    assert s.statuses() == ["uploaded", *PIPELINE]
    assert s.ids() == sorted(s.ids()) and len(set(s.ids())) == len(s.ids())
    assert [e["data"]["progress"] for e in s.events[1:-1]] == [
        jobs.PROGRESS[st][1] for st in PIPELINE
    ]
    end = s.events[-1]
    assert end["event"] == "end" and end["data"]["status"] == "complete" and "id" not in end
    # Pushed by NOTIFY, not found by a poll (the heartbeat is 15 s): well under a second each.
    assert max(lags) < 1.0, lags


async def test_a_reconnect_with_last_event_id_resumes_after_it(
    client: httpx.AsyncClient, small_pool_settings: Settings, pool: asyncpg.Pool
) -> None:
    auth = bearer(small_pool_settings, uuid.uuid4())
    job_id = await _new_job(client, auth)
    first = await has_events(follow(client, job_id, auth), 1)
    await _advance(pool, job_id, "parse_queued")
    await has_events(first, 2)
    assert first.task is not None
    first.task.cancel()  # the client drops
    last = first.ids()[-1]
    await _advance(pool, job_id, "parsed")  # missed while away
    async with pool.acquire() as conn:
        error = {"stage": "parser", "code": "boom", "message": "it broke"}
        await jobs.fail(
            conn, job_id=uuid.UUID(job_id), status="failed_parse", actor="test", error=error
        )
    resumed = await ended(follow(client, job_id, auth, last_event_id=last))
    assert resumed.statuses() == ["parsed", "failed_parse"]
    assert min(resumed.ids()) > last
    assert resumed.events[1]["event"] == "failed"
    assert resumed.events[1]["data"]["detail"]["code"] == "boom"
    assert resumed.events[-1]["data"]["state"] == "deadletter"  # a failed job ends the stream


async def test_another_users_job_is_404(
    client: httpx.AsyncClient, small_pool_settings: Settings
) -> None:
    job_id = await _new_job(client, bearer(small_pool_settings, uuid.uuid4()))
    other = bearer(small_pool_settings, uuid.uuid4())
    for job in (job_id, str(uuid.uuid4())):
        response = await client.get(f"/api/v2/jobs/{job}/events", headers=other)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_fifty_streams_on_a_pool_of_four_all_get_their_events(
    app: FastAPI,
    client: httpx.AsyncClient,
    small_pool_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    auth = bearer(small_pool_settings, uuid.uuid4())
    job_ids = [await _new_job(client, auth) for _ in range(10)]
    streams = {j: [follow(client, j, auth) for _ in range(5)] for j in job_ids}
    for s in (s for group in streams.values() for s in group):
        await has_events(s, 1)  # all 50 open and past their backlog
    # Waiting streams hold no connection: an ordinary request is served at once meanwhile.
    started = time.monotonic()
    response = await client.get(f"/api/v2/jobs/{job_ids[0]}", headers=auth)
    assert response.status_code == 200 and time.monotonic() - started < 2.0
    assert app.state.pool.get_max_size() == 4 and app.state.pool.get_size() <= 4
    for status in PIPELINE:
        for job_id in job_ids:
            await _advance(pool, job_id, status)
    for job_id, group in streams.items():
        for s in group:
            await ended(s)
            assert s.statuses() == ["uploaded", *PIPELINE], job_id
            assert s.events[-1]["data"]["job_id"] == job_id


async def test_streams_do_not_count_against_the_poll_limit(
    api_settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = api_settings.model_copy(
        update={"rate_limits_enabled": True, "rate_polls_per_minute": 2}
    )
    with LiveServer(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            auth = bearer(settings, uuid.uuid4())
            job_id = await _new_job(c, auth)
            for status in PIPELINE:
                await _advance(pool, job_id, status)
            for _ in range(4):
                s = await ended(follow(c, job_id, auth))
                assert s.status == 200 and s.events[-1]["event"] == "end"
            polls = [
                (await c.get(f"/api/v2/jobs/{job_id}", headers=auth)).status_code for _ in range(3)
            ]
    assert polls == [200, 200, 429]
