# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""One-step and two-step uploads against real Postgres and Kafka: job, storage, one event."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from producer_api.main import create_app
from schemas.events import DocumentUploaded
from tests.integration.test_api_support import (  # noqa: F401
    ENCRYPTED_PDF,
    PDF,
    api,
    api_settings,
    auth,
    bearer,
    corpus_pdf,
    headers_of,
    no_more_than,
    queued_uploads,
    running,
    sha256,
    unique_pdf,
    upload,
    uploaded_records,
    user,
)

pytestmark = pytest.mark.integration


async def test_one_step_upload_creates_job_and_emits_one_uploaded_event(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    user: uuid.UUID,
    pool: asyncpg.Pool,
) -> None:
    data = unique_pdf()
    response = await upload(api, auth, data, headers={"X-Correlation-ID": "corr-one-step-1"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "uploaded" and body["stage"] == "validated"
    assert response.headers["x-correlation-id"] == "corr-one-step-1"

    (record,) = await uploaded_records(api_settings, expect=1)
    event = DocumentUploaded.model_validate_json(record.value)
    assert record.key == body["document_id"].encode()
    assert event.event_id == DocumentUploaded.make_id(uuid.UUID(body["job_id"]))
    assert event.sha256 == sha256(data) and event.size == len(data)
    assert event.storage_path == f"raw/{user}/{body['document_id']}.pdf"
    assert headers_of(record) == {
        "x-correlation-id": "corr-one-step-1",
        "x-job-id": body["job_id"],
        "x-user-id": str(user),
        "x-document-id": body["document_id"],
        "x-event-id": str(event.event_id),
    }
    stored = api_settings.storage_root / event.storage_path
    assert stored.read_bytes() == data
    job = await pool.fetchrow(
        "SELECT * FROM upload_jobs WHERE job_id = $1", uuid.UUID(body["job_id"])
    )
    assert job["correlation_id"] == "corr-one-step-1"


async def _declare(api: httpx.AsyncClient, auth: dict[str, str], data: bytes, **overrides: object):
    body = {
        "filename": "policy.pdf",
        "bytes": len(data),
        "sha256": sha256(data),
        "mime": "application/pdf",
        **overrides,
    }
    return await api.post("/api/v2/upload", json=body, headers=auth)


async def test_two_step_upload_emits_only_after_verified_bytes_arrive(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    data = unique_pdf()
    declared = await _declare(api, auth, data)
    assert declared.status_code == 202, declared.text
    body = declared.json()
    assert body["signed_url"] and body["upload_expires_at"] and not body["duplicate"]
    waiting = (await api.get(f"/api/v2/jobs/{body['job_id']}", headers=auth)).json()
    assert (waiting["stage"], waiting["progress"]) == ("queued", 0)
    assert await queued_uploads(pool, api_settings) == []

    put = await api.put(body["signed_url"], content=data)  # no bearer: the URL is the credential
    assert put.status_code == 200, put.text
    assert put.json()["stage"] == "validated"
    (record,) = await uploaded_records(api_settings, expect=1)
    assert record.key == body["document_id"].encode()
    again = await api.put(body["signed_url"], content=data)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "upload_already_completed")


async def test_put_with_wrong_bytes_is_400_and_the_job_keeps_waiting(
    api: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    data = unique_pdf()
    body = (await _declare(api, auth, data)).json()
    shorter = await api.put(body["signed_url"], content=data[:-1])
    assert (shorter.status_code, shorter.json()["error"]["code"]) == (400, "size_mismatch")
    tampered = data[:-2] + b"X\n"
    other = await api.put(body["signed_url"], content=tampered)
    assert (other.status_code, other.json()["error"]["code"]) == (400, "sha256_mismatch")
    assert (await api.put(body["signed_url"], content=data)).status_code == 200


async def test_tampered_or_expired_signed_url_is_403(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
) -> None:
    data = unique_pdf()
    body = (await _declare(api, auth, data)).json()
    url = httpx.URL(body["signed_url"])
    forged = url.copy_set_param("expires", str(int(url.params["expires"]) + 3600))
    response = await api.put(forged, content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "invalid_signature")

    from producer_api.core.security import sign_upload

    past = int(time.time()) - 5
    expired = url.copy_set_param("expires", str(past)).copy_set_param(
        "signature", sign_upload(api_settings, uuid.UUID(body["job_id"]), past)
    )
    response = await api.put(expired, content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "url_expired")


async def test_declared_pdf_that_fails_validation_is_422_and_removed(
    api: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    data = ENCRYPTED_PDF
    body = (await _declare(api, auth, data)).json()
    response = await api.put(body["signed_url"], content=data)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "pdf_encrypted")
    gone = await api.get(f"/api/v2/jobs/{body['job_id']}", headers=auth)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (ENCRYPTED_PDF, 422, "pdf_encrypted"),
        (b"%PDF-1.7\n" + b"\x00broken" * 200, 422, "pdf_corrupt"),
        (b"GIF89a not a pdf at all", 422, "not_pdf"),
        (PDF[:300], 422, "pdf_corrupt"),
    ],
)
async def test_one_step_upload_rejects_bad_pdfs_with_their_codes(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
    data: bytes,
    status: int,
    code: str,
) -> None:
    response = await upload(api, auth, data)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert await queued_uploads(pool, api_settings) == []


async def test_upload_over_the_size_limit_is_413(
    api_settings: Settings, auth: dict[str, str]
) -> None:
    settings = api_settings.model_copy(update={"max_upload_mb": 0.01})
    async with running(create_app(settings, with_relay=False)) as client:
        response = await upload(client, auth, unique_pdf(corpus_pdf("google-doc-document.pdf")))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "file_too_large")


async def test_filename_is_sanitised_and_never_used_as_the_storage_path(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    pool: asyncpg.Pool,
    user: uuid.UUID,
) -> None:
    response = await upload(api, auth, unique_pdf(), name="../../etc/pa\u0073\u0301wd\u202e.pdf")
    doc = await pool.fetchrow(
        "SELECT * FROM documents WHERE document_id = $1", uuid.UUID(response.json()["document_id"])
    )
    assert doc["filename"] == "pa\u015bwd.pdf"
    assert doc["raw_path"] == f"raw/{user}/{doc['document_id']}.pdf"


async def test_same_user_same_sha_returns_the_existing_document_as_duplicate(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    user: uuid.UUID,
) -> None:
    data = unique_pdf()
    first = (await upload(api, auth, data)).json()
    again = await upload(api, auth, data, name="renamed.pdf")
    assert again.status_code == 200
    assert again.json() == {**first, "duplicate": True}
    declared = await _declare(api, auth, data)
    assert declared.status_code == 200 and declared.json()["duplicate"]
    assert declared.json()["signed_url"] is None  # the bytes are already in
    other_user = await upload(api, bearer(api_settings, uuid.uuid4()), data)
    assert other_user.status_code == 202  # dedup is per user
    assert len(await uploaded_records(api_settings, expect=2)) == 2
    assert len(await no_more_than(api_settings, 2)) == 2


async def test_ten_concurrent_identical_uploads_give_one_document_one_job_one_event(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    user: uuid.UUID,
    pool: asyncpg.Pool,
) -> None:
    data = unique_pdf()
    responses = await asyncio.gather(*(upload(api, auth, data) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [202], [r.text for r in responses]
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE user_id = $1", user) == 1
    assert await pool.fetchval("SELECT count(*) FROM upload_jobs WHERE user_id = $1", user) == 1
    await uploaded_records(api_settings, expect=1)
    assert len(await no_more_than(api_settings, 1)) == 1
