# ruff: noqa: F811  (pytest fixtures come from test_api_support / test_api_s3, redefined as args)
"""Bytes are verified where they are used (issue 19.2): a presigned S3 upload is sized before
it is read and locked once verified, the parser reads only the bytes its document row names,
and `accessa storage gc` reclaims raw objects no live upload needs."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from accessa.cli.main import app as cli
from accessa.config import Settings, get_settings
from accessa.db import connect
from accessa.errors import ConfigurationError
from accessa.ops import storage_gc
from accessa.storage import S3Storage, Storage, make_storage, raw_key
from consumers.parser.app import read_raw
from producer_api.main import create_app
from tests.integration.conftest import Stages
from tests.integration.test_api_s3 import moto_url, s3_settings  # noqa: F401
from tests.integration.test_api_support import (  # noqa: F401
    api_settings,
    auth,
    bearer,
    running,
    sha256,
    unique_pdf,
    upload,
    user,
)
from tests.utils import CORPUS

pytestmark = pytest.mark.integration
MAX_MB = 1.0  # the S3 app's upload limit here: an oversize object stays small for the machine


async def _declare(client: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> dict[str, Any]:
    body = {"filename": "s3.pdf", "bytes": len(data), "sha256": sha256(data)}
    response = await client.post("/api/v2/upload", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return response.json()


async def _document_job(pool: asyncpg.Pool, job_id: str) -> asyncpg.Record:
    """The row the parser's ctx.job() reads."""
    return await pool.fetchrow(
        """SELECT j.*, d.raw_path, d.sha256 AS document_sha256, d.size AS document_size
           FROM upload_jobs j JOIN documents d USING (document_id) WHERE j.job_id = $1""",
        uuid.UUID(job_id),
    )


@pytest.fixture
def s3_app(s3_settings: Settings) -> Any:
    return create_app(s3_settings.model_copy(update={"max_upload_mb": MAX_MB}))


@pytest.fixture
def gets() -> list[str]:
    """Every GetObject the API's S3 client sends (its path), registered by `s3_api`."""
    return []


@pytest.fixture
async def s3_api(s3_app: Any, gets: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(s3_app) as client:
        storage = s3_app.state.storage
        assert isinstance(storage, S3Storage)
        storage.client.meta.events.register(
            "before-call.s3.GetObject", lambda params, **_: gets.append(params["url_path"])
        )
        yield client


async def test_a_put_to_the_presigned_url_after_complete_does_not_change_what_the_parser_reads(
    s3_api: httpx.AsyncClient,
    auth: dict[str, str],
    s3_settings: Settings,
    pool: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    data = unique_pdf()
    body = await _declare(s3_api, auth, data)
    async with httpx.AsyncClient() as plain:
        assert (await plain.put(body["signed_url"], content=data)).status_code == 200
    done = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert done.status_code == 200, done.text

    job = await _document_job(pool, body["job_id"])
    assert job["raw_path"] == f"raw/{user}/{body['document_id']}/{sha256(data)}.pdf"
    storage = make_storage(s3_settings)
    assert not await storage.exists(raw_key(user, uuid.UUID(body["document_id"])))

    # The URL still works until it expires (moto checks no signature): same size, other bytes.
    async with httpx.AsyncClient() as plain:
        await plain.put(body["signed_url"], content=unique_pdf())
    ctx = SimpleNamespace(storage=storage)
    assert await read_raw(ctx, job) == data  # type: ignore[arg-type]


async def test_an_oversize_or_wrong_size_object_is_refused_by_complete_from_a_head_without_a_get(
    s3_api: httpx.AsyncClient,
    auth: dict[str, str],
    s3_settings: Settings,
    gets: list[str],
) -> None:
    data = unique_pdf()
    body = await _declare(s3_api, auth, data)
    assert "content-length" in body["signed_url"].lower()  # S3 itself refuses another size
    too_big = os.urandom(int(MAX_MB * 1024 * 1024) + 1)
    async with httpx.AsyncClient(timeout=60) as plain:
        await plain.put(body["signed_url"], content=too_big)  # moto does not refuse it
    response = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "file_too_large")

    async with httpx.AsyncClient() as plain:
        await plain.put(body["signed_url"], content=data[:-1])
    response = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "size_mismatch")
    assert gets == []

    async with httpx.AsyncClient() as plain:
        await plain.put(body["signed_url"], content=data)
    response = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert response.status_code == 200, response.text
    assert len(gets) == 1  # the hook sees GETs: the refusals above really made none


async def test_the_parser_fails_a_tampered_raw_file_raw_sha_mismatch_in_one_delivery(
    stages: Stages,
) -> None:
    pdf = (CORPUS / "minimal-document.pdf").read_bytes()
    flipped = await stages.submit(pdf)
    resized = await stages.submit(pdf)
    await stages.storage.put(flipped.storage_path, pdf[:-2] + b"X\n")  # same size
    await stages.storage.put(resized.storage_path, pdf + b"%extra\n")
    await stages.start("parser")
    for event in (flipped, resized):
        job = await stages.finished(event.job_id)
        assert (job["status"], job["state"]) == ("failed_parse", "deadletter")
        assert job["last_error"]["code"] == "raw_sha_mismatch"
        assert event.storage_path in job["last_error"]["message"]
        assert job["retry_count"] == 0  # permanent: no retry topic, one delivery


