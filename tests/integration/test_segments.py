"""Segmented vector storage (migrations 0022-0023, accessa/segments.py) on the real Postgres:
a chunk is searchable in the growing segment at once and through its segment's HNSW index once
sealed; RLS, reprocess versions, deletion and hybrid search hold across segments; the
compactor survives a SIGKILL mid-build and is idempotent."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest

from accessa.config import Settings
from accessa.db import connect, user_transaction
from accessa.ops import reprocess
from accessa.search import (
    EXACT_UP_TO,
    SEARCH,
    SEARCH_SETTINGS,
    search,
    search_chunks,
    settings_args,
)
from accessa.segments import SEAL, compact_once, connection_settings
from tests.integration.segments import seal_now
from tests.integration.test_search_hybrid import CHUNKER, MODEL
from tests.integration.test_search_index import cosine, vectors
from tests.utils import free_port, wait_for

pytestmark = pytest.mark.integration

GROWING = "SELECT segment FROM upload_pipeline.chunk_segments WHERE state = 'growing'"
STATE = "SELECT state FROM upload_pipeline.chunk_segments WHERE segment = $1"
COUNT = "SELECT count(*) FROM document_chunks WHERE chunk_id = ANY($1)"
HNSW = "SELECT to_regclass(format('upload_pipeline.document_chunks_s%s_embedding_hnsw', $1::int))"


async def add_document(pool: asyncpg.Pool, user: uuid.UUID, version: str = CHUNKER) -> uuid.UUID:
    doc = uuid.uuid4()
    await pool.execute(
        """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path,
                                  active_chunker_version, active_embed_model, active_since)
           VALUES ($1, $2, $3, 1, 'policy.pdf', 'raw', $4, $5, now() - interval '1 hour')""",
        doc,
        user,
        hashlib.sha256(doc.bytes).hexdigest(),
        version,
        MODEL,
    )
    return doc


async def add_chunks(
    pool: asyncpg.Pool,
    doc: uuid.UUID,
    user: uuid.UUID,
    dense: np.ndarray,
    *,
    version: str = CHUNKER,
    texts: list[str] | None = None,
) -> dict[uuid.UUID, np.ndarray]:
    """Chunks of `doc` (one per row of `dense`) in whatever segment is growing now."""
    rows, stored = [], {}
    for i, vector in enumerate(dense):
        cid, text = uuid.uuid4(), (texts[i] if texts else f"clause {i} of the policy")
        rows.append((cid, doc, user, doc, version, MODEL, i, text, "0" * 64, 10, vector))
        stored[cid] = vector
    await pool.executemany(
        """INSERT INTO document_chunks (chunk_id, document_id, user_id, job_id, chunker_version,
                                        embed_model, ordinal, content, content_sha256,
                                        token_count, embedding)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        rows,
    )
    return stored


async def segments_of(pool: asyncpg.Pool, chunks: list[uuid.UUID]) -> set[int]:
    rows = await pool.fetch(
        "SELECT DISTINCT segment FROM document_chunks WHERE chunk_id = ANY($1)", chunks
    )
    return {r["segment"] for r in rows}


async def test_a_chunk_is_found_in_the_growing_segment_at_once_and_through_the_index_once_sealed(
    pool: asyncpg.Pool,
) -> None:
    me = uuid.uuid4()
    doc = await add_document(pool, me)
    mine = await add_chunks(pool, doc, me, vectors(EXACT_UP_TO + 300, seed=41))
    (growing,) = await segments_of(pool, list(mine))
    assert await pool.fetchval(STATE, growing) == "growing"
    assert await pool.fetchval(HNSW, growing) is None
    query = vectors(1, seed=42)[0]
    exact = sorted(mine, key=lambda cid: -cosine(mine[cid], query))[:10]
    async with user_transaction(pool, me) as conn:
        before = await search_chunks(conn, query.tolist(), 10, model=MODEL)
    assert [h["chunk_id"] for h in before] == exact

    await seal_now(pool)
    assert await pool.fetchval(STATE, growing) == "sealed"
    await pool.execute("ANALYZE document_chunks")
    async with user_transaction(pool, me) as conn:
        how = await conn.fetchrow(SEARCH_SETTINGS, *settings_args())
        args = (query.tolist(), 10, MODEL, how["indexed"], how["exact"])
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + SEARCH, *args))
    async with user_transaction(pool, me) as conn:
        after = await search_chunks(conn, query.tolist(), 10, model=MODEL)
    assert how["indexed"] == [growing] and how["exact"] == []
    assert f"Index Scan using document_chunks_s{growing}_embedding_hnsw" in plan, plan
    assert [h["chunk_id"] for h in after] == exact


