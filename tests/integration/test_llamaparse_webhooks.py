"""LlamaParse webhook mode: the mock LlamaParse calls the real API route over HTTP, the route
records the outcome and NOTIFYs, and the parser's webhook backend (or the four real stages)
wakes up and fetches the markdown. Real Postgres, real uvicorn, real HTTP throughout."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from accessa.config import LLAMAPARSE_WEBHOOK_PATH, Settings
from accessa.errors import PermanentError, TransientError
from accessa.providers import llamaparse_jobs
from consumers.parser.backends import LlamaParseWebhookBackend
from mocks import llamaparse_server
from mocks.serve import running_server
from producer_api.main import create_app
from tests.integration.conftest import Stages
from tests.integration.test_api_support import LiveServer
from tests.utils import CORPUS, MockControl, free_port, wait_for

pytestmark = pytest.mark.integration

SECRET = "whsec-webhook-test"
FOUR_PAGES = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()
ENCRYPTED = (CORPUS / "libreoffice-writer-password.pdf").read_bytes()


@pytest.fixture
def api(infra: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """The producer API under real uvicorn, with this test's webhook secret."""
    settings = infra.model_copy(
        update={
            "storage_dir": tmp_path / "storage",
            "llamaparse_webhook_secret": SecretStr(SECRET),
        }
    )
    with LiveServer(create_app(settings, with_relay=False)) as server:
        yield server


@pytest.fixture
async def mock() -> AsyncIterator[MockControl]:
    """Mock LlamaParse signing its webhooks with the API's secret; jobs take 0.5 s."""
    app = llamaparse_server.create_app(webhook_secret=SECRET, delay_s=0.5)
    async with running_server(app) as url, httpx.AsyncClient(base_url=url) as control:
        yield MockControl(url, control)


@pytest.fixture
def webhook_settings(infra: Settings, api: LiveServer, mock: MockControl) -> Settings:
    """Webhook mode with the callback URL left to its default: the API URL + the route. The
    re-check is far beyond the timeout, so only a webhook can end a wait in time."""
    return infra.model_copy(
        update={
            "parser_backend": "llamaparse",
            "llamaparse_mode": "webhook",
            "api_url": api.url,
            "llamaparse_base_url": mock.url,
            "llamaparse_webhook_secret": SecretStr(SECRET),
            "llamaparse_timeout_s": 20.0,
            "llamaparse_webhook_recheck_s": 600.0,
        }
    )


@pytest.fixture
async def backend(
    webhook_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[LlamaParseWebhookBackend]:
    b = LlamaParseWebhookBackend(webhook_settings, pool)
    yield b
    await b.client.aclose()


async def new_document(pool: asyncpg.Pool) -> uuid.UUID:
    document_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path) "
        "VALUES ($1, $2, $3, 1, 'p.pdf', 'raw/p.pdf')",
        document_id,
        uuid.uuid4(),
        hashlib.sha256(document_id.bytes).hexdigest(),
    )
    return document_id


async def llamaparse_row(pool: asyncpg.Pool, document_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM llamaparse_jobs WHERE document_id = $1", document_id)


async def uploads(mock: MockControl) -> int:
    return sum(e["path"] == "/api/v1/parsing/upload" for e in await mock.log())


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/json",
        "X-Llamaparse-Timestamp": timestamp,
        "X-Llamaparse-Signature": llamaparse_server.sign(secret, timestamp, body),
    }


async def test_a_pdf_is_parsed_when_the_webhook_reaches_the_api(
    backend: LlamaParseWebhookBackend, mock: MockControl, pool: asyncpg.Pool
) -> None:
    await mock.configure(delay_s=2.0)  # still pending at the parser's own first look
    document_id = await new_document(pool)
    started = time.monotonic()
    parsed = await backend.parse(FOUR_PAGES, "four.pdf", document_id=document_id)

    # Woken by the NOTIFY: the re-check (600 s) and the timeout (20 s) are far off.
    assert time.monotonic() - started < 10
    assert (parsed.pages, parsed.parser) == (4, "llamaparse")
    row = await llamaparse_row(pool, document_id)
    assert row is not None and row["status"] == "success"
    deliveries = (await mock.control.get("/_mock/webhooks")).json()
    assert [(d["job_id"], d["answer"]) for d in deliveries] == [(row["llamaparse_job_id"], 200)]
    assert await uploads(mock) == 1


