"""A soak (issue 20 item 5, `python -m bench.run --only soak [--soak-seconds N]`): distinct-text
uploads through the API at 80 % of the measured peak for `duration` seconds, sampling every
few seconds consumer lag per stage group, peak PSS per process tree, and the growing
segment's rows (or, before segmented storage, the buffer tables' rows). Each series is
summed up as first / last / max and its slope per minute by linear regression over the second
half of the run, so "flat" is a number.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from aiokafka import TopicPartition

from accessa import kafka_clients
from accessa.config import POSTGRES_LOGINS, Settings
from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from accessa.topic_scan import partitions
from accessa.topics import topics_for
from bench.bench_pipeline import percentile
from bench.poll import until
from bench.workloads import Upload, distinct
from schemas.topics import STAGES

PEAK_BLOCK, SOAK_BLOCK = 50, 51  # seed blocks of bench/workloads.py no other benchmark uses
FRACTION = 0.8

GROWING = (
    "SELECT (SELECT count(*) FROM document_chunks WHERE segment = "
    "(SELECT segment FROM chunk_segments WHERE state = 'growing')) AS growing_segment, "
    "(SELECT count(*) FROM chunk_segments WHERE state = 'sealed') AS sealed_segments"
)
BUFFERS = (
    "SELECT (SELECT count(*) FROM document_chunk_buffer) AS chunk_buffer, "
    "(SELECT count(*) FROM document_vector_buffer) AS vector_buffer"
)


class LagProbe:
    """Consumer lag of each stage's group on its input topic (end offset - committed, as
    `accessa status` reports it), from one admin client and one consumer kept open: a fresh
    `kafka_status` per sample took seconds on the loaded machine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = kafka_clients.admin(settings)
        self.consumer = kafka_clients.consumer(settings)
        self.parts: dict[str, tuple[str, list[TopicPartition]]] = {}

    async def __aenter__(self) -> LagProbe:
        names = topics_for(self.settings)
        for stage in STAGES.values():
            group = f"{self.settings.topic_prefix}{self.settings.group_prefix}{stage.name}"
            parts = await partitions(self.settings, names.name(stage.input))
            self.parts[stage.name] = (group, parts)
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def sample(self) -> dict[str, int]:
        out = {}
        for stage, (group, parts) in self.parts.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            ends = await self.consumer.end_offsets(parts)
            starts = await self.consumer.beginning_offsets(parts)
            out[stage] = sum(
                ends[tp] - (committed[tp].offset if tp in committed else starts[tp]) for tp in parts
            )
        return out


def trend(points: list[tuple[float, float]]) -> dict[str, float | None]:
    """First, last and max of a series of (seconds, value), and its slope per minute by least
    squares over the second half (past the ramp-up)."""
    if not points:
        return {"first": None, "last": None, "max": None, "slope_per_min": None}
    half = [(t, v) for t, v in points if t >= points[-1][0] / 2]
    slope = None
    if len(half) >= 2 and half[0][0] != half[-1][0]:
        fit = statistics.linear_regression([t for t, _ in half], [v for _, v in half])
        slope = round(fit.slope * 60, 3)
    values = [v for _, v in points]
    return {"first": values[0], "last": values[-1], "max": max(values), "slope_per_min": slope}


def tree_pss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """PSS of each process with its children: each shared page split among its sharers."""
    out = {}
    for name, proc in procs.items():
        with contextlib.suppress(psutil.Error):
            tree = [proc, *proc.children(recursive=True)]
            out[name] = round(sum(p.memory_full_info().pss for p in tree) / 2**20, 1)
    return out


async def _growing_rows(pool: asyncpg.Pool) -> dict[str, int]:
    """The growing segment's rows when segmented storage (0022) is there, else the buffers'."""
    if await pool.fetchval("SELECT to_regclass('chunk_segments') IS NOT NULL"):
        return dict(await pool.fetchrow(GROWING))
    return dict(await pool.fetchrow(BUFFERS))


async def _upload(
    pipe: LocalPipeline, uploads: list[Upload], rate: float | None, jobs: list[str]
) -> dict[str, Any]:
    """Upload each file by its user, the i-th at i / `rate` seconds (as fast as 16 clients go
    when `rate` is None); the job ids are appended to `jobs` as they are accepted."""
    sem = asyncio.Semaphore(16)
    clients = [pipe.client(uuid.uuid4()) for _ in range(max(u for u, _, _ in uploads) + 1)]
    behind = 0.0
    errors: list[str] = []

    async def one(client: httpx.AsyncClient, name: str, path: Path) -> None:
        try:
            pdf = await asyncio.to_thread(path.read_bytes)
            files = {"file": (name, pdf, "application/pdf")}
            r = await client.post("/api/v2/documents", files=files)
            r.raise_for_status()
            jobs.append(r.json()["job_id"])
        except httpx.HTTPError as exc:  # a refused upload is a finding, not the end of the soak
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            sem.release()

    started = time.monotonic()
    tasks = []
    try:
        for i, (user, name, path) in enumerate(uploads):
            if rate is not None:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the uploads, not a synchronisation
                behind = max(behind, -delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(clients[user], name, path)))
        await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.aclose()
    elapsed = time.monotonic() - started
    return {
        "upload_s": round(elapsed, 1),
        "most_behind_schedule_s": round(behind, 2),
        "upload_errors": len(errors),
        "first_upload_errors": errors[:3],
    }


async def _finished(pool: asyncpg.Pool, jobs: list[str], timeout: float) -> list[asyncpg.Record]:
    ids = [uuid.UUID(j) for j in jobs]

    async def check() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(
            "SELECT state, status, created_at, completed_at FROM upload_jobs "
            "WHERE job_id = ANY($1::uuid[])",
            ids,
        )
        return rows if all(r["state"] in ("done", "deadletter") for r in rows) else None

    return await until(check, timeout=timeout, interval=1.0, what="the soak's jobs to finish")


