"""Embedder scaling: docs/s with 1, 2 and 4 embedder replicas, mock OpenAI at 200 ms a request.

Only the embedder is measured. For each replica count, on fresh topics (8 partitions) and a
fresh consumer group: N documents are written as the chunker leaves them (job `chunks_stored`,
chunks in `document_chunk_buffer`, written by the chunker's own `buffer_chunks`), the replicas
are started with the same bounded concurrency each (`ACCESSA_STAGE_CONCURRENCY`,
`ACCESSA_EMBED_MAX_INFLIGHT`), and once their group is stable the N `chunked` events are
produced, the same number on every partition; the clock stops when the last job is
`embeddings_stored`. Every run embeds texts no run embedded before (no cache hits), and the
mock's request count proves each document was paid for once.

One replica is bound by latency (its in-flight documents, 200 ms each), so more replicas should
scale nearly linearly until the CPU or the partition count runs out: goal 4 ÷ 1 ≥ 3.5.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from accessa import kafka_clients
from accessa.config import Settings
from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from accessa.topic_scan import group_members
from bench.poll import until
from consumers.chunker.app import buffer_chunks
from consumers.chunker.chunking import chunk_markdown
from schemas.events import ChunksCreated, DocumentParsed
from schemas.headers import Headers

PARTITIONS = 8
LATENCY_MS = 200
CONCURRENCY = 1  # documents (and embedding requests) in flight per replica
SECTIONS = 8  # one chunk each: 8 chunks, one embeddings request per document


def _markdown(nonce: str) -> str:
    """A document whose every chunk is text no other run or document has."""
    return "\n\n".join(
        f"## Section {s}\n\n"
        + " ".join(
            f"Clause {s}.{i} ({nonce}): the insurer pays covered losses up to the limit."
            for i in range(12)
        )
        for s in range(SECTIONS)
    )


async def _prepare(pool: asyncpg.Pool, settings: Settings, n: int) -> list[ChunksCreated]:
    """N documents in the state the chunker leaves them; their `chunked` events."""
    version = settings.chunker_version
    events = []
    for _ in range(n):
        user, doc, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        chunks = chunk_markdown(_markdown(uuid.uuid4().hex), document_id=doc)
        parsed = DocumentParsed(
            event_id=DocumentParsed.make_id(job),
            job_id=job,
            document_id=doc,
            user_id=user,
            correlation_id=f"bench-{job}",
            parsed_path="p",
            parsed_sha256="0" * 64,
            pages=1,
            parser="bench",
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path)"
                " VALUES ($1, $2, $3, 1, 'scaling.pdf', 'raw/scaling.pdf')",
                doc,
                user,
                uuid.uuid4().hex * 2,
            )
            await conn.execute(
                "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id, status,"
                " state, stage, chunks_version, chunk_count)"
                " VALUES ($1, $2, $3, $4, 'chunks_stored', 'working', 'embedder', $5, $6)",
                job,
                user,
                doc,
                parsed.correlation_id,
                version,
                len(chunks),
            )
            await buffer_chunks(conn, parsed, version, chunks)
        events.append(
            ChunksCreated(
                event_id=ChunksCreated.make_id(job, version),
                job_id=job,
                document_id=doc,
                user_id=user,
                correlation_id=parsed.correlation_id,
                chunker_version=version,
                chunk_count=len(chunks),
                parsed_sha256=parsed.parsed_sha256,
            )
        )
    return events


async def _produce(settings: Settings, events: list[ChunksCreated]) -> None:
    """The events spread evenly over the partitions (key hashing would load them unevenly)."""
    producer = kafka_clients.producer(settings, acks="all", linger_ms=5)
    await producer.start()
    try:
        topic = f"{settings.topic_prefix}{ChunksCreated.topic}"
        sent = []
        for i, e in enumerate(events):
            headers = [
                (Headers.CORRELATION_ID, e.correlation_id.encode()),
                (Headers.JOB_ID, str(e.job_id).encode()),
            ]
            sent.append(
                await producer.send(
                    topic, e.to_bytes(), key=e.key(), partition=i % PARTITIONS, headers=headers
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _members(settings: Settings) -> tuple[str, list[str]]:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        return await group_members(admin, f"{settings.topic_prefix}{settings.group_prefix}embedder")
    finally:
        await admin.close()


async def _group_stable(settings: Settings, replicas: int, timeout: float = 120) -> list[str]:
    """The member ids once every replica has joined and the partitions are assigned (so no
    start-up rebalance falls inside the timing)."""

    async def stable() -> list[str] | None:
        state, members = await _members(settings)
        return members if state == "Stable" and len(members) == replicas else None

    return await until(
        stable, timeout=timeout, interval=0.2, what=f"{replicas} stable embedder group members"
    )


async def _wait_embedded(pool: asyncpg.Pool, jobs: list[uuid.UUID], timeout: float) -> None:
    async def all_embedded() -> bool:
        done = await pool.fetchval(
            "SELECT count(*) FROM upload_jobs WHERE job_id = ANY($1::uuid[])"
            " AND status = 'embeddings_stored'",
            jobs,
        )
        return done == len(jobs)

    # A small interval against the seconds measured.
    await until(
        all_embedded, timeout=timeout, interval=0.05, what=f"{len(jobs)} documents embedded"
    )


async def one_run(
    settings: Settings,
    home: Path,
    replicas: int,
    documents: int,
    *,
    latency_ms: float = LATENCY_MS,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """`documents` through `replicas` embedder processes; docs/s and the mock's request count."""
    infra = settings.model_copy(update={"topic_partitions": PARTITIONS})
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    pipe = await asyncio.to_thread(
        LocalPipeline.create,
        infra,
        home,
        ACCESSA_MOCK_LATENCY_MS=str(latency_ms),
        ACCESSA_STAGE_CONCURRENCY=str(concurrency),
        ACCESSA_EMBED_MAX_INFLIGHT=str(concurrency),
    )
    names = ("mocks", *(f"embedder#{i}" for i in range(1, replicas + 1)))
    pool = await create_pool(settings, max_size=4)
    try:
        events = await _prepare(pool, settings, documents)
        for name in names:
            pipe.start(name)
        await asyncio.to_thread(pipe.wait_ready, names)
        members = await _group_stable(pipe.settings, replicas)
        started = time.perf_counter()
        await _produce(pipe.settings, events)
        await _wait_embedded(pool, [e.job_id for e in events], timeout=600)
        elapsed = time.perf_counter() - started
        # A member that had to rejoin (e.g. missed heartbeats) comes back with a new id.
        rebalanced = sorted((await _members(pipe.settings))[1]) != sorted(members)
        async with httpx.AsyncClient(base_url=pipe.openai_url) as mock:
            stats = (await mock.get("/_mock/stats")).json()
        return {
            "replicas": replicas,
            "documents": documents,
            "seconds": round(elapsed, 2),
            "docs_per_s": round(documents / elapsed, 2),
            "embedding_requests": stats["requests"],
            "inputs_embedded": stats["inputs_embedded"],
            "rebalanced_during_run": rebalanced,
        }
    finally:
        await asyncio.to_thread(pipe.stop_all)
        # The run's jobs, buffers and vectors go with their documents (cascade).
        await pool.execute("DELETE FROM documents WHERE filename = 'scaling.pdf'")
        await pool.close()


