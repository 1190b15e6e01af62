"""Postgres cost per chunk, vector recall and search latency: the vector(1536) cosine HNSW index
search uses (migrations 0001/0004) against a binary-quantized HNSW index with an exact re-rank
of oversampled candidates (the candidate of issue 14, not adopted: it misses recall at 100k
rows and on the mock's vectors), both measured in the same run.

- cost: Postgres CPU seconds (the whole server: backends, WAL writer, checkpointer,
  autovacuum) and WAL bytes per 1000 chunks written the pipeline's way (the chunker's buffer
  insert, the embedder's vector buffer and cache inserts, the finalizer's check, move into
  document_chunks, buffer deletes and version switch) into a document_chunks already holding
  `prefill` chunks; one database per index, rounds interleaved, a checkpoint before each.
- recall: recall@10 against exact search and the incremental insert rate per index, on
  clustered and on uniform random unit vectors at 10k rows and at `rows` (bulk COPY, then
  CREATE INDEX, whose time is reported apart), and on the mock's vectors at 10k.
- search: p50/p95 of accessa.search (vector and hybrid, RLS-scoped with iterative scans) at
  `rows` chunks for a user among many and for a large one, both indexes present, the vector
  and the binary query alternating; and the user's recall@10 against exact search.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import numpy as np
import psutil

import accessa.search
from accessa.config import Settings
from accessa.db import connect, create_pool, user_transaction, with_database
from accessa.migrate import migrate
from accessa.segments import compact_once
from bench.bench_hnsw import clustered
from consumers.chunker.app import buffer_chunks
from consumers.chunker.chunking import chunk_markdown
from consumers.finalizer.app import CHECK, DROP_CHUNKS, DROP_VECTORS, LOCK_DOCUMENTS, MOVE, SWITCH
from schemas.events import DocumentParsed

DIMS = 1536
MODEL, CHUNKER = "text-embedding-3-small", "markdown-simple@2"
# The index of migrations 0001/0004, and the binary-quantized one (ef_construction 64: at 32 the
# tie-heavy Hamming graph missed 15 % of one clustered set's top 10 that 64 found).
VECTOR_INDEX = "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 32)"
BINARY_INDEX = (
    f"USING hnsw ((binary_quantize(embedding)::bit({DIMS})) bit_hamming_ops) "
    "WITH (m = 16, ef_construction = 64)"
)
HALFVEC_INDEX = (
    f"USING hnsw ((embedding::halfvec({DIMS})) halfvec_cosine_ops) "
    "WITH (m = 16, ef_construction = 32)"
)

# accessa/search.py's vector query on the binary index: `$4` candidates by Hamming distance,
# re-ranked by exact cosine distance.
BINARY_SEARCH = """
SELECT chunk_id, document_id, filename, ordinal, content, metadata, chunker_version,
       embed_model, 1 - distance AS score
FROM (
  SELECT c.chunk_id, c.document_id, d.filename, c.ordinal, c.content, c.metadata,
         c.chunker_version, c.embed_model, c.embedding <=> $1 AS distance
  FROM document_chunks c JOIN documents d USING (document_id)
  WHERE c.chunker_version = d.active_chunker_version AND c.embed_model = d.active_embed_model
    AND ($3::text IS NULL OR c.embed_model = $3)
  ORDER BY binary_quantize(c.embedding)::bit(1536) <~> binary_quantize($1::vector)::bit(1536)
  LIMIT $4
) candidates
ORDER BY distance, chunk_id
LIMIT $2
"""
RERANK = 200  # binary candidates re-ranked per query (recall@10 on clustered 10k: 40 ~0.7)

VECTOR_BUFFER = """INSERT INTO document_vector_buffer (chunk_id, embed_model, job_id, document_id,
                                                       embedding)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"""
CACHE = """INSERT INTO embedding_cache (content_sha256, embed_model, dimensions, embedding)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"""


def uniform(n: int, seed: int) -> np.ndarray:
    """`n` random unit vectors (no structure: the hardest case for any ANN index)."""
    points = np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def mock(n: int, seed: int) -> np.ndarray:
    """The mock OpenAI server's vectors of `n` generated texts: their signal sits in a few dozen
    large coordinates over small noise on the rest (one bit per dimension loses it)."""
    from mocks.openai_server import mock_vector

    rng = np.random.default_rng(seed)
    return np.stack([mock_vector(text(rng, 12), MODEL) for _ in range(n)]).astype(np.float32)


def words(n: int, seed: int) -> list[str]:
    """A vocabulary of `n` pronounceable made-up words."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    return ["".join(rng.choice(syllables, rng.integers(2, 4))) for _ in range(n)]


