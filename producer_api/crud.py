"""Data access for the API: plain keyword-only functions on a connection.

Callers pass a connection from `Db.tx()` (RLS-scoped to the user) unless stated otherwise.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from accessa import jobs

# A job whose bytes have not arrived yet (two-step upload) still has the table's default stage.
AWAITING_BYTES = "queued"
_JOB = """SELECT j.*, d.filename, d.sha256, d.size, d.mime, d.raw_path
          FROM upload_jobs j JOIN documents d USING (document_id)"""


async def insert_document(
    *,
    conn: asyncpg.Connection,
    document_id: uuid.UUID,
    user_id: uuid.UUID,
    sha256: str,
    size: int,
    filename: str,
    mime: str,
    raw_path: str,
    pages: int | None = None,
) -> bool:
    """True if inserted; False if the user already has a document with this sha256 (the
    unique key decides, so concurrent identical uploads create exactly one)."""
    inserted = await conn.fetchval(
        """INSERT INTO documents (document_id, user_id, sha256, size, filename, mime, raw_path,
                                  pages)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (user_id, sha256) DO NOTHING RETURNING true""",
        document_id,
        user_id,
        sha256,
        size,
        filename,
        mime,
        raw_path,
        pages,
    )
    return bool(inserted)


async def document_by_sha(
    *, conn: asyncpg.Connection, user_id: uuid.UUID, sha256: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM documents WHERE user_id = $1 AND sha256 = $2", user_id, sha256
    )


async def get_document(
    *, conn: asyncpg.Connection, document_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT d.*, (SELECT job_id FROM upload_jobs j WHERE j.document_id = d.document_id
                        ORDER BY created_at DESC, job_id DESC LIMIT 1) AS latest_job_id
           FROM documents d WHERE document_id = $1""",
        document_id,
    )


async def latest_job(*, conn: asyncpg.Connection, document_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"{_JOB} WHERE j.document_id = $1 ORDER BY j.created_at DESC, j.job_id DESC LIMIT 1",
        document_id,
    )


async def insert_job(
    *,
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    document_id: uuid.UUID,
    user_id: uuid.UUID,
    correlation_id: str,
    validated: bool,
) -> asyncpg.Record:
    """A new job: `validated` (10%) when the bytes are in, else waiting for them (0%); with its
    `created` audit event, in one statement. Returns the job as `get_job` reads it."""
    stage, percent = ("validated", 10) if validated else (AWAITING_BYTES, 0)
    row = await conn.fetchrow(
        """WITH j AS (
             INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id, stage,
                                      progress, stage_times)
             VALUES ($1, $2, $3, $4, $5, jsonb_build_object('percent', $6::int),
                     jsonb_build_object('queued', now()) || CASE WHEN $7
                       THEN jsonb_build_object('validated', now()) ELSE '{}'::jsonb END)
             RETURNING *),
           e AS (
             INSERT INTO events (job_id, document_id, user_id, stage, kind, status,
                                 correlation_id, detail)
             SELECT job_id, document_id, user_id, 'api', 'created', 'uploaded', correlation_id,
                    jsonb_build_object('stage', stage)
             FROM j)
           SELECT j.*, d.filename, d.sha256, d.size, d.mime, d.raw_path
           FROM j JOIN documents d USING (document_id)""",
        job_id,
        user_id,
        document_id,
        correlation_id,
        stage,
        percent,
        validated,
    )
    assert row is not None  # the caller inserted (or locked) the document in this transaction
    return row


async def mark_validated(
    *, conn: asyncpg.Connection, job_id: uuid.UUID, pages: int
) -> asyncpg.Record | None:
    """Bytes verified: the job moves to `validated` (10%). None if it was not waiting."""
    row = await conn.fetchrow(
        """UPDATE upload_jobs
           SET stage = 'validated', progress = jsonb_build_object('percent', 10),
               stage_times = stage_times || jsonb_build_object('validated', now()),
               updated_at = now()
           WHERE job_id = $1 AND stage = $2
           RETURNING user_id, document_id, correlation_id""",
        job_id,
        AWAITING_BYTES,
    )
    if row is None:
        return None
    await conn.execute(
        "UPDATE documents SET pages = $2, updated_at = now() WHERE document_id = $1",
        row["document_id"],
        pages,
    )
    await jobs.record_event(
        conn,
        job_id=job_id,
        document_id=row["document_id"],
        user_id=row["user_id"],
        stage="api",
        kind="advanced",
        status="uploaded",
        correlation_id=row["correlation_id"],
        detail={"stage": "validated", "percent": 10},
    )
    return row


