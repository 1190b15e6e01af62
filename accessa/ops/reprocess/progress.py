"""Where reprocess jobs are: of one request, or the newest of a document or run."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def jobs_progress(pool: asyncpg.Pool, job_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Where each reprocess job is (status, state, percent, error)."""
    rows = await pool.fetch(
        """SELECT job_id, document_id, status, state, progress, last_error, reprocess,
                  correlation_id, created_at, completed_at
           FROM upload_jobs WHERE job_id = ANY($1::uuid[]) ORDER BY created_at, job_id""",
        job_ids,
    )
    return [_job_dict(r) for r in rows]


async def recent_jobs(
    pool: asyncpg.Pool,
    *,
    document: uuid.UUID | None = None,
    run: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest reprocess jobs, of one document or one run (its correlation id)."""
    rows = await pool.fetch(
        """SELECT job_id, document_id, status, state, progress, last_error, reprocess,
                  correlation_id, created_at, completed_at
           FROM upload_jobs
           WHERE kind = 'reprocess' AND ($1::uuid IS NULL OR document_id = $1)
             AND ($2::text IS NULL OR correlation_id = $2)
           ORDER BY created_at DESC, job_id DESC LIMIT $3""",
        document,
        run,
        limit,
    )
    return [_job_dict(r) for r in rows]


def _job_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "job_id": str(row["job_id"]),
        "document_id": str(row["document_id"]),
        "status": row["status"],
        "state": row["state"],
        "percent": row["progress"]["percent"],
        "error": row["last_error"],
        "target": row["reprocess"],
        "correlation_id": row["correlation_id"],
        "created_at": row["created_at"].isoformat(),
        "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None,
    }