async def run(
    settings: Settings, home: Path, documents: int = 160, rounds: int = 3
) -> dict[str, Any]:
    """1, 2 and 4 replicas, `rounds` times interleaved (the machine's load drifts); docs/s
    is the median per replica count. Last, 4 replicas at 0 ms latency: the CPU ceiling the
    200 ms runs must stay under for the ratio to measure replicas rather than the machine."""
    runs: list[dict[str, Any]] = []
    for n in range(rounds):
        for replicas in (1, 2, 4):
            runs.append(await one_run(settings, home / f"{n}-{replicas}", replicas, documents))
    ceiling = await one_run(settings, home / "ceiling", 4, documents, latency_ms=0)
    rate = {
        r: statistics.median(x["docs_per_s"] for x in runs if x["replicas"] == r) for r in (1, 2, 4)
    }
    return {
        "setup": {
            "partitions": PARTITIONS,
            "mock_latency_ms": LATENCY_MS,
            "per_replica_stage_concurrency": CONCURRENCY,
            "per_replica_embed_max_inflight": CONCURRENCY,
            "chunks_per_document": SECTIONS,
            "documents_per_run": documents,
        },
        "runs": runs,
        "docs_per_s": {str(r): rate[r] for r in (1, 2, 4)},
        "ratio_2_over_1": round(rate[2] / rate[1], 2),
        "ratio_4_over_1": round(rate[4] / rate[1], 2),
        "ceiling_4_replicas_0ms_docs_per_s": ceiling["docs_per_s"],
        "goal": "4 / 1 >= 3.5",
    }