async def test_rls_holds_across_segments_and_no_role_reads_a_segment_directly(
    pool: asyncpg.Pool, infra: Settings
) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    theirs = await add_chunks(pool, await add_document(pool, other), other, vectors(50, seed=43))
    await seal_now(pool)
    theirs |= await add_chunks(pool, await add_document(pool, other), other, vectors(50, seed=44))
    mine = await add_chunks(pool, await add_document(pool, me), me, vectors(20, seed=45))
    assert len(await segments_of(pool, list(theirs))) == 2
    query = vectors(1, seed=46)[0]
    async with user_transaction(pool, me) as conn:
        hits = await search_chunks(conn, query.tolist(), 50, model=MODEL)
        visible = await conn.fetchval(
            "SELECT count(*) FROM document_chunks WHERE chunk_id = ANY($1)", list(theirs)
        )
    assert {h["chunk_id"] for h in hits} == set(mine) and visible == 0
    (sealed,) = await segments_of(pool, list(theirs)) - await segments_of(pool, list(mine))
    for process in ("api", "finalizer", "ops", "compactor"):
        conn = await connect(infra.dsn_for(process))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(
                    f"SELECT count(*) FROM upload_pipeline.document_chunks_s{sealed}"
                )
        finally:
            await conn.close()


async def test_reprocess_switch_and_gc_work_across_segments(pool: asyncpg.Pool) -> None:
    me = uuid.uuid4()
    doc = await add_document(pool, me, version="old@1")
    old = await add_chunks(pool, doc, me, vectors(30, seed=47), version="old@1")
    await seal_now(pool)
    new = await add_chunks(pool, doc, me, vectors(30, seed=48), version="new@1")
    assert len(await segments_of(pool, [*old, *new])) == 2
    query = vectors(1, seed=49)[0]
    async with user_transaction(pool, me) as conn:
        before = await search_chunks(conn, query.tolist(), 60, model=MODEL)
    # The finalizer's switch: the new version is the active one from this commit on.
    await pool.execute(
        """UPDATE documents SET active_chunker_version = 'new@1',
                  active_since = now() - interval '1 hour' WHERE document_id = $1""",
        doc,
    )
    async with user_transaction(pool, me) as conn:
        after = await search_chunks(conn, query.tolist(), 60, model=MODEL)
    assert {h["chunk_id"] for h in before} == set(old)
    assert {h["chunk_id"] for h in after} == set(new)
    collected = await reprocess.gc(pool, grace_s=60, document=doc)
    assert collected == [
        {"document_id": str(doc), "chunker_version": "old@1", "embed_model": MODEL, "chunks": 30}
    ]
    left = await pool.fetch("SELECT chunk_id FROM document_chunks WHERE document_id = $1", doc)
    assert {r["chunk_id"] for r in left} == set(new)


async def test_deleting_a_document_deletes_its_chunks_in_every_segment(pool: asyncpg.Pool) -> None:
    me = uuid.uuid4()
    doc = await add_document(pool, me)
    chunks = await add_chunks(pool, doc, me, vectors(20, seed=50))
    await seal_now(pool)
    chunks |= await add_chunks(pool, doc, me, vectors(20, seed=51))
    assert len(await segments_of(pool, list(chunks))) == 2
    await pool.execute("DELETE FROM documents WHERE document_id = $1", doc)
    assert await segments_of(pool, list(chunks)) == set()


