"""Starting a reprocess: a job per document, in front of its first stage, and the event that
enters it into the pipeline (re-published with the same id to resume an unfinished job)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from accessa import jobs, kafka_clients
from accessa.config import Settings
from accessa.ops.reprocess.planning import Planned, Target, plan
from accessa.topics import topics_for
from schemas.events import ChunksCreated, DocumentParsed, Event
from schemas.headers import Headers

ENTRY = {"chunk": "parse_validated", "embed": "chunks_stored"}  # the job's first status


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
