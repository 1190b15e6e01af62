"""Shared fixtures and helpers of the API tests (this module holds no tests itself).

`api` is the app in this test's event loop behind httpx's ASGITransport (lifespan run, so the
pool and the outbox relay are real); `LiveServer` runs it under real uvicorn in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from accessa import kafka_clients
from accessa.auth import mint_token
from accessa.config import Settings
from accessa.topics import ensure_topics
from producer_api.main import create_app
from tests.utils import CORPUS, free_port, header_map, read_topic, wait_for

PDF = (CORPUS / "minimal-document.pdf").read_bytes()
ENCRYPTED_PDF = (CORPUS / "libreoffice-writer-password.pdf").read_bytes()


def corpus_pdf(name: str = "minimal-document.pdf") -> bytes:
    return (CORPUS / name).read_bytes()


def unique_pdf(base: bytes = PDF) -> bytes:
    """A valid PDF with a sha256 no other test uses (a trailing comment is legal PDF)."""
    return base + f"\n%{uuid.uuid4()}\n".encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bearer(settings: Settings, user_id: uuid.UUID, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, user_id, **kwargs)}"}


@pytest.fixture
async def api_settings(isolated_settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """This test's own topics (deleted afterwards: every test adds some to the shared broker)
    and storage folder; rate limits off (test_api_ratelimits turns them on)."""
    settings = isolated_settings.model_copy(
        update={
            "storage_dir": tmp_path / "storage",
            "rate_limits_enabled": False,
            "topic_partitions": 2,
        }
    )
    names = await ensure_topics(settings)
    yield settings
    admin = kafka_clients.admin(settings)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics(list(names))
    with contextlib.suppress(Exception):
        await admin.close()


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan entered in this loop, and a client for it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(api_settings)) as client:
        yield client


@pytest.fixture
def user() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def auth(api_settings: Settings, user: uuid.UUID) -> dict[str, str]:
    return bearer(api_settings, user)


async def upload(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    data: bytes,
    name: str = "policy.pdf",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    files = {"file": (name, data, "application/pdf")}
    return await client.post("/api/v2/documents", files=files, headers={**auth, **(headers or {})})


async def uploaded_records(settings: Settings, *, expect: int, timeout: float = 30) -> list[Any]:
    """The records of this test's `uploaded` topic once there are at least `expect`."""
    if expect < 1:
        # The relay publishes in the background: an empty topic read now proves nothing.
        raise ValueError("to show nothing was published, check queued_uploads() instead")
    topic = f"{settings.topic_prefix}uploaded"

    async def enough() -> list[Any] | None:
        records = await read_topic(settings, topic)
        return records if len(records) >= expect else None

    return await wait_for(enough, timeout=timeout, what=f"{expect} records on {topic}")


async def queued_uploads(pool: asyncpg.Pool, settings: Settings) -> list[str]:
    """Document ids of this test's `uploaded` events in the outbox, sent or not. The API writes
    them in the upload's own transaction, so once it has answered this list is final."""
    rows = await pool.fetch(
        "SELECT key FROM outbox WHERE topic = $1 ORDER BY id", f"{settings.topic_prefix}uploaded"
    )
    return [bytes(row["key"]).decode() for row in rows]


def headers_of(record: Any) -> dict[str, str]:
    return header_map(record)


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test process keeps its own signal handlers


class LiveServer:
    """The app under real uvicorn on a free port, in a thread with its own event loop."""

    def __init__(self, app: FastAPI, **options: Any) -> None:
        """`options`: more uvicorn.Config keywords (the API's limits: `uvicorn_options`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **options,
        )
        self.server = _QuietServer(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        ready = threading.Event()

        def started() -> None:
            while not self.server.started and self.thread.is_alive():
                ready.wait(0.05)

        started()
        if not self.server.started:
            raise RuntimeError("uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


async def no_more_than(settings: Settings, expect: int) -> list[Any]:
    """Every `uploaded` record once the relay has published all of this test's outbox rows
    (so the count is final), after checking at least `expect` arrived."""
    await uploaded_records(settings, expect=expect)
    conn = await asyncpg.connect(settings.dsn)
    try:

        async def drained() -> bool:
            left = await conn.fetchval(
                "SELECT count(*) FROM upload_pipeline.outbox"
                " WHERE published_at IS NULL AND starts_with(topic, $1)",
                settings.topic_prefix,
            )
            return left == 0

        await wait_for(drained, timeout=30, what="outbox drained")
    finally:
        await conn.close()
    # Drained: the topic holds its final count. Read it in full (a read can come back short
    # while a restarted broker settles, so wait for at least `expect` again).
    return await uploaded_records(settings, expect=expect)