async def test_a_forged_signature_is_401_and_changes_nothing(
    api: LiveServer, pool: asyncpg.Pool
) -> None:
    document_id = await new_document(pool)
    job_id = f"job-{uuid.uuid4()}"
    await pool.execute(
        "INSERT INTO llamaparse_jobs (document_id, llamaparse_job_id) VALUES ($1, $2)",
        document_id,
        job_id,
    )
    before = await llamaparse_row(pool, document_id)
    body = json.dumps({"event": "parse.success", "job_id": job_id, "status": "SUCCESS"}).encode()
    forged = [
        signed(body, secret="not-the-secret"),
        signed(body, at=time.time() - 600),  # stale: a replay
        {"Content-Type": "application/json"},  # unsigned
    ]
    async with httpx.AsyncClient(base_url=api.url) as client:
        for headers in forged:
            resp = await client.post(LLAMAPARSE_WEBHOOK_PATH, content=body, headers=headers)
            assert resp.status_code == 401, resp.text
            error = resp.json()["error"]
            assert error["code"] == "invalid_signature" and error["correlation_id"]
        tampered = body.replace(b"SUCCESS", b"ERROR")  # signed before it was changed
        resp = await client.post(LLAMAPARSE_WEBHOOK_PATH, content=tampered, headers=signed(body))
        assert resp.status_code == 401
    assert await llamaparse_row(pool, document_id) == before


async def test_a_signed_event_for_an_unknown_job_is_404(api: LiveServer) -> None:
    body = json.dumps({"job_id": "nobody", "status": "SUCCESS"}).encode()
    async with httpx.AsyncClient(base_url=api.url) as client:
        resp = await client.post(LLAMAPARSE_WEBHOOK_PATH, content=body, headers=signed(body))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_a_redelivery_after_a_crash_reuses_the_submitted_job(
    webhook_settings: Settings,
    backend: LlamaParseWebhookBackend,
    mock: MockControl,
    pool: asyncpg.Pool,
) -> None:
    await mock.configure(delay_s=1.0)
    document_id = await new_document(pool)
    first = asyncio.create_task(backend.parse(FOUR_PAGES, "four.pdf", document_id=document_id))
    await wait_for(lambda: llamaparse_row(pool, document_id), what="the job to be recorded")
    first.cancel()  # the parser dies while it waits

    restarted = LlamaParseWebhookBackend(webhook_settings, pool)
    try:
        parsed = await restarted.parse(FOUR_PAGES, "four.pdf", document_id=document_id)
    finally:
        await restarted.client.aclose()
    assert parsed.pages == 4
    assert await uploads(mock) == 1


async def test_a_failed_job_ends_as_the_permanent_error(
    backend: LlamaParseWebhookBackend, pool: asyncpg.Pool
) -> None:
    document_id = await new_document(pool)
    with pytest.raises(PermanentError) as caught:
        await backend.parse(ENCRYPTED, "locked.pdf", document_id=document_id)
    assert caught.value.code == "pdf_encrypted"
    row = await llamaparse_row(pool, document_id)
    assert row is not None and (row["status"], row["error"]) == ("error", "parse.error")


