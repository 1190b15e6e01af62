"""Job transitions and the audit trail. Plain keyword-only functions on a connection.

Every transition writes an `events` row with the correlation id in the same transaction.
A job never moves backwards: replays and out-of-order events leave a later status alone.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import asyncpg

# status -> (stage label shown to users, progress %)
PROGRESS: dict[str, tuple[str, int]] = {
    "uploaded": ("validated", 10),
    "parse_queued": ("parsing", 20),
    "parsed": ("parsed", 30),
    "parse_validated": ("parse_validated", 35),
    "chunking": ("chunking", 45),
    "chunks_stored": ("chunked", 55),
    "embedding_queued": ("embedding", 70),
    "embedding_in_progress": ("embedding", 70),
    "embeddings_stored": ("embeddings_buffered", 75),
    "complete": ("complete", 100),
}
FAILED = ("failed_parse", "failed_chunking", "failed_embedding")
_RANK = {status: rank for rank, status in enumerate(PROGRESS)}


async def record_event(
    conn: asyncpg.Connection,
    *,
    job_id: uuid.UUID | None,
    document_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    stage: str,
    kind: str,
    correlation_id: str | None,
    status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO events (job_id, document_id, user_id, stage, kind, status,
                               correlation_id, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        job_id,
        document_id,
        user_id,
        stage,
        kind,
        status,
        correlation_id,
        detail or {},
    )


async def advance(
    conn: asyncpg.Connection,
    *,
    job_id: uuid.UUID,
    status: str,
    actor: str,
    state: str = "working",
    **fields: Any,
) -> bool:
    """Move a job forward to `status` (and set `fields`); False if it is already past it."""
    stage, percent = PROGRESS[status]
    if status == "complete":
        state = "done"
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=6)]
    row = await conn.fetchrow(
        f"""UPDATE upload_jobs
            SET status = $2, state = $3, stage = $4,
                progress = jsonb_build_object('percent', $5::int),
                stage_times = stage_times || jsonb_build_object($4::text, now()),
                completed_at = CASE WHEN $2 = 'complete' THEN now() ELSE completed_at END,
                updated_at = now() {"".join(", " + s for s in sets)}
            WHERE job_id = $1
              AND status NOT IN ('failed_parse', 'failed_chunking', 'failed_embedding')
              AND array_position(${len(fields) + 6}::text[], status) <= {_RANK[status]}
            RETURNING user_id, document_id, correlation_id""",
        job_id,
        status,
        state,
        stage,
        percent,
        *fields.values(),
        list(PROGRESS),
    )
    if row is None:
        return False
    await record_event(
        conn,
        job_id=job_id,
        document_id=row["document_id"],
        user_id=row["user_id"],
        stage=actor,
        kind="advanced",
        status=status,
        correlation_id=row["correlation_id"],
        detail={"percent": percent, **{k: str(v) for k, v in fields.items()}},
    )
    return True


async def report_ocr(
    conn: asyncpg.Connection, *, job_id: uuid.UUID, pages_done: int, pages_total: int
) -> None:
    """OCR progress while the job parses: `progress.ocr` and a percent between parsing and
    parsed. Only a job still parsing is touched."""
    (_, low), (_, high) = PROGRESS["parse_queued"], PROGRESS["parsed"]
    percent = low + (high - low) * pages_done // max(pages_total, 1)
    await conn.execute(
        """UPDATE upload_jobs
           SET progress = jsonb_build_object('percent', $2::int, 'ocr',
                 jsonb_build_object('pages_done', $3::int, 'pages_total', $4::int)),
               updated_at = now()
           WHERE job_id = $1 AND status = 'parse_queued'""",
        job_id,
        percent,
        pages_done,
        pages_total,
    )


async def fail(
    conn: asyncpg.Connection,
    *,
    job_id: uuid.UUID,
    status: str,
    actor: str,
    error: dict[str, Any],
    state: str = "deadletter",
) -> bool:
    """Mark a job `failed_*` with a readable `last_error`; a complete job is left alone."""
    row = await conn.fetchrow(
        """UPDATE upload_jobs
           SET status = $2, state = $3, stage = $2, last_error = $4, updated_at = now()
           WHERE job_id = $1 AND status <> 'complete'
           RETURNING user_id, document_id, correlation_id""",
        job_id,
        status,
        state,
        error,
    )
    if row is None:
        return False
    await record_event(
        conn,
        job_id=job_id,
        document_id=row["document_id"],
        user_id=row["user_id"],
        stage=actor,
        kind="failed",
        status=status,
        correlation_id=row["correlation_id"],
        detail=error,
    )
    return True


async def retrying(
    conn: asyncpg.Connection,
    *,
    job_id: uuid.UUID,
    actor: str,
    error: dict[str, Any],
    count_attempt: bool = True,
) -> None:
    """Record a transient failure: state `retryable`, the reason kept, the attempt counted
    (not for a recoverable wait such as `budget_exceeded`)."""
    row = await conn.fetchrow(
        """UPDATE upload_jobs
           SET state = 'retryable', retry_count = retry_count + $3::int, last_error = $2,
               updated_at = now()
           WHERE job_id = $1 AND state NOT IN ('done', 'deadletter')
           RETURNING user_id, document_id, correlation_id""",
        job_id,
        error,
        int(count_attempt),
    )
    if row is not None:
        await record_event(
            conn,
            job_id=job_id,
            document_id=row["document_id"],
            user_id=row["user_id"],
            stage=actor,
            kind="retrying",
            correlation_id=row["correlation_id"],
            detail=error,
        )


# The status a job is in when a stage starts on it: a redriven or retried job goes back here.
ENTRY_STATUS = {
    "parser": "uploaded",
    "chunker": "parse_validated",
    "embedder": "chunks_stored",
    "finalizer": "embeddings_stored",
}


async def reopen(conn: asyncpg.Connection, *, job_id: uuid.UUID, stage: str, actor: str) -> bool:
    """Put a failed job back in front of `stage` (for a redrive or a retry)."""
    status = ENTRY_STATUS[stage]
    label, percent = PROGRESS[status]
    row = await conn.fetchrow(
        """UPDATE upload_jobs
           SET status = $2, state = 'queued', stage = $3,
               progress = jsonb_build_object('percent', $4::int), updated_at = now()
           WHERE job_id = $1 AND (status = ANY($5::text[]) OR state = 'deadletter')
           RETURNING user_id, document_id, correlation_id""",
        job_id,
        status,
        label,
        percent,
        list(FAILED),
    )
    if row is None:
        return False
    await record_event(
        conn,
        job_id=job_id,
        document_id=row["document_id"],
        user_id=row["user_id"],
        stage=actor,
        kind="reopened",
        status=status,
        correlation_id=row["correlation_id"],
        detail={"stage": stage},
    )
    return True


# The upload_jobs columns a transition may set, with their types: a batched advance passes each
# as an array to `unnest`, which needs the element type spelled out.
FIELD_TYPES = {
    "parsed_path": "text",
    "parsed_sha256": "text",
    "pages": "int",
    "chunks_version": "text",
    "chunk_count": "int",
    "embed_model": "text",
    "vector_count": "int",
}


@functools.cache
def advance_sql(status: str, fields: tuple[str, ...]) -> str:
    """`advance` for many jobs in one statement: `$1` job ids, `$2` actors, `$3..` `fields`
    (arrays, one element per job); the audit rows come from the same statement. A job's
    document and owner must be the ones given (`$3`, `$4` before the fields): a record never
    moves someone else's job."""
    stage, percent = PROGRESS[status]
    state = "done" if status == "complete" else "working"
    sets = "".join(f", {name} = v.{name}" for name in fields)
    types = "".join(f", ${i}::{FIELD_TYPES[name]}[]" for i, name in enumerate(fields, start=5))
    detail = "".join(f", '{name}', v.{name}::text" for name in fields)
    completed = "now()" if status == "complete" else "j.completed_at"
    returned = "".join(f", v.{name}" for name in fields)
    return f"""
WITH v AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[]{types})
    AS v(job_id, actor, document_id, user_id{"".join(", " + name for name in fields)})
), moved AS (
  UPDATE upload_jobs j
  SET status = '{status}', state = '{state}', stage = '{stage}',
      progress = jsonb_build_object('percent', {percent}),
      stage_times = j.stage_times || jsonb_build_object('{stage}', now()),
      completed_at = {completed}, updated_at = now(){sets}
  FROM v
  WHERE j.job_id = v.job_id AND j.document_id = v.document_id AND j.user_id = v.user_id
    AND j.status NOT IN ('failed_parse', 'failed_chunking', 'failed_embedding')
    AND array_position(ARRAY{list(PROGRESS)!r}::text[], j.status) <= {_RANK[status]}
  RETURNING j.job_id, j.document_id, j.user_id, j.correlation_id, v.actor{returned}
)
INSERT INTO events (job_id, document_id, user_id, stage, kind, status, correlation_id, detail)
SELECT job_id, document_id, user_id, actor, 'advanced', '{status}', correlation_id,
       jsonb_build_object('percent', {percent}{detail.replace("v.", "moved.")})
FROM moved"""
