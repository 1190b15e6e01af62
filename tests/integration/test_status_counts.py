"""`accessa status` counts documents per minute per stage, not job transitions."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from accessa.status import database_status

pytestmark = pytest.mark.integration


async def test_documents_per_minute_counts_each_document_once_per_stage(
    pool: asyncpg.Pool,
) -> None:
    stage = f"t{uuid.uuid4().hex[:8]}"  # a stage name of this test's own
    recent, earlier = [uuid.uuid4(), uuid.uuid4()], uuid.uuid4()
    rows = [(doc, "now()") for doc in recent for _ in range(3)]  # the parser advances 3 times
    rows.append((earlier, "now() - interval '2 minutes'"))
    for document_id, at in rows:
        await pool.execute(
            f"INSERT INTO events (job_id, document_id, stage, kind, created_at) "
            f"VALUES ($1, $2, $3, 'advanced', {at})",
            uuid.uuid4(),
            document_id,
            stage,
        )
    activity = (await database_status(pool))["activity"][stage]
    assert activity["documents_last_minute"] == 2