async def test_a_failed_upload_transaction_after_the_bytes_were_stored_leaves_no_raw_object(
    api_settings: Settings,
    pool: asyncpg.Pool,
    auth: dict[str, str],
    user: uuid.UUID,
) -> None:
    # A real failure after storage.put: Postgres refuses this test's outbox rows (its topics).
    refuse = f"refuse_{uuid.uuid4().hex[:12]}"
    admin = await connect(api_settings.dsn)  # the bootstrap login: no runtime login has DDL
    await admin.execute(
        f"CREATE FUNCTION public.{refuse}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.topic = '{api_settings.topic_prefix}uploaded' THEN "
        f"RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
    )
    await admin.execute(
        f"CREATE TRIGGER {refuse} BEFORE INSERT ON upload_pipeline.outbox "
        f"FOR EACH ROW EXECUTE FUNCTION public.{refuse}()"
    )
    try:
        async with running(create_app(api_settings)) as api:
            response = await upload(api, auth, unique_pdf())
    finally:
        await admin.execute(f"DROP TRIGGER {refuse} ON upload_pipeline.outbox")
        await admin.execute(f"DROP FUNCTION public.{refuse}()")
        await admin.close()
    assert response.status_code == 500, response.text
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE user_id = $1", user) == 0
    stored = api_settings.storage_root / "raw" / str(user)
    assert [p for p in stored.rglob("*") if p.is_file()] == []


# --- storage gc, on local storage and on moto


@pytest.fixture(params=["local", "s3"])
def gc_settings(request: pytest.FixtureRequest, api_settings: Settings) -> Settings:
    if request.param == "local":
        return api_settings
    return request.getfixturevalue("s3_settings")


async def _document(
    pool: asyncpg.Pool,
    storage: Storage,
    *,
    stage: str,
    status: str = "uploaded",
    age_s: float = 0,
    store: bool = True,
) -> str:
    """A document + job row, its raw object stored; returns the key."""
    user, doc = uuid.uuid4(), uuid.uuid4()
    key = raw_key(user, doc)
    await pool.execute(
        "INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path) "
        "VALUES ($1, $2, $3, 4, 'gc.pdf', $4)",
        doc,
        user,
        uuid.uuid4().hex * 2,
        key,
    )
    await pool.execute(
        "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id, stage, status, "
        "state, created_at) VALUES ($1, $2, $3, 'gc', $4, $5, $6, now() - make_interval(secs "
        "=> $7))",
        uuid.uuid4(),
        user,
        doc,
        stage,
        status,
        "done" if status == "expired" else "queued",
        float(age_s),
    )
    if store:
        await storage.put(key, b"%PDF")
    return key


async def test_storage_gc_deletes_only_orphan_expired_and_abandoned_objects_past_grace(
    gc_settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = make_storage(gc_settings)
    if isinstance(storage, S3Storage):
        storage.ensure_bucket()
    live = await _document(pool, storage, stage="validated", age_s=7200)
    waiting = await _document(pool, storage, stage="queued", age_s=10)
    expired = await _document(pool, storage, stage="expired", status="expired", age_s=7200)
    abandoned = await _document(pool, storage, stage="queued", age_s=7200)
    orphan = raw_key(uuid.uuid4(), uuid.uuid4())
    await storage.put(orphan, b"%PDF")
    doomed = {orphan: "orphan", expired: "expired", abandoned: "abandoned"}

    async def gc(grace_s: float, dry_run: bool) -> storage_gc.Report:
        return await storage_gc.collect(
            pool, storage, grace_s=grace_s, dry_run=dry_run, abandoned_after_s=3600
        )

    young = await gc(grace_s=3600, dry_run=False)  # every object was written just now
    assert (young.scanned, young.doomed, young.deleted) == (5, [], 0)
    listed = await gc(grace_s=0, dry_run=True)
    assert {d.key: d.reason for d in listed.doomed} == doomed
    assert listed.deleted == 0
    assert all([await storage.exists(k) for k in [live, waiting, *doomed]])

    # The command as an operator runs it.
    if isinstance(storage, S3Storage):
        monkeypatch.setenv("ACCESSA_STORAGE_BACKEND", "s3")
        monkeypatch.setenv("ACCESSA_S3_ENDPOINT_URL", str(gc_settings.s3_endpoint_url))
        monkeypatch.setenv("ACCESSA_S3_BUCKET", gc_settings.s3_bucket)
    else:
        monkeypatch.setenv("ACCESSA_STORAGE_DIR", str(gc_settings.storage_root))
    monkeypatch.setenv("ACCESSA_STORAGE_GC_GRACE_S", "0")
    get_settings.cache_clear()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["storage", "gc", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["deleted"] == 3
    assert {o["key"]: o["reason"] for o in report["objects"]} == doomed
    assert [k for k in [live, waiting, *doomed] if await storage.exists(k)] == [live, waiting]
    again = await gc(grace_s=0, dry_run=False)
    assert (again.scanned, again.doomed) == (2, [])


async def test_storage_gc_refuses_a_login_that_row_level_security_hides_documents_from(
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    storage = make_storage(api_settings)
    live = await _document(pool, storage, stage="validated", age_s=7200)
    async with pool.acquire() as conn:
        await conn.execute("SET ROLE accessa_app")  # sees only the rows of app.user_id
        try:
            with pytest.raises(ConfigurationError, match="row-level security"):
                await storage_gc.collect(conn, storage, grace_s=0, abandoned_after_s=0)
        finally:
            await conn.execute("RESET ROLE")
    assert await storage.exists(live)
