"""Embedder persistence: request batching, the vector buffer, the content cache, the cost."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from accessa.config import Settings
from accessa.runtime import metrics
from accessa.runtime.context import StageContext
from consumers.embedder.budget import record_spend
from schemas.events import ChunksCreated


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
    model = settings.embed_model
    vectors = result.vectors if result else [c["cached"] for c in chunks]
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO document_vector_buffer (chunk_id, embed_model, job_id, document_id,
                                                   embedding)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [(c["chunk_id"], model, event.job_id, event.document_id, v)
             for c, v in zip(chunks, vectors, strict=True)],
        )  # fmt: skip
        if result is None:
            return
        await conn.executemany(
            """INSERT INTO embedding_cache (content_sha256, embed_model, dimensions, embedding)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(c["content_sha256"], model, settings.embed_dimensions, v)
             for c, v in zip(chunks, vectors, strict=True)],
        )  # fmt: skip
        cost = result.tokens * settings.embed_price_per_mtok / 1_000_000
        await record_spend(conn, event.user_id, cost, result.tokens)
        await conn.execute(
            "UPDATE upload_jobs SET embed_tokens = embed_tokens + $2, "
            "cost_usd = cost_usd + $3, updated_at = now() WHERE job_id = $1",
            event.job_id, result.tokens, cost,
        )  # fmt: skip
    metrics.EMBED_TOKENS.labels(model).inc(result.tokens)
    metrics.EMBED_COST.labels(model).inc(cost)
