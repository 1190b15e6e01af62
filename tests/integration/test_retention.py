"""`accessa gc` on the real Postgres: rows past their retention go, younger ones stay, a dry run
deletes nothing, and a dedup row a redelivery could still need is never deleted.

The database is shared with other tests: retentions here are hundreds of days and this test's
rows are dated further back still, so gc never reaches anyone else's rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from typer.testing import CliRunner

from accessa.cli.main import app
from accessa.config import Settings, get_settings
from accessa.ops import retention
from accessa.runtime.stage import _STORED

pytestmark = pytest.mark.integration
DAY_S = 86_400


@pytest.fixture
def settings(infra: Settings) -> Settings:
    return infra.model_copy(
        update={
            "topic_retention_hours": 150 * 24.0,  # dedup rows must then stay 300 days
            "retention_processed_events_days": 300.0,
            "retention_outbox_days": 300.0,
            "retention_embedding_cache_days": 300.0,
            "retention_dlq_redrives_days": 300.0,
            "retention_batch_rows": 1,  # several batches for two old rows
        }
    )


@pytest.fixture
async def rows(pool: asyncpg.Pool) -> AsyncIterator[dict[str, dict[str, object]]]:
    """Per table, this test's rows by age (days): 400 old, 200 young; the outbox also has an
    unpublished 400-day-old row, which is never deleted."""
    tag = uuid.uuid4().hex
    consumer = f"test-gc-{tag}"
    made: dict[str, dict[str, object]] = {t: {} for t in ("pe", "ob", "ec", "dr")}
    async with pool.acquire() as conn:
        for name, age in (("old", 400), ("old2", 401), ("young", 200), ("needed", 299)):
            event = uuid.uuid4()
            made["pe"][name] = event
            await conn.execute(
                "INSERT INTO processed_events (consumer, event_id, output_topic, output_value, "
                "created_at) VALUES ($1, $2, 'parsed', 'x', now() - make_interval(days => $3))",
                consumer,
                event,
                age,
            )
        for name, age, published in (
            ("old", 400, True),
            ("young", 200, True),
            ("unpublished", 400, False),
        ):
            made["ob"][name] = await conn.fetchval(
                "INSERT INTO outbox (topic, payload, created_at, published_at) VALUES "
                "($1, 'x', now() - make_interval(days => $2), "
                "CASE WHEN $3 THEN now() - make_interval(days => $2) END) RETURNING id",
                f"test-gc-{tag}",
                age,
                published,
            )
        for name, age in (("old", 400), ("young", 200)):
            made["ec"][name] = f"{tag}-{name}"
            await conn.execute(
                "INSERT INTO embedding_cache (content_sha256, embed_model, dimensions, embedding, "
                "created_at) VALUES ($1, 'test-gc', 3, '[1,2,3]', "
                "now() - make_interval(days => $2))",
                f"{tag}-{name}",
                age,
            )
            made["dr"][name] = f"test-gc-{tag}:0:{age}"
            await conn.execute(
                "INSERT INTO dlq_redrives (dlq_id, target, redriven_at) VALUES "
                "($1, 'uploaded', now() - make_interval(days => $2))",
                f"test-gc-{tag}:0:{age}",
                age,
            )
    made["consumer"] = {"name": consumer}
    yield made
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM processed_events WHERE consumer = $1", consumer)
        await conn.execute("DELETE FROM outbox WHERE topic = $1", f"test-gc-{tag}")
        await conn.execute(
            "DELETE FROM embedding_cache WHERE embed_model = 'test-gc' AND content_sha256 LIKE $1",
            f"{tag}-%",
        )
        await conn.execute("DELETE FROM dlq_redrives WHERE dlq_id LIKE $1", f"test-gc-{tag}:%")


async def _present(pool: asyncpg.Pool, made: dict[str, dict[str, object]]) -> dict[str, set]:
    pe = {
        r["event_id"]
        for r in await pool.fetch(
            "SELECT event_id FROM processed_events WHERE consumer = $1", made["consumer"]["name"]
        )
    }
    ob = {
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM outbox WHERE id = ANY($1::bigint[])", list(made["ob"].values())
        )
    }
    ec = {
        r["content_sha256"]
        for r in await pool.fetch(
            "SELECT content_sha256 FROM embedding_cache WHERE content_sha256 = ANY($1::text[])",
            list(made["ec"].values()),
        )
    }
    dr = {
        r["dlq_id"]
        for r in await pool.fetch(
            "SELECT dlq_id FROM dlq_redrives WHERE dlq_id = ANY($1::text[])",
            list(made["dr"].values()),
        )
    }
    names = {}
    for table, found in (("pe", pe), ("ob", ob), ("ec", ec), ("dr", dr)):
        names[table] = {name for name, value in made[table].items() if value in found}
    return names


async def test_gc_deletes_rows_past_retention_and_keeps_the_rest(
    settings: Settings, pool: asyncpg.Pool, rows: dict[str, dict[str, object]]
) -> None:
    everything = {t: set(rows[t]) for t in ("pe", "ob", "ec", "dr")}
    dry = {o.table: o.rows for o in await retention.collect(settings, pool, dry_run=True)}
    assert dry["processed_events"] >= 2 and dry["outbox"] >= 1
    assert dry["embedding_cache"] >= 1 and dry["dlq_redrives"] >= 1
    assert await _present(pool, rows) == everything  # the dry run deleted nothing

    done = {o.table: o.rows for o in await retention.collect(settings, pool)}
    assert done["processed_events"] >= 2  # in batches of one row
    assert await _present(pool, rows) == {
        "pe": {"young", "needed"},
        "ob": {"young", "unpublished"},
        "ec": {"young"},
        "dr": {"young"},
    }
    await retention.collect(settings, pool)  # a second run: nothing more of these goes
    assert await _present(pool, rows) == {
        "pe": {"young", "needed"},
        "ob": {"young", "unpublished"},
        "ec": {"young"},
        "dr": {"young"},
    }


async def test_a_redelivery_within_the_topic_retention_is_still_deduplicated_after_gc(
    settings: Settings, pool: asyncpg.Pool, rows: dict[str, dict[str, object]]
) -> None:
    # Processed 299 days ago, with topics keeping 150 days: a replayed copy of its record
    # (made while the original was still there) could arrive until day 300.
    await retention.collect(settings, pool)
    needed = rows["pe"]["needed"]
    stored = await pool.fetch(_STORED, rows["consumer"]["name"], [needed])
    assert [r["event_id"] for r in stored] == [needed]  # the runtime's own lookup finds it
    shorter = settings.model_copy(update={"retention_processed_events_days": 299.0})
    with pytest.raises(retention.RetentionUnsafe, match="twice the topics' retention"):
        await retention.collect(shorter, pool)
    assert await pool.fetch(_STORED, rows["consumer"]["name"], [needed])  # refused: kept


def test_the_cli_refuses_an_unsafe_retention_and_counts_with_dry_run(
    infra: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("ACCESSA_RETENTION_PROCESSED_EVENTS_DAYS", "1")
    get_settings.cache_clear()
    try:
        refused = runner.invoke(app, ["gc", "--json"])
        assert refused.exit_code == 2, refused.output
        assert "twice the topics' retention" in json.loads(refused.output)["error"]
        monkeypatch.setenv("ACCESSA_RETENTION_PROCESSED_EVENTS_DAYS", "100000")
        for name in ("OUTBOX", "EMBEDDING_CACHE", "DLQ_REDRIVES"):
            monkeypatch.setenv(f"ACCESSA_RETENTION_{name}_DAYS", "100000")
        get_settings.cache_clear()
        counted = runner.invoke(app, ["gc", "--dry-run", "--json"])
        assert counted.exit_code == 0, counted.output
        tables = json.loads(counted.output)["tables"]
        assert set(tables) == {"processed_events", "outbox", "embedding_cache", "dlq_redrives"}
        assert all(t["rows"] == 0 and t["retention_days"] == 100000 for t in tables.values())
    finally:
        get_settings.cache_clear()
