"""Segmented vector storage's compactor (migration 0022, `accessa run compactor`).

New chunks land in the growing segment of `document_chunks`, which has no HNSW index and is
searched exactly. The compactor's loop, every ACCESSA_SEGMENT_POLL_S:

1. roll: once the growing segment holds ACCESSA_SEGMENT_SEAL_ROWS rows or its oldest row is
   ACCESSA_SEGMENT_SEAL_AGE_S old, a new growing segment takes the inserts and the old one is
   'sealing' (`upload_pipeline.roll_segment`);
2. seal: each 'sealing' segment gets its HNSW index built in bulk in the transaction that marks
   it 'sealed' (`upload_pipeline.seal_segment`; the build waits for the old segment's writers).

Crash-safe and idempotent: a kill mid-build rolls the build back and leaves the segment
'sealing', so the next pass builds it; a sealed segment is never built again. The compactor
owns nothing: both functions are SECURITY DEFINER, owned by accessa_owner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import Gauge, Histogram
from starlette.applications import Starlette

from accessa.config import Settings
from accessa.db import SCHEMA, PoolOpener
from accessa.logs import setup_logging
from accessa.runtime import metrics
from accessa.runtime.server import health_app, serve_asgi

log = logging.getLogger("accessa.compactor")
PROCESS = "compactor"

GROWING_ROWS = Gauge(
    "accessa_segment_growing_rows",
    "Rows in the growing chunk segment (searched exactly, no HNSW index yet).",
    registry=metrics.REGISTRY,
)
SEGMENTS = Gauge(
    "accessa_segments", "Chunk segments by state.", ["state"], registry=metrics.REGISTRY
)
SEAL_SECONDS = Histogram(
    "accessa_segment_seal_seconds",
    "Time to seal one segment: its bulk HNSW build, waiting for its last writers included.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=metrics.REGISTRY,
)

ROLL = "SELECT upload_pipeline.roll_segment($1, $2)"
SEAL = "SELECT upload_pipeline.seal_segment($1)"
SEALING = "SELECT segment FROM upload_pipeline.chunk_segments WHERE state = 'sealing' ORDER BY 1"
STATS = "SELECT * FROM upload_pipeline.segment_stats()"


@dataclass(frozen=True)
class Pass:
    """What one compactor pass did."""

    rolled: int | None  # the segment it stopped growing, if any
    sealed: dict[int, float]  # segment -> seconds of its build


def connection_settings(settings: Settings) -> dict[str, Any]:
    """The compactor's connections: no statement timeout (a build takes minutes at scale),
    the build's memory, and a server that notices a dead client mid-build and rolls back."""
    return {
        "command_timeout": None,
        "server_settings": {
            "search_path": f"{SCHEMA}, public",
            "application_name": "accessa-compactor",
            "maintenance_work_mem": f"{settings.segment_build_memory_mb}MB",
            "client_connection_check_interval": "500",
        },
    }


async def compact_once(
    conn: asyncpg.Connection, seal_rows: int, seal_age_s: float, *, roll: bool = True
) -> Pass:
    """One pass: roll the growing segment if it is due (`roll`), then seal every 'sealing'
    segment, oldest first (including one a killed compactor left half built)."""
    rolled = await conn.fetchval(ROLL, seal_rows, seal_age_s) if roll else None
    sealed: dict[int, float] = {}
    for row in await conn.fetch(SEALING):
        seconds = await conn.fetchval(SEAL, row["segment"])
        if seconds is not None:  # None: another compactor sealed it meanwhile
            sealed[row["segment"]] = seconds
            SEAL_SECONDS.observe(seconds)
            log.info("sealed segment %s in %.2f s", row["segment"], seconds)
            await _vacuum(conn, row["segment"])
    return Pass(rolled, sealed)


async def _vacuum(conn: asyncpg.Connection, segment: int) -> None:
    """Set a sealed segment's visibility map (and its statistics) now, not when autovacuum
    comes by: search counts the caller's chunks per segment by an index-only scan (migration 0025).
    Outside the seal's transaction (VACUUM cannot run in one); a compactor killed before it
    leaves the segment to autovacuum, and a failure only costs search the heap reads."""
    try:
        await conn.execute(f"VACUUM (ANALYZE) upload_pipeline.document_chunks_s{int(segment)}")
    except asyncpg.PostgresError as exc:
        log.warning("VACUUM of sealed segment %s failed: %s (autovacuum will do it)", segment, exc)


async def stats(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every segment: state, rows (the growing one's exact), whether its HNSW index exists."""
    return [dict(r) for r in await conn.fetch(STATS)]


async def report(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """`stats`, also set as the compactor's gauges."""
    segments = await stats(conn)
    GROWING_ROWS.set(sum(s["rows"] for s in segments if s["state"] == "growing"))
    for state in ("growing", "sealing", "sealed"):
        SEGMENTS.labels(state).set(sum(1 for s in segments if s["state"] == state))
    return segments


async def run_loop(opener: PoolOpener, settings: Settings, stop: asyncio.Event) -> None:
    """Pass after pass until `stop`; a failed pass (Postgres away) is logged and retried."""
    pool = await opener.open()
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                await report(conn)  # first too: the gauges are there while a long build runs
                await compact_once(conn, settings.segment_seal_rows, settings.segment_seal_age_s)
                await report(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("compactor pass failed: %s (retrying)", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.segment_poll_s)  # the poll period


def run_compactor(settings: Settings) -> None:
    """The compactor process: its loop, and /health, /ready, /metrics on its port (9105)."""
    setup_logging(PROCESS, settings.log_level, settings.log_json)
    opener = PoolOpener(settings, PROCESS, min_size=1, max_size=2, **connection_settings(settings))
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(run_loop(opener, settings, stop))
        try:
            yield
        finally:
            stop.set()  # a build under way ends with the connection: it rolls back
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await opener.close()

    asgi = health_app(PROCESS, lifespan, {"postgres": opener.problem})
    serve_asgi(asgi, settings.health_host, settings.port_for(PROCESS), settings.shutdown_grace_s)
