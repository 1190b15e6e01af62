"""Vector commit into an HNSW-indexed table: rows/s and recall@10, per index/insert strategy.

Vectors are clustered (points around 64 centroids, unit length), as real embeddings are, not
uniform noise. Each variant pre-fills its own table with the same rows, builds the index, then
times incremental inserts of new rows and measures recall@10 of the index against exact search.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

DIMS = 1536


@dataclass(frozen=True)
class Variant:
    name: str
    index: str  # CREATE INDEX body after "ON <table>"
    connections: int
    query: str  # ORDER BY expression for $1


VARIANTS = [
    Variant(
        "vector_hnsw_1conn",
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        1,
        "embedding <=> $1",
    ),
    Variant(
        "vector_hnsw_4conn",
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
        4,
        "embedding <=> $1",
    ),
    Variant(
        "vector_hnsw_ef32_4conn",
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 32)",
        4,
        "embedding <=> $1",
    ),
    Variant(
        "vector_hnsw_m8_ef32_4conn",
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 8, ef_construction = 32)",
        4,
        "embedding <=> $1",
    ),
    Variant(
        "halfvec_hnsw_1conn",
        f"USING hnsw ((embedding::halfvec({DIMS})) halfvec_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)",
        1,
        f"embedding::halfvec({DIMS}) <=> $1::halfvec({DIMS})",
    ),
    Variant(
        "halfvec_hnsw_4conn",
        f"USING hnsw ((embedding::halfvec({DIMS})) halfvec_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)",
        4,
        f"embedding::halfvec({DIMS}) <=> $1::halfvec({DIMS})",
    ),
]


def clustered(n: int, seed: int, centroids: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).standard_normal((centroids, DIMS)).astype(np.float32)
    picks = rng.integers(0, centroids, n)
    points = centers[picks] + 1.0 * rng.standard_normal((n, DIMS)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


async def _insert(pool: Any, table: str, vectors: np.ndarray, start_id: int, conns: int) -> float:
    """Insert in transactions of 50 rows from `conns` connections; return rows/s."""
    chunks = [(start_id + i, vectors[i : i + 50]) for i in range(0, len(vectors), 50)]
    queue = list(reversed(chunks))

    async def worker() -> None:
        async with pool.acquire() as conn:
            while queue:
                first, block = queue.pop()
                async with conn.transaction():
                    await conn.executemany(
                        f"INSERT INTO {table} (id, embedding) VALUES ($1, $2)",
                        [(first + j, v) for j, v in enumerate(block)],
                    )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return len(vectors) / (time.perf_counter() - started)


async def _recall(
    pool: Any, table: str, variant: Variant, data: np.ndarray, queries: np.ndarray, k: int = 10
) -> float:
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :k]
    hits = 0
    async with pool.acquire() as conn:
        await conn.execute("SET hnsw.ef_search = 100")
        for qi, q in enumerate(queries):
            rows = await conn.fetch(f"SELECT id FROM {table} ORDER BY {variant.query} LIMIT {k}", q)
            hits += len({r["id"] for r in rows} & set(exact[qi].tolist()))
    return hits / (len(queries) * k)


async def run(pool: Any, prefill: int = 4000, inserts: int = 1200) -> dict[str, Any]:
    base = clustered(prefill, seed=1)
    new = clustered(inserts, seed=2)
    queries = clustered(50, seed=3)
    everything = np.vstack([base, new])
    results: dict[str, Any] = {"prefill_rows": prefill, "inserted_rows": inserts}
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS public.bench_plain")
        await conn.execute(f"CREATE TABLE public.bench_plain (id int, embedding vector({DIMS}))")
    results["unindexed_rows_per_s"] = round(await _insert(pool, "public.bench_plain", new, 0, 1))
    for variant in VARIANTS:
        table = f"public.bench_{variant.name}"
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(
                f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector({DIMS}))"
            )
            await conn.copy_records_to_table(
                table.split(".")[1],
                schema_name="public",
                records=[(i, v) for i, v in enumerate(base)],
            )
            await conn.execute(f"CREATE INDEX ON {table} {variant.index}")
        rate = await _insert(pool, table, new, prefill, variant.connections)
        recall = await _recall(pool, table, variant, everything, queries)
        results[variant.name] = {"rows_per_s": round(rate, 1), "recall_at_10": round(recall, 3)}
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE {table}")
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE public.bench_plain")
    baseline = results["vector_hnsw_1conn"]["rows_per_s"]
    for variant in VARIANTS[1:]:
        results[variant.name]["vs_baseline"] = round(
            results[variant.name]["rows_per_s"] / baseline, 2
        )
    return results
