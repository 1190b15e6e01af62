"""Retrying a failed job: the stage it goes back to, and that stage's input event rebuilt."""

from __future__ import annotations

import uuid

import asyncpg

from accessa import jobs
from accessa.config import Settings
from producer_api import crud, ingest, outbox
from producer_api.core.config import Db
from producer_api.core.errors import ApiError, not_found
from schemas.events import ChunksCreated, ChunksEmbedded, DocumentParsed, Event
from schemas.topics import STAGES


def failed_stage(job: asyncpg.Record) -> str:
    """The stage a failed or dead-lettered job must go back to."""
    reported: str | None = (job["last_error"] or {}).get("stage")
    if job["status"] == "failed_parse":
        return "parser"
    if job["status"] == "failed_chunking":
        return "chunker"
    if job["status"] == "failed_embedding":
        return "finalizer" if reported == "finalizer" else "embedder"
    if reported in STAGES:
        return reported
    # Dead-lettered without a failed_* status: the last stage whose entry status it reached.
    order = list(jobs.PROGRESS)
    rank = order.index(job["status"]) if job["status"] in order else 0
    for stage, entry in reversed(jobs.ENTRY_STATUS.items()):
        if rank >= order.index(entry):
            return stage
    return "parser"


def rebuild_event(job: asyncpg.Record, stage: str, settings: Settings) -> Event:
    """The input event of `stage` for this job, rebuilt from the job row with the same
    deterministic id the pipeline used. Falls back to an earlier stage when the job lacks
    the outputs the later one needs."""
    base = {
        "job_id": job["job_id"],
        "document_id": job["document_id"],
        "user_id": job["user_id"],
        "correlation_id": job["correlation_id"],
    }
    job_id, version, model = job["job_id"], job["chunks_version"], job["embed_model"]
    # A reprocess job's events name its target version (and their ids include it).
    request = job.get("reprocess")
    target = {"embed_model": request["embed_model"]} if request else {}
    if stage == "finalizer" and version and model and job["chunk_count"] is not None:
        return ChunksEmbedded(
            **base,
            event_id=ChunksEmbedded.make_id(job_id, version, model),
            chunker_version=version,
            embed_model=model,
            dimensions=settings.embed_dimensions,
            chunk_count=job["chunk_count"],
            parsed_sha256=job["parsed_sha256"],
            tokens=job["embed_tokens"],
        )
    if stage in ("finalizer", "embedder") and version and job["chunk_count"] is not None:
        return ChunksCreated(
            **base,
            event_id=ChunksCreated.make_id(job_id, version, *target.values()),
            chunker_version=version,
            chunk_count=job["chunk_count"],
            parsed_sha256=job["parsed_sha256"],
            **target,
        )
    if request and job["parsed_path"] and job["parsed_sha256"]:
        versions = (request["chunker_version"], request["embed_model"])
        return DocumentParsed(
            **base,
            event_id=DocumentParsed.make_id(job_id, "reprocess", *versions),
            parsed_path=job["parsed_path"],
            parsed_sha256=job["parsed_sha256"],
            pages=job["pages"] or 0,
            parser="retry",
            chunker_version=versions[0],
            embed_model=versions[1],
        )
    if stage != "parser" and job["parsed_path"] and job["parsed_sha256"]:
        return DocumentParsed(
            **base,
            event_id=DocumentParsed.make_id(job_id),
            parsed_path=job["parsed_path"],
            parsed_sha256=job["parsed_sha256"],
            pages=job["pages"] or 0,
            parser="retry",
        )
    return ingest.uploaded_event(
        job_id, job["document_id"], job["raw_path"], ingest.declared_of(job)
    )


_STAGE_OF_EVENT = {s.input: s.name for s in STAGES.values()}


async def retry(
    *, db: Db, settings: Settings, job_id: uuid.UUID, actor: str = "api"
) -> asyncpg.Record:
    """Reopen a failed job and re-emit its failed stage's input, in one transaction; `actor`
    names who asked in the audit trail."""
    async with outbox.transaction(db.tx(), settings) as tx:
        conn = tx.conn
        job = await crud.get_job(conn=conn, job_id=job_id, for_update=True)
        if job is None:
            raise not_found("job")
        if job["status"] not in jobs.FAILED and job["state"] != "deadletter":
            raise ApiError(
                409, "job_not_retryable", f"job is {job['status']}/{job['state']}, not failed"
            )
        event = rebuild_event(job, failed_stage(job), settings)
        stage = _STAGE_OF_EVENT[event.topic]
        if not await jobs.reopen(conn, job_id=job_id, stage=stage, actor=actor):
            raise ApiError(409, "job_not_retryable", "the job changed; not failed any more")
        await tx.enqueue(event)
        fresh = await crud.get_job(conn=conn, job_id=job_id)
    assert fresh is not None
    return fresh
