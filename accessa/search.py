"""Semantic search over a user's completed documents (the caller's RLS scope applies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

# RLS filters rows after the index scan; iterative scans keep going until `k` rows of this
# user are found (pgvector >= 0.8), so a user with few documents still gets k results.
SEARCH = """
SELECT c.chunk_id, c.document_id, d.filename, c.ordinal, c.content, c.metadata,
       1 - (c.embedding <=> $1) AS score
FROM document_chunks c JOIN documents d USING (document_id)
WHERE c.chunker_version = d.active_chunker_version AND c.embed_model = d.active_embed_model
ORDER BY c.embedding <=> $1
LIMIT $2
"""


async def search_chunks(
    conn: asyncpg.Connection, vector: Sequence[float], k: int
) -> list[dict[str, Any]]:
    """The `k` chunks nearest to `vector`, best first (score = cosine similarity). Runs in
    the caller's transaction; only each document's active version is searched."""
    await conn.execute("SET LOCAL hnsw.ef_search = 100")
    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    rows = await conn.fetch(SEARCH, list(vector), k)
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
        }
        for r in rows
    ]
