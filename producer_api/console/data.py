"""What the console's pages show, read with its ops pool (operators see every user's jobs).

The pipeline snapshot reuses `accessa status`'s queries (accessa/status.py) and is shared by
every open console, so ten operators polling cost one Kafka round every SNAPSHOT_TTL_S."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from accessa.config import Settings
from accessa.db import describe_error
from accessa.health import broker_check
from accessa.jobs import PROGRESS
from accessa.status import database_status, pipeline_status

SNAPSHOT_TTL_S = 1.5
BUFFERS = ("document_chunk_buffer", "document_vector_buffer", "outbox")
STAGE_ORDER = ["queued", *dict.fromkeys(stage for stage, _ in PROGRESS.values())]
JOB_STATES = ("queued", "working", "retryable", "done", "deadletter")
_JOB_COLUMNS = """j.job_id, j.user_id, j.document_id, d.filename, j.status, j.state, j.stage,
    j.progress, j.cost_usd, j.embed_tokens, j.pages, j.chunk_count, j.retry_count, j.last_error,
    j.created_at, j.updated_at, j.completed_at, j.stage_times, j.trace_id, j.correlation_id,
    j.quality"""


class Snapshots:
    """The latest pipeline snapshot, served stale-while-revalidate: a request gets the last one
    at once and, when it is older than SNAPSHOT_TTL_S, starts one refresh in the background
    (Kafka's part takes about a second: it must not hold up a page). Only the very first
    request waits for a snapshot."""

    def __init__(self) -> None:
        self._at = 0.0
        self._value: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self._buffers: tuple[float, dict[str, int]] | None = None  # for growth per minute

    async def get(self, settings: Settings, pool: asyncpg.Pool, opener: Any) -> dict[str, Any]:
        if self._value is None:
            async with self._lock:
                if self._value is None:
                    await self.refresh(settings, pool, opener)
        elif time.monotonic() - self._at > SNAPSHOT_TTL_S and (
            self._refreshing is None or self._refreshing.done()
        ):
            self._refreshing = asyncio.create_task(self.refresh(settings, pool, opener))
        assert self._value is not None
        return self._value

    async def refresh(self, settings: Settings, pool: asyncpg.Pool, opener: Any) -> None:
        self._value = await self._compute(settings, pool, opener)
        self._at = time.monotonic()

    async def _compute(self, settings: Settings, pool: asyncpg.Pool, opener: Any) -> dict[str, Any]:
        kafka_error = None
        try:
            status = await asyncio.wait_for(pipeline_status(settings, pool), 10)
        except Exception as exc:  # Kafka down: the database half still tells a lot
            kafka_error = describe_error(exc)
            db = await database_status(pool)
            status = {
                "stages": {},
                "jobs": db["jobs"],
                "outbox_failed": db["outbox_failed"],
                "oldest_unfinished": db["oldest_unfinished"],
            }
        health, buffers, recent, errors, uploads = await asyncio.gather(
            _health(settings, opener),
            self._buffer_rows(pool),
            recent_jobs(pool),
            last_errors(pool),
            pool.fetchval(
                "SELECT count(*) FROM upload_jobs WHERE created_at > now() - interval '1 minute'"
            ),
        )
        return {
            **status,
            "kafka_error": kafka_error,
            "health": health,
            "buffers": buffers,
            "recent": recent,
            "errors": errors,
            "uploads_last_minute": uploads,
            "taken_at": datetime.now(UTC),
        }

    async def _buffer_rows(self, pool: asyncpg.Pool) -> list[dict[str, Any]]:
        rows = await pool.fetch(
            """SELECT relname, n_live_tup FROM pg_stat_user_tables
               WHERE schemaname = 'upload_pipeline' AND relname = ANY($1::text[])""",
            list(BUFFERS),
        )
        now, counts = time.monotonic(), {r["relname"]: int(r["n_live_tup"]) for r in rows}
        before = self._buffers
        if before is None or now - before[0] > 60:
            self._buffers = (now, counts)
        out = []
        for name in BUFFERS:
            growth = None
            if before is not None and now > before[0]:
                growth = (counts.get(name, 0) - before[1].get(name, 0)) * 60 / (now - before[0])
            out.append({"table": name, "rows": counts.get(name, 0), "per_minute": growth})
        return out


async def _reachable(url: str) -> str | None:
    """None when something answers HTTP at `url` (any status below 500), else the reason."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return describe_error(exc)
    return None if response.status_code < 500 else f"HTTP {response.status_code}"


async def _health(settings: Settings, opener: Any) -> dict[str, str | None]:
    """Each dependency: None when healthy, or why not."""
    names = ("postgres", "kafka", "llamaparse", "openai")
    results = await asyncio.gather(
        opener.problem(),
        broker_check(settings, timeout_s=3, process="ops"),
        _reachable(settings.llamaparse_base_url),
        _reachable(settings.openai_base_url.rstrip("/") + "/models"),
        return_exceptions=True,
    )
    return {
        n: (describe_error(r) if isinstance(r, BaseException) else (r or None))
        for n, r in zip(names, results, strict=True)
    }


async def recent_jobs(pool: asyncpg.Pool, limit: int = 10) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {_JOB_COLUMNS} FROM upload_jobs j JOIN documents d USING (document_id)
            ORDER BY j.created_at DESC, j.job_id DESC LIMIT $1""",
        limit,
    )
    return [dict(r) for r in rows]


async def last_errors(pool: asyncpg.Pool, limit: int = 8) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT id, job_id, document_id, stage, kind, status, detail, created_at FROM events
           WHERE kind IN ('failed', 'retrying') ORDER BY id DESC LIMIT $1""",
        limit,
    )
    return [dict(r) for r in rows]


