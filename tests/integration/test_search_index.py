"""Vector search can read the HNSW index of a sealed segment of document_chunks
(bench/bench_pgcost.py compared other indexes; this keeps the search query one the index
serves), and on a small set its hits are exact search's."""

from __future__ import annotations

import hashlib
import random
import re
import uuid

import asyncpg
import numpy as np
import pytest

from accessa.db import user_transaction
from accessa.search import (
    EF_SEARCH,
    SEARCH,
    SEARCH_SETTINGS,
    search_chunks,
    settings_args,
)
from tests.integration.segments import seal_now
from tests.integration.test_search_hybrid import CHUNKER, MODEL

pytestmark = pytest.mark.integration

WORDS = [
    "policy",
    "claim",
    "premium",
    "cover",
    "excess",
    "benefit",
    "hospital",
    "travel",
    "baggage",
    "delay",
    "flight",
    "cancel",
    "renewal",
    "waiting",
    "period",
]
INDEX_SCAN = r"Index Scan using document_chunks_s\d+_embedding_hnsw"
# The segments holding the caller's chunks (migration 0023).
SEGMENTS = "SELECT segment FROM upload_pipeline.user_segment_rows(0)"
CENTERS = np.random.default_rng(0).standard_normal((32, 1536)).astype(np.float32)


def vectors(n: int, seed: int) -> np.ndarray:
    """`n` unit vectors around 32 topics (a topic's chunks are alike, as a policy's are)."""
    rng = np.random.default_rng(seed)
    points = CENTERS[rng.integers(0, len(CENTERS), n)] + rng.standard_normal((n, 1536))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


async def add_documents(
    pool: asyncpg.Pool,
    user: uuid.UUID,
    docs: int,
    per_doc: int,
    seed: int,
    dense: np.ndarray | None = None,
) -> dict[uuid.UUID, np.ndarray]:
    """`docs` completed documents of `user` of `per_doc` chunks each (`dense`, else `vectors`),
    in one pipelined batch; returns the chunks' vectors as stored (float32)."""
    rng = random.Random(seed)
    chunks, stored = [], {}
    supply = iter(vectors(docs * per_doc, seed) if dense is None else dense)
    for _ in range(docs):
        doc = uuid.uuid4()
        await pool.execute(
            """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path,
                                      active_chunker_version, active_embed_model, active_since)
               VALUES ($1, $2, $3, 1, 'policy.pdf', 'raw', $4, $5, now())""",
            doc,
            user,
            hashlib.sha256(doc.bytes).hexdigest(),
            CHUNKER,
            MODEL,
        )
        for i in range(per_doc):
            content = " ".join(rng.choices(WORDS, k=12))
            cid, vector = uuid.uuid4(), next(supply)
            sha = hashlib.sha256(content.encode()).hexdigest()
            chunks.append((cid, doc, user, doc, CHUNKER, MODEL, i, content, sha, 10, vector))
            stored[cid] = vector
    # executemany, not COPY: Postgres refuses COPY FROM into a table under FORCE RLS.
    await pool.executemany(
        """INSERT INTO document_chunks (chunk_id, document_id, user_id, job_id, chunker_version,
                                        embed_model, ordinal, content, content_sha256,
                                        token_count, embedding)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        chunks,
    )
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
    await seal_now(pool)
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
        segments = [r["segment"] for r in await conn.fetch(SEGMENTS)]
        explain = await conn.fetch(
            "EXPLAIN " + SEARCH, queries[0].tolist(), 10, MODEL, segments, []
        )

    plan = "\n".join(r[0] for r in explain)
    assert re.search(INDEX_SCAN, plan), plan
    for query, got in zip(queries, hits, strict=True):
        exact = sorted(mine, key=lambda cid: -cosine(mine[cid], query))[:10]
        assert [h["chunk_id"] for h in got] == exact
        for h in got:
            assert h["score"] == pytest.approx(cosine(mine[h["chunk_id"]], query), abs=1e-4)


async def _plan(pool: asyncpg.Pool, user: uuid.UUID, query: np.ndarray) -> str:
    async with user_transaction(pool, user) as conn:
        how = await conn.fetchrow(SEARCH_SETTINGS, *settings_args())
        args = (query.tolist(), 10, MODEL, how["indexed"], how["exact"])
        return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + SEARCH, *args))


async def test_a_user_with_many_chunks_is_searched_through_the_index_and_one_with_few_exactly(
    pool: asyncpg.Pool,
) -> None:
    many, few = uuid.uuid4(), uuid.uuid4()
    await add_documents(pool, many, docs=20, per_doc=250, seed=11)  # 5000 chunks
    mine = await add_documents(pool, few, docs=1, per_doc=40, seed=12)
    await seal_now(pool)
    await pool.execute("ANALYZE documents; ANALYZE document_chunks")
    query = vectors(1, seed=13)[0]
    # Left to itself the planner sorted these 5000 chunks too: 35-50 ms where the index takes 3.
    assert re.search(INDEX_SCAN, await _plan(pool, many, query))
    async with user_transaction(pool, many) as conn:
        assert len(await search_chunks(conn, query.tolist(), 10, model=MODEL)) == 10
        assert await conn.fetchval("SHOW enable_sort") == "on"  # for the rest of the transaction
    plan = await _plan(pool, few, query)
    assert "Sort" in plan and "_embedding_hnsw" not in plan, plan
    async with user_transaction(pool, few) as conn:
        hits = await search_chunks(conn, query.tolist(), 10, model=MODEL)
    exact = sorted(mine, key=lambda cid: -cosine(mine[cid], query))[:10]
    assert [h["chunk_id"] for h in hits] == exact


def around(center: np.ndarray, n: int, seed: int) -> np.ndarray:
    points = 4 * center + np.random.default_rng(seed).standard_normal((n, len(center)))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


async def test_a_large_callers_search_sorts_exactly_when_the_index_scan_gives_up(
    pool: asyncpg.Pool,
) -> None:
    crowd_center, my_center = np.random.default_rng(23).standard_normal((2, 1536))
    # Another user's chunks crowd the query's neighbourhood; mine lie elsewhere.
    await add_documents(pool, uuid.uuid4(), 10, 300, seed=24, dense=around(crowd_center, 3000, 25))
    many = uuid.uuid4()
    mine = await add_documents(pool, many, 10, 250, seed=26, dense=around(my_center, 2500, 27))
    await seal_now(pool)
    await pool.execute("ANALYZE documents; ANALYZE document_chunks")
    query = crowd_center / np.linalg.norm(crowd_center)
    # More than the index's one candidate list holds: its scan cannot find them all, whatever
    # its graph (which of my chunks a list of EF_SEARCH holds beside the crowd varies with it).
    k = EF_SEARCH + 100
    async with user_transaction(pool, many) as conn:
        await conn.execute("SET LOCAL hnsw.max_scan_tuples = 1")  # no iterating past ef_search
        hits = await search_chunks(conn, query.tolist(), k, model=MODEL)
    exact = sorted(mine, key=lambda cid: -cosine(mine[cid], query))
    assert len(hits) == k
    assert [h["chunk_id"] for h in hits[:10]] == exact[:10]
