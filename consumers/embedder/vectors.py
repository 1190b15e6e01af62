"""Embedder work: the document lock, request batching, the vector buffer, the content cache,
budgets and cost. Nothing here is paid for twice: vectors already buffered or cached are
reused, identical texts are embedded once, and each provider batch is saved as it returns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from accessa.config import Settings
from accessa.errors import TransientError
from accessa.runtime import Batched, StageContext, metrics, retry_infra
from consumers.embedder.budget import check_budget, record_spend
from schemas.events import ChunksCreated

# A document's buffered chunks with what is already known about their vectors. `content` is
# the embedding input: @2 chunks prefix a contextual header kept in their metadata, and key the
# cache by the hash of that input (the stored chunk text stays clean).
BUFFERED_CHUNKS = """
SELECT c.chunk_id, COALESCE(c.metadata->>'embed_header', '') || c.content AS content,
       COALESCE(c.metadata->>'embed_sha256', c.content_sha256) AS content_sha256, c.token_count,
       (v.chunk_id IS NOT NULL) AS embedded, e.embedding AS cached
FROM document_chunk_buffer c
LEFT JOIN document_vector_buffer v
  ON v.job_id = c.job_id AND v.chunk_id = c.chunk_id AND v.embed_model = $3
LEFT JOIN embedding_cache e
  ON e.content_sha256 = COALESCE(c.metadata->>'embed_sha256', c.content_sha256)
  AND e.embed_model = $3 AND e.dimensions = $4
WHERE c.job_id = $1 AND c.chunker_version = $2 ORDER BY c.ordinal
"""


def target_model(event: ChunksCreated, settings: Settings) -> str:
    """The model a reprocess names, else the configured one."""
    return event.embed_model or settings.embed_model


@asynccontextmanager
async def document_lock(pool: asyncpg.Pool, document_id: uuid.UUID) -> AsyncIterator[Any]:
    """One embedder per document at a time, even across replicas during a rebalance; yields
    the connection holding the (session) advisory lock."""
    async with pool.acquire() as conn:
        key = str(document_id)
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1::text))", key):
            raise TransientError(
                "another embedder holds this document", code="document_locked", defer_s=1.0
            )
        try:
            yield conn
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1::text))", key)
            except BaseException:
                # Never back to the pool holding the lock (its release does not reset
                # sessions): closing the session frees the lock.
                conn.terminate()
                raise


# Vectors that cost nothing (cached, or a repeat of a text embedded in this document): written
# with the record's wave by the runtime, not in a transaction of their own.
BUFFER_VECTORS = Batched(
    """INSERT INTO document_vector_buffer (chunk_id, embed_model, job_id, document_id, embedding)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::vector[])
       ON CONFLICT DO NOTHING"""
)


async def embed_missing(
    ctx: StageContext, event: ChunksCreated, chunks: Sequence[Any], provider: Any
) -> list[tuple[Any, ...]]:
    """Buffer a vector for every chunk that has none, paying only for texts never embedded.
    Paid vectors are saved as each provider batch returns; the free ones (cached, repeats)
    come back as BUFFER_VECTORS rows for the record's unit of work."""
    model = target_model(event, ctx.settings)
    todo = [c for c in chunks if not c["embedded"]]
    free = [(c["chunk_id"], c["cached"]) for c in todo if c["cached"] is not None]
    missing = [c for c in todo if c["cached"] is None]
    unique = {c["content_sha256"]: c for c in missing}  # the same text is embedded once
    await check_budget(
        ctx.pool, ctx.settings, event.user_id, sum(c["token_count"] for c in unique.values())
    )
    fresh: dict[str, list[float]] = {}
    saving = asyncio.Lock()  # one write connection per document besides the lock's

    async def embed(batch: list[Any]) -> None:
        async def keep(result: Any) -> None:
            async with saving:  # paid for: keep trying to save it through a database restart
                await retry_infra(
                    lambda: save_batch(ctx, event, batch, result), "save vectors", stage=ctx.stage
                )

        result = await provider.embed([c["content"] for c in batch], then=keep)
        fresh.update(zip([c["content_sha256"] for c in batch], result.vectors, strict=True))
        ctx.fault("mid_embed")

    await asyncio.gather(*(embed(b) for b in batches(list(unique.values()), ctx.settings)))
    free += [
        (c["chunk_id"], fresh[c["content_sha256"]])
        for c in missing
        if unique[c["content_sha256"]] is not c
    ]
    return [(chunk, model, event.job_id, event.document_id, vector) for chunk, vector in free]


def batches(chunks: Sequence[Any], settings: Settings) -> Iterator[list[Any]]:
    """Groups within the request limits: ≤ embed_batch_inputs inputs and ≤ embed_batch_tokens."""
    batch: list[Any] = []
    tokens = 0
    for chunk in chunks:
        if batch and (
            len(batch) >= settings.embed_batch_inputs
            or tokens + chunk["token_count"] > settings.embed_batch_tokens
        ):
            yield batch
            batch, tokens = [], 0
        batch.append(chunk)
        tokens += chunk["token_count"]
    if batch:
        yield batch


async def save_batch(
    ctx: StageContext, event: ChunksCreated, chunks: Sequence[Any], result: Any | None
) -> None:
    """Write one batch's vectors (fresh from the provider, or cached when `result` is None)
    to the buffer and the cache, and record what it cost, in one transaction."""
    if not chunks:
        return
    settings = ctx.settings
    model = target_model(event, settings)
    vectors = result.vectors if result else [c["cached"] for c in chunks]
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO document_vector_buffer (chunk_id, embed_model, job_id, document_id,
                                                   embedding)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [
                (c["chunk_id"], model, event.job_id, event.document_id, v)
                for c, v in zip(chunks, vectors, strict=True)
            ],
        )
        if result is None:
            return
        await conn.executemany(
            """INSERT INTO embedding_cache (content_sha256, embed_model, dimensions, embedding)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [
                (c["content_sha256"], model, settings.embed_dimensions, v)
                for c, v in zip(chunks, vectors, strict=True)
            ],
        )
        cost = result.tokens * settings.embed_price_per_mtok / 1_000_000
        await record_spend(conn, event.user_id, cost, result.tokens)
        await conn.execute(
            "UPDATE upload_jobs SET embed_tokens = embed_tokens + $2, "
            "cost_usd = cost_usd + $3, updated_at = now() WHERE job_id = $1",
            event.job_id,
            result.tokens,
            cost,
        )
    metrics.EMBED_TOKENS.labels(model).inc(result.tokens)
    metrics.EMBED_COST.labels(model).inc(cost)
