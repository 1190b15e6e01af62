"""Semantic search over a user's completed documents (the caller's RLS scope applies).

Only each document's active version is searched (`accessa reprocess` may keep others beside
it until garbage collection). Vectors of different models are not comparable: a query is
embedded once per active model and each model's documents are searched with their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

# RLS filters rows after the index scan; iterative scans keep going until `k` rows of this
# user are found (pgvector >= 0.8), so a user with few documents still gets k results.
SEARCH = """
SELECT c.chunk_id, c.document_id, d.filename, c.ordinal, c.content, c.metadata,
       c.chunker_version, c.embed_model, 1 - (c.embedding <=> $1) AS score
FROM document_chunks c JOIN documents d USING (document_id)
WHERE c.chunker_version = d.active_chunker_version AND c.embed_model = d.active_embed_model
  AND ($3::text IS NULL OR c.embed_model = $3)
ORDER BY c.embedding <=> $1
LIMIT $2
"""
ACTIVE_MODELS = """
SELECT DISTINCT active_embed_model FROM documents WHERE active_embed_model IS NOT NULL ORDER BY 1
"""


async def active_models(conn: asyncpg.Connection) -> list[str]:
    """The embedding models of the caller's searchable documents."""
    return [r["active_embed_model"] for r in await conn.fetch(ACTIVE_MODELS)]


async def search_models(
    conn: asyncpg.Connection, vectors: Mapping[str, Sequence[float]], k: int
) -> list[dict[str, Any]]:
    """The `k` best chunks over documents of each model, searched with that model's query
    vector (`{model: vector}`), merged by score."""
    hits = [h for m, v in vectors.items() for h in await search_chunks(conn, v, k, model=m)]
    return sorted(hits, key=lambda h: h["score"], reverse=True)[:k]


async def search_chunks(
    conn: asyncpg.Connection, vector: Sequence[float], k: int, *, model: str | None = None
) -> list[dict[str, Any]]:
    """The `k` chunks nearest to `vector`, best first (score = cosine similarity), among
    documents embedded with `model` (None: all). Runs in the caller's transaction."""
    await conn.execute("SET LOCAL hnsw.ef_search = 100")
    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    rows = await conn.fetch(SEARCH, list(vector), k, model)
    return [
        {
            "chunk_id": r["chunk_id"],
            "document_id": r["document_id"],
            "filename": r["filename"],
            "ordinal": r["ordinal"],
            "heading_path": r["metadata"].get("heading_path", []),
            "page_start": r["metadata"].get("page_start"),
            "page_end": r["metadata"].get("page_end"),
            "score": round(float(r["score"]), 4),
            "content": r["content"],
            "chunker_version": r["chunker_version"],
            "embed_model": r["embed_model"],
        }
        for r in rows
    ]
