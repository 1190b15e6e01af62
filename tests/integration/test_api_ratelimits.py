# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""Rate limits hold across two API processes sharing the Postgres counters."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from producer_api.main import create_app
from tests.integration.test_api_support import (  # noqa: F401
    LiveServer,
    api_settings,
    bearer,
    unique_pdf,
)

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def two_replicas(settings: Settings, **limits: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two uvicorn servers (own pools, same database) and a client for each."""
    settings = settings.model_copy(update={"rate_limits_enabled": True, **limits})
    with (
        LiveServer(create_app(settings, with_relay=False)) as one,
        LiveServer(create_app(settings, with_relay=False)) as two,
    ):
        async with (
            httpx.AsyncClient(base_url=one.url) as first,
            httpx.AsyncClient(base_url=two.url) as second,
        ):
            yield [first, second]


async def _upload(client: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> httpx.Response:
    files = {"file": ("p.pdf", data, "application/pdf")}
    return await client.post("/api/v2/documents", files=files, headers=auth)


def _assert_429(response: httpx.Response, code: str) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"]) >= 1


async def test_status_polls_are_limited_per_job_across_replicas(api_settings: Settings) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with two_replicas(api_settings, rate_polls_per_minute=10, rate_active_jobs=100) as (
        replicas
    ):
        # The limit counts per clock minute: polls that straddle a minute's end are in two
        # windows, so such a try is done again with a new job (a new bucket).
        for _ in range(3):
            minute = int(time.time() // 60)
            job_id = (await _upload(replicas[0], auth, unique_pdf())).json()["job_id"]
            polls = [
                await replicas[i % 2].get(f"/api/v2/jobs/{job_id}", headers=auth) for i in range(12)
            ]
            if int(time.time() // 60) == minute:
                break
        assert [p.status_code for p in polls[:10]] == [200] * 10, polls[-1].text
        for response in polls[10:]:
            _assert_429(response, "poll_rate_exceeded")


async def test_daily_upload_quota_is_shared_by_replicas_and_spares_duplicates(
    api_settings: Settings,
) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with two_replicas(api_settings, rate_uploads_per_day=3, rate_active_jobs=100) as replicas:
        first = unique_pdf()
        for i, data in enumerate([first, unique_pdf(), unique_pdf()]):
            assert (await _upload(replicas[i % 2], auth, data)).status_code == 202
        _assert_429(await _upload(replicas[1], auth, unique_pdf()), "upload_quota_exceeded")
        duplicate = await _upload(replicas[0], auth, first)
        assert duplicate.status_code == 200 and duplicate.json()["duplicate"]


async def test_active_jobs_are_limited_per_user_until_one_finishes(
    api_settings: Settings, pool: asyncpg.Pool
) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with two_replicas(api_settings, rate_active_jobs=2) as replicas:
        jobs = [(await _upload(replicas[i], auth, unique_pdf())).json() for i in range(2)]
        _assert_429(await _upload(replicas[0], auth, unique_pdf()), "too_many_active_jobs")
        await pool.execute(
            "UPDATE upload_jobs SET state = 'done' WHERE job_id = $1", uuid.UUID(jobs[0]["job_id"])
        )
        assert (await _upload(replicas[1], auth, unique_pdf())).status_code == 202


async def test_requests_per_hour_are_limited_per_endpoint_across_replicas(
    api_settings: Settings,
) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with two_replicas(api_settings, rate_requests_per_hour=5) as replicas:
        for i in range(5):
            assert (await replicas[i % 2].get("/api/v2/jobs", headers=auth)).status_code == 200
        _assert_429(await replicas[0].get("/api/v2/jobs", headers=auth), "request_rate_exceeded")
        other_endpoint = await replicas[1].get(f"/api/v2/jobs/{uuid.uuid4()}", headers=auth)
        assert other_endpoint.status_code == 404


async def test_rate_limits_can_be_turned_off(api_settings: Settings) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with two_replicas(
        api_settings,
        rate_limits_enabled=False,
        rate_polls_per_minute=1,
        rate_active_jobs=0,
        rate_uploads_per_day=0,
    ) as replicas:
        job_id = (await _upload(replicas[0], auth, unique_pdf())).json()["job_id"]
        for i in range(5):
            assert (await replicas[i % 2].get(f"/api/v2/jobs/{job_id}", headers=auth)).is_success
