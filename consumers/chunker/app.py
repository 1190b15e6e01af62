"""chunker: `parsed` → `chunked`. Markdown becomes token-budgeted chunks in the buffer table."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from accessa.errors import PermanentError
from accessa.runtime import Batched, StageApp, StageContext, Work
from accessa.storage import ObjectNotFound
from accessa.text import sha256_text
from consumers.chunker.chunking import Chunk, chunk_markdown, resolve_version
from consumers.chunker.contextual import embed_metadata
from schemas.events import ChunksCreated, DocumentParsed

stage: StageApp[None] = StageApp("chunker", DocumentParsed, reads_job=True)


# All of a wave's chunks in one statement; ON CONFLICT makes a redelivery harmless.
BUFFER_CHUNKS = Batched(
    """INSERT INTO document_chunk_buffer
         (chunk_id, job_id, document_id, user_id, chunker_version, ordinal, content,
          content_sha256, token_count, metadata)
       SELECT id, job, doc, usr, ver, ord, content, sha, tokens, meta::jsonb
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int[],
                   $7::text[], $8::text[], $9::int[], $10::text[])
         AS t(id, job, doc, usr, ver, ord, content, sha, tokens, meta)
       ON CONFLICT (job_id, chunk_id) DO NOTHING"""
)


def buffer_rows(
    event: DocumentParsed, version: str, chunks: list[Chunk]
) -> list[tuple[object, ...]]:
    """The BUFFER_CHUNKS rows of one document's chunks."""
    return [
        (
            c.chunk_id,
            event.job_id,
            event.document_id,
            event.user_id,
            version,
            c.ordinal,
            c.content,
            c.content_sha256,
            c.token_count,
            json.dumps(chunk_metadata(c)),
        )
        for c in chunks
    ]


async def buffer_chunks(
    conn: asyncpg.Connection, event: DocumentParsed, version: str, chunks: list[Chunk]
) -> None:
    """The chunks written at once, outside a stage's work (tools and benchmarks seed buffers)."""
    await BUFFER_CHUNKS.execute(conn, buffer_rows(event, version, chunks))


def chunk_metadata(chunk: Chunk) -> dict:
    """What `document_chunks.metadata` holds; `ocr` only for chunks from OCR'd pages."""
    meta = {
        "heading_path": chunk.heading_path,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
    }
    if chunk.ocr_confidence is not None:
        meta |= {"ocr": True, "ocr_confidence": chunk.ocr_confidence}
    return meta | embed_metadata(chunk)


@stage.handle
async def on_parsed(event: DocumentParsed, ctx: StageContext[None]) -> Work:
    await ctx.job()
    try:
        markdown = (await ctx.storage.get(event.parsed_path)).decode()
    except ObjectNotFound as exc:
        raise PermanentError(f"{event.parsed_path} is missing", code="parsed_file_missing") from exc
    if sha256_text(markdown) != event.parsed_sha256:
        raise PermanentError(
            "parsed markdown does not match its sha256", code="parsed_sha_mismatch"
        )

    settings = ctx.settings
    try:  # a reprocess names its target version; an upload gets the configured one
        spec = resolve_version(
            event.chunker_version or settings.chunker_version,
            target_tokens=settings.chunk_target_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        )
    except ValueError as exc:
        raise PermanentError(str(exc), code="unknown_chunker_version") from exc
    version = spec.version
    # In a thread: a 10 MB table takes seconds, and the loop must keep heartbeating.
    chunks = await asyncio.to_thread(
        chunk_markdown,
        markdown,
        document_id=event.document_id,
        version=version,
        target_tokens=spec.target_tokens,
        overlap_tokens=spec.overlap_tokens,
    )
    if not chunks:
        raise PermanentError("the document has no text to chunk", code="zero_chunks")

    model = [event.embed_model] if event.embed_model else []  # upload ids stay as they were
    output = ChunksCreated(
        event_id=ChunksCreated.make_id(event.job_id, version, *model),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        chunker_version=version,
        embed_model=event.embed_model,
        chunk_count=len(chunks),
        parsed_sha256=event.parsed_sha256,
    )
    return (
        ctx.work(output)
        .extend(BUFFER_CHUNKS, buffer_rows(event, version, chunks))
        .advance("chunks_stored", chunks_version=version, chunk_count=len(chunks))
    )
