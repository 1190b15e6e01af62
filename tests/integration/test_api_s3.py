# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The S3 backend against moto's server: a real presigned PUT, then the completion call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from accessa.config import Settings
from accessa.storage import raw_key
from producer_api.main import create_app
from schemas.events import DocumentUploaded
from tests.integration.test_api_support import (  # noqa: F401
    ENCRYPTED_PDF,
    api_settings,
    auth,
    queued_uploads,
    running,
    sha256,
    unique_pdf,
    uploaded_records,
    user,
)
from tests.utils import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(api_settings: Settings, moto_url: str) -> Settings:
    return api_settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_endpoint_url": moto_url,
            "s3_bucket": f"accessa-{uuid.uuid4().hex[:8]}",
        }
    )


@pytest.fixture
async def s3_api(s3_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(s3_settings)) as client:
        yield client


def _object(settings: Settings, key: str) -> bytes:
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return client.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()


async def _declare(client: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> dict:
    body = {"filename": "s3.pdf", "bytes": len(data), "sha256": sha256(data)}
    response = await client.post("/api/v2/upload", json=body, headers=auth)
    assert response.status_code == 202, response.text
    return response.json()


async def test_presigned_put_then_complete_verifies_the_object_and_emits(
    s3_api: httpx.AsyncClient,
    auth: dict[str, str],
    s3_settings: Settings,
    user: uuid.UUID,
) -> None:
    data = unique_pdf()
    body = await _declare(s3_api, auth, data)
    assert body["signed_url"].startswith(s3_settings.s3_endpoint_url)
    early = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert (early.status_code, early.json()["error"]["code"]) == (409, "upload_missing")

    async with httpx.AsyncClient() as plain:  # straight to S3, no API involved
        put = await plain.put(body["signed_url"], content=data)
    assert put.status_code == 200, put.text
    key = raw_key(user, uuid.UUID(body["document_id"]))
    assert _object(s3_settings, key) == data

    done = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert done.status_code == 200, done.text
    assert done.json()["stage"] == "validated"
    (record,) = await uploaded_records(s3_settings, expect=1)
    # The verified bytes have a key no URL was signed for; the uploaded object is gone.
    verified = f"raw/{user}/{body['document_id']}/{sha256(data)}.pdf"
    assert DocumentUploaded.model_validate_json(record.value).storage_path == verified
    assert _object(s3_settings, verified) == data
    again = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert again.status_code == 409


async def test_complete_rejects_an_object_that_differs_from_the_declaration(
    s3_api: httpx.AsyncClient,
    auth: dict[str, str],
    s3_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    data = unique_pdf()
    body = await _declare(s3_api, auth, data)
    async with httpx.AsyncClient() as plain:
        await plain.put(body["signed_url"], content=unique_pdf())  # same size, other bytes
    response = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "sha256_mismatch")
    assert await queued_uploads(pool, s3_settings) == []


async def test_complete_rejects_an_encrypted_pdf_and_removes_it(
    s3_api: httpx.AsyncClient,
    auth: dict[str, str],
    s3_settings: Settings,
) -> None:
    body = await _declare(s3_api, auth, ENCRYPTED_PDF)
    async with httpx.AsyncClient() as plain:
        await plain.put(body["signed_url"], content=ENCRYPTED_PDF)
    response = await s3_api.post(f"/api/v2/upload/{body['job_id']}/complete", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "pdf_encrypted")
    gone = await s3_api.get(f"/api/v2/jobs/{body['job_id']}", headers=auth)
    assert gone.status_code == 404
