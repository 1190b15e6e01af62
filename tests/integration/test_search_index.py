"""Vector search can read the HNSW index on document_chunks.embedding (bench/bench_pgcost.py
compared other indexes; this keeps the search query one the index serves), and on a small set
its hits are exact search's."""

from __future__ import annotations

import hashlib
import random
import uuid

import asyncpg
import numpy as np
import pytest

from accessa.db import user_transaction
from accessa.search import SEARCH, search_chunks
from tests.integration.test_search_hybrid import CHUNKER, MODEL

pytestmark = pytest.mark.integration

WORDS = ["policy", "claim", "premium", "cover", "excess", "benefit", "hospital", "travel",
         "baggage", "delay", "flight", "cancel", "renewal", "waiting", "period"]  # fmt: skip
CENTERS = np.random.default_rng(0).standard_normal((32, 1536)).astype(np.float32)


def vectors(n: int, seed: int) -> np.ndarray:
    """`n` unit vectors around 32 topics (a topic's chunks are alike, as a policy's are)."""
    rng = np.random.default_rng(seed)
    points = CENTERS[rng.integers(0, len(CENTERS), n)] + rng.standard_normal((n, 1536))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


async def add_documents(
    pool: asyncpg.Pool, user: uuid.UUID, docs: int, per_doc: int, seed: int
) -> dict[uuid.UUID, np.ndarray]:
    """`docs` completed documents of `user` of `per_doc` chunks each, by COPY; returns the
    chunks' vectors as stored (float32)."""
    rng = random.Random(seed)
    chunks, stored = [], {}
    dense = iter(vectors(docs * per_doc, seed))
    for _ in range(docs):
        doc = uuid.uuid4()
        await pool.execute(
            """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path,
                                      active_chunker_version, active_embed_model, active_since)
               VALUES ($1, $2, $3, 1, 'policy.pdf', 'raw', $4, $5, now())""",
            doc, user, hashlib.sha256(doc.bytes).hexdigest(), CHUNKER, MODEL,
        )  # fmt: skip
        for i in range(per_doc):
            content = " ".join(rng.choices(WORDS, k=12))
            cid, vector = uuid.uuid4(), next(dense)
            sha = hashlib.sha256(content.encode()).hexdigest()
            chunks.append((cid, doc, user, doc, CHUNKER, MODEL, i, content, sha, 10, vector))
            stored[cid] = vector
    await pool.copy_records_to_table(
        "document_chunks", records=chunks, schema_name="upload_pipeline",
        columns=["chunk_id", "document_id", "user_id", "job_id", "chunker_version", "embed_model",
                 "ordinal", "content", "content_sha256", "token_count", "embedding"],
    )  # fmt: skip
    return stored


def cosine(v: np.ndarray, q: np.ndarray) -> float:
    return float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))


async def test_vector_search_can_use_the_hnsw_index_and_returns_exact_hits_on_a_small_set(
    pool: asyncpg.Pool,
) -> None:
    me = uuid.uuid4()
    # Another user's chunks around mine: RLS filters them out.
    await add_documents(pool, uuid.uuid4(), docs=5, per_doc=200, seed=2)
    mine = await add_documents(pool, me, docs=1, per_doc=200, seed=1)
    await pool.execute("ANALYZE documents; ANALYZE document_chunks")
    queries = list(vectors(10, seed=7))

    async with user_transaction(pool, me) as conn:
        hits = [await search_chunks(conn, q.tolist(), 10, model=MODEL) for q in queries]
        # Which path the planner takes depends on the user's share of the table: sorting a
        # user's few hundred rows is cheaper than the index, and exact. Without that
        # alternative the plan must show the index (it would sort if the query's ORDER BY did
        # not match the index's operator class).
        await conn.execute("SET LOCAL enable_sort = off")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        explain = await conn.fetch("EXPLAIN " + SEARCH, queries[0].tolist(), 10, MODEL)

    plan = "\n".join(r[0] for r in explain)
    assert "Index Scan using document_chunks_embedding_hnsw" in plan, plan
    for query, got in zip(queries, hits, strict=True):
        exact = sorted(mine, key=lambda cid: -cosine(mine[cid], query))[:10]
        assert [h["chunk_id"] for h in got] == exact
        for h in got:
            assert h["score"] == pytest.approx(cosine(mine[h["chunk_id"]], query), abs=1e-4)
