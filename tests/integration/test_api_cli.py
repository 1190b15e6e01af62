# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""`accessa upload` / `accessa jobs` against a live API (real uvicorn, Postgres, Kafka)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from accessa import jobs
from accessa.cli.main import app
from accessa.config import Settings
from producer_api.job_events import JobEventHub
from producer_api.main import create_app
from tests.integration.test_api_support import (  # noqa: F401
    ENCRYPTED_PDF,
    LiveServer,
    api_settings,
    unique_pdf,
)
from tests.utils import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def live(api_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(api_settings)) as server:
        yield server


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _pdf(tmp_path: Path, name: str, data: bytes | None = None) -> Path:
    path = tmp_path / name
    path.write_bytes(data or unique_pdf())
    return path


async def test_upload_sends_each_file_and_jobs_lists_them(live: LiveServer, tmp_path: Path) -> None:
    user = str(uuid.uuid4())
    files = [_pdf(tmp_path, "a.pdf"), _pdf(tmp_path, "b.pdf")]
    code, out = await asyncio.to_thread(
        _run, "upload", *map(str, files), "--user", user, "--api-url", live.url, "--json"
    )
    assert code == 0, out
    uploaded = json.loads(out)["jobs"]
    assert {Path(k).name for k in uploaded} == {"a.pdf", "b.pdf"}
    code, out = await asyncio.to_thread(
        _run, "jobs", "--user", user, "--api-url", live.url, "--json"
    )
    assert code == 0, out
    assert {j["job_id"] for j in json.loads(out)} == {j["job_id"] for j in uploaded.values()}


async def test_upload_of_a_rejected_file_exits_1_with_the_reason(
    live: LiveServer, tmp_path: Path
) -> None:
    locked = _pdf(tmp_path, "locked.pdf", ENCRYPTED_PDF)
    code, out = await asyncio.to_thread(
        _run, "upload", str(locked), "--user", str(uuid.uuid4()), "--api-url", live.url
    )
    assert code == 1
    assert "pdf_encrypted" in out


async def test_upload_wait_follows_jobs_and_exits_1_when_one_failed(
    live: LiveServer,
    tmp_path: Path,
    pool: asyncpg.Pool,
) -> None:
    user = str(uuid.uuid4())
    good, bad = _pdf(tmp_path, "good.pdf"), _pdf(tmp_path, "bad.pdf")
    base = ["--user", user, "--api-url", live.url, "--json"]
    code, out = await asyncio.to_thread(_run, "upload", str(good), str(bad), *base)
    created = json.loads(out)["jobs"]
    async with pool.acquire() as conn:
        await jobs.advance(
            conn, job_id=uuid.UUID(created[str(good)]["job_id"]), status="complete", actor="test"
        )
        await jobs.fail(
            conn,
            job_id=uuid.UUID(created[str(bad)]["job_id"]),
            status="failed_parse",
            actor="parser",
            error={"stage": "parser", "code": "empty_markdown", "message": "no text"},
        )

    # Uploading the same files again returns their jobs (duplicates); --wait follows them.
    code, out = await asyncio.to_thread(
        _run, "upload", str(good), str(bad), "--wait", "--poll-interval", "0.1", *base[:-1]
    )
    assert code == 1, out
    assert "bad.pdf: failed_parse" in out and "empty_markdown: no text" in out
    assert "good.pdf: job" in out


async def _advance_when_created(pool: asyncpg.Pool, user: str) -> None:
    """Once the CLI's upload has made its job: through the pipeline to `complete`."""

    async def created() -> uuid.UUID | None:
        return await pool.fetchval(
            "SELECT job_id FROM upload_jobs WHERE user_id = $1", uuid.UUID(user)
        )

    job_id = await wait_for(created, timeout=30, what="the CLI's job")
    for status in ("parse_queued", "parsed", "chunks_stored", "complete"):
        async with pool.acquire() as conn:
            await jobs.advance(conn, job_id=job_id, status=status, actor="test")


async def test_upload_wait_follows_the_event_stream_without_polling(
    api_settings: Settings, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    # No status poll is allowed at all: only the stream can see the job finish.
    settings = api_settings.model_copy(
        update={"rate_limits_enabled": True, "rate_polls_per_minute": 0}
    )
    user, pdf = str(uuid.uuid4()), _pdf(tmp_path, "live.pdf")
    with LiveServer(create_app(settings)) as server:
        run = asyncio.create_task(
            asyncio.to_thread(
                _run,
                "upload",
                str(pdf),
                "--wait",
                "--timeout",
                "60",
                "--user",
                user,
                "--api-url",
                server.url,
                "--json",
            )
        )
        await _advance_when_created(pool, user)
        code, out = await run
    assert code == 0, out
    assert json.loads(out)["jobs"][str(pdf)]["status"] == "complete"


async def test_upload_wait_polls_when_the_stream_is_unavailable(
    live: LiveServer, tmp_path: Path, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: object) -> None:
        raise OSError("no LISTEN for you")

    monkeypatch.setattr(JobEventHub, "ensure_listening", refuse)  # the route answers 503
    user, pdf = str(uuid.uuid4()), _pdf(tmp_path, "polled.pdf")
    run = asyncio.create_task(
        asyncio.to_thread(
            _run,
            "upload",
            str(pdf),
            "--wait",
            "--poll-interval",
            "0.1",
            "--timeout",
            "60",
            "--user",
            user,
            "--api-url",
            live.url,
            "--json",
        )
    )
    await _advance_when_created(pool, user)
    code, out = await run
    assert code == 0, out
    assert json.loads(out)["jobs"][str(pdf)]["status"] == "complete"