VOCABULARY = words(3000, seed=5)


def text(rng: np.random.Generator, n: int) -> str:
    """`n` words drawn Zipf-like from the vocabulary, as prose draws its words."""
    ranks = np.minimum(rng.zipf(1.3, n), len(VOCABULARY)) - 1
    return " ".join(VOCABULARY[r] for r in ranks)


# --- Postgres CPU and WAL ----------------------------------------------------------------------


def _server_cpu(pid: int | None) -> float:
    """CPU seconds of the postmaster and every backend (reaped children included)."""
    if pid is None:
        return 0.0
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    live = 0.0
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            live += sum(child.cpu_times()[:2])
    return t.user + t.system + t.children_user + t.children_system + live


def _backend_cpu(pids: Sequence[int]) -> float:
    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in pids)


async def _wal(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


# --- databases ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(settings: Settings, name: str, size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """A fresh database `name` on the same server, migrated; dropped afterwards."""
    admin = await connect(settings.dsn, database="postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
        scoped = settings.model_copy(update={"database_url": with_database(settings.dsn, name)})
        await migrate(scoped)
        pool = await create_pool(scoped, min_size=size, max_size=size, command_timeout=None)
        try:
            yield pool
        finally:
            await pool.close()
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def use_index(conn: asyncpg.Connection, body: str | None) -> float:
    """Replace document_chunks' vector index by `body` (None: none); return the build's s."""
    await conn.execute("DROP INDEX IF EXISTS document_chunks_embedding_bq_hnsw")
    await conn.execute("DROP INDEX IF EXISTS document_chunks_embedding_hnsw")
    if body is None:
        return 0.0
    await conn.execute("SET maintenance_work_mem = '2GB'")
    started = time.perf_counter()
    await conn.execute(f"CREATE INDEX document_chunks_embedding_hnsw ON document_chunks {body}")
    return time.perf_counter() - started


async def fill_chunks(
    conn: asyncpg.Connection,
    vectors: np.ndarray,
    users: list[uuid.UUID],
    per_doc: int = 20,
    seed: int = 0,
) -> tuple[dict[uuid.UUID, list[int]], list[uuid.UUID]]:
    """Completed documents of `users` (round robin) holding `vectors` as active chunks of
    ~80 words, by COPY; returns each user's row numbers in `vectors` and each row's chunk id."""
    rng = np.random.default_rng(seed)
    docs, chunks = [], []
    owned: dict[uuid.UUID, list[int]] = {u: [] for u in users}
    for start in range(0, len(vectors), per_doc):
        user, doc = users[(start // per_doc) % len(users)], uuid.uuid4()
        docs.append(
            (
                doc,
                user,
                hashlib.sha256(doc.bytes).hexdigest(),
                1,
                "policy.pdf",
                "raw",
                CHUNKER,
                MODEL,
            )
        )
        for ordinal, i in enumerate(range(start, min(start + per_doc, len(vectors)))):
            content = text(rng, 80)
            sha = hashlib.sha256(content.encode()).hexdigest()
            chunks.append(
                (
                    uuid.uuid4(),
                    doc,
                    user,
                    doc,
                    CHUNKER,
                    MODEL,
                    ordinal,
                    content,
                    sha,
                    100,
                    vectors[i],
                )
            )
            owned[user].append(i)
    await conn.copy_records_to_table(
        "documents",
        records=docs,
        schema_name="upload_pipeline",
        columns=[
            "document_id",
            "user_id",
            "sha256",
            "size",
            "filename",
            "raw_path",
            "active_chunker_version",
            "active_embed_model",
        ],
    )
    await conn.copy_records_to_table(
        "document_chunks",
        records=chunks,
        schema_name="upload_pipeline",
        columns=[
            "chunk_id",
            "document_id",
            "user_id",
            "job_id",
            "chunker_version",
            "embed_model",
            "ordinal",
            "content",
            "content_sha256",
            "token_count",
            "embedding",
        ],
    )
    await conn.execute("VACUUM ANALYZE upload_pipeline.document_chunks")
    await conn.execute("VACUUM ANALYZE upload_pipeline.documents")
    return owned, [c[0] for c in chunks]


# --- cost: the pipeline's writes per 1000 chunks -----------------------------------------------


def _markdown(rng: np.random.Generator, sections: int) -> str:
    return "\n\n".join(f"## Section {i}\n\n{text(rng, 330)}" for i in range(sections))


async def _prepare_documents(pool: asyncpg.Pool, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` documents with their upload jobs, chunks and vectors, ready to be written."""
    rng = np.random.default_rng(seed)
    prepared: list[dict[str, Any]] = []
    for i in range(n):
        user, doc, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        chunks = chunk_markdown(_markdown(rng, 20), document_id=doc, version=CHUNKER)
        prepared.append(
            {
                "user": user,
                "doc": doc,
                "job": job,
                "chunks": chunks,
                "vectors": clustered(len(chunks), seed=seed * 1000 + i),
            }
        )
    await pool.executemany(
        "INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path) "
        "VALUES ($1, $2, $3, 1, 'bench.pdf', 'raw')",
        [(d["doc"], d["user"], hashlib.sha256(d["doc"].bytes).hexdigest()) for d in prepared],
    )
    await pool.executemany(
        "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id) "
        "VALUES ($1, $2, $3, 'bench')",
        [(d["job"], d["user"], d["doc"]) for d in prepared],
    )
    return prepared


async def _write_document(conn: asyncpg.Connection, d: dict[str, Any], copy: bool) -> None:
    """One document's chunk-proportional statements, as chunker, embedder and finalizer
    issue them (`copy`: the vector buffer by binary COPY instead of an INSERT per row)."""
    event = DocumentParsed(
        event_id=uuid.uuid4(),
        job_id=d["job"],
        document_id=d["doc"],
        user_id=d["user"],
        correlation_id="bench",
        parsed_path="p",
        parsed_sha256="0" * 64,
        pages=1,
        parser="bench",
    )
    chunks, vectors = d["chunks"], d["vectors"]
    async with conn.transaction():
        await buffer_chunks(conn, event, CHUNKER, chunks)
    async with conn.transaction():
        rows = [(c.chunk_id, MODEL, d["job"], d["doc"], v) for c, v in zip(chunks, vectors)]  # noqa: B905
        if copy:
            await conn.copy_records_to_table(
                "document_vector_buffer",
                records=rows,
                schema_name="upload_pipeline",
                columns=["chunk_id", "embed_model", "job_id", "document_id", "embedding"],
            )
        else:
            await conn.executemany(VECTOR_BUFFER, rows)
        cached = [(c.content_sha256, MODEL, DIMS, v) for c, v in zip(chunks, vectors)]  # noqa: B905
        await conn.executemany(CACHE, cached)
    async with conn.transaction():
        await conn.fetchrow(CHECK, d["job"], CHUNKER, MODEL, DIMS)
        await LOCK_DOCUMENTS.execute(conn, [(d["doc"],)])
        await MOVE.execute(conn, [(d["job"], CHUNKER, MODEL)])
        await DROP_VECTORS.execute(conn, [(d["job"],)])
        await DROP_CHUNKS.execute(conn, [(d["job"],)])
        await SWITCH.execute(conn, [(d["doc"], CHUNKER, MODEL)])


async def _cost_round(
    pool: asyncpg.Pool, docs: list[dict[str, Any]], copy: bool, postmaster: int | None
) -> dict[str, float]:
    """Write `docs` from the pool's connections in parallel (as finalizers commit documents
    from parallel connections); Postgres CPU and WAL it took."""
    async with pool.acquire() as conn:
        await conn.execute("CHECKPOINT")
        wal = await _wal(conn)
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        pids = [c.get_server_pid() for c in conns]
        queue = list(reversed(docs))
        server, backend, started = _server_cpu(postmaster), _backend_cpu(pids), time.perf_counter()

        async def worker(conn: asyncpg.Connection) -> None:
            while queue:
                await _write_document(conn, queue.pop(), copy)

        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - started
        backend = _backend_cpu(pids) - backend
        server = _server_cpu(postmaster) - server
        wal = await _wal(conns[0]) - wal
    finally:
        for c in conns:
            await pool.release(c)
    n = sum(len(d["chunks"]) for d in docs)
    return {
        "chunks": n,
        "server_cpu_s": server * 1000 / n,
        "backend_cpu_s": backend * 1000 / n,
        "wal_mb": wal * 1000 / n / 2**20,
        "chunks_per_s": n / elapsed,
    }


async def cost(
    settings: Settings, postmaster: int | None, prefill: int, rounds: int = 3, docs: int = 30
) -> dict[str, Any]:
    """Per 1000 chunks: each variant's median over `rounds` interleaved rounds of `docs`
    documents; binary ÷ vector ratios of the medians."""
    variants = {
        "vector_index": (VECTOR_INDEX, False),
        "binary_index": (BINARY_INDEX, False),
        "binary_index_copy": (BINARY_INDEX, True),
        "no_vector_index": (None, False),
    }
    measured: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    builds: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        pools = {}
        for name, (index, _) in variants.items():
            pool = await stack.enter_async_context(database(settings, f"bench_pgcost_{name}"))
            async with pool.acquire() as conn:
                await fill_chunks(
                    conn, clustered(prefill, seed=11), [uuid.uuid4() for _ in range(50)]
                )
                builds[name] = await use_index(conn, index)
            pools[name] = pool
        for r in range(rounds):
            for name, (_, copy) in variants.items():
                batch = await _prepare_documents(pools[name], docs, seed=100 + r)
                measured[name].append(await _cost_round(pools[name], batch, copy, postmaster))
    result: dict[str, Any] = {"prefill_chunks": prefill, "rounds": rounds}
    for name, runs in measured.items():
        result[name] = {
            "chunks_per_round": runs[0]["chunks"],
            "index_build_s": round(builds[name], 1),
            **{
                key: round(statistics.median(r[key] for r in runs), 3)
                for key in ("server_cpu_s", "backend_cpu_s", "wal_mb", "chunks_per_s")
            },
            "server_cpu_s_rounds": [round(r["server_cpu_s"], 3) for r in runs],
        }
    before, after = result["vector_index"], result["binary_index"]
    result["binary_over_vector"] = {
        key: round(after[key] / before[key], 3)
        for key in ("server_cpu_s", "backend_cpu_s", "wal_mb", "chunks_per_s")
    }
    result["binary_copy_over_vector"] = {
        key: round(result["binary_index_copy"][key] / before[key], 3)
        for key in ("server_cpu_s", "backend_cpu_s", "wal_mb")
    }
    # How much of today's cost the vector index is (the rest is buffers, move and text index).
    result["vector_index_share"] = round(
        1 - result["no_vector_index"]["server_cpu_s"] / before["server_cpu_s"], 3
    )
    result["unit"] = "per 1000 chunks (CPU seconds, WAL MiB)"
    result["goal"] = "server CPU <= 0.5x today's (vector_index), recall@10 >= 0.95"
    return result


# --- recall and insert rate --------------------------------------------------------------------

RECALL_INDEXES: dict[str, tuple[str, str]] = {
    # name: (index body, query: $1 the query vector, $2 the candidates to re-rank)
    "vector": (
        VECTOR_INDEX,
        "SELECT id FROM public.bench_recall ORDER BY embedding <=> $1 LIMIT 10",
    ),
    "halfvec": (
        HALFVEC_INDEX,
        f"SELECT id FROM public.bench_recall ORDER BY "
        f"embedding::halfvec({DIMS}) <=> $1::vector::halfvec({DIMS}) LIMIT 10",
    ),
    "binary_rerank": (
        BINARY_INDEX,
        f"""SELECT id FROM (
        SELECT id, embedding <=> $1 AS distance FROM public.bench_recall
        ORDER BY binary_quantize(embedding)::bit({DIMS})
                 <~> binary_quantize($1::vector)::bit({DIMS})
        LIMIT $2) c ORDER BY distance LIMIT 10""",
    ),
}


async def _recall_one(
    conn: asyncpg.Connection, name: str, data: np.ndarray, queries: np.ndarray, candidates: int
) -> dict[str, Any]:
    body, query = RECALL_INDEXES[name]
    await conn.execute("SET maintenance_work_mem = '2GB'")
    started = time.perf_counter()
    await conn.execute(f"CREATE INDEX bench_recall_index ON public.bench_recall {body}")
    build = time.perf_counter() - started
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    args: tuple[Any, ...] = (candidates,) if "$2" in query else ()
    await conn.execute(f"SET hnsw.ef_search = {max(100, candidates) if args else 100}")
    hits, latencies = 0, []
    for q, truth in zip(queries, exact, strict=True):
        started = time.perf_counter()
        rows = await conn.fetch(query, q, *args)
        latencies.append(time.perf_counter() - started)
        hits += len({r["id"] for r in rows} & set(truth.tolist()))
    # Incremental inserts into the built index: 50-row transactions from one connection.
    new = clustered(300, seed=77)
    pid = conn.get_server_pid()
    cpu, started = _backend_cpu([pid]), time.perf_counter()
    for i in range(0, len(new), 50):
        block = [(-1 - i - j, v) for j, v in enumerate(new[i : i + 50])]
        async with conn.transaction():
            await conn.executemany("INSERT INTO public.bench_recall VALUES ($1, $2)", block)
    elapsed, cpu = time.perf_counter() - started, _backend_cpu([pid]) - cpu
    await conn.execute("DELETE FROM public.bench_recall WHERE id < 0")
    await conn.execute("DROP INDEX public.bench_recall_index")
    await conn.execute("VACUUM public.bench_recall")
    return {
        "recall_at_10": round(hits / (10 * len(queries)), 3),
        "build_s": round(build, 1),
        "insert_rows_per_s": round(len(new) / elapsed),
        "insert_cpu_s_per_1000": round(cpu * 1000 / len(new), 2),
        "query_p50_ms": round(1000 * statistics.median(latencies), 2),
    }


async def recall(pool: asyncpg.Pool, sizes: Sequence[int], candidates: int) -> dict[str, Any]:
    """Per distribution and size: recall@10, build time, insert rate of each index."""
    result: dict[str, Any] = {"queries": 50, "candidates_reranked": candidates}
    distributions: dict[str, Callable[[int, int], np.ndarray]] = {
        "clustered": clustered,
        "uniform": uniform,
        "mock": mock,
    }
    async with pool.acquire() as conn:
        for dist, make in distributions.items():
            for size in sizes if dist != "mock" else sizes[:1]:
                data, queries = make(size, 21), make(50, 23)
                await conn.execute("DROP TABLE IF EXISTS public.bench_recall")
                await conn.execute(
                    "CREATE TABLE public.bench_recall "
                    f"(id int PRIMARY KEY, embedding vector({DIMS}))"
                )
                await conn.copy_records_to_table(
                    "bench_recall", schema_name="public", records=list(enumerate(data))
                )
                await conn.execute("VACUUM ANALYZE public.bench_recall")
                # halfvec (slower to insert than vector here: no F16C) once, for reference.
                small = dist == "clustered" and size == min(sizes)
                names = [n for n in RECALL_INDEXES if n != "halfvec" or small]
                result[f"{dist}_{size}"] = {
                    n: await _recall_one(conn, n, data, queries, candidates) for n in names
                }
        await conn.execute("DROP TABLE IF EXISTS public.bench_recall")
    return result


# --- search latency for one user among many ----------------------------------------------------


async def _binary_search_chunks(
    conn: asyncpg.Connection, vector: Sequence[float], k: int, *, model: str | None = None
) -> list[dict[str, Any]]:
    """accessa.search.search_chunks on the binary index, re-ranking max(RERANK, 4k)."""
    candidates = max(RERANK, 4 * k)
    await conn.execute(f"SET LOCAL hnsw.ef_search = {min(candidates, 1000)}")
    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    rows = await conn.fetch(BINARY_SEARCH, list(vector), k, model, candidates)
    return [accessa.search._hit(r, round(float(r["score"]), 4)) for r in rows]


@contextlib.contextmanager
def _searching_binary(binary: bool) -> Any:
    """accessa.search with the binary index's query while `binary`."""
    current = accessa.search.search_chunks
    if binary:
        accessa.search.search_chunks = _binary_search_chunks
    try:
        yield
    finally:
        accessa.search.search_chunks = current


def _p50_p95(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
    }


def _top10(rows: np.ndarray, ids: list[uuid.UUID], where: list[int], query: np.ndarray) -> set:
    """Exact search's 10 nearest among `rows` (whose row numbers in the table are `where`)."""
    return {ids[where[i]] for i in np.argsort(-(rows @ query))[:10]}


async def search_latency(settings: Settings, rows: int, users: int, queries: int = 30) -> dict:
    """p50/p95 ms of search (k 10) at `rows` chunks for one user among `users` (1 % of the
    chunks; vector and hybrid) and for one holding a quarter of them (vector), vector and binary
    query alternating on the same data with both indexes built; each one's recall@10 against
    exact search over that user's chunks. (For the small user the planner sorts the user's rows
    rather than scanning an index, on either side; the large one goes through the index.)"""
    async with database(settings, "bench_pgcost_search", size=2) as pool:
        people = [uuid.uuid4() for _ in range(users)]
        heavy = uuid.uuid4()
        vectors = clustered(rows, seed=31)
        async with pool.acquire() as conn:
            owners = people + [heavy] * (users // 3)
            owned, ids = await fill_chunks(conn, vectors, owners, seed=3)
            await conn.execute("SET maintenance_work_mem = '2GB'")
            # The rows' segment sealed (migration 0022): its HNSW index is the vector index, and
            # search reads it (a growing segment is searched exactly).
            started = time.perf_counter()
            await compact_once(conn, seal_rows=1, seal_age_s=3600)
            builds = {"vector": round(time.perf_counter() - started, 1)}
            for name, body in (("binary", BINARY_INDEX),):
                started = time.perf_counter()
                await conn.execute(f"CREATE INDEX bench_{name} ON document_chunks {body}")
                builds[name] = round(time.perf_counter() - started, 1)
        rng = np.random.default_rng(9)
        asks = [(text(rng, 5), q) for q in clustered(queries, seed=33)]
        result: dict[str, Any] = {
            "rows": rows,
            "users": users + 1,
            "queries": queries,
            "k": 10,
            "index_build_s": builds,
        }
        # Hybrid only for the small user: its BM25 half reads the caller's whole scope (the
        # same query on both sides), seconds per query for a quarter of 100k chunks.
        cases: tuple[tuple[str, uuid.UUID, tuple[accessa.search.Mode, ...]], ...] = (
            ("user_1pct", people[0], ("vector", "hybrid")),
            ("user_25pct", heavy, ("vector",)),
        )
        for label, user, modes in cases:
            mine = vectors[owned[user]]
            latency: dict[str, list[float]] = {}
            found = {"vector": 0, "binary": 0}
            for words_, vector in asks:
                truth = _top10(mine, ids, owned[user], vector)
                for side in ("vector", "binary"):
                    for mode in modes:
                        with _searching_binary(side == "binary"):
                            async with user_transaction(pool, user) as conn:
                                started = time.perf_counter()
                                hits = await accessa.search.search(
                                    conn, words_, {MODEL: vector.tolist()}, 10, mode
                                )
                                latency.setdefault(f"{side}_{mode}", []).append(
                                    time.perf_counter() - started
                                )
                        if mode == "vector":
                            found[side] += len({h["chunk_id"] for h in hits} & truth)
            one: dict[str, Any] = {"user_rows": len(mine)}
            for side, n in found.items():
                one[f"{side}_index"] = {"recall_at_10": round(n / (10 * queries), 3)}
            for key, values in latency.items():
                side, mode_name = key.split("_")
                one[f"{side}_index"][f"{mode_name}_mode"] = _p50_p95([1000 * v for v in values])
            result[label] = one
        # The large user's vector search through the index at other candidate-list lengths.
        heavy_rows = vectors[owned[heavy]]
        sweep: dict[str, dict[str, float]] = {}
        default = accessa.search.EF_SEARCH
        try:
            for ef in (100, 200, 400, 800):
                accessa.search.EF_SEARCH = ef
                times, found_ = [], 0
                for _, vector in asks:
                    truth = _top10(heavy_rows, ids, owned[heavy], vector)
                    async with user_transaction(pool, heavy) as conn:
                        started = time.perf_counter()
                        hits = await accessa.search.search(
                            conn, "", {MODEL: vector.tolist()}, 10, "vector"
                        )
                        times.append(1000 * (time.perf_counter() - started))
                    found_ += len({h["chunk_id"] for h in hits} & truth)
                sweep[str(ef)] = {
                    "recall_at_10": round(found_ / (10 * queries), 3),
                    **_p50_p95(times),
                }
        finally:
            accessa.search.EF_SEARCH = default
        result["user_25pct"]["ef_search_sweep"] = sweep
    return result


async def run(settings: Settings, rows: int = 20_000, prefill: int = 5_000) -> dict[str, Any]:
    """Every measurement of this module, for bench/run.py (`--only pgcost`)."""
    from accessa.devstack.postgres import LocalPostgres

    postmaster = LocalPostgres(settings).pid() if settings.embedded_postgres else None
    started = time.perf_counter()
    cost_result = await cost(settings, postmaster, prefill)
    async with database(settings, "bench_pgcost_recall", size=1) as pool:
        recall_result = await recall(pool, sorted({10_000, rows}), RERANK)
    latency = await search_latency(settings, rows, users=100)
    return {
        "postgres_cost_per_1000_chunks": cost_result,
        "vector_recall": recall_result,
        "vector_search_latency": latency,
        "pgcost_run": {
            "wall_s": round(time.perf_counter() - started),
            "command": f"python -m bench.run --only pgcost --pgcost-rows {rows}",
        },
    }


if __name__ == "__main__":
    from accessa.config import get_settings

    print(json.dumps(asyncio.run(run(get_settings(), rows=10_000, prefill=2_000)), indent=2))
