"""Versioned reprocessing: build a document's chunks again as another (chunker_version,
embed_model) version beside the active one, switch when it is whole, delete the old one later.

A reprocess is a job (`upload_jobs.kind = 'reprocess'`) that enters the pipeline in front of
the chunker (`from_stage="chunk"`: a `parsed` event naming the target version) or of the
embedder (`"embed"`: the active chunks copied into the job's chunk buffer and a `chunked`
event naming the target model). The stages build the version in the job's buffers; the
finalizer writes it and switches `documents.active_*` in one transaction, so search sees the
old version until that commit and the new one after it. The content-hash embedding cache
means texts already embedded with the target model cost nothing.

Re-running a request is safe: a target that is already active is left alone, and a document's
unfinished reprocess job is resumed by re-publishing its event with the same id, which the
stages deduplicate. `gc` deletes versions that are not active once the document has been on
its active version for the grace period.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import asyncpg

from accessa import jobs, kafka_clients
from accessa.config import Settings
from accessa.topics import topics_for
from consumers.chunker.chunking import resolve_version
from consumers.embedder.models import check_model
from schemas.events import ChunksCreated, DocumentParsed, Event
from schemas.headers import Headers

FromStage = Literal["chunk", "embed"]
Action = Literal["queue", "resume", "already_active", "busy", "not_ready"]
ENTRY = {"chunk": "parse_validated", "embed": "chunks_stored"}  # the job's first status


@dataclass(frozen=True)
class Target:
    """What to build. `chunker_version` None (from `embed`): each document keeps its chunks."""

    from_stage: FromStage
    chunker_version: str | None
    embed_model: str


@dataclass
class Planned:
    """One document's part in a reprocess: what it has, what it gets, and what happens."""

    document_id: uuid.UUID
    action: Action
    active_chunker_version: str | None
    active_embed_model: str | None
    chunker_version: str | None
    embed_model: str
    job_id: uuid.UUID | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in asdict(self).items()}


def resolve_target(
    settings: Settings,
    from_stage: str,
    chunker_version: str | None = None,
    embed_model: str | None = None,
) -> Target:
    """Check a request before anything is touched; ValueError says what is wrong. Unnamed
    parts default to the configured chunker version and embedding model."""
    if from_stage not in ("chunk", "embed"):
        raise ValueError(f"--from-stage must be chunk or embed, not {from_stage!r}")
    if from_stage == "embed" and chunker_version:
        raise ValueError(
            "--from-stage embed keeps each document's chunks; "
            "a new chunker version needs --from-stage chunk"
        )
    chunker = None
    if from_stage == "chunk":
        chunker = resolve_version(
            chunker_version or settings.chunker_version,
            target_tokens=settings.chunk_target_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        ).version
    model = embed_model or settings.embed_model
    check_model(model, settings.embed_dimensions)
    return Target(from_stage, chunker, model)  # type: ignore[arg-type]


# Each document with its active version, the parse its last completed job used, and its
# unfinished reprocess job if any.
PLAN = """
SELECT d.document_id, d.user_id, d.active_chunker_version, d.active_embed_model,
       src.parsed_sha256, p.job_id AS pending_job, p.reprocess AS pending
FROM documents d
LEFT JOIN LATERAL (
  SELECT parsed_sha256 FROM upload_jobs j
  WHERE j.document_id = d.document_id AND j.status = 'complete'
  ORDER BY j.completed_at DESC NULLS LAST LIMIT 1) src ON true
LEFT JOIN LATERAL (
  SELECT job_id, reprocess FROM upload_jobs j
  WHERE j.document_id = d.document_id AND j.kind = 'reprocess'
    AND j.state NOT IN ('done', 'deadletter')) p ON true
WHERE ($1::uuid IS NULL AND d.active_chunker_version IS NOT NULL) OR d.document_id = $1
ORDER BY d.created_at, d.document_id
"""


async def plan(
    pool: asyncpg.Pool, target: Target, *, document: uuid.UUID | None = None
) -> list[Planned]:
    """What a reprocess of `document` (None: every searchable document) would do."""
    planned = []
    for row in await pool.fetch(PLAN, document):
        active = (row["active_chunker_version"], row["active_embed_model"])
        chunker = target.chunker_version or active[0]
        item = Planned(row["document_id"], "queue", *active, chunker, target.embed_model)
        if active[0] is None or row["parsed_sha256"] is None:
            item.action, item.reason = "not_ready", "the document has never completed"
        elif (chunker, target.embed_model) == active:
            item.action, item.reason = "already_active", "the target version is active"
        elif row["pending_job"] is not None:
            pending = row["pending"]
            item.job_id = row["pending_job"]
            if (pending["chunker_version"], pending["embed_model"]) == (chunker, item.embed_model):
                item.action, item.reason = "resume", "an unfinished reprocess builds it"
            else:
                item.action = "busy"
                item.reason = (
                    f"an unfinished reprocess builds {pending['chunker_version']} / "
                    f"{pending['embed_model']}"
                )
        planned.append(item)
    return planned