async def test_hybrid_search_ranks_exact_terms_from_sealed_and_growing_segments(
    pool: asyncpg.Pool,
) -> None:
    me = uuid.uuid4()
    filler = [f"the policy covers medical expenses, section {i}" for i in range(20)]
    sealed_text = "claims line 1-800-555-0199 for policy POL-771204"
    growing_text = "the excess under clause ZX-4471 is $2,500"
    await add_chunks(
        pool, await add_document(pool, me), me, vectors(21, 52), texts=[*filler, sealed_text]
    )
    await seal_now(pool)
    await add_chunks(pool, await add_document(pool, me), me, vectors(1, 53), texts=[growing_text])
    query = vectors(1, seed=54)[0].tolist()
    async with user_transaction(pool, me) as conn:
        first = await search(conn, "POL-771204", {MODEL: query}, 3, mode="hybrid")
        second = await search(conn, "ZX-4471", {MODEL: query}, 3, mode="hybrid")
    assert first[0]["content"] == sealed_text
    assert second[0]["content"] == growing_text


def _compactor(settings: Settings, port: int, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **extra,
        "ACCESSA_SEGMENT_SEAL_ROWS": "1",
        "ACCESSA_SEGMENT_POLL_S": "0.2",
        "ACCESSA_HEALTH_PORT": str(port),
        "ACCESSA_LOG_JSON": "false",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "accessa.cli.main", "run", "compactor"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_compactor_killed_mid_build_loses_nothing_and_its_rerun_seals_once(
    pool: asyncpg.Pool, infra: Settings, tmp_path: Path
) -> None:
    me = uuid.uuid4()
    # More graph than the first compactor's build memory (64 MB): its build goes on slowly,
    # on disk, so the kill lands mid-build (a build that fits finished, and committed, within
    # the server's dead-client check on a quiet machine).
    chunks = await add_chunks(pool, await add_document(pool, me), me, vectors(12000, seed=55))
    (segment,) = await segments_of(pool, list(chunks))
    admin = await connect(infra.dsn)  # pg_stat_progress_create_index shows others' builds
    port = free_port()
    try:
        first = _compactor(
            infra, port, tmp_path / "compactor.log", ACCESSA_SEGMENT_BUILD_MEMORY_MB="64"
        )

        async def building() -> bool:
            return bool(
                await admin.fetchval(
                    """SELECT count(*) FROM pg_stat_progress_create_index
                       WHERE relid = to_regclass(format('upload_pipeline.document_chunks_s%s',
                                                        $1::int))""",
                    segment,
                )
            )

        await wait_for(building, timeout=60, interval=0.02, what="the HNSW build to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        async def gone() -> bool:  # the server noticed the dead client and rolled back
            n = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'accessa-compactor'"
            )
            return n == 0

        await wait_for(gone, timeout=30, what="the killed compactor's backend to end")
        assert await pool.fetchval(STATE, segment) == "sealing"
        assert await pool.fetchval(HNSW, segment) is None
        assert await segments_of(pool, list(chunks)) == {segment}  # every one still there
        assert await pool.fetchval(COUNT, list(chunks)) == len(chunks)

        second = _compactor(infra, port, tmp_path / "compactor.log")
        try:

            async def sealed() -> bool:
                return await pool.fetchval(STATE, segment) == "sealed"

            await wait_for(sealed, timeout=120, what="the rerun to seal the segment")

            async def scraped() -> str | None:
                async with httpx.AsyncClient() as client:
                    try:
                        r = await client.get(f"http://127.0.0.1:{port}/metrics")
                    except httpx.TransportError:
                        return None
                return r.text if "accessa_segment_seal_seconds_count" in r.text else None

            metrics = await wait_for(scraped, timeout=30, what="the compactor's /metrics")
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"http://127.0.0.1:{port}/ready")
            assert ready.status_code == 200, ready.text
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        await admin.close()
    assert re.search(r'^accessa_segments\{state="sealed"\} [1-9]', metrics, re.M), metrics
    assert re.search(r"^accessa_segment_growing_rows \d", metrics, re.M), metrics
    assert await segments_of(pool, list(chunks)) == {segment}
    assert await pool.fetchval(COUNT, list(chunks)) == len(chunks)
    assert await pool.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = ($1::text)::regclass",
        f"upload_pipeline.document_chunks_s{segment}_embedding_hnsw",
    )
    assert await pool.fetchval(SEAL, segment) is None  # sealed once: a third pass builds nothing


