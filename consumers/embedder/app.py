"""embedder: `chunked` → `embedded`. Buffered chunks get vectors; nothing is paid for twice."""

from __future__ import annotations

import asyncio

from accessa import jobs
from accessa.errors import PermanentError, TransientError
from accessa.runtime import metrics
from accessa.runtime.context import StageContext, StageResources
from accessa.runtime.stage import StageApp
from consumers.embedder.budget import check_budget
from consumers.embedder.providers import make_provider
from consumers.embedder.vectors import batches, save_batch
from schemas.events import ChunksCreated, ChunksEmbedded

stage = StageApp("embedder", ChunksCreated)


@stage.on_startup
async def load_provider(res: StageResources) -> None:
    res.extra["provider"] = make_provider(res.settings)
    # Export the model's counters at 0 from the start (cached work may never move them).
    metrics.EMBED_TOKENS.labels(res.settings.embed_model)
    metrics.EMBED_COST.labels(res.settings.embed_model)


@stage.handle
async def on_chunked(event: ChunksCreated, ctx: StageContext) -> ChunksEmbedded:
    await ctx.job()
    settings, provider = ctx.settings, ctx.res.extra["provider"]
    model = settings.embed_model
    async with ctx.pool.acquire() as lock_conn:
        # One embedder per document at a time, even across replicas during a rebalance.
        if not await lock_conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1::text))", str(event.document_id)
        ):
            raise TransientError("another embedder holds this document", code="document_locked",
                                 defer_s=1.0)  # fmt: skip
        try:
            chunks = await lock_conn.fetch(
                """SELECT c.chunk_id, c.content, c.content_sha256, c.token_count,
                          (v.chunk_id IS NOT NULL) AS embedded, e.embedding AS cached
                   FROM document_chunk_buffer c
                   LEFT JOIN document_vector_buffer v
                     ON v.chunk_id = c.chunk_id AND v.embed_model = $3
                   LEFT JOIN embedding_cache e ON e.content_sha256 = c.content_sha256
                     AND e.embed_model = $3 AND e.dimensions = $4
                   WHERE c.job_id = $1 AND c.chunker_version = $2 ORDER BY c.ordinal""",
                event.job_id, event.chunker_version, model, settings.embed_dimensions,
            )  # fmt: skip
            if len(chunks) != event.chunk_count:
                raise PermanentError(
                    f"{len(chunks)} buffered chunks, event says {event.chunk_count}",
                    code="chunk_count_mismatch",
                )
            async with ctx.pool.acquire() as conn:
                await jobs.advance(conn, job_id=event.job_id, status="embedding_in_progress",
                                   actor="embedder", embed_model=model)  # fmt: skip

            todo = [c for c in chunks if not c["embedded"]]
            await save_batch(ctx, event, [c for c in todo if c["cached"] is not None], None)
            missing = [c for c in todo if c["cached"] is None]
            unique = {c["content_sha256"]: c for c in missing}  # same text: embedded once
            tokens = sum(c["token_count"] for c in unique.values())
            await check_budget(ctx.pool, settings, event.user_id, tokens)
            fresh: dict[str, list[float]] = {}
            saving = asyncio.Lock()  # one write connection per document besides the lock's

            async def embed(batch: list) -> None:
                result = await provider.embed([c["content"] for c in batch])
                async with saving:
                    await save_batch(ctx, event, batch, result)
                fresh.update(zip([c["content_sha256"] for c in batch], result.vectors, strict=True))
                ctx.fault("mid_embed")

            await asyncio.gather(*(embed(b) for b in batches(list(unique.values()), settings)))
            repeats = [{**c, "cached": fresh[c["content_sha256"]]} for c in missing
                       if unique[c["content_sha256"]] is not c]  # fmt: skip
            await save_batch(ctx, event, repeats, None)
        finally:
            await lock_conn.execute(
                "SELECT pg_advisory_unlock(hashtext($1::text))", str(event.document_id)
            )

    output = ChunksEmbedded(
        event_id=ChunksEmbedded.make_id(event.job_id, event.chunker_version, model),
        job_id=event.job_id, document_id=event.document_id, user_id=event.user_id,
        correlation_id=event.correlation_id, chunker_version=event.chunker_version,
        embed_model=model, dimensions=settings.embed_dimensions,
        chunk_count=event.chunk_count, parsed_sha256=event.parsed_sha256,
    )  # fmt: skip
    async with ctx.commit(output) as conn:
        await jobs.advance(conn, job_id=event.job_id, status="embeddings_stored",
                           actor="embedder", vector_count=event.chunk_count)  # fmt: skip
    return output
