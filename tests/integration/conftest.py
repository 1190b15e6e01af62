"""The four real stages in this event loop, on the real broker and Postgres, with the mock
OpenAI server over real HTTP and a test-only storage folder and topic namespace."""

from __future__ import annotations

import hashlib
import importlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from accessa.db import connect, create_pool
from accessa.runtime.app import StageApp
from accessa.runtime.context import StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.stage import StageRuntime
from accessa.storage import Storage, make_storage, raw_key
from accessa.topics import ensure_topics
from mocks.openai_server import create_app
from mocks.serve import running_server
from schemas.events import DocumentUploaded
from tests.integration.stages import TABLES
from tests.utils import produce_events, wait_for

STAGE_NAMES = ("parser", "chunker", "embedder", "finalizer")


@dataclass
class Stages:
    settings: Settings
    pool: asyncpg.Pool
    storage: Storage
    openai_url: str
    runtimes: dict[str, StageRuntime] = field(default_factory=dict)

    async def start(self, *names: str) -> None:
        for name in names or STAGE_NAMES:
            app = importlib.import_module(f"consumers.{name}.app").stage
            res = StageResources(
                self.settings, self.pool, self.storage, FaultInjector(self.settings, name)
            )
            runtime = StageRuntime(app, self.settings, res)
            await runtime.start()
            self.runtimes[name] = runtime

    async def stop(self, *names: str) -> None:
        for name in names or list(self.runtimes):
            await self.runtimes.pop(name).stop()

    async def submit(
        self, pdf: bytes, filename: str = "policy.pdf", *, store: bool = True
    ) -> DocumentUploaded:
        """What the API does for an upload: store, insert document + job, publish `uploaded`."""
        user, doc, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        key, sha = raw_key(user, doc), hashlib.sha256(pdf).hexdigest()
        if store:
            await self.storage.put(key, pdf)
        await self.pool.execute(
            """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            doc,
            user,
            sha,
            len(pdf),
            filename,
            key,
        )
        await self.pool.execute(
            "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id) "
            "VALUES ($1, $2, $3, $4)",
            job,
            user,
            doc,
            f"corr-{job}",
        )
        event = DocumentUploaded(
            event_id=DocumentUploaded.make_id(job),
            job_id=job,
            document_id=doc,
            user_id=user,
            correlation_id=f"corr-{job}",
            storage_path=key,
            sha256=sha,
            size=len(pdf),
            filename=filename,
        )
        await produce_events(self.settings, f"{self.settings.topic_prefix}uploaded", [event])
        return event

    async def job(self, job_id: uuid.UUID) -> asyncpg.Record:
        return await self.pool.fetchrow("SELECT * FROM upload_jobs WHERE job_id = $1", job_id)

    async def finished(self, job_id: uuid.UUID, timeout: float = 90) -> asyncpg.Record:
        async def done() -> asyncpg.Record | None:
            row = await self.job(job_id)
            return row if row["state"] in ("done", "deadletter") else None

        return await wait_for(done, timeout=timeout, what=f"job {job_id} to finish")

    async def openai_stats(self) -> dict:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.openai_url}/_mock/stats")).json()


@pytest.fixture
async def stages(isolated_settings: Settings, tmp_path: Path) -> AsyncIterator[Stages]:
    async with running_server(create_app()) as openai_url:
        settings = isolated_settings.model_copy(
            update={
                "openai_base_url": f"{openai_url}/v1",
                "home": tmp_path,
                "postgres_credentials": isolated_settings.postgres_credentials_file,
                "retry_base_delay_s": 0.5,
                "stage_concurrency": 4,
            }
        )
        await ensure_topics(settings)
        # Four stages share this pool: two connections per concurrent record each.
        pool = await create_pool(settings, max_size=4 * (2 * 4 + 2))
        s = Stages(settings, pool, make_storage(settings), openai_url)
        try:
            yield s
        finally:
            await s.stop()
            await pool.close()


StartStage = Callable[..., Awaitable[StageRuntime]]


@pytest.fixture
async def topics(isolated_settings: Settings, pool: asyncpg.Pool) -> Settings:
    await ensure_topics(isolated_settings)
    # The test stages' own tables, made by the bootstrap login (ops, the stages' login, has no
    # DDL) and granted to ops.
    admin = await connect(isolated_settings.dsn)
    try:
        await admin.execute(TABLES)
    finally:
        await admin.close()
    return isolated_settings


@pytest.fixture
async def start_stage(topics: Settings, pool: asyncpg.Pool) -> AsyncIterator[StartStage]:
    """Run stages in this event loop on the test's own topics; stopped at the end."""
    running: list[StageRuntime] = []

    async def start(app: StageApp, **overrides: object) -> StageRuntime:
        settings = topics.model_copy(update=overrides)
        res = StageResources(settings, pool, make_storage(settings), FaultInjector(settings, "x"))
        runtime = StageRuntime(app, settings, res)
        await runtime.start()
        running.append(runtime)
        return runtime

    yield start
    for runtime in running:
        await runtime.stop()
