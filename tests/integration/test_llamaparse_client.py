"""The real LlamaParse client against the mock LlamaParse over HTTP, polling and webhook modes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from accessa.errors import PermanentError, TransientError
from accessa.providers.llamaparse import LlamaParseClient, verify_webhook_signature
from mocks import llamaparse_server
from mocks.serve import running_server
from tests.utils import CORPUS, MockControl, free_port, wait_for

SECRET = "whsec-test"


@pytest.fixture
async def mock() -> AsyncIterator[MockControl]:
    app = llamaparse_server.create_app(webhook_secret=SECRET, api_key="llx-test")
    async with running_server(app) as url, httpx.AsyncClient(base_url=url) as control:
        yield MockControl(url, control)


@pytest.fixture
async def client(mock: MockControl) -> AsyncIterator[LlamaParseClient]:
    async with LlamaParseClient(mock.url, "llx-test", timeout_s=10, poll_interval_s=0.02) as c:
        yield c


def pdf(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


async def test_parse_returns_page_marked_markdown(client: LlamaParseClient) -> None:
    markdown = await client.parse(pdf("minimal-document.pdf"), "minimal.pdf")
    assert markdown.startswith("<!-- page 1 -->\n\nLorem ipsum")


async def test_same_bytes_same_markdown(client: LlamaParseClient) -> None:
    data = pdf("pdflatex-4-pages.pdf")
    first = await client.parse(data, "a.pdf")
    assert first == await client.parse(data, "b.pdf")
    assert first.count("<!-- page ") == 4


async def test_parse_polls_until_the_job_is_done(
    mock: MockControl, client: LlamaParseClient
) -> None:
    await mock.configure(delay_s=0.3)
    assert "Lorem ipsum" in await client.parse(pdf("minimal-document.pdf"), "m.pdf")
    polls = [e for e in await mock.log() if e["path"].startswith("/api/v1/parsing/job/")]
    assert len(polls) >= 3  # PENDING at least twice, then SUCCESS, then the result


async def test_transient_failures_are_retried(mock: MockControl, client: LlamaParseClient) -> None:
    await mock.configure(fail_next=[503, 429], retry_after_s=0.05)
    assert "Lorem ipsum" in await client.parse(pdf("minimal-document.pdf"), "m.pdf")
    assert [e["status"] for e in await mock.log()][:3] == [503, 429, 200]


async def test_persistent_429_is_transient_with_retry_after(
    mock: MockControl, client: LlamaParseClient
) -> None:
    await mock.configure(fail_next=[429] * 3, retry_after_s=0.05)
    with pytest.raises(TransientError) as caught:
        await client.parse(pdf("minimal-document.pdf"), "m.pdf")
    assert caught.value.code == "llamaparse_rate_limited"
    assert caught.value.defer_s == pytest.approx(0.05)
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)


async def test_bad_key_is_permanent(mock: MockControl) -> None:
    async with LlamaParseClient(mock.url, "wrong", timeout_s=5) as c:
        with pytest.raises(PermanentError) as caught:
            await c.parse(pdf("minimal-document.pdf"), "m.pdf")
    assert caught.value.code == "llamaparse_auth"


async def test_encrypted_pdf_is_permanent(client: LlamaParseClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await client.parse(pdf("libreoffice-writer-password.pdf"), "locked.pdf")
    assert caught.value.code == "pdf_encrypted"


async def test_corrupt_pdf_is_permanent(client: LlamaParseClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await client.parse(b"%PDF-1.4 not really", "broken.pdf")
    assert caught.value.code == "llamaparse_failed"


async def test_slow_job_times_out_as_transient(mock: MockControl) -> None:
    await mock.configure(delay_s=30)
    async with LlamaParseClient(mock.url, "llx-test", timeout_s=0.3, poll_interval_s=0.05) as c:
        with pytest.raises(TransientError) as caught:
            await c.parse(pdf("minimal-document.pdf"), "m.pdf")
    assert caught.value.code == "parse_timeout"


async def test_unreachable_service_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with LlamaParseClient(url, "k", timeout_s=2, request_attempts=1) as c:
        with pytest.raises(TransientError) as caught:
            await c.submit(b"%PDF", "m.pdf")
    assert caught.value.code == "llamaparse_down"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    """A webhook endpoint recording (raw body, headers) of every POST."""
    received: list[tuple[bytes, dict[str, str]]] = []
    app = FastAPI()

    @app.post("/hooks/llamaparse")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((await request.body(), dict(request.headers)))
        return {"ok": True}

    async with running_server(app) as url:
        yield f"{url}/hooks/llamaparse", received


async def test_webhook_mode_end_to_end(client: LlamaParseClient, receiver) -> None:
    hook_url, received = receiver
    job_id = await client.submit(pdf("pdflatex-4-pages.pdf"), "four.pdf", webhook_url=hook_url)

    async def delivered() -> bool:
        return bool(received)

    await wait_for(delivered, timeout=5, interval=0.02)
    body, headers = received[0]
    timestamp, signature = headers["x-llamaparse-timestamp"], headers["x-llamaparse-signature"]
    assert verify_webhook_signature(SECRET, timestamp, body, signature)
    assert httpx.Response(200, content=body).json() == {
        "event": "parse.success",
        "job_id": job_id,
        "status": "SUCCESS",
    }
    assert (await client.fetch_markdown(job_id)).count("<!-- page ") == 4

    assert not verify_webhook_signature(SECRET, timestamp, body + b" ", signature)
    assert not verify_webhook_signature("other-secret", timestamp, body, signature)
    assert not verify_webhook_signature(SECRET, timestamp, body, signature, now=time.time() + 301)
    assert not verify_webhook_signature(SECRET, "yesterday", body, signature)


async def test_webhook_for_a_failed_job(client: LlamaParseClient, receiver) -> None:
    hook_url, received = receiver
    job_id = await client.submit(pdf("libreoffice-writer-password.pdf"), "x.pdf", hook_url)

    async def delivered() -> bool:
        return bool(received)

    await wait_for(delivered, timeout=5, interval=0.02)
    assert b'"parse.error"' in received[0][0]
    with pytest.raises(PermanentError) as caught:
        await client.fetch_markdown(job_id)
    assert caught.value.code == "pdf_encrypted"


async def test_fetch_markdown_of_a_pending_job_is_transient(
    mock: MockControl, client: LlamaParseClient
) -> None:
    await mock.configure(delay_s=30)
    job_id = await client.submit(pdf("minimal-document.pdf"), "m.pdf")
    with pytest.raises(TransientError):
        await client.fetch_markdown(job_id)
