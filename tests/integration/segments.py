"""Test helper: seal the growing chunk segment now, as the compactor would once it is due."""

from __future__ import annotations

import asyncpg

from accessa.segments import Pass, compact_once


async def seal_now(pool: asyncpg.Pool) -> Pass:
    """Roll the growing segment whatever its size (unless it is empty) and seal it: every
    chunk inserted so far is then read through an HNSW index."""
    async with pool.acquire() as conn:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        try:
            return await compact_once(conn, seal_rows=1, seal_age_s=3600)
        finally:
            await conn.execute("RESET maintenance_work_mem")
