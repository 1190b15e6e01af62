# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The console over HTTP (its own app in-process, as `accessa run console` serves it; real
Postgres and Kafka): login links are single use, the session is its own credential, actions
need the session's CSRF token and are audited; the API serves none of it. The browser
walk-through is tests/e2e/test_console_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from accessa import jobs
from accessa.cli.main import app as cli
from accessa.config import Settings, get_settings
from producer_api.console import routes
from producer_api.console.app import MAX_BODY_BYTES, create_console_app
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    bearer,
    running,
    unique_pdf,
    upload,
    user,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def console_app(api_settings: Settings) -> FastAPI:
    return create_console_app(api_settings)


@pytest.fixture
async def console(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The console process's app (its own lifespan and pool), beside the test's API."""
    async with running(console_app) as client:
        yield client


async def _login_token(operator: str = "alice") -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["console", "--operator", operator, "--json"]
    )
    assert result.exit_code == 0, result.output
    url = json.loads(result.output)["url"]
    assert urlparse(url).path == "/console/login"
    settings = get_settings()  # the console's base URL, not the API's
    assert url.startswith(settings.console_url + "/") and settings.console_url != settings.api_url
    return parse_qs(urlparse(url).query)["token"][0]


async def _signed_in(console: httpx.AsyncClient, operator: str = "alice") -> None:
    response = await console.get("/console/login", params={"token": await _login_token(operator)})
    assert response.status_code == 303, response.text


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def _failed_job(api: httpx.AsyncClient, auth: dict[str, str], pool: asyncpg.Pool) -> str:
    response = await upload(api, auth, unique_pdf())
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    async with pool.acquire() as conn, conn.transaction():
        await jobs.fail(
            conn,
            job_id=uuid.UUID(job_id),
            status="failed_parse",
            actor="parser",
            error={"code": "boom", "message": "it broke"},
        )
    return job_id


async def test_a_login_link_signs_in_once_with_a_strict_http_only_cookie(
    console: httpx.AsyncClient,
) -> None:
    token = await _login_token()
    first = await console.get("/console/login", params={"token": token})
    assert first.status_code == 303 and first.headers["location"] == "/console/"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = await console.get("/console/")
    assert page.status_code == 200 and "Stages" in page.text

    console.cookies.clear()
    again = await console.get("/console/login", params={"token": token})
    assert again.status_code == 401 and "already used or has expired" in again.text
    assert (await console.get("/console/")).status_code == 401


async def test_the_api_serves_no_console_page(
    api: httpx.AsyncClient, console: httpx.AsyncClient
) -> None:
    token = await _login_token()
    for path in (
        "/console/",
        "/console/login",
        "/console/jobs",
        "/console/dlq",
        "/console/static/console.js",
    ):
        response = await api.get(path, params={"token": token})
        assert response.status_code == 404, (path, response.status_code)
    refused = await api.post("/console/dlq/redrive", data={"id": "x:0:0", "confirm": "yes"})
    assert refused.status_code == 404
    # The token was never spent by the API: the console still takes it.
    assert (await console.get("/console/login", params={"token": token})).status_code == 303
    assert (await console.get("/console/static/console.js")).status_code == 200


async def test_the_console_holds_postgres_as_accessa_ops(
    console: httpx.AsyncClient, console_app: FastAPI
) -> None:
    assert (await console.get("/ready")).json()["checks"] == {"postgres": True, "kafka": True}
    assert await console_app.state.pool.fetchval("SELECT current_user") == "accessa_ops"


async def test_a_body_over_the_cap_is_refused_before_the_console_reads_it(
    console: httpx.AsyncClient,
) -> None:
    await _signed_in(console)
    big = await console.post("/console/dlq/redrive", data={"id": "x" * (MAX_BODY_BYTES + 1)})
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(4):
            yield b"id=" + b"x" * (MAX_BODY_BYTES // 2)

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    streamed = await console.post("/console/dlq/redrive", content=chunks(), headers=form)
    assert streamed.status_code == 413
    small = await console.post("/console/dlq/redrive", data={"id": "x:0:0", "confirm": "yes"})
    assert small.status_code == 403 and "CSRF" in small.text  # small forms reach the route


async def test_an_expired_or_made_up_token_signs_nobody_in(
    console: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    token = await _login_token()
    await pool.execute(
        "UPDATE console_tokens SET expires_at = now() - interval '1 second' "
        "WHERE token_sha256 = encode(sha256($1::text::bytea), 'hex')",
        token,
    )
    assert (await console.get("/console/login", params={"token": token})).status_code == 401
    assert (await console.get("/console/login", params={"token": "x" * 43})).status_code == 401


async def test_a_user_token_reads_no_console_page(
    console: httpx.AsyncClient, auth: dict[str, str], api_settings: Settings
) -> None:
    service = bearer(api_settings, uuid.uuid4(), role="service_role")
    for path in (
        "/console/",
        "/console/jobs",
        "/console/api/pipeline",
        "/console/cost",
        "/console/dlq",
    ):
        for headers in (auth, service):
            response = await console.get(path, headers=headers)
            assert response.status_code == 401, (path, response.status_code)


async def test_retry_without_the_csrf_token_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, console: httpx.AsyncClient, auth: dict[str, str], pool: asyncpg.Pool
) -> None:
    job_id = await _failed_job(api, auth, pool)
    await _signed_in(console)
    for form in ({}, {"csrf": "forged"}):
        refused = await console.post(f"/console/jobs/{job_id}/retry", data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    row = await pool.fetchrow("SELECT status FROM upload_jobs WHERE job_id = $1", uuid.UUID(job_id))
    assert row["status"] == "failed_parse"
    redrive = await console.post("/console/dlq/redrive", data={"id": "x:0:0", "confirm": "yes"})
    assert redrive.status_code == 403 and "CSRF" in redrive.text


async def test_retry_with_the_csrf_token_reopens_the_job_and_is_audited(
    api: httpx.AsyncClient, console: httpx.AsyncClient, auth: dict[str, str], pool: asyncpg.Pool
) -> None:
    job_id = await _failed_job(api, auth, pool)
    await _signed_in(console, "bob")
    page = await console.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200 and "Retry from the failed stage" in page.text
    done = await console.post(f"/console/jobs/{job_id}/retry", data={"csrf": _csrf(page.text)})
    assert done.status_code == 303, done.text
    row = await pool.fetchrow(
        "SELECT status, state FROM upload_jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert row["state"] == "queued" and row["status"] not in jobs.FAILED
    reopened = await pool.fetchval(
        "SELECT stage FROM events WHERE job_id = $1 AND kind = 'reopened'", uuid.UUID(job_id)
    )
    assert reopened == "console:bob"
    audit = await pool.fetchrow(
        "SELECT stage, detail FROM events WHERE kind = 'console_retry' AND detail->>'job_id' = $1",
        job_id,
    )
    assert audit["stage"] == "console:bob" and audit["detail"]["result"] == "retried"


async def test_a_session_without_the_ops_role_may_read_but_not_act(
    api: httpx.AsyncClient, console: httpx.AsyncClient, auth: dict[str, str], pool: asyncpg.Pool
) -> None:
    job_id = await _failed_job(api, auth, pool)
    token = await _login_token("viewer")
    await pool.execute(
        "UPDATE console_tokens SET role = 'viewer' "
        "WHERE token_sha256 = encode(sha256($1::text::bytea), 'hex')",
        token,
    )
    assert (await console.get("/console/login", params={"token": token})).status_code == 303
    page = await console.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200
    refused = await console.post(f"/console/jobs/{job_id}/retry", data={"csrf": _csrf(page.text)})
    assert refused.status_code == 403 and "ops role" in refused.text


async def test_the_jobs_page_filters_and_pages_by_keyset(
    api: httpx.AsyncClient,
    console: httpx.AsyncClient,
    auth: dict[str, str],
    user: uuid.UUID,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = [(await upload(api, auth, unique_pdf())).json()["job_id"] for _ in range(3)]
    failed = await _failed_job(api, auth, pool)
    await _signed_in(console)
    every = await console.get("/console/jobs", params={"user": str(user)})
    shown = re.findall(r'<tr data-job="([^"]+)"', every.text)
    assert shown == [failed, *reversed(made)]  # newest first

    only_dead = await console.get(
        "/console/jobs", params={"user": str(user), "state": "deadletter"}
    )
    assert re.findall(r'<tr data-job="([^"]+)"', only_dead.text) == [failed]

    monkeypatch.setattr(routes, "PAGE_SIZE", 2)
    first = await console.get("/console/jobs", params={"user": str(user)})
    nxt = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert nxt, "no next page link"
    second = await console.get(nxt.group(1).replace("&amp;", "&"))
    pages = [re.findall(r'<tr data-job="([^"]+)"', p.text) for p in (first, second)]
    assert pages == [[failed, made[2]], [made[1], made[0]]]

    bad = await console.get("/console/jobs", params={"user": "nobody", "since": "yesterday"})
    assert bad.status_code == 200 and "user must be a uuid" in bad.text