async def test_the_compactor_is_idempotent(pool: asyncpg.Pool) -> None:
    me = uuid.uuid4()
    chunks = await add_chunks(pool, await add_document(pool, me), me, vectors(10, seed=56))
    (segment,) = await segments_of(pool, list(chunks))
    first = await seal_now(pool)
    assert first.rolled == segment and segment in first.sealed
    async with pool.acquire() as conn:
        # Nothing due (the threshold is far away): no roll; the sealed segment is not rebuilt.
        again = await compact_once(conn, seal_rows=10**9, seal_age_s=10**6)
        twice = await conn.fetchval(SEAL, segment)
    assert again.rolled is None and segment not in again.sealed and twice is None
    indexes = await pool.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'upload_pipeline' AND tablename = $1"
        " AND indexdef LIKE '%USING hnsw%'",
        f"document_chunks_s{segment}",
    )
    assert indexes == 1
    assert await pool.fetchval(GROWING) > segment


async def test_vectors_are_stored_inline_in_segments_the_compactor_rolls(
    pool: asyncpg.Pool,
) -> None:
    """Migration 0025: no vector goes to a TOAST table, in a segment made before it or by a
    roll after it."""
    me = uuid.uuid4()
    doc = await add_document(pool, me)
    await add_chunks(pool, doc, me, vectors(5, seed=57))
    rolled = (await seal_now(pool)).rolled
    fresh = await add_chunks(pool, doc, me, vectors(50, seed=58))
    (growing,) = await segments_of(pool, list(fresh))
    assert rolled is not None and growing > rolled
    storage = await pool.fetch(
        """SELECT c.relname, a.attstorage::text FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding'
           WHERE i.inhparent = 'upload_pipeline.document_chunks'::regclass"""
    )
    assert {r["relname"]: r["attstorage"] for r in storage} == {r["relname"]: "m" for r in storage}
    toast = await pool.fetchval(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = $1::text::regclass",
        f"upload_pipeline.document_chunks_s{growing}",
    )
    assert toast == 0  # 50 vectors of 6 KB, none out of line


async def test_a_sealed_segment_counts_a_callers_chunks_from_its_index_alone(
    pool: asyncpg.Pool, infra: Settings
) -> None:
    """Migration 0025 and the compactor's VACUUM after a seal: search's per-segment count of
    the caller's chunks is an index-only scan that reads no heap page."""
    me = uuid.uuid4()
    chunks = await add_chunks(pool, await add_document(pool, me), me, vectors(300, seed=59))
    (segment,) = await segments_of(pool, list(chunks))
    compactor = await connect(infra.dsn_for("compactor"), **connection_settings(infra))
    try:
        done = await compact_once(compactor, seal_rows=1, seal_age_s=3600)
    finally:
        await compactor.close()
    assert segment in done.sealed
    plan = "\n".join(
        r[0]
        for r in await pool.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM document_chunks "
            f"WHERE segment = {segment} AND user_id = '{me}'"
        )
    )
    assert f"Index Only Scan using document_chunks_s{segment}_user_id_segment_idx" in plan, plan
    assert re.search(r"Heap Fetches: 0\b", plan), plan
