"""Semantic search over the caller's documents: proof that what was ingested is usable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from accessa.errors import PipelineError
from accessa.search import active_models, search_models
from consumers.embedder.providers import make_provider
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
    score: float = Field(description="Cosine similarity, higher is closer.")
    content: str


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHit]


@router.get("", response_model=SearchResults, responses={**AUTHED, **errors(404)})
async def search(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="What to look for.")],
    k: Annotated[int, Query(ge=1, le=50, description="How many chunks.")] = 5,
) -> SearchResults:
    """Embeds `q` with the model of each of your documents' active versions (usually one)
    and returns your `k` closest chunks."""
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
        hits = await search_models(conn, vectors, k)
    return SearchResults(query=q, hits=[SearchHit(**h) for h in hits])
