"""Semantic search over the caller's documents: proof that what was ingested is usable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from accessa.errors import PipelineError
from accessa.providers.embeddings import make_provider
from accessa.search import Mode, active_models
from accessa.search import search as search_chunks
from producer_api.core.config import DbDep, SettingsDep
from producer_api.core.errors import ApiError
from producer_api.routes.common import AUTHED, QUOTA, errors

router = APIRouter(prefix="/search", tags=["search"], dependencies=QUOTA)


class SearchHit(BaseModel):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    ordinal: int
    heading_path: list[str] = Field(examples=[["Section II", "Exclusions"]])
    page_start: int | None = None
    page_end: int | None = None
    score: float = Field(
        description="Higher is closer. `vector`: cosine similarity; `hybrid`: the reciprocal "
        "rank fusion score, the sum of 1 / (60 + rank) over the vector and full-text rankings."
    )
    content: str


class SearchResults(BaseModel):
    query: str
    mode: Mode
    hits: list[SearchHit]


@router.get("", response_model=SearchResults, responses={**AUTHED, **errors(404)})
async def search(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for.")],
    k: Annotated[int, Query(ge=1, le=50, description="How many chunks.")] = 5,
    mode: Annotated[
        Mode,
        Query(
            description="`hybrid`: vector similarity fused with full-text ranking (BM25) by "
            "reciprocal rank, so exact terms (policy numbers, amounts, phone numbers, clause "
            "ids) count; `vector`: vector similarity only."
        ),
    ] = "hybrid",
) -> SearchResults:
    """Embeds `q` with the model of each of your documents' active versions (usually one)
    and returns your `k` best chunks (see `mode`)."""
    state = request.app.state
    if getattr(state, "providers", None) is None:
        state.providers = {}
    providers = state.providers
    async with db.tx() as conn:
        models = await active_models(conn) or [settings.embed_model]
    vectors: dict[str, list[float]] = {}
    try:
        for model in models:
            if model not in providers:
                providers[model] = make_provider(settings, model)
            vectors[model] = (await providers[model].embed([q])).vectors[0]
    except PipelineError as exc:
        raise ApiError(503, "embedding_unavailable", exc.message) from exc
    async with db.tx() as conn:
        hits = await search_chunks(conn, q, vectors, k, mode)
    return SearchResults(query=q, mode=mode, hits=[SearchHit(**h) for h in hits])
