"""The versions of a document's chunks, and deleting the replaced ones after a grace period."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def versions(pool: asyncpg.Pool, document: uuid.UUID) -> list[dict[str, Any]]:
    """Every version of a document's chunks in `document_chunks`, the active one first."""
    rows = await pool.fetch(
        """SELECT c.chunker_version, c.embed_model, count(*) AS chunks,
                  (c.chunker_version, c.embed_model)
                    = (d.active_chunker_version, d.active_embed_model) AS active,
                  d.active_since
           FROM document_chunks c JOIN documents d USING (document_id)
           WHERE c.document_id = $1
           GROUP BY c.chunker_version, c.embed_model, d.active_chunker_version,
                    d.active_embed_model, d.active_since
           ORDER BY active DESC, c.chunker_version, c.embed_model""",
        document,
    )
    return [
        {
            "chunker_version": r["chunker_version"],
            "embed_model": r["embed_model"],
            "chunks": r["chunks"],
            "active": bool(r["active"]),
            "active_since": r["active_since"].isoformat() if r["active_since"] else None,
        }
        for r in rows
    ]


# Versions that are not active, of documents on their active version for the grace period.
# Rows are locked as the finalizer locks them before a switch: a version being switched to
# is never deleted under it (such a document is skipped and collected by a later run).
GC = """
WITH due AS (
  SELECT document_id, active_chunker_version AS c, active_embed_model AS m FROM documents
  WHERE active_since <= now() - make_interval(secs => $1)
    AND ($2::uuid IS NULL OR document_id = $2)
    AND EXISTS (SELECT 1 FROM document_chunks x WHERE x.document_id = documents.document_id
                AND (x.chunker_version, x.embed_model)
                    <> (documents.active_chunker_version, documents.active_embed_model))
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM document_chunks x USING due
  WHERE x.document_id = due.document_id AND (x.chunker_version, x.embed_model) <> (due.c, due.m)
  RETURNING x.document_id, x.chunker_version, x.embed_model
)
SELECT document_id, chunker_version, embed_model, count(*) AS chunks FROM gone
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
GC_DRY_RUN = """
SELECT x.document_id, x.chunker_version, x.embed_model, count(*) AS chunks
FROM document_chunks x JOIN documents d USING (document_id)
WHERE d.active_since <= now() - make_interval(secs => $1)
  AND ($2::uuid IS NULL OR d.document_id = $2)
  AND (x.chunker_version, x.embed_model)
      <> (d.active_chunker_version, d.active_embed_model)
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


async def gc(
    pool: asyncpg.Pool,
    *,
    grace_s: float,
    document: uuid.UUID | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Delete (or with `dry_run` list) replaced versions older than `grace_s`: one entry per
    document and version with its chunk count."""
    rows = await pool.fetch(GC_DRY_RUN if dry_run else GC, float(grace_s), document)
    return [
        {
            "document_id": str(r["document_id"]),
            "chunker_version": r["chunker_version"],
            "embed_model": r["embed_model"],
            "chunks": r["chunks"],
        }
        for r in rows
    ]