async def test_a_lost_webhook_is_made_up_for_by_the_recheck(
    webhook_settings: Settings, mock: MockControl, pool: asyncpg.Pool
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/hook"  # the API is down when LlamaParse calls
    settings = webhook_settings.model_copy(
        update={"llamaparse_webhook_url": nowhere, "llamaparse_webhook_recheck_s": 0.2}
    )
    lost = LlamaParseWebhookBackend(settings, pool)
    document_id = await new_document(pool)
    try:
        parsed = await lost.parse(FOUR_PAGES, "four.pdf", document_id=document_id)
    finally:
        await lost.client.aclose()
    assert parsed.pages == 4
    row = await llamaparse_row(pool, document_id)
    assert row is not None and row["status"] == "success"  # recorded by the parser itself


async def test_a_webhook_that_overtakes_the_parsers_insert_is_made_up_for(
    backend: LlamaParseWebhookBackend, mock: MockControl, pool: asyncpg.Pool
) -> None:
    await mock.configure(delay_s=0)
    document_id = await new_document(pool)
    # What a fast job does between the parser's submit and its insert: the webhook comes first.
    job_id = await backend.client.submit(FOUR_PAGES, "four.pdf", backend.callback_url)

    async def answered() -> list[dict]:
        return (await mock.control.get("/_mock/webhooks")).json()

    assert [d["answer"] for d in await wait_for(answered, what="the webhook")] == [404]
    await llamaparse_jobs.record_submitted(pool, document_id, job_id)
    started = time.monotonic()
    parsed = await backend.parse(FOUR_PAGES, "four.pdf", document_id=document_id)
    assert time.monotonic() - started < 10  # found by its first look, not the 600 s re-check
    assert parsed.pages == 4
    assert await uploads(mock) == 1


async def test_no_webhook_within_the_timeout_is_transient_and_keeps_the_job(
    webhook_settings: Settings, mock: MockControl, pool: asyncpg.Pool
) -> None:
    await mock.configure(delay_s=60)
    settings = webhook_settings.model_copy(update={"llamaparse_timeout_s": 0.5})
    slow = LlamaParseWebhookBackend(settings, pool)
    document_id = await new_document(pool)
    try:
        with pytest.raises(TransientError) as caught:
            await slow.parse(FOUR_PAGES, "four.pdf", document_id=document_id)
    finally:
        await slow.client.aclose()
    assert caught.value.code == "parse_timeout"
    row = await llamaparse_row(pool, document_id)
    assert row is not None and row["status"] == "pending"  # the retry waits for this job


async def test_a_job_llamaparse_has_purged_is_submitted_again(
    backend: LlamaParseWebhookBackend, mock: MockControl, pool: asyncpg.Pool
) -> None:
    document_id = await new_document(pool)
    await pool.execute(
        "INSERT INTO llamaparse_jobs (document_id, llamaparse_job_id, status) "
        "VALUES ($1, 'purged-long-ago', 'success')",
        document_id,
    )
    parsed = await backend.parse(FOUR_PAGES, "four.pdf", document_id=document_id)
    assert parsed.pages == 4
    row = await llamaparse_row(pool, document_id)
    assert row is not None and row["llamaparse_job_id"] != "purged-long-ago"
    assert await uploads(mock) == 1


@pytest.fixture
async def webhook_stages(stages: Stages, mock: MockControl) -> AsyncIterator[Stages]:
    """The four stages with the parser in webhook mode, and the API receiving the webhooks."""
    api_settings = stages.settings.model_copy(
        update={"llamaparse_webhook_secret": SecretStr(SECRET)}
    )
    with LiveServer(create_app(api_settings, with_relay=False)) as api:
        for name, value in {
            "parser_backend": "llamaparse",
            "llamaparse_mode": "webhook",
            "api_url": api.url,
            "llamaparse_base_url": mock.url,
            "llamaparse_webhook_secret": SecretStr(SECRET),
            "llamaparse_webhook_recheck_s": 600.0,
        }.items():
            setattr(stages.settings, name, value)
        yield stages
        await stages.stop()  # before the API goes


async def test_webhook_mode_takes_a_pdf_through_all_four_stages(
    webhook_stages: Stages, mock: MockControl
) -> None:
    await webhook_stages.start()
    event = await webhook_stages.submit(FOUR_PAGES)
    job = await webhook_stages.finished(event.job_id)
    assert (job["status"], job["state"]) == ("complete", "done"), job["last_error"]
    assert job["pages"] == 4 and job["vector_count"] > 0
    deliveries = (await mock.control.get("/_mock/webhooks")).json()
    assert [d["answer"] for d in deliveries] == [200]
    assert await uploads(mock) == 1


async def test_webhook_mode_fails_an_encrypted_pdf_permanently(
    webhook_stages: Stages,
) -> None:
    await webhook_stages.start("parser")
    event = await webhook_stages.submit(ENCRYPTED, "locked.pdf")
    job = await webhook_stages.finished(event.job_id)
    assert (job["status"], job["state"]) == ("failed_parse", "deadletter")
    assert job["last_error"]["code"] == "pdf_encrypted"
    assert job["retry_count"] == 0  # permanent: straight to the DLQ, no retries
