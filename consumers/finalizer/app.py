"""finalizer: `embedded` → `completed`. Buffers move to `document_chunks` in one checked
transaction: a document is searchable whole or not at all. The same transaction makes the
version it wrote the document's active one, so a reprocessed document switches atomically:
search sees the old version until the commit and the new one after it."""

from __future__ import annotations

from accessa import jobs
from accessa.errors import PermanentError
from accessa.runtime import StageApp, StageContext, metrics
from schemas.events import ChunksEmbedded, DocumentCompleted

stage: StageApp[None] = StageApp("finalizer", ChunksEmbedded)

CHECK = """
SELECT (SELECT count(*) FROM document_chunk_buffer
         WHERE job_id = $1 AND chunker_version = $2) AS chunks,
       (SELECT count(*) FROM document_vector_buffer v
         JOIN document_chunk_buffer c USING (job_id, chunk_id)
         WHERE v.job_id = $1 AND v.embed_model = $3 AND c.chunker_version = $2) AS vectors,
       (SELECT count(*) FROM document_vector_buffer
         WHERE job_id = $1 AND embed_model = $3 AND vector_dims(embedding) <> $4) AS bad_dims
"""

MOVE = """
INSERT INTO document_chunks
  (chunk_id, document_id, user_id, job_id, chunker_version, embed_model, ordinal, content,
   content_sha256, token_count, metadata, embedding)
SELECT c.chunk_id, c.document_id, c.user_id, c.job_id, c.chunker_version, v.embed_model,
       c.ordinal, c.content, c.content_sha256, c.token_count, c.metadata, v.embedding
FROM document_chunk_buffer c JOIN document_vector_buffer v USING (job_id, chunk_id)
WHERE c.job_id = $1 AND c.chunker_version = $2 AND v.embed_model = $3
ON CONFLICT (chunk_id, embed_model) DO NOTHING
"""

# The row lock orders this against `accessa reprocess gc`, which deletes inactive versions
# under the same lock: rows this transaction found already present stay until it switches.
LOCK_DOCUMENT = "SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE"

SWITCH = """
UPDATE documents
SET active_since = CASE WHEN active_chunker_version = $2 AND active_embed_model = $3
                        THEN coalesce(active_since, now()) ELSE now() END,
    active_chunker_version = $2, active_embed_model = $3, updated_at = now()
WHERE document_id = $1
"""


@stage.handle
async def on_embedded(event: ChunksEmbedded, ctx: StageContext[None]) -> DocumentCompleted:
    job = await ctx.job()
    if job["parsed_sha256"] != event.parsed_sha256:
        raise PermanentError(
            "the parsed document changed since it was chunked", code="parsed_sha_mismatch"
        )

    output = DocumentCompleted(
        event_id=DocumentCompleted.make_id(event.job_id, event.chunker_version, event.embed_model),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        chunker_version=event.chunker_version,
        embed_model=event.embed_model,
        chunk_count=event.chunk_count,
    )
    async with ctx.commit(output) as conn:
        check = await conn.fetchrow(
            CHECK, event.job_id, event.chunker_version, event.embed_model, event.dimensions
        )
        if not check["chunks"] == check["vectors"] == event.chunk_count or check["bad_dims"]:
            raise PermanentError(
                f"consistency check failed: {check['chunks']} chunks, {check['vectors']} "
                f"vectors, {check['bad_dims']} of wrong dimension, event says "
                f"{event.chunk_count}",
                code="consistency_check_failed",
            )
        await conn.execute(LOCK_DOCUMENT, event.document_id)
        await conn.execute(MOVE, event.job_id, event.chunker_version, event.embed_model)
        await conn.execute("DELETE FROM document_vector_buffer WHERE job_id = $1", event.job_id)
        await conn.execute("DELETE FROM document_chunk_buffer WHERE job_id = $1", event.job_id)
        await conn.execute(SWITCH, event.document_id, event.chunker_version, event.embed_model)
        await jobs.advance(
            conn,
            job_id=event.job_id,
            status="complete",
            actor="finalizer",
            vector_count=event.chunk_count,
        )
    metrics.JOB_DURATION.observe((output.occurred_at - job["created_at"]).total_seconds())
    return output
