"""finalizer: `embedded` → `completed`. Buffers move to `document_chunks` in one checked
transaction: a document is searchable whole or not at all. The same transaction makes the
version it wrote the document's active one, so a reprocessed document switches atomically:
search sees the old version until the commit and the new one after it."""

from __future__ import annotations

from accessa.errors import PermanentError
from accessa.runtime import Batched, StageApp, StageContext, Work, metrics
from schemas.events import ChunksEmbedded, DocumentCompleted

stage: StageApp[None] = StageApp("finalizer", ChunksEmbedded, reads_job=True)

CHECK = """
SELECT (SELECT count(*) FROM document_chunk_buffer
         WHERE job_id = $1 AND chunker_version = $2) AS chunks,
       (SELECT count(*) FROM document_vector_buffer v
         JOIN document_chunk_buffer c USING (job_id, chunk_id)
         WHERE v.job_id = $1 AND v.embed_model = $3 AND c.chunker_version = $2) AS vectors,
       (SELECT count(*) FROM document_vector_buffer
         WHERE job_id = $1 AND embed_model = $3 AND vector_dims(embedding) <> $4) AS bad_dims
"""

# Everything below runs once per wave, for all its documents (rows: one per document).
# The row lock orders this against `accessa reprocess gc`, which deletes inactive versions
# under the same lock: rows this transaction found already present stay until it switches.
# In document order, so that two waves locking the same documents cannot deadlock.
LOCK_DOCUMENTS = Batched(
    """SELECT 1 FROM documents d JOIN unnest($1::uuid[]) AS v(document_id) USING (document_id)
       ORDER BY d.document_id FOR UPDATE OF d"""
)

# NOT EXISTS as well as ON CONFLICT: under the document lock it keeps one row per chunk and
# model whatever the table's unique constraints.
MOVE = Batched(
    """INSERT INTO document_chunks
         (chunk_id, document_id, user_id, job_id, chunker_version, embed_model, ordinal, content,
          content_sha256, token_count, metadata, embedding)
       SELECT c.chunk_id, c.document_id, c.user_id, c.job_id, c.chunker_version, v.embed_model,
              c.ordinal, c.content, c.content_sha256, c.token_count, c.metadata, v.embedding
       FROM unnest($1::uuid[], $2::text[], $3::text[]) AS w(job_id, chunker_version, embed_model)
       JOIN document_chunk_buffer c
         ON c.job_id = w.job_id AND c.chunker_version = w.chunker_version
       JOIN document_vector_buffer v
         ON v.job_id = c.job_id AND v.chunk_id = c.chunk_id AND v.embed_model = w.embed_model
       WHERE NOT EXISTS (SELECT 1 FROM document_chunks x
                         WHERE x.chunk_id = c.chunk_id AND x.embed_model = v.embed_model)
       ON CONFLICT DO NOTHING"""
)

DROP_VECTORS = Batched("DELETE FROM document_vector_buffer WHERE job_id = ANY($1::uuid[])")
DROP_CHUNKS = Batched("DELETE FROM document_chunk_buffer WHERE job_id = ANY($1::uuid[])")

SWITCH = Batched(
    """UPDATE documents d
       SET active_since = CASE WHEN d.active_chunker_version = w.chunker_version
                                AND d.active_embed_model = w.embed_model
                               THEN coalesce(d.active_since, now()) ELSE now() END,
           active_chunker_version = w.chunker_version, active_embed_model = w.embed_model,
           updated_at = now()
       FROM unnest($1::uuid[], $2::text[], $3::text[])
         AS w(document_id, chunker_version, embed_model)
       WHERE d.document_id = w.document_id"""
)


@stage.handle
async def on_embedded(event: ChunksEmbedded, ctx: StageContext[None]) -> Work:
    job = await ctx.job()
    if job["parsed_sha256"] != event.parsed_sha256:
        raise PermanentError(
            "the parsed document changed since it was chunked", code="parsed_sha_mismatch"
        )
    # Read before the wave's transaction: the buffers of this job and version are complete
    # once its `embedded` event exists (both stages commit before they emit).
    check = await ctx.pool.fetchrow(
        CHECK, event.job_id, event.chunker_version, event.embed_model, event.dimensions
    )
    if not check["chunks"] == check["vectors"] == event.chunk_count or check["bad_dims"]:
        raise PermanentError(
            f"consistency check failed: {check['chunks']} chunks, {check['vectors']} "
            f"vectors, {check['bad_dims']} of wrong dimension, event says {event.chunk_count}",
            code="consistency_check_failed",
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
    version = (event.chunker_version, event.embed_model)
    took = (output.occurred_at - job["created_at"]).total_seconds()
    return (
        ctx.work(output)
        .add(LOCK_DOCUMENTS, event.document_id)
        .add(MOVE, event.job_id, *version)
        .add(DROP_VECTORS, event.job_id)
        .add(DROP_CHUNKS, event.job_id)
        .add(SWITCH, event.document_id, *version)
        .advance("complete", vector_count=event.chunk_count)
        .then(lambda: metrics.JOB_DURATION.observe(took))
    )