async def start(
    settings: Settings,
    pool: asyncpg.Pool,
    target: Target,
    planned: list[Planned],
    *,
    correlation_id: str,
    on_each: Callable[[Planned], None] | None = None,
) -> list[Planned]:
    """Create a job for each `queue` item and publish the event of every `queue` and
    `resume` item. Returns `planned`, job ids filled in."""
    topics = topics_for(settings)
    producer = kafka_clients.producer(settings, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i, item in enumerate(planned):
            if item.action == "queue":
                item.job_id = await _create_job(pool, target, item, correlation_id)
                if item.job_id is None:  # another operator's run got there first
                    [item] = await plan(pool, target, document=item.document_id)
                    planned[i] = item
            if item.action in ("queue", "resume"):
                event = entry_event(await pool.fetchrow(JOB, item.job_id))
                headers = {
                    Headers.CORRELATION_ID: event.correlation_id,
                    Headers.JOB_ID: str(event.job_id),
                    Headers.DOCUMENT_ID: str(event.document_id),
                    Headers.USER_ID: str(event.user_id),
                }
                await producer.send(
                    topics.name(event.topic),
                    event.to_bytes(),
                    key=event.key(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            if on_each:
                on_each(item)
        await producer.flush()
    finally:
        await producer.stop()
    return planned


JOB = """
SELECT j.job_id, j.document_id, j.user_id, j.correlation_id, j.reprocess, j.parsed_path,
       j.parsed_sha256, j.pages, j.chunk_count
FROM upload_jobs j WHERE j.job_id = $1
"""

# The reprocess job starts where its first stage expects a job to be; the parse (from
# `chunk`) is the one the document's last completed job used.
CREATE_JOB = """
INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id, kind, reprocess, status,
                         state, stage, progress, stage_times, parsed_path, parsed_sha256, pages,
                         chunks_version, embed_model)
SELECT $1, d.user_id, d.document_id, $3, 'reprocess', $4, $5, 'queued', $6,
       jsonb_build_object('percent', $7::int), jsonb_build_object('queued', now()),
       src.parsed_path, src.parsed_sha256, src.pages, $8, $9
FROM documents d, LATERAL (
  SELECT parsed_path, parsed_sha256, pages FROM upload_jobs j
  WHERE j.document_id = d.document_id AND j.status = 'complete'
  ORDER BY j.completed_at DESC NULLS LAST LIMIT 1) src
WHERE d.document_id = $2
ON CONFLICT DO NOTHING
RETURNING user_id, parsed_path
"""

# From `embed`: the active version's chunks become the job's buffered chunks.
COPY_CHUNKS = """
INSERT INTO document_chunk_buffer (chunk_id, job_id, document_id, user_id, chunker_version,
                                   ordinal, content, content_sha256, token_count, metadata)
SELECT chunk_id, $1, document_id, user_id, chunker_version, ordinal, content, content_sha256,
       token_count, metadata
FROM document_chunks WHERE document_id = $2 AND chunker_version = $3 AND embed_model = $4
"""


async def _create_job(
    pool: asyncpg.Pool, target: Target, item: Planned, correlation_id: str
) -> uuid.UUID | None:
    """The new job (None if the document already has an unfinished reprocess)."""
    job_id = uuid.uuid4()
    status = ENTRY[target.from_stage]
    label, percent = jobs.PROGRESS[status]
    request = {
        "from_stage": target.from_stage,
        "chunker_version": item.chunker_version,
        "embed_model": item.embed_model,
        "previous": {
            "chunker_version": item.active_chunker_version,
            "embed_model": item.active_embed_model,
        },
    }
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            CREATE_JOB,
            job_id,
            item.document_id,
            correlation_id,
            request,
            status,
            label,
            percent,
            item.chunker_version,
            item.embed_model,
        )
        if row is None:
            return None
        if target.from_stage == "embed":
            copied = await conn.execute(
                COPY_CHUNKS,
                job_id,
                item.document_id,
                item.active_chunker_version,
                item.active_embed_model,
            )
            await conn.execute(
                "UPDATE upload_jobs SET chunk_count = $2 WHERE job_id = $1",
                job_id,
                int(copied.split()[-1]),
            )
        await jobs.record_event(
            conn,
            job_id=job_id,
            document_id=item.document_id,
            user_id=row["user_id"],
            stage="operator",
            kind="created",
            status=status,
            correlation_id=correlation_id,
            detail={"reprocess": request},
        )
    return job_id


def entry_event(job: asyncpg.Record) -> Event:
    """The event that starts (or, re-published, resumes) a reprocess job: a deterministic id
    over the job and its target version."""
    request = job["reprocess"]
    if isinstance(request, str):  # a pool without the JSON codec
        request = json.loads(request)
    common: dict[str, Any] = {
        "job_id": job["job_id"],
        "document_id": job["document_id"],
        "user_id": job["user_id"],
        "correlation_id": job["correlation_id"],
        "parsed_sha256": job["parsed_sha256"],
        "embed_model": request["embed_model"],
    }
    version = (request["chunker_version"], request["embed_model"])
    if request["from_stage"] == "chunk":
        return DocumentParsed(
            event_id=DocumentParsed.make_id(job["job_id"], "reprocess", *version),
            parsed_path=job["parsed_path"],
            pages=job["pages"] or 0,
            parser="reprocess",
            chunker_version=request["chunker_version"],
            **common,
        )
    return ChunksCreated(
        event_id=ChunksCreated.make_id(job["job_id"], *version),
        chunker_version=request["chunker_version"],
        chunk_count=job["chunk_count"],
        **common,
    )


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


async def versions(pool: asyncpg.Pool, document: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a document's chunks in `document_chunks`, the active one first."""
    rows = await pool.fetch(
        """SELECT c.chunker_version, c.embed_model, count(*) AS chunks,
                  (c.chunker_version, c.embed_model)
                    = (d.active_chunker_version, d.active_embed_model) AS active,
                  d.active_since
           FROM document_chunks c JOIN documents d USING (document_id)
           WHERE c.document_id = $1
           GROUP BY c.chunker_version, c.embed_model, d.active_chunker_version,
                    d.active_embed_model, d.active_since
           ORDER BY active DESC, c.chunker_version, c.embed_model""",
        document,
    )
    return [
        {
            "chunker_version": r["chunker_version"],
            "embed_model": r["embed_model"],
            "chunks": r["chunks"],
            "active": bool(r["active"]),
            "active_since": r["active_since"].isoformat() if r["active_since"] else None,
        }
        for r in rows
    ]


# Versions that are not active, of documents on their active version for the grace period.
# Rows are locked as the finalizer locks them before a switch: a version being switched to
# is never deleted under it (such a document is skipped and collected by a later run).
GC = """
WITH due AS (
  SELECT document_id, active_chunker_version AS c, active_embed_model AS m FROM documents
  WHERE active_since <= now() - make_interval(secs => $1)
    AND ($2::uuid IS NULL OR document_id = $2)
    AND EXISTS (SELECT 1 FROM document_chunks x WHERE x.document_id = documents.document_id
                AND (x.chunker_version, x.embed_model)
                    <> (documents.active_chunker_version, documents.active_embed_model))
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM document_chunks x USING due
  WHERE x.document_id = due.document_id AND (x.chunker_version, x.embed_model) <> (due.c, due.m)
  RETURNING x.document_id, x.chunker_version, x.embed_model
)
SELECT document_id, chunker_version, embed_model, count(*) AS chunks FROM gone
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
GC_DRY_RUN = """
SELECT x.document_id, x.chunker_version, x.embed_model, count(*) AS chunks
FROM document_chunks x JOIN documents d USING (document_id)
WHERE d.active_since <= now() - make_interval(secs => $1)
  AND ($2::uuid IS NULL OR d.document_id = $2)
  AND (x.chunker_version, x.embed_model)
      <> (d.active_chunker_version, d.active_embed_model)
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


async def gc(
    pool: asyncpg.Pool,
    *,
    grace_s: float,
    document: uuid.UUID | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Delete (or with `dry_run` list) replaced versions older than `grace_s`: one entry per
    document and version with its chunk count."""
    rows = await pool.fetch(GC_DRY_RUN if dry_run else GC, float(grace_s), document)
    return [
        {
            "document_id": str(r["document_id"]),
            "chunker_version": r["chunker_version"],
            "embed_model": r["embed_model"],
            "chunks": r["chunks"],
        }
        for r in rows
    ]
