# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""Job status, listing, retry and cross-user isolation against real Postgres and Kafka."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from accessa import jobs
from accessa.config import Settings
from schemas.events import ChunksCreated, ChunksEmbedded, DocumentParsed, DocumentUploaded
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    bearer,
    unique_pdf,
    upload,
    uploaded_records,
    user,
)
from tests.utils import header_map, read_topic, wait_for

pytestmark = pytest.mark.integration


async def _new_job(api: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await upload(api, auth, unique_pdf())
    assert response.status_code == 202, response.text
    return response.json()


async def _fail(pool: asyncpg.Pool, job_id: str, status: str, stage: str, **fields: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if fields:
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
            await conn.execute(
                f"UPDATE upload_jobs SET {sets} WHERE job_id = $1",
                uuid.UUID(job_id),
                *fields.values(),
            )
        await jobs.fail(
            conn,
            job_id=uuid.UUID(job_id),
            status=status,
            actor=stage,
            error={"stage": stage, "code": "boom", "message": "it broke"},
        )


async def test_job_status_shows_stage_progress_times_and_cost(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    pool: asyncpg.Pool,
) -> None:
    created = await _new_job(api, auth)
    job_id = uuid.UUID(created["job_id"])
    async with pool.acquire() as conn:
        await jobs.advance(
            conn,
            job_id=job_id,
            status="chunks_stored",
            actor="chunker",
            chunk_count=12,
            chunks_version="markdown-simple@1",
        )
        await conn.execute(
            "UPDATE upload_jobs SET cost_usd = 0.00012, embed_tokens = 6000 WHERE job_id = $1",
            job_id,
        )
    body = (await api.get(f"/api/v2/jobs/{job_id}", headers=auth)).json()
    assert (body["status"], body["stage"], body["progress"]) == ("chunks_stored", "chunked", 55)
    assert {"queued", "validated", "chunked"} <= set(body["stage_times"])
    assert body["chunk_count"] == 12 and body["vector_count"] is None
    assert body["cost_usd"] == pytest.approx(0.00012) and body["embed_tokens"] == 6000
    assert body["filename"] == "policy.pdf" and body["last_error"] is None
    assert body["correlation_id"]


async def test_job_list_pages_with_a_cursor_and_filters_by_status_and_time(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    pool: asyncpg.Pool,
) -> None:
    made = [(await _new_job(api, auth))["job_id"] for _ in range(5)]
    await _fail(pool, made[0], "failed_parse", "parser")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v2/jobs", params=params, headers=auth)).json()
        seen += [item["job_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))  # newest first, each once
    failed = await api.get("/api/v2/jobs", params={"status": "failed_parse"}, headers=auth)
    assert [j["job_id"] for j in failed.json()["items"]] == [made[0]]
    dead = (await api.get("/api/v2/jobs", params={"state": "deadletter"}, headers=auth)).json()
    assert [j["job_id"] for j in dead["items"]] == [made[0]]
    future = await api.get("/api/v2/jobs", params={"since": "2999-01-01T00:00:00Z"}, headers=auth)
    assert future.json() == {"items": [], "next_cursor": None}
    bad = await api.get("/api/v2/jobs", params={"cursor": "garbage!"}, headers=auth)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")


async def _retry_emits(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, job_id: str, topic: str
) -> Any:
    response = await api.post(f"/api/v2/jobs/{job_id}/retry", headers=auth)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued"

    async def record() -> Any:
        found = [
            r
            for r in await read_topic(settings, f"{settings.topic_prefix}{topic}")
            if header_map(r)["x-job-id"] == job_id
        ]
        return found[0] if found else None

    return await wait_for(record, timeout=20, what=f"retry event on {topic}")


async def test_retry_re_emits_to_the_stage_that_failed(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    parsed = {"parsed_path": "parsed/x.md", "parsed_sha256": "b" * 64, "pages": 3}
    chunked = {**parsed, "chunks_version": "markdown-simple@1", "chunk_count": 7}
    # (status, stage, job fields, retried topic, the event model, make_id's other parts)
    cases: list[tuple[str, str, dict[str, Any], str, Any, tuple[str, ...]]] = [
        ("failed_parse", "parser", {}, "uploaded", DocumentUploaded, ()),
        ("failed_chunking", "chunker", parsed, "parsed", DocumentParsed, ()),
        ("failed_embedding", "embedder", chunked, "chunked", ChunksCreated, ("markdown-simple@1",)),
        (
            "failed_embedding",
            "finalizer",
            {**chunked, "embed_model": "text-embedding-3-small"},
            "embedded",
            ChunksEmbedded,
            ("markdown-simple@1", "text-embedding-3-small"),
        ),
    ]
    for status, stage, fields, topic, model, parts in cases:
        job_id = (await _new_job(api, auth))["job_id"]
        await _fail(pool, job_id, status, stage, **fields)
        record = await _retry_emits(api, auth, api_settings, job_id, topic)
        event = model.model_validate_json(record.value)
        assert event.event_id == model.make_id(uuid.UUID(job_id), *parts), (status, stage)
        if isinstance(event, DocumentParsed):
            assert (event.parsed_path, event.pages) == ("parsed/x.md", 3)
        if isinstance(event, ChunksCreated | ChunksEmbedded):
            assert event.chunk_count == 7 and event.parsed_sha256 == "b" * 64
        row = await pool.fetchrow(
            "SELECT status, state FROM upload_jobs WHERE job_id = $1", uuid.UUID(job_id)
        )
        assert row["state"] == "queued" and row["status"] not in jobs.FAILED


async def test_retry_of_a_job_that_has_not_failed_is_409(
    api: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    job_id = (await _new_job(api, auth))["job_id"]
    response = await api.post(f"/api/v2/jobs/{job_id}/retry", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "job_not_retryable")


async def test_another_users_job_and_document_are_404_for_read_list_and_retry(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    mine = await _new_job(api, auth)
    await _fail(pool, mine["job_id"], "failed_parse", "parser")
    intruder = bearer(api_settings, uuid.uuid4())
    for method, path in [
        ("GET", f"/api/v2/jobs/{mine['job_id']}"),
        ("POST", f"/api/v2/jobs/{mine['job_id']}/retry"),
        ("GET", f"/api/v2/documents/{mine['document_id']}"),
    ]:
        response = await api.request(method, path, headers=intruder)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
        assert mine["job_id"] not in response.text
    listed = await api.get("/api/v2/jobs", headers=intruder)
    assert listed.json()["items"] == []
    state = await pool.fetchval(
        "SELECT state FROM upload_jobs WHERE job_id = $1", uuid.UUID(mine["job_id"])
    )
    assert state == "deadletter"  # the intruder's retry changed nothing
    own = await api.get(f"/api/v2/documents/{mine['document_id']}", headers=auth)
    assert own.status_code == 200 and own.json()["latest_job_id"] == mine["job_id"]


async def test_service_role_reads_any_job_and_acts_for_a_user(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    user: uuid.UUID,
) -> None:
    mine = await _new_job(api, auth)
    service = bearer(api_settings, uuid.uuid4(), role="service_role")
    read = await api.get(f"/api/v2/jobs/{mine['job_id']}", headers=service)
    assert read.status_code == 200
    acting = await upload(api, {**service, "X-User-Id": str(user)}, unique_pdf())
    assert acting.status_code == 202
    listed = await api.get("/api/v2/jobs", headers=auth)
    assert acting.json()["job_id"] in {j["job_id"] for j in listed.json()["items"]}
