"""parser: `uploaded` → `parsed`. The PDF becomes normalised markdown in storage."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import asyncpg

from accessa import jobs
from accessa.errors import PermanentError
from accessa.runtime import Batched, StageApp, StageContext, StageResources, Work, metrics
from accessa.storage import ObjectNotFound, parsed_key
from accessa.text import has_text, normalize_markdown, sha256_text
from consumers.parser.backends import ParserBackend, document_timeout_s, make_backend
from consumers.parser.quality import Thresholds, summarize
from schemas.events import DocumentParsed, DocumentUploaded

# Parsing is CPU-heavy: a small poll keeps the batch (and its offset commit) short. Each
# document's parse is bounded (`parse_timeout`), and the poll interval sized to 16 of them.


@dataclass(frozen=True)
class ParserResources:
    """Made once per process: the configured parser backend."""

    backend: ParserBackend


stage: StageApp[ParserResources] = StageApp(
    "parser",
    DocumentUploaded,
    max_records=16,
    record_time_limit_s=document_timeout_s,
    working_status="parse_queued",
    reads_job=True,
)

SET_PARSED = Batched(
    """UPDATE documents d SET parsed_path = w.path, pages = w.pages, updated_at = now()
       FROM unnest($1::uuid[], $2::text[], $3::int[]) AS w(document_id, path, pages)
       WHERE d.document_id = w.document_id"""
)
SET_QUALITY = Batched(
    """UPDATE upload_jobs j SET quality = w.quality
       FROM unnest($1::uuid[], $2::jsonb[]) AS w(job_id, quality) WHERE j.job_id = w.job_id"""
)


@stage.on_setup
async def load_backend(res: StageResources) -> ParserResources:
    return ParserResources(make_backend(res.settings, res.pool))


async def read_raw(ctx: StageContext, job: asyncpg.Record) -> bytes:
    """The PDF at the document row's `raw_path` (not the event's path), refused unless its
    size and sha256 are the row's: bytes replaced or damaged in storage are never parsed."""
    path, size, sha256 = job["raw_path"], job["document_size"], job["document_sha256"]
    try:
        found = (await ctx.storage.head(path)).size
        if found != size:  # refused unread
            raise PermanentError(
                f"raw file {path} has {found} bytes, the upload had {size}", code="raw_sha_mismatch"
            )
        pdf = await ctx.storage.get(path, limit=size)
    except ObjectNotFound as exc:
        raise PermanentError(f"raw file {path} is missing", code="raw_file_missing") from exc
    digest = await asyncio.to_thread(lambda: hashlib.sha256(pdf).hexdigest())
    if digest != sha256:
        raise PermanentError(
            f"raw file {path} is not the uploaded document (sha256 {digest}, uploaded {sha256})",
            code="raw_sha_mismatch",
        )
    return pdf


@stage.handle
async def on_uploaded(event: DocumentUploaded, ctx: StageContext[ParserResources]) -> Work:
    job = await ctx.job()
    pdf = await read_raw(ctx, job)

    async def ocr_progress(done: int, total: int) -> None:
        async with ctx.pool.acquire() as conn:
            await jobs.report_ocr(conn, job_id=event.job_id, pages_done=done, pages_total=total)

    parsed = await ctx.own.backend.parse(
        pdf, event.filename, document_id=event.document_id, progress=ocr_progress
    )
    markdown = normalize_markdown(parsed.markdown)
    if not has_text(markdown):
        raise PermanentError("the parser produced no text", code="empty_markdown")
    digest = sha256_text(markdown)
    path = parsed_key(event.user_id, event.document_id)
    await ctx.storage.put(path, markdown.encode())

    output = DocumentParsed(
        event_id=DocumentParsed.make_id(event.job_id),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        parsed_path=path,
        parsed_sha256=digest,
        pages=parsed.pages,
        parser=parsed.parser,
        page_stats=list(parsed.page_stats),
    )
    quality = summarize(parsed.page_stats, Thresholds.of(ctx.settings))
    flags = (quality["flags"] or ["none"]) if quality else []

    def count_flags() -> None:  # after the commit: a redelivery re-emits, unhandled
        for flag in flags:
            metrics.QUALITY_FLAGS.labels(flag).inc()

    return (
        ctx.work(output)
        .add(SET_PARSED, event.document_id, path, parsed.pages)
        .advance("parsed", parsed_path=path, parsed_sha256=digest, pages=parsed.pages)
        .advance("parse_validated")
        .add(SET_QUALITY, event.job_id, quality)
        .then(count_flags)
    )