async def _peak(pipe: LocalPipeline, pool: asyncpg.Pool, uploads: list[Upload]) -> float:
    """Docs/s of a burst of distinct uploads, first upload to last completion. Not the burst's
    steady window: a few seconds with every queue full, above what the stages hold for ten
    minutes with the compactor sealing (2026-12-08: 38.7 steady offered 31.0, 26.3 held)."""
    jobs: list[str] = []
    started = time.time()
    await _upload(pipe, uploads, None, jobs)
    rows = await _finished(pool, jobs, timeout=900)
    done = [r["completed_at"].timestamp() for r in rows if r["status"] == "complete"]
    return len(done) / (max(done) - started)


async def run(
    settings: Settings,
    home: Path,
    duration: float = 600,
    peak: float | None = None,
    peak_from: str = "given by the caller",
    interval: float = 5,
    peak_docs: int = 384,
    users: int = 8,
) -> dict[str, Any]:
    """Measure the peak (unless given, e.g. the same run's distinct-text pipeline figure),
    then upload at 80 % of it for `duration` seconds, sampling every `interval` seconds."""
    if duration <= 0 or interval <= 0:
        raise ValueError("duration and interval must be positive")
    cache = settings.home / "bench-policies"
    pipe = await asyncio.to_thread(LocalPipeline.create, settings, home, ACCESSA_OCR="off")
    await asyncio.to_thread(pipe.start_all)
    if "compactor" in POSTGRES_LOGINS:  # `accessa run all` runs it; LocalPipeline does not
        pipe.start("compactor", ACCESSA_DATABASE_URL=settings.dsn_for("compactor"))
        await asyncio.to_thread(pipe.wait_ready, ("compactor",))
    pool = await create_pool(settings, max_size=4)
    procs = {n: psutil.Process(p.pid) for n, p in pipe.procs.items()}
    try:
        if peak is None:
            peak_from = "measured by the soak (a burst)"
            burst = await asyncio.to_thread(distinct, cache, peak_docs, users, block=PEAK_BLOCK)
            peak = await _peak(pipe, pool, burst)
        rate = FRACTION * peak
        generating = time.monotonic()
        n = math.ceil(rate * duration)
        uploads = await asyncio.to_thread(distinct, cache, n, users, block=SOAK_BLOCK)
        generated_s = time.monotonic() - generating

        jobs: list[str] = []
        samples: list[dict[str, Any]] = []
        async with LagProbe(pipe.settings) as lag:
            uploader = asyncio.create_task(_upload(pipe, uploads, rate, jobs))
            started = time.monotonic()
            while not uploader.done():
                sample: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
                with contextlib.suppress(Exception):  # a sample lost to a slow broker: skipped
                    sample["lag"] = await lag.sample()
                sample["pss_mb"] = await asyncio.to_thread(tree_pss_mb, procs)
                sample["rows"] = await _growing_rows(pool)
                samples.append(sample)
                due = started + len(samples) * interval - time.monotonic()
                with contextlib.suppress(TimeoutError):  # the next sample's time, or the end
                    await asyncio.wait_for(asyncio.shield(uploader), max(due, 0.1))
            sent = uploader.result()
        draining = time.monotonic()
        rows = await _finished(pool, jobs, timeout=max(600, duration))
        drain_s = time.monotonic() - draining
    finally:
        await pool.close()
        await asyncio.to_thread(pipe.stop_all)
    return _report(samples, rows, peak, peak_from, rate, sent, generated_s, drain_s, duration)


def _report(
    samples: list[dict[str, Any]],
    rows: list[asyncpg.Record],
    peak: float,
    peak_from: str,
    rate: float,
    sent: dict[str, Any],
    generated_s: float,
    drain_s: float,
    duration: float,
) -> dict[str, Any]:
    def series(key: str, name: str) -> list[tuple[float, float]]:
        return [(s["t"], s[key][name]) for s in samples if name in s.get(key, {})]

    stages = sorted({k for s in samples for k in s.get("lag", {})})
    total_lag = [(s["t"], float(sum(s["lag"].values()))) for s in samples if "lag" in s]
    done = sorted((r for r in rows if r["status"] == "complete"), key=lambda r: r["created_at"])
    latency = [(r["completed_at"] - r["created_at"]).total_seconds() for r in done]
    mid = len(latency) // 2
    halves = {"first_half": latency[:mid], "second_half": latency[mid:]}
    return {
        "duration_s": duration,
        "peak_docs_per_s": round(peak, 2),
        "peak_from": peak_from,
        "rate_docs_per_s": round(rate, 2),
        "documents": len(rows),
        "completed": len(done),
        **sent,
        "generate_s": round(generated_s, 1),
        "drain_after_last_upload_s": round(drain_s, 1),
        # What the stages held: above `rate`, lag was flat; below it, it grew by the difference.
        "sustained_docs_per_s": round(len(done) / (sent["upload_s"] + drain_s), 2),
        "samples": len(samples),
        "lag": {"total": trend(total_lag), **{g: trend(series("lag", g)) for g in stages}},
        "pss_mb": {p: trend(series("pss_mb", p)) for p in sorted(samples[0]["pss_mb"])}
        if samples
        else {},
        "rows": {k: trend(series("rows", k)) for k in (samples[0]["rows"] if samples else {})},
        "latency_s": {
            h: {"p50": round(percentile(v, 50), 2), "p95": round(percentile(v, 95), 2)}
            for h, v in halves.items()
            if len(v) >= 2
        },
        "goal": "lag, PSS and the growing segment flat (slope ~0 per minute)",
    }