EXPIRED_ERROR = {
    "stage": "api",
    "code": "upload_expired",
    "message": "the upload URL expired before the bytes arrived",
}


async def expire_abandoned(
    *, conn: asyncpg.Pool | asyncpg.Connection, after_s: float, limit: int = 500
) -> int:
    """Two-step jobs still waiting for their bytes `after_s` after creation become `expired`
    (terminal), each with its audit event; returns how many. Unscoped: housekeeping only.
    SKIP LOCKED: replicas sweeping at once, or a PUT holding the row, never block a sweep."""
    return len(
        await conn.fetch(
            """WITH due AS (
             SELECT job_id FROM upload_jobs
             WHERE stage = $1 AND status = 'uploaded' AND kind = 'upload'
               AND created_at < now() - make_interval(secs => $2)
             ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED),
           expired AS (
             UPDATE upload_jobs j
             SET status = 'expired', state = 'done', stage = 'expired', last_error = $4,
                 stage_times = stage_times || jsonb_build_object('expired', now()),
                 updated_at = now()
             FROM due WHERE j.job_id = due.job_id AND j.stage = $1
             RETURNING j.job_id, j.document_id, j.user_id, j.correlation_id)
           INSERT INTO events (job_id, document_id, user_id, stage, kind, status,
                               correlation_id, detail)
           SELECT job_id, document_id, user_id, 'api', 'expired', 'expired', correlation_id, $4
           FROM expired RETURNING job_id""",
            AWAITING_BYTES,
            after_s,
            limit,
            EXPIRED_ERROR,
        )
    )


async def get_job(
    *, conn: asyncpg.Connection, job_id: uuid.UUID, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF j" if for_update else ""
    return await conn.fetchrow(f"{_JOB} WHERE j.job_id = $1{lock}", job_id)


async def list_jobs(
    *,
    conn: asyncpg.Connection,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    status: str | None = None,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    quality: str | None = None,
) -> list[asyncpg.Record]:
    """Newest first; `after` is the (created_at, job_id) of the previous page's last item."""
    where: list[str] = ["true"]
    args: list[Any] = []
    for clause, value in (
        ("(j.created_at, j.job_id) < (${}, ${})", after),
        ("j.status = ${}", status),
        ("j.state = ${}", state),
        ("j.created_at >= ${}", since),
        ("j.created_at < ${}", until),
        ("j.quality -> 'flags' ? ${}", quality),
    ):
        if value is None:
            continue
        values = list(value) if isinstance(value, tuple) else [value]
        numbers = range(len(args) + 1, len(args) + 1 + len(values))
        where.append(clause.format(*numbers))
        args.extend(values)
    rows: list[Any] = await conn.fetch(
        f"{_JOB} WHERE {' AND '.join(where)}"
        f" ORDER BY j.created_at DESC, j.job_id DESC LIMIT {int(limit)}",
        *args,
    )
    return rows


async def set_raw_path(*, conn: asyncpg.Connection, document_id: uuid.UUID, raw_path: str) -> None:
    """Point the document at its verified bytes (what the parser reads)."""
    await conn.execute(
        "UPDATE documents SET raw_path = $2, updated_at = now() WHERE document_id = $1",
        document_id,
        raw_path,
    )


async def delete_document(*, conn: asyncpg.Connection, document_id: uuid.UUID) -> None:
    """Remove a rejected upload (its jobs go with it). Needs an unscoped connection."""
    await conn.execute("DELETE FROM documents WHERE document_id = $1", document_id)