@dataclass
class JobFilter:
    state: str | None = None
    stage: str | None = None
    user: uuid.UUID | None = None
    flag: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID] | None:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeError):
        return None


async def list_jobs(
    pool: asyncpg.Pool,
    f: JobFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, by keyset: the SQL names only the filters given, so each
    combination gets a plan that walks an index (0021_console.sql) and stops at `limit`."""
    where, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.state:
        where.append(f"j.state = {arg(f.state)}")
    if f.stage:
        where.append(f"j.stage = {arg(f.stage)}")
    if f.user:
        where.append(f"j.user_id = {arg(f.user)}")
    if f.since:
        where.append(f"j.created_at >= {arg(f.since)}")
    if f.until:
        where.append(f"j.created_at < {arg(f.until)}")
    if f.flag:
        where.append(f"j.quality -> 'flags' ? {arg(f.flag)}")
    if after:
        where.append(f"(j.created_at, j.job_id) < ({arg(after[0])}, {arg(after[1])})")
    sql = f"""SELECT {_JOB_COLUMNS}
              FROM upload_jobs j JOIN documents d USING (document_id)
              {"WHERE " + " AND ".join(where) if where else ""}
              ORDER BY j.created_at DESC, j.job_id DESC LIMIT {arg(limit + 1)}"""
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_cursor(page[-1]["created_at"], page[-1]["job_id"]) if more else None


async def job_detail(pool: asyncpg.Pool, job_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"""SELECT {_JOB_COLUMNS}, d.size, d.sha256
            FROM upload_jobs j JOIN documents d USING (document_id) WHERE j.job_id = $1""",
        job_id,
    )
    if row is None:
        return None
    job = dict(row)
    chunks = await pool.fetch(
        """SELECT ordinal, token_count, metadata, left(content, 160) AS preview
           FROM document_chunks WHERE job_id = $1 ORDER BY ordinal LIMIT 200""",
        job_id,
    )
    if not chunks:  # not finalized yet: what the chunker buffered
        chunks = await pool.fetch(
            """SELECT ordinal, token_count, metadata, left(content, 160) AS preview
               FROM document_chunk_buffer WHERE job_id = $1 ORDER BY ordinal LIMIT 200""",
            job_id,
        )
    events = await pool.fetch(
        """SELECT id, stage, kind, status, detail, created_at FROM events
           WHERE job_id = $1 ORDER BY id DESC LIMIT 50""",
        job_id,
    )
    job["chunks"] = [dict(c) for c in chunks]
    job["events"] = [dict(e) for e in events]
    job["timeline"] = timeline(job)
    return job


def timeline(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Waterfall bars from `stage_times` (stage -> when the job entered it): each stage lasts
    until the next one began, the last until completion (or the last update)."""
    entered = sorted(
        ((stage, datetime.fromisoformat(at)) for stage, at in (job["stage_times"] or {}).items()),
        key=lambda pair: pair[1],
    )
    start = job["created_at"]
    points = [("queued", start), *((s, t) for s, t in entered if s != "queued")]
    end = job["completed_at"] or job["updated_at"]
    total = max((end - start).total_seconds(), 1e-3)
    bars = []
    for i, (stage, at) in enumerate(points):
        until = points[i + 1][1] if i + 1 < len(points) else end
        offset, length = (at - start).total_seconds(), max((until - at).total_seconds(), 0)
        bars.append(
            {
                "stage": stage,
                "start_s": offset,
                "duration_s": length,
                "left_pct": 100 * offset / total,
                "width_pct": max(100 * length / total, 0.5),
            }
        )
    return bars
