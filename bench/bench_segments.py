"""Segmented vector storage (issue 20 item 3; migrations 0022-0024, accessa/segments.py)
against today's path, as two sides of one run on the same server.

- cost: Postgres CPU seconds (the whole server) per 1000 chunks written the pipeline's way
  (bench_pgcost._write_document: buffers, check, move, switch) into a document_chunks that
  already holds `prefill` chunks. `incremental` is today's path: one HNSW index over every
  segment, the growing one included, so each insert pays its graph insert. `segments` writes
  into the growing segment (no HNSW) and then seals it: the bulk build of exactly the chunks
  written is counted, so its figure is the amortised cost. Rounds interleave the sides.
- search: `rows` clustered chunks written a segment (ACCESSA_SEGMENT_SEAL_ROWS) at a time and
  sealed as the compactor would, a quarter-segment left growing (`segments`), against the same
  rows in one sealed segment (`one_index`: today's layout, one HNSW index over the table); for
  a user with ~24 % of them and one with ~0.76 %: recall@10 of accessa.search against exact
  search over the user's chunks, and p50/p95 ms.

`python -m bench.run --only segments [--segments-rows N]` (100,000 by default, the issue's scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from typing import Any

import asyncpg

import accessa.search
from accessa.config import Settings
from accessa.db import user_transaction
from accessa.segments import compact_once, connection_settings
from bench.bench_hnsw import clustered
from bench.bench_pgcost import (
    MODEL,
    VECTOR_INDEX,
    _cost_round,
    _p50_p95,
    _prepare_documents,
    _server_cpu,
    _top10,
    database,
    fill_chunks,
)

SIDES = ("incremental", "segments")


async def _seal(conn: asyncpg.Connection, settings: Settings) -> float:
    """Seal the growing segment now (the compactor's pass, with its build memory)."""
    memory = connection_settings(settings)["server_settings"]["maintenance_work_mem"]
    await conn.execute(f"SET maintenance_work_mem = '{memory}'")
    done = await compact_once(conn, seal_rows=1, seal_age_s=3600)
    return sum(done.sealed.values())


async def cost(
    settings: Settings, postmaster: int | None, prefill: int, rounds: int = 3, docs: int = 40
) -> dict[str, Any]:
    """Per 1000 chunks, each side: median over `rounds` interleaved rounds of `docs` documents
    (writes only), and the amortised total (writes of every round + the seal of them all)."""
    written: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    async with contextlib.AsyncExitStack() as stack:
        pools: dict[str, asyncpg.Pool] = {}
        for side in SIDES:
            pool = await stack.enter_async_context(database(settings, f"bench_segments_{side}"))
            async with pool.acquire() as conn:
                await fill_chunks(
                    conn, clustered(prefill, seed=11), [uuid.uuid4() for _ in range(50)]
                )
                if side == "incremental":
                    await conn.execute("SET maintenance_work_mem = '2GB'")
                    await conn.execute(
                        f"CREATE INDEX bench_incremental ON document_chunks {VECTOR_INDEX}"
                    )
                else:
                    await _seal(conn, settings)  # the prefill is a sealed segment
            pools[side] = pool
        for r in range(rounds):
            for side in SIDES:
                batch = await _prepare_documents(pools[side], docs, seed=100 + r)
                written[side].append(await _cost_round(pools[side], batch, False, postmaster))
        async with pools["segments"].acquire() as conn:
            await conn.execute("CHECKPOINT")
            before, started = _server_cpu(postmaster), time.perf_counter()
            build_s = await _seal(conn, settings)
            seal_cpu, seal_wall = _server_cpu(postmaster) - before, time.perf_counter() - started
    result: dict[str, Any] = {"prefill_chunks": prefill, "rounds": rounds, "docs_per_round": docs}
    for side, runs in written.items():
        chunks = sum(r["chunks"] for r in runs)
        cpu = sum(r["server_cpu_s"] * r["chunks"] / 1000 for r in runs)
        extra = seal_cpu if side == "segments" else 0.0
        result[side] = {
            "chunks": chunks,
            "writes_server_cpu_s": round(statistics.median(r["server_cpu_s"] for r in runs), 3),
            "server_cpu_s_rounds": [round(r["server_cpu_s"], 3) for r in runs],
            "amortised_server_cpu_s": round((cpu + extra) * 1000 / chunks, 3),
            "chunks_per_s": round(statistics.median(r["chunks_per_s"] for r in runs), 1),
        }
    result["segments"]["seal"] = {
        "server_cpu_s": round(seal_cpu, 2),
        "wall_s": round(seal_wall, 2),
        "build_s": round(build_s, 2),
        "rows": result["segments"]["chunks"],
    }
    result["segments_over_incremental"] = round(
        result["segments"]["amortised_server_cpu_s"]
        / result["incremental"]["amortised_server_cpu_s"],
        3,
    )
    result["unit"] = "Postgres server CPU seconds per 1000 chunks"
    result["goal"] = "segments_over_incremental <= 0.4"
    return result


async def search(settings: Settings, rows: int, seal_rows: int) -> dict[str, Any]:
    """Both sides on the same data: `segments` and `one_index` (module docstring)."""
    tail = min(seal_rows // 4, rows // 10)
    result: dict[str, Any] = {
        "segments": await _search_side(settings, rows, seal_rows, tail),
        "one_index": await _search_side(settings, rows, rows, 0),
    }
    for label in ("user_25pct", "user_1pct"):
        result[f"{label}_p95_segments_over_one_index"] = round(
            result["segments"][label]["p95_ms"] / result["one_index"][label]["p95_ms"], 3
        )
    result["goal"] = "p95 <= 50 ms (user_25pct) and <= 10 ms (user_1pct), recall@10 >= 0.95"
    return result


async def _search_side(
    settings: Settings, rows: int, seal_rows: int, tail: int, users: int = 100, queries: int = 30
) -> dict[str, Any]:
    """Recall@10 against exact search and p50/p95 ms of accessa.search (vector mode) over
    `rows` chunks sealed `seal_rows` at a time, the last `tail` left growing, for a large and
    a small user."""
    async with database(settings, "bench_segments_search", size=2) as pool:
        people, heavy = [uuid.uuid4() for _ in range(users)], uuid.uuid4()
        owners = people + [heavy] * (users // 3)  # heavy: ~25 % of the documents
        vectors = clustered(rows, seed=31)
        owned: dict[uuid.UUID, list[int]] = {}
        ids: list[uuid.UUID] = []
        builds: list[float] = []
        async with pool.acquire() as conn:
            starts = [*range(0, rows - tail, seal_rows), rows - tail]
            for start, end in zip(starts, [*starts[1:], rows], strict=True):
                if start == end:
                    continue
                mine, part_ids = await fill_chunks(conn, vectors[start:end], owners, seed=start)
                for user, where in mine.items():
                    owned.setdefault(user, []).extend(start + i for i in where)
                ids += part_ids
                if end <= rows - tail:  # the last `tail` rows stay growing
                    builds.append(await _seal(conn, settings))
            await conn.execute("ANALYZE upload_pipeline.document_chunks")
            segments = await conn.fetch("SELECT * FROM upload_pipeline.segment_stats()")
        asks = clustered(queries, seed=33)
        result: dict[str, Any] = {
            "rows": rows,
            "seal_rows": seal_rows,
            "segments": {str(s["segment"]): [s["state"], s["rows"]] for s in segments},
            "seal_build_s": [round(b, 1) for b in builds],
            "queries": queries,
            "k": 10,
        }
        for label, user in (("user_25pct", heavy), ("user_1pct", people[0])):
            mine_rows = vectors[owned[user]]
            found, latency = 0, []
            for vector in asks:
                truth = _top10(mine_rows, ids, owned[user], vector)
                async with user_transaction(pool, user) as conn:
                    started = time.perf_counter()
                    hits = await accessa.search.search(
                        conn, "", {MODEL: vector.tolist()}, 10, "vector"
                    )
                    latency.append(1000 * (time.perf_counter() - started))
                found += len({h["chunk_id"] for h in hits} & truth)
            result[label] = {
                "user_rows": len(mine_rows),
                "recall_at_10": round(found / (10 * queries), 3),
                **_p50_p95(latency),
            }
    return result


async def run(settings: Settings, rows: int = 100_000, prefill: int = 20_000) -> dict[str, Any]:
    """Every measurement of this module, for bench/run.py (`--only segments`)."""
    from accessa.devstack.postgres import LocalPostgres

    postmaster = LocalPostgres(settings).pid() if settings.embedded_postgres else None
    started = time.perf_counter()
    result = {
        "segments_cost_per_1000_chunks": await cost(settings, postmaster, prefill),
        "segments_search": await search(settings, rows, settings.segment_seal_rows),
    }
    result["segments_run"] = {
        "wall_s": round(time.perf_counter() - started),
        "command": f"python -m bench.run --only segments --segments-rows {rows}",
    }
    return result


if __name__ == "__main__":
    from accessa.config import get_settings

    print(json.dumps(asyncio.run(run(get_settings(), rows=20_000, prefill=5_000)), indent=2))
