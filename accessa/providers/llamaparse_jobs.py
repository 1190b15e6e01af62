"""The `llamaparse_jobs` table of webhook mode: which LlamaParse job parses each document and
how it ended. The API's webhook route records outcomes and NOTIFYs `CHANNEL` with the job id;
the parser LISTENs through `JobNotifications` while it waits."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg

CHANNEL = "llamaparse_jobs"
Outcome = Literal["pending", "success", "error"]


def outcome_of(status: str) -> Outcome:
    """Our status for a LlamaParse job status (`PENDING`, `SUCCESS`, `ERROR`, `CANCELED`, ...)."""
    status = status.upper()
    if status == "PENDING":
        return "pending"
    return "success" if status == "SUCCESS" else "error"


async def job_of(conn: asyncpg.Pool | asyncpg.Connection, document_id: uuid.UUID) -> str | None:
    """The LlamaParse job recorded for the document, if any."""
    return await conn.fetchval(
        "SELECT llamaparse_job_id FROM llamaparse_jobs WHERE document_id = $1", document_id
    )


async def record_submitted(
    conn: asyncpg.Pool | asyncpg.Connection, document_id: uuid.UUID, job_id: str
) -> str:
    """Record a submitted job; returns the document's job (another delivery's, if it won)."""
    return await conn.fetchval(
        """WITH new AS (
             INSERT INTO llamaparse_jobs (document_id, llamaparse_job_id) VALUES ($1, $2)
             ON CONFLICT (document_id) DO NOTHING RETURNING llamaparse_job_id)
           SELECT llamaparse_job_id FROM new
           UNION ALL
           SELECT llamaparse_job_id FROM llamaparse_jobs WHERE document_id = $1""",
        document_id,
        job_id,
    )


async def status_of(conn: asyncpg.Pool | asyncpg.Connection, job_id: str) -> Outcome | None:
    return await conn.fetchval(
        "SELECT status FROM llamaparse_jobs WHERE llamaparse_job_id = $1", job_id
    )


async def record_outcome(
    conn: asyncpg.Pool | asyncpg.Connection, job_id: str, status: Outcome, error: str | None
) -> Outcome | None:
    """Record how a job ended and notify its waiters; returns the job's status now, None when
    the job is not ours. A late `pending` never overwrites an ending."""
    return await conn.fetchval(
        """WITH changed AS (
             UPDATE llamaparse_jobs
             SET status = CASE WHEN $2 = 'pending' THEN status ELSE $2 END,
                 error = CASE WHEN $2 = 'pending' THEN error ELSE $3 END, updated_at = now()
             WHERE llamaparse_job_id = $1 RETURNING llamaparse_job_id, status)
           SELECT status FROM changed, pg_notify($4, llamaparse_job_id)""",
        job_id,
        status,
        error,
        CHANNEL,
    )


async def forget(conn: asyncpg.Pool | asyncpg.Connection, document_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM llamaparse_jobs WHERE document_id = $1", document_id)


class JobNotifications:
    """NOTIFYs on `CHANNEL` fanned out to the waiters of each job: one LISTEN connection per
    process, open only while something waits."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the job's row is notified, for the life of the block."""
        notified = asyncio.Event()
        self._waiters[job_id].add(notified)
        try:
            await self._listen()
            yield notified
        finally:
            self._waiters[job_id].discard(notified)
            if not self._waiters[job_id]:
                del self._waiters[job_id]
            if not self._waiters and self._conn is not None:
                self._conn.terminate()  # synchronous: safe in a cancelled task's cleanup
                self._conn = None

    async def _listen(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            # A dropped connection misses notifications: the waiters' re-checks cover that.
            self._conn = await asyncpg.connect(self._dsn)
            await self._conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, job_id: str) -> None:
        for notified in self._waiters.get(job_id, ()):
            notified.set()
