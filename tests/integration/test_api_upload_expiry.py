# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""Abandoned two-step uploads expire: job `expired`, the user's active-job slot freed, a
metric, a clear 410 for late bytes, and declaring the same PDF again gets a new URL."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from accessa.runtime.metrics import REGISTRY
from producer_api.core.security import sign_upload
from producer_api.main import create_app, expire_uploads
from tests.integration.test_api_support import (  # noqa: F401
    api_settings,
    bearer,
    running,
    sha256,
    unique_pdf,
)
from tests.utils import wait_for

pytestmark = pytest.mark.integration


def _expired_total() -> float:
    return REGISTRY.get_sample_value("accessa_uploads_expired_total") or 0.0


async def _declare(api: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> httpx.Response:
    body = {"filename": "policy.pdf", "bytes": len(data), "sha256": sha256(data)}
    return await api.post("/api/v2/upload", json=body, headers=auth)


async def test_an_abandoned_upload_expires_frees_the_limit_and_can_be_declared_again(
    api_settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = api_settings.model_copy(update={"rate_limits_enabled": True, "rate_active_jobs": 1})
    auth = bearer(settings, uuid.uuid4())
    data = unique_pdf()
    async with running(create_app(settings)) as api:
        declared = await _declare(api, auth, data)
        assert declared.status_code == 202, declared.text
        job_id = declared.json()["job_id"]
        blocked = await _declare(api, auth, unique_pdf())
        assert (blocked.status_code, blocked.json()["error"]["code"]) == (
            429,
            "too_many_active_jobs",
        )

        # The URL lapsed (900 s) and the grace (3600 s) too: housekeeping expires the job.
        # The app's own first sweep may run at any moment (it starts as the pool opens), so
        # the sweep that expires it is either that one or ours: the counter moves either way.
        before = _expired_total()
        await pool.execute(
            "UPDATE upload_jobs SET created_at = now() - interval '2 hours' WHERE job_id = $1",
            uuid.UUID(job_id),
        )
        await expire_uploads(pool, settings)
        assert _expired_total() >= before + 1
        assert await expire_uploads(pool, settings) == 0  # once only
        job = (await api.get(f"/api/v2/jobs/{job_id}", headers=auth)).json()
        assert (job["status"], job["state"], job["stage"]) == ("expired", "done", "expired")
        assert job["last_error"]["code"] == "upload_expired" and "expired" in job["stage_times"]
        kinds = await pool.fetch(
            "SELECT kind, status FROM events WHERE job_id = $1 ORDER BY id", uuid.UUID(job_id)
        )
        assert [tuple(r) for r in kinds][-1] == ("expired", "expired")

        # Bytes arriving after that (on a URL still signed) are refused with a clear reason.
        expires = int(time.time()) + 60
        signature = sign_upload(settings, uuid.UUID(job_id), expires)
        params: dict[str, str | int] = {"expires": expires, "signature": signature}
        late = await api.put(f"/api/v2/upload/{job_id}/content", params=params, content=data)
        assert (late.status_code, late.json()["error"]["code"]) == (410, "upload_expired")

        # The slot is free, and the same PDF declared again gets a new job and a new URL.
        again = await _declare(api, auth, data)
        assert again.status_code == 202, again.text
        body = again.json()
        assert body["job_id"] != job_id and body["signed_url"] and not body["duplicate"]
        put = await api.put(body["signed_url"], content=data)
        assert put.status_code == 200, put.text
        assert await expire_uploads(pool, settings) == 0  # a fresh job is left alone


async def test_housekeeping_expires_on_its_own(api_settings: Settings, pool: asyncpg.Pool) -> None:
    auth = bearer(api_settings, uuid.uuid4())
    async with running(create_app(api_settings)) as api:
        job_id = uuid.UUID((await _declare(api, auth, unique_pdf())).json()["job_id"])
    await pool.execute(
        "UPDATE upload_jobs SET created_at = now() - interval '2 hours' WHERE job_id = $1", job_id
    )

    async def expired() -> bool:
        status = await pool.fetchval("SELECT status FROM upload_jobs WHERE job_id = $1", job_id)
        return status == "expired"

    async with running(create_app(api_settings)):  # the first sweep runs as the pool opens
        await wait_for(expired, timeout=30, what="the abandoned upload to expire")
