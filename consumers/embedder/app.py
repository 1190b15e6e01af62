"""embedder: `chunked` → `embedded`. Buffered chunks get vectors; nothing is paid for twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from accessa.errors import PermanentError
from accessa.providers.embeddings import EmbeddingProvider, make_provider
from accessa.runtime import StageApp, StageContext, StageResources, Work, metrics
from consumers.embedder.models import check_model
from consumers.embedder.vectors import (
    BUFFER_VECTORS,
    BUFFERED_CHUNKS,
    document_lock,
    embed_missing,
    target_model,
)
from schemas.events import ChunksCreated, ChunksEmbedded


@dataclass
class EmbedderResources:
    """Made once per process: one provider per model, the configured one from the start."""

    providers: dict[str, EmbeddingProvider] = field(default_factory=dict)


stage: StageApp[EmbedderResources] = StageApp(
    "embedder", ChunksCreated, working_status="embedding_in_progress", reads_job=True
)


@stage.on_setup
async def load_provider(res: StageResources) -> EmbedderResources:
    # Export the model's counters at 0 from the start (cached work may never move them).
    metrics.EMBED_TOKENS.labels(res.settings.embed_model)
    metrics.EMBED_COST.labels(res.settings.embed_model)
    return EmbedderResources({res.settings.embed_model: make_provider(res.settings)})


def provider_for(ctx: StageContext[EmbedderResources], model: str) -> EmbeddingProvider:
    """One provider per model, made on first use (a reprocess may name another model)."""
    providers = ctx.own.providers
    if model not in providers:
        try:
            check_model(model, ctx.settings.embed_dimensions)
        except ValueError as exc:
            raise PermanentError(str(exc), code="unsupported_embed_model") from exc
        providers[model] = make_provider(ctx.settings, model)
    return providers[model]


@stage.handle
async def on_chunked(event: ChunksCreated, ctx: StageContext[EmbedderResources]) -> Work:
    await ctx.job()
    settings, model = ctx.settings, target_model(event, ctx.settings)
    provider = provider_for(ctx, model)
    async with document_lock(ctx.pool, event.document_id) as conn:
        chunks = await conn.fetch(
            BUFFERED_CHUNKS, event.job_id, event.chunker_version, model, settings.embed_dimensions
        )
        if len(chunks) != event.chunk_count:
            raise PermanentError(
                f"{len(chunks)} buffered chunks, event says {event.chunk_count}",
                code="chunk_count_mismatch",
            )
        free = await embed_missing(ctx, event, chunks, provider)

    output = ChunksEmbedded(
        event_id=ChunksEmbedded.make_id(event.job_id, event.chunker_version, model),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        chunker_version=event.chunker_version,
        embed_model=model,
        dimensions=settings.embed_dimensions,
        chunk_count=event.chunk_count,
        parsed_sha256=event.parsed_sha256,
    )
    return (
        ctx.work(output)
        .extend(BUFFER_VECTORS, free)
        .advance("embeddings_stored", embed_model=model, vector_count=event.chunk_count)
    )
