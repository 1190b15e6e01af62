"""Capacity per stage replica (`make bench --only capacity`): the input of docs/scaling.md.

For each stage and 1 and 2 replicas: the corpus times `users` is uploaded to a pipeline without
the stage, whose other stages bring every document up to the stage's input; those input records
are then handed, all at once, to the stage's replicas on fresh topics once their consumer group
is stable, and they drain the backlog. The rate is read from
the stage's own job transitions (the `events` table) over the middle 80 % of completions, so
start-up, the group join and the last stragglers are left out. CPU seconds per document of
the stage's processes, of Postgres and of the broker come from the same drain: they say what
one more replica costs and where the single Postgres primary runs out.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from accessa import kafka_clients
from accessa.config import Settings
from accessa.db import create_pool
from accessa.ops.localrun import PROCESSES, LocalPipeline
from accessa.topic_scan import Record, group_members, scan
from bench.bench_pipeline import CpuMeter, _upload_all, corpus_files
from bench.poll import until
from bench.workloads import copies
from schemas.topics import STAGES

# The status a stage leaves a job in, and the one its input is complete at.
DONE = {
    "parser": "parse_validated",
    "chunker": "chunks_stored",
    "embedder": "embeddings_stored",
    "finalizer": "complete",
}
READY = {
    "chunker": "parse_validated",
    "embedder": "chunks_stored",
    "finalizer": "embeddings_stored",
}


def middle_rate(times: list[float], trim: float = 0.1) -> float:
    """Completions per second over the middle of `times` (the first and last `trim` left out:
    the group join and the drain of the last ones)."""
    done = sorted(times)
    lo, hi = int(len(done) * trim), max(int(len(done) * (1 - trim)) - 1, 0)
    if hi <= lo or done[hi] <= done[lo]:
        return float("nan")
    return (hi - lo) / (done[hi] - done[lo])


async def _drain(settings: Settings, stage: str, replicas: int, users: int) -> dict[str, Any]:
    """Fill `stage`'s input through the real upstream (a first pipeline without the stage),
    then give the very records to `replicas` of the stage on fresh topics (a second pipeline on
    the same storage and database) once their group is stable, and time the drain."""
    with tempfile.TemporaryDirectory() as home:
        source = await asyncio.to_thread(LocalPipeline.create, settings, Path(home))
        target = await asyncio.to_thread(LocalPipeline.create, settings, Path(home))
        pool = await create_pool(settings, max_size=2)
        try:
            await asyncio.to_thread(source.start_all, tuple(p for p in PROCESSES if p != stage))
            uploads = copies(corpus_files(), users)
            jobs = [uuid.UUID(j) for j in await _upload_all(source, uploads)]
            await until(
                lambda: _backlog_ready(pool, stage, jobs),
                timeout=900,
                interval=0.2,
                what=f"the backlog in {stage}'s input",
            )
            topic = STAGES[stage].input
            backlog = [r async for r in scan(source.settings, source.settings.topic_prefix + topic)]
            await asyncio.to_thread(source.stop_all)
            names = ("mocks", stage, *(f"{stage}#{n}" for n in range(2, replicas + 1)))
            await asyncio.to_thread(target.start_all, names)
            await _group_stable(target.settings, stage, replicas)
            meter = CpuMeter(target, settings)
            before = meter.snapshot()
            await _produce(target.settings, target.settings.topic_prefix + topic, backlog)
            await until(
                lambda: _all_past(pool, jobs, DONE[stage]),
                timeout=900,
                interval=0.1,
                what=f"{stage} to drain its backlog",
            )
            cpu = meter.spent(before, meter.snapshot())
            times = await pool.fetch(
                "SELECT min(extract(epoch FROM created_at))::float8 AS t FROM events "
                "WHERE job_id = ANY($1::uuid[]) AND kind = 'advanced' AND status = $2 "
                "GROUP BY job_id",
                jobs,
                DONE[stage],
            )
            chunks = await pool.fetchval(
                "SELECT sum(chunk_count) FROM upload_jobs WHERE job_id = ANY($1::uuid[])", jobs
            )
        finally:
            await pool.close()
            await asyncio.to_thread(source.stop_all)
            await asyncio.to_thread(target.stop_all)
    own = sum(v for k, v in cpu.items() if k.split("#")[0] == stage)
    return {
        "documents": len(jobs),
        "records": len(backlog),
        "docs_per_s": round(middle_rate([r["t"] for r in times]), 2),
        "chunks": chunks,
        "cpu_s_per_doc": {
            stage: round(own / len(jobs), 4),
            "postgres": round(cpu.get("postgres", 0.0) / len(jobs), 4),
            "kafka": round(cpu.get("kafka", 0.0) / len(jobs), 4),
        },
    }


async def _produce(settings: Settings, topic: str, records: list[Record]) -> None:
    """The records as they were (key, value, headers, partition), all at once."""
    producer = kafka_clients.producer(settings, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                r.value,
                key=r.key,
                partition=r.partition,
                headers=[(k, v.encode()) for k, v in r.headers.items()],
            )
            for r in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _group_stable(settings: Settings, stage: str, replicas: int) -> None:
    """Every replica joined and assigned, so no start-up rebalance falls inside the timing."""
    group = f"{settings.topic_prefix}{settings.group_prefix}{stage}"
    admin = kafka_clients.admin(settings)
    await admin.start()

    async def stable() -> bool:
        state, members = await group_members(admin, group)
        return state == "Stable" and len(members) == replicas

    try:
        await until(stable, timeout=120, interval=0.2, what=f"{replicas} members in {group}")
    finally:
        await admin.close()


async def _backlog_ready(pool: Any, stage: str, jobs: list[uuid.UUID]) -> bool:
    """Every document waits in `stage`'s input: published by the API for the parser, else
    brought by the stage before to the status the stage starts from."""
    if stage == "parser":
        return await pool.fetchval(
            "SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL "
            "AND headers->>'x-job-id' = ANY($1::text[])",
            [str(j) for j in jobs],
        )
    return await pool.fetchval(
        "SELECT count(*) FILTER (WHERE status = $2) = cardinality($1::uuid[]) FROM upload_jobs "
        "WHERE job_id = ANY($1::uuid[])",
        jobs,
        READY[stage],
    )


async def _all_past(pool: Any, jobs: list[uuid.UUID], status: str) -> bool:
    return await pool.fetchval(
        "SELECT count(DISTINCT job_id) = cardinality($1::uuid[]) FROM events "
        "WHERE job_id = ANY($1::uuid[]) AND kind = 'advanced' AND status = $2",
        jobs,
        status,
    )


async def run(settings: Settings, users: int = 8) -> dict[str, Any]:
    """Per-replica drain rates of each stage at 1 and 2 replicas, and CPU per document."""
    out: dict[str, Any] = {}
    for stage in DONE:
        one = await _drain(settings, stage, 1, users)
        two = await _drain(settings, stage, 2, users)
        out[stage] = {
            "replicas_1": one,
            "replicas_2": two,
            "two_over_one": round(two["docs_per_s"] / one["docs_per_s"], 2),
        }
    fin = out["finalizer"]["replicas_2"]
    out["postgres_vectors_per_s_finalizer_2"] = round(
        fin["docs_per_s"] * fin["chunks"] / fin["documents"], 1
    )
    out["note"] = (
        "mock providers at 0 ms: parser and embedder rates are CPU-bound here; with LlamaParse "
        "and OpenAI they are bound by provider latency x in-flight documents"
    )
    return out
